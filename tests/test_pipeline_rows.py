"""The store writer's batch statement on real PostgreSQL: rows sent as JSON documents
come back as they were written, odd text included."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.infra.event_codec import event_json
from coordinator.infra.order_states import OrderStates
from coordinator.infra.pipeline_rows import (
    decided_event,
    decision_row,
    encode_row,
    finished_event,
    order_event_json,
)
from coordinator.infra.pipeline_store import PipelineStore, RecordError
from coordinator.infra.records import RecordKind, decision_record, order_record
from coordinator.infra.store import clean_text
from coordinator.messages.pipeline import Decision, OrderFinished, OrderRecord, SignalDecided
from coordinator.trading.validation import CheckResult, Reason
from tests.conftest import forget_earlier_tests

ODD = "quote ' double \" back \\ nul \x00 lone \ud800 accents é 漢字 🙂 newline \n end"


def batch(signal_id: str, *, price: float = 11.0) -> list[dict]:
    order = {
        "kind": RecordKind.ORDER,
        "client_order_id": "coord-" + signal_id,
        "signal_id": signal_id,
        "symbol": "BTCUSDC",
        "side": "BUY",
        "quantity": 0.5,
        "reference_price": 11.0,
        "trader_order_id": None,
        "error": None,
        "at": 1_800_000_000.0,
    }
    return [
        {
            "kind": RecordKind.SIGNAL,
            "signal_id": signal_id,
            "source": "pubsub",
            "received_at": 1_800_000_000.25,
            "valid": True,
            "symbol": "BTCUSDC",
            "side": "BUY",
            "price": price,
            "signal_at": 1_800_000_000.0,
            "strategy": "CONSENSUS " + ODD,
            "db_id": None,
            "stream_id": None,
            "payload": json.dumps({"text": ODD}),
        },
        {**order, "state": "sent"},
        {
            "kind": RecordKind.DECISION,
            "signal_id": signal_id,
            "symbol": "BTCUSDC",
            "side": "BUY",
            "outcome": "accepted",
            "reason": None,
            "detail": "detail " + ODD,
            "checks": [
                {"step": "risk", "passed": True, "reason": None, "detail": ODD},
                {"step": "execution", "passed": True, "reason": None, "detail": "ok"},
            ],
            "quantity": 0.5,
            "decided_at": 1_800_000_001.5,
            "decided_by": "validator-0#1",
            "intake_to_decision_ms": 1.25,
            "intake_to_order_ms": None,
        },
        # The same order twice in a batch: the latest state, with what it adds.
        {**order, "state": "accepted", "trader_order_id": "T-1", "error": "note " + ODD},
    ]


def test_a_batch_is_stored_as_written_odd_text_kept_visible(postgres):
    store = PipelineStore(postgres.dsn, timeout=5)
    signal_id = f"rows-{id(store)}"
    assert store.write(batch(signal_id)) == {signal_id}
    stored = store.signal(signal_id)
    assert stored is not None
    visible = ODD.replace("\x00", "\\u0000").replace("\ud800", "\\ud800")
    assert stored["signal"]["strategy"] == "CONSENSUS " + visible
    assert stored["signal"]["payload"] == {"text": ODD}  # JSON text kept as it came
    assert stored["signal"]["price"] == 11.0 and stored["signal"]["valid"] is True
    assert stored["signal"]["received_at"].startswith("2027-01-15T08:00:00.25")
    decision = stored["decision"]
    assert decision["detail"] == "detail " + visible
    assert decision["checks"][0] == {
        "step": "risk",
        "passed": True,
        "reason": None,
        "detail": visible,
    }
    assert decision["intake_to_decision_ms"] == 1.25 and decision["intake_to_order_ms"] is None
    order = stored["order"]
    assert (order["state"], order["trader_order_id"]) == ("accepted", "T-1")
    assert order["error"] == "note " + visible and order["quantity"] == 0.5
    # Written again (a replay of the journal): nothing newly decided, nothing changed.
    assert store.write(batch(signal_id)) == set()
    assert store.signal(signal_id) == stored
    store.close()


def test_this_modules_orders_dated_ahead_are_not_left_recent_for_the_next_test(postgres):
    """These orders are dated 2027 (this module's own clock) in the session's database:
    the next test's setup must leave them old, or every Ledger started after it lays
    them over its view (seen: a BUY of BTCUSDC laid in every later test of the worker)."""
    store = PipelineStore(postgres.dsn, timeout=5)
    signal_id = f"ahead-{id(store)}"
    try:
        store.write(batch(signal_id))
    finally:
        store.close()
    forget_earlier_tests(postgres.dsn)
    states = OrderStates(postgres.dsn, timeout=5)
    try:
        recent = states.recent(time.time() - 180)
    finally:
        states.close()
    assert signal_id not in {row.signal_id for row in recent}


def test_a_value_postgres_cannot_take_is_a_record_error(postgres):
    store = PipelineStore(postgres.dsn, timeout=5)
    with pytest.raises(RecordError):
        store.write(batch(f"nan-{id(store)}", price=math.nan))
    assert store.signal(f"nan-{id(store)}") is None
    store.close()


def test_the_decided_event_made_from_the_stored_row_is_the_codecs_event():
    """The StoreWriter encodes a decision once, for its row and its event: the event
    reads as the one encoded from the decision's fields."""
    order = OrderRecord(
        client_order_id="coord-x",
        signal_id="consensus:x",
        symbol="BTCUSDC",
        side="BUY",
        quantity=0.5,
        reference_price=11.0,
        state="accepted",
        trader_order_id="T-1",
        at=1_800_000_000.0,
    )
    decision = Decision(
        signal_id="consensus:x",
        symbol="BTCUSDC",
        side="BUY",
        outcome="accepted",
        reason=None,
        detail="sent: é",
        checks=(
            CheckResult("risk", True, None, "within limits"),
            CheckResult("execution", False, Reason.TRADER_REJECTED, "422: non créé"),
        ),
        quantity=0.5,
        decided_at=1_800_000_001.0,
        decided_by="validator-0#1",
        intake_to_decision_ms=1.5,
        intake_to_order_ms=0.75,
        order=order,
    )
    for with_order in (decision, replace(decision, order=None)):
        expected = json.loads(event_json(SignalDecided(decision=with_order, source="pubsub")))
        fields = order_event_json(order) if with_order.order is not None else None
        row = encode_row(decision_row(decision_record(with_order)))
        assert json.loads(decided_event(row, "pubsub", fields)) == expected
        assert next(iter(json.loads(decided_event(row, "pubsub", fields)))) == "type"
        if fields is not None:
            # The order's part, byte for byte as the codec encodes it from the fields.
            order_part = json.dumps(order_record(order), default=str)
            assert f',"order":{order_part}}}'.encode() in decided_event(row, "pubsub", fields)
    # Its own event, from the same encoding, is the codec's to the byte.
    assert finished_event(order_event_json(order)) == event_json(OrderFinished(order=order))
    nan = replace(order, reference_price=math.nan, error='a "quote" and é')
    assert finished_event(order_event_json(nan)) == event_json(OrderFinished(order=nan))


_DETAILS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "ok", "nul \x00", ODD, "accents é", "lone \ud800"]),
    st.none(),
    st.integers(),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["step", "detail"]), _DETAILS), max_size=6))
def test_checks_looked_at_together_are_cleaned_as_each_alone(checks: list[dict]) -> None:
    # What each check's detail becomes when looked at on its own: the text as it is
    # when nothing needs cleaning, else cleaned (a detail missing or not text: its text).
    def alone(check: dict) -> dict:
        detail = check.get("detail")
        if isinstance(detail, str) and clean_text(detail) == detail:
            return check
        return {**check, "detail": clean_text(str(check.get("detail", "")))}

    row = decision_row(
        {"signal_id": "s", "outcome": "rejected", "checks": checks, "decided_at": 1.0}
        | {"decided_by": "validator-0"}
    )
    assert row["checks"] == [alone(c) for c in checks]
