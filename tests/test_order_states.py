"""Order states for the reconciliation, on a real PostgreSQL: unknown orders, their
resolution (only ever out of unknown), and RootTrading's ``trade_executions`` built
from its contract (columns and rows)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import psycopg2
import pytest

from coordinator.infra.order_states import OrderStates
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.records import RecordKind
from coordinator.trading.execution import OrderStatus
from tests.test_trader_orders import CONTRACT, needs_contract


def order(state: str, *, at: float, error: str | None = None, **changes: Any) -> dict[str, Any]:
    cid = changes.pop("client_order_id", f"coord-{uuid.uuid4().hex}")
    return {
        "kind": "order",
        "client_order_id": cid,
        "signal_id": changes.pop("signal_id", f"sig-{cid}"),
        "symbol": "SOLUSDC",
        "side": "BUY",
        "quantity": 1.1068501275829288,
        "reference_price": 199.9,
        "state": state,
        "error": error,
        "at": at,
        **changes,
    }


def test_unknown_orders_are_read_and_resolved_once(postgres):
    writer = PipelineStore(postgres.dsn, timeout=5)
    states = OrderStates(postgres.dsn, timeout=5)
    now = time.time()
    lost = order("unknown", at=now - 30, error="held: 500: boom")
    done = order("accepted", at=now - 20, trader_order_id="order_0123456789abcdef")
    writer.write([lost, done])
    try:
        unknown = {o.client_order_id: o for o in states.unknown()}
        assert lost["client_order_id"] in unknown and done["client_order_id"] not in unknown
        row = unknown[lost["client_order_id"]]
        assert row.held and row.created_at == pytest.approx(now - 30, abs=1e-3)
        settled = states.settled(now - 60, now)
        assert done["client_order_id"] in {o.client_order_id for o in settled}

        first = states.resolve(
            lost["client_order_id"],
            state="accepted",
            trader_order_id="order_aaaaaaaaaaaaaaaa",
            note="found at the Trader",
            at=now,
        )
        assert first.resolved and first.state == "accepted"
        again = states.resolve(
            lost["client_order_id"], state="rejected", trader_order_id=None, note="x", at=now
        )
        assert not again.resolved and again.state == "accepted"
        assert states.resolve("coord-none", state="rejected", trader_order_id=None, note="",
                              at=now).state is None  # fmt: skip
        resolved = states.order(lost["client_order_id"])
        assert resolved.trader_order_id == "order_aaaaaaaaaaaaaaaa"
        assert resolved.error == "held: 500: boom; found at the Trader"
        # A late write of the unknown state never undoes an outcome.
        writer.write([{**lost, "state": "unknown", "at": now + 1}])
        assert states.order(lost["client_order_id"]).state == "accepted"
        with pytest.raises(ValueError, match="accepted or rejected"):
            states.resolve(lost["client_order_id"], state="sent", trader_order_id=None,
                           note="", at=now)  # fmt: skip
    finally:
        writer.close()
        states.close()


def test_an_unknown_order_can_still_take_the_outcome_of_its_resend(postgres):
    writer = PipelineStore(postgres.dsn, timeout=5)
    now = time.time()
    held = order("unknown", at=now - 20, error="held: 500: boom")
    try:
        writer.write([held])
        writer.write([{**held, "state": "sent", "at": now - 1}])
        writer.write([{**held, "state": "accepted", "trader_order_id": "order_b", "at": now}])
        states = OrderStates(postgres.dsn, timeout=5)
        assert states.order(held["client_order_id"]).state == "accepted"
        states.close()
    finally:
        writer.close()


def test_an_order_sent_again_resized_is_stored_with_the_quantity_it_went_with(postgres):
    """A held order is checked again from step 4 before it is sent again, and may be
    sized anew: the row takes the quantity it went with, or the reconciler, matching by
    quantity, could never find its fill. A record that is no sending does not touch it."""
    writer = PipelineStore(postgres.dsn, timeout=5)
    states = OrderStates(postgres.dsn, timeout=5)
    now = time.time()
    held = order("unknown", at=now - 20, error="held: 500: boom", quantity=56.0506)
    try:
        writer.write([held])
        resent = {**held, "error": "resent: sent again", "quantity": 59.5287, "at": now - 1}
        writer.write([resent])
        assert states.order(held["client_order_id"]).quantity == 59.5287
        writer.write([{**resent, "state": "accepted", "trader_order_id": "order_b", "at": now}])
        writer.write([{**resent, "state": "rejected", "quantity": 0.0, "at": now}])
        stored = states.order(held["client_order_id"])
        assert (stored.state, stored.quantity) == ("accepted", 59.5287)
    finally:
        states.close()
        writer.close()


def test_exits_left_undecided_by_a_dead_process_are_decided_at_start(postgres):
    writer = PipelineStore(postgres.dsn, timeout=5)
    now = time.time()
    exits = [f"exit:SOLUSDC@{uuid.uuid4().hex}@100:1" for _ in range(2)]
    signals = [
        {
            "kind": "signal",
            "signal_id": signal_id,
            "source": "trailing_stop",
            "received_at": now - 10,
            "valid": True,
            "symbol": "SOLUSDC",
            "side": "SELL",
            "price": 99.0,
            "signal_at": now - 10,
            "strategy": "trailing_stop:stoploss",
            "db_id": None,
            "stream_id": None,
            "payload": "{}",
        }
        for signal_id in exits
    ]
    sent = order("sent", at=now - 9, signal_id=exits[1], side="SELL")
    try:
        writer.write([*signals, sent])
        writer.mark_orphaned_orders(now)
        assert writer.decide_orphaned_exits(now) >= 2  # the session database: others too
        assert writer.decide_orphaned_exits(now) == 0
        never, maybe = (writer.signal(signal_id)["decision"] for signal_id in exits)
        assert (never["outcome"], never["reason"]) == ("rejected", "internal_error")
        assert (maybe["outcome"], maybe["reason"]) == ("unknown", "order_unknown")
        assert "may have left" in maybe["detail"]
    finally:
        writer.close()


def test_an_accepted_answer_with_the_traders_id_wins_over_a_rejection(postgres):
    """A held order's rejection written while its re-send was on its way (the reconciler
    and the Validator race) gives way to the Trader's answer: what filled is stored so."""
    writer = PipelineStore(postgres.dsn, timeout=5)
    states = OrderStates(postgres.dsn, timeout=5)
    now = time.time()
    held = order("unknown", at=now - 20, error="held: 500: boom")
    try:
        writer.write([held])
        writer.write([{**held, "state": "rejected", "error": "not executed", "at": now - 1}])
        writer.write([{**held, "state": "accepted", "at": now}])  # no Trader id: no proof
        assert states.order(held["client_order_id"]).state == "rejected"
        writer.write([{**held, "state": "accepted", "trader_order_id": "order_c", "at": now}])
        assert states.order(held["client_order_id"]).state == "accepted"
    finally:
        states.close()
        writer.close()


def create_trade_executions(dsn: str) -> list[dict[str, Any]]:
    """RootTrading's table, from its columns.json, holding its fixture rows."""
    spec = json.loads((CONTRACT / "trade_executions" / "columns.json").read_text())
    columns = []
    for column in spec["columns"]:
        definition = f'"{column["name"]}" {column["type"]}'
        if "check" in column:
            values = ", ".join(f"'{v}'" for v in column["check"])
            definition += f' CHECK ("{column["name"]}" IN ({values}))'
        columns.append(definition)
    rows = [
        json.loads((CONTRACT / "trade_executions" / name).read_text())
        for name in ("buy_execution_live.json", "sell_execution_live.json",
                     "sell_execution_demo.json")
    ]  # fmt: skip
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE trade_executions ({', '.join(columns)})")
        for row in rows:
            names = ", ".join(f'"{k}"' for k in row)
            cur.execute(
                f"INSERT INTO trade_executions ({names}) VALUES ({', '.join(['%s'] * len(row))})",
                [json.dumps(v) if isinstance(v, dict) else v for v in row.values()],
            )
    conn.close()
    return rows


@needs_contract
def test_trade_executions_are_read_when_the_table_exists(own_postgres):
    states = OrderStates(own_postgres.dsn, timeout=5)
    try:
        assert not states.has_executions()
        assert states.executions(0, time.time()) == []
        rows = create_trade_executions(own_postgres.dsn)
        assert states.has_executions()
        buy = datetime.fromisoformat(rows[0]["timestamp"] + "+00:00").timestamp()
        found = states.executions(buy - 60, buy + 60)
        assert [(e.order_id, e.symbol, e.side, e.quantity) for e in found] == [
            ("2281734905", "SOLUSDC", "BUY", 1.106)
        ]
        assert found[0].at == pytest.approx(buy)
        day = states.executions(buy - 86_400 * 6, buy + 86_400)
        assert [e.order_id for e in day] == ["10000003", "2281734905", "2281799467"]
        # The demo row (written before) does not say the table may have lost a fill
        # since the buy; one written since does.
        assert states.executions_complete_since(buy - 60)
        assert not states.executions_complete_since(buy - 86_400 * 6)
    finally:
        states.close()


def test_states_and_kinds_as_enums_are_stored_and_sent_as_their_text(postgres):
    """The actors write ``OrderStatus`` and ``RecordKind`` members: PostgreSQL gets and
    compares them as text, the journal and the events as JSON strings."""
    writer = PipelineStore(postgres.dsn, timeout=5)
    states = OrderStates(postgres.dsn, timeout=5)
    now = time.time()
    record = {**order(OrderStatus.UNKNOWN, at=now, error="held: 500"), "kind": RecordKind.ORDER}
    cid = record["client_order_id"]
    try:
        writer.write([record])
        row = states.order(cid)
        assert row is not None and row.held
        assert type(row.state) is str and row.state == "unknown"
        with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), %s::text FROM coordinator_orders"
                " WHERE client_order_id = %s AND state = %s",
                (RecordKind.ORDER, cid, OrderStatus.UNKNOWN),
            )
            assert cur.fetchone() == (1, "order")
        conn.close()
        resolved = states.resolve(
            cid, state=OrderStatus.ACCEPTED, trader_order_id="order_1", note="found", at=now
        )
        assert resolved.resolved and states.order(cid).state == "accepted"
    finally:
        writer.close()
        states.close()
    text = json.dumps({"kind": RecordKind.ORDER, "state": OrderStatus.ACCEPTED})
    assert text == '{"kind": "order", "state": "accepted"}'
