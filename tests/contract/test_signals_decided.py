"""RootTrading's published consensus signals (``signals/*.json``), each published as is on
``roottrading:signals:filtered`` to a real Redis and decided by a whole coordinator
(paper exchange), in the order of RootTrading's shared timeline.

The signals are dated 2025-10-27: the signal timeout is raised past their age, which is
the only thing changed to take them as they were published. Quantities are not checked
here (they belong to the sizing mode); the outcome, side and symbol are, and that the
decision is filed under the aggregator's ``db_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.contract.fixtures import contract_files, load_json, load_raw, needs_contract
from tests.waiting import wait_for

pytestmark = needs_contract

CHANNEL = "roottrading:signals:filtered"


@dataclass(frozen=True, slots=True)
class Expected:
    """What the coordinator decides for one published file."""

    fixture: str
    """The file under ``signals/``."""
    signal_id: str
    """Where the decision is filed: ``db:<db_id>``, else ``consensus:<consensus_id>``."""
    outcome: str
    """accepted or rejected."""
    reason: str | None
    """The reason code of a rejection."""
    why: str
    """What makes it so."""


TIMELINE = (
    Expected(
        "buy_consensus_large_40_constituents.json",
        "db:48174",
        "accepted",
        None,
        "BTCUSDC is traded; ~49 KB with its 40 constituents is within the payload limit",
    ),
    Expected("buy_consensus.json", "db:48213", "accepted", None, "SOLUSDC is traded"),
    Expected(
        "buy_consensus_failsafe.json",
        "db:48262",
        "accepted",
        None,
        "is_failsafe_trade is RootTrading's own; it changes nothing here",
    ),
    Expected("sell_consensus.json", "db:48297", "accepted", None, "sells the SOL bought at 14:03"),
    Expected(
        "buy_consensus_no_db_id.json",
        "consensus:",
        "accepted",
        None,
        "the trading_signals INSERT failed: decided all the same, under its consensus id",
    ),
    Expected(
        "buy_consensus_null_context_fields.json",
        "db:48351",
        "rejected",
        "not_in_universe",
        "null volume_ratio/confluence_score are read; LINKUSDC is not a traded symbol "
        "(4 strategies: no override would let it in)",
    ),
)


def test_every_signal_file_has_an_expected_decision():
    assert {p.name for p in contract_files("signals")} == {e.fixture for e in TIMELINE}


def test_each_published_signal_is_decided_as_expected(pipelines, own_postgres):
    pipe = pipelines(
        {"SIGNALS_CHANNEL": CHANNEL, "SIGNAL_TIMEOUT": "1000000000"},
        # A database of its own: other tests decide some of these db_ids too, and a
        # signal decided once is a duplicate after.
        database_dsn=own_postgres.dsn,
    )
    for expected in TIMELINE:
        signal = load_json(f"signals/{expected.fixture}")
        pipe.paper.set_price(signal["symbol"], signal["price"])

    for expected in TIMELINE:
        raw = load_raw(f"signals/{expected.fixture}")
        signal = json.loads(raw)
        signal_id = expected.signal_id
        if signal_id == "consensus:":
            assert "db_id" not in signal["metadata"]
            signal_id += signal["metadata"]["consensus_id"]
        wait_for(lambda raw=raw: pipe.redis.publish(CHANNEL, raw) > 0, message="a subscriber")
        record = pipe.decision(signal_id, timeout=30)
        decision = record["decision"]

        assert (decision["outcome"], decision["reason"]) == (expected.outcome, expected.reason), (
            expected.fixture,
            expected.why,
            decision["detail"],
        )
        stored = record["signal"]
        assert (stored["symbol"], stored["side"]) == (signal["symbol"], signal["side"])
        assert stored["valid"] is True and stored["signal_id"] == signal_id
        assert stored["payload"]["metadata"].get("db_id") == signal["metadata"].get("db_id")
        listed = {d["signal_id"]: d for d in pipe.decisions(symbol=signal["symbol"])}
        assert listed[signal_id]["side"] == signal["side"]
        assert listed[signal_id]["outcome"] == expected.outcome
        if expected.outcome == "accepted":
            order = record["order"]
            assert order is not None and order["trader_order_id"], order
            assert order["state"] in ("accepted", "filled"), order
