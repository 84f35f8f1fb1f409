"""The signal pipeline end to end: Redis and HTTP in, decisions in PostgreSQL, orders at a
paper exchange over real HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.pipeline import PRICES, Pipeline, signal_payload
from tests.waiting import wait_for


def signal_id(payload: dict[str, Any]) -> str:
    return "consensus:" + payload["metadata"]["consensus_id"]


def test_the_aggregator_payload_is_decided_and_the_order_sent(pipelines):
    pipe = pipelines()
    payload = signal_payload("ETHUSDC", "BUY")

    pipe.publish(payload)

    record = pipe.decision(signal_id(payload))
    decision = record["decision"]
    assert decision["outcome"] == "accepted", decision
    steps = [c["step"] for c in decision["checks"]]
    assert steps == [
        "parse",
        "freshness",
        "back_pressure",
        "trading_state",
        "universe",
        "risk",
        "portfolio",
        "market",
        "sizing",
        "execution",
    ]
    assert all(c["passed"] for c in decision["checks"])
    # force 0.91 * sqrt(5) * 0.82 = 1.67 -> STRONG: 22 % of 10,000 USDC
    assert "STRONG" in decision["checks"][8]["detail"]
    expected = 10_000 * 0.22 / PRICES["ETHUSDC"]
    assert decision["quantity"] == pytest.approx(expected, rel=1e-6)
    order = record["order"]
    assert order["state"] == "accepted"
    assert order["trader_order_id"].startswith("order_")
    assert record["signal"]["source"] == "pubsub"
    assert record["signal"]["payload"]["metadata"]["trailing_delta"] == 1.5
    assert pipe.positions()["ETHUSDC"] == pytest.approx(expected, rel=1e-6)
    assert decision["intake_to_order_ms"] > 0


def test_sell_sells_the_position_quantity_and_no_position_is_rejected(pipelines):
    pipe = pipelines()
    orphan_sell = signal_payload("SOLUSDC", "SELL")
    pipe.publish(orphan_sell)
    rejected = pipe.decision(signal_id(orphan_sell))["decision"]
    assert rejected["outcome"] == "rejected"
    assert rejected["reason"] == "no_position"

    buy = signal_payload("SOLUSDC", "BUY")
    pipe.publish(buy)
    bought = pipe.decision(signal_id(buy))["decision"]["quantity"]
    # The paper exchange holds a little less after its fee in the quote asset: none.
    wait_for(lambda: "SOLUSDC" in pipe.positions())

    sell = signal_payload("SOLUSDC", "SELL")
    pipe.publish(sell)
    record = pipe.decision(signal_id(sell))
    assert record["decision"]["outcome"] == "accepted"
    # min(position, free base): until the Ledger has seen the balances after a BUY it
    # does not know in which asset the fee was taken, and counts the smaller base.
    sold = record["order"]["quantity"]
    assert bought * (1 - 0.001) - 1e-8 <= sold <= bought
    wait_for(lambda: "SOLUSDC" not in pipe.positions(), message="position closed")


def test_http_intake_answers_202_with_the_id_or_400_with_every_field_error(pipelines):
    pipe = pipelines()
    payload = signal_payload("BNBUSDC", "BUY")
    accepted = pipe.post(payload)
    assert accepted.status_code == 202
    assert accepted.json()["signal_id"] == signal_id(payload)
    assert pipe.decision(signal_id(payload))["signal"]["source"] == "http"

    again = pipe.post(payload)
    assert again.status_code == 409
    assert again.json()["reason"] == "duplicate_signal"

    bad = pipe.post({"symbol": "btcusdc", "side": "buy", "price": -1, "timestamp": "yesterday"})
    assert bad.status_code == 400
    fields = {e["field"] for e in bad.json()["errors"]}
    assert fields == {"strategy", "symbol", "side", "price", "timestamp"}
    stored = pipe.decision(bad.json()["signal_id"])
    assert stored["decision"]["reason"] == "invalid_signal"

    no_token = requests.post(pipe.url + "/signals", json=payload, timeout=5)
    assert no_token.status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"side": "buy"}, "side"),
        ({"price": 0}, "price"),
        ({"price": "65000"}, "price"),
        ({"timestamp": 1700000000}, "timestamp"),
        ({"confidence": 1.5}, "confidence"),
        ({"strength": "huge"}, "strength"),
        ({"metadata": []}, "metadata"),
    ],
)
def test_bad_fields_are_named(pipelines_shared, change, field):
    pipe = pipelines_shared
    payload = {**signal_payload("BTCUSDC"), **change}
    response = pipe.post(payload)
    assert response.status_code == 400
    assert field in {e["field"] for e in response.json()["errors"]}


@pytest.fixture(scope="module")
def pipelines_shared(redis_server, postgres, tmp_path_factory) -> Iterator[Pipeline]:
    pipe = Pipeline(
        redis_url=redis_server.url,
        database_dsn=postgres.dsn,
        data_dir=tmp_path_factory.mktemp("shared"),
    )
    yield pipe
    pipe.stop()


def test_stale_and_future_signals_are_rejected(pipelines):
    pipe = pipelines()
    stale = signal_payload("BTCUSDC", timestamp_ms=int((time.time() - 60) * 1000))
    future = signal_payload("BTCUSDC", timestamp_ms=int((time.time() + 60) * 1000))
    iso = signal_payload("XRPUSDC", timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
    for payload in (stale, future, iso):
        pipe.publish(payload)
    assert pipe.decision(signal_id(stale))["decision"]["reason"] == "stale_signal"
    assert pipe.decision(signal_id(future))["decision"]["reason"] == "stale_signal"
    assert pipe.decision(signal_id(iso))["decision"]["outcome"] == "accepted"


def test_duplicates_are_decided_once(pipelines):
    pipe = pipelines()
    payload = signal_payload("LTCUSDC")
    for _ in range(3):
        pipe.publish(payload)
    pipe.add_to_stream(payload)
    pipe.decision(signal_id(payload))
    wait_for(lambda: pipe.stats()["duplicates"] == 3, message="three duplicates counted")
    assert len(pipe.decisions(symbol="LTCUSDC")) == 1
    assert pipe.paper.stats()["orders_received"] == 1


def test_oversized_and_non_object_payloads_are_rejected_and_recorded(pipelines):
    pipe = pipelines()
    big = json.dumps({**signal_payload(), "padding": "x" * (1024 * 1024)}).encode()
    cases = {
        big: "over the limit of 1048576 bytes",
        b"[1, 2, 3]": "must be a JSON object, got an array",
        b"\xff\xfe not json": "not valid JSON",
    }
    for data in cases:
        pipe.publish(data)
    for data, problem in cases.items():
        record = pipe.decision("raw:" + hashlib.sha256(data).hexdigest())
        assert record["decision"]["reason"] == "invalid_signal"
        assert problem in record["decision"]["detail"]
        assert record["signal"]["valid"] is False


def test_shadow_mode_decides_and_records_but_sends_nothing(pipelines):
    pipe = pipelines({"TRADING_ENABLED": "false"})
    payload = signal_payload("ETHUSDC")
    pipe.publish(payload)
    record = pipe.decision(signal_id(payload))
    assert record["decision"]["outcome"] == "shadow"
    assert record["order"] is None
    assert pipe.paper.stats()["orders_received"] == 0


def test_events_go_out_on_the_events_channel(pipelines):
    pipe = pipelines()
    listener = pipe.redis.pubsub()
    listener.subscribe(pipe.events_channel)
    wait_for(lambda: listener.get_message(timeout=0.1), message="subscribed")
    payload = signal_payload("XRPUSDC")
    pipe.publish(payload)

    def events() -> list[dict[str, Any]]:
        seen = []
        while (message := listener.get_message(timeout=0.2)) is not None:
            seen.append(json.loads(message["data"]))
        return seen

    collected: list[dict[str, Any]] = []
    wait_for(
        lambda: (
            collected.extend(events())
            or {"SignalDecided", "OrderSubmitted"} <= {e["type"] for e in collected}
        ),
        message="SignalDecided and OrderSubmitted",
    )
    decided = next(e for e in collected if e["type"] == "SignalDecided")
    assert decided["signal_id"] == signal_id(payload)
    assert decided["outcome"] == "accepted"
    listener.close()


def test_stats_have_the_old_and_new_fields(pipelines):
    pipe = pipelines()
    accepted = signal_payload("BTCUSDC")
    rejected = signal_payload("SOLUSDC", "SELL")
    for payload in (accepted, rejected):
        pipe.publish(payload)
        pipe.decision(signal_id(payload))
    stats = wait_for(
        lambda: (s := pipe.stats())["signals_processed"] == 2 and s, message="two decisions"
    )
    for field in (
        "signals_received",
        "signals_processed",
        "signals_rejected",
        "orders_sent",
        "errors",
        "signals_validated",
        "validation_success_rate",
        "active_positions",
        "universe_size",
        "trailing_stops_active",
    ):
        assert field in stats, field
    assert stats["signals_received"] == 2
    assert stats["orders_sent"] == 1
    assert stats["signals_rejected"] == 1
    assert stats["rejections_by_reason"] == {"no_position": 1}
    assert stats["validation_success_rate"] == 0.5
    wait_for(lambda: pipe.stats()["active_positions"] == 1, message="one position")
    latency = stats["latency_ms"]["intake_to_order"]
    assert latency["count"] == 1 and latency["p99"] > 0
    assert "lifetime" in stats
