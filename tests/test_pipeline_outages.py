"""The pipeline through outages: the Trader, the Portfolio, Redis and PostgreSQL going away
lose no signal and send no order twice."""

from __future__ import annotations

import json
import time

import redis
import requests

from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.pipeline import SubmitSignal
from coordinator.trading.routing import client_order_id, validator_for
from coordinator.trading.signals import parse_signal
from tests.aggregator_table import create_trading_signals, insert_consensus_row
from tests.http_stub import StubService
from tests.pipeline import PRICES, SYMBOLS, Pipeline, signal_payload
from tests.test_held_orders import trader_up_a_while
from tests.test_pipeline import signal_id
from tests.test_pipeline_faults import (
    Waiting0,
    db_rows,
    validator_snapshot,
    wait_all_decided,
    wait_state,
)
from tests.waiting import wait_for

# --- the Trader ----------------------------------------------------------------------


def test_trader_read_timeout_leaves_the_order_unknown_and_never_sends_it_again(pipelines):
    pipe = pipelines({"TRADER_READ_TIMEOUT": "0.3"})
    wait_state(pipe, "ACTIVE")
    requests.post(pipe.paper.url + "/_paper/knobs", json={"timeout": 2}, timeout=5)
    payload = signal_payload("BTCUSDC")

    pipe.publish(payload)

    record = pipe.decision(signal_id(payload))
    assert record["decision"]["outcome"] == "unknown"
    assert record["decision"]["reason"] == "order_unknown"
    assert record["order"]["state"] == "unknown"
    alerts = requests.get(pipe.url + "/orders/unknown", timeout=5).json()
    assert client_order_id(signal_id(payload)) in [o["client_order_id"] for o in alerts["orders"]]
    requests.post(pipe.paper.url + "/_paper/knobs", json={"timeout": 0}, timeout=5)
    # The same signal again, straight to a new incarnation of its Validator (past the
    # intake's duplicate check), then a fresh one behind it: the copy is not decided
    # again and nothing more reaches the Trader for it.
    owner = validator_for("BTCUSDC", 4)
    pipe.drill(owner)
    wait_for(lambda: validator_snapshot(pipe, owner) is not None, message="a new incarnation")
    copy = parse_signal(json.dumps(payload))
    fresh = signal_payload("BTCUSDC", side="SELL")
    for parsed in (copy, parse_signal(json.dumps(fresh))):
        pipe.directory.tell(
            owner,
            SubmitSignal(
                signal=parsed,
                source="test",
                received_at=time.time(),
                received_mono=time.monotonic(),
            ),
        )
    wait_for(
        lambda: db_rows(
            pipe.config.database.url,
            "SELECT 1 FROM coordinator_decisions WHERE signal_id = %s",
            (signal_id(fresh),),
        ),
        message="the fresh signal decided",
    )
    assert pipe.paper.stats()["requests_by_client_order_id"] == {
        client_order_id(signal_id(payload)): 1,
        client_order_id(signal_id(fresh)): 1,
    }
    assert pipe.decision(signal_id(payload))["decision"]["outcome"] == "unknown"


def test_trader_outage_opens_its_breaker_and_waiting_signals_go_when_it_returns(pipelines):
    # The Portfolio apart and up: the outage knobs act on the whole paper exchange, and a
    # Portfolio whose breaker closes after the Trader's would refuse the BUY let go.
    portfolio = PaperExchange(redis_url=None).start()
    try:
        pipe = pipelines(
            {
                "SIGNAL_TIMEOUT": "40",
                "BREAKER_OPEN_SECONDS": "0.5",
                "PORTFOLIO_API_URL": portfolio.url,
            }
        )
        _trader_outage(pipe)
    finally:
        portfolio.stop()


def _trader_outage(pipe):
    wait_state(pipe, "ACTIVE")
    trader_up_a_while(pipe)
    knobs = pipe.paper.url + "/_paper/knobs"
    requests.post(knobs, json={"error_rate": 1.0, "health_status": 500}, timeout=5)
    failed = [signal_payload(symbol) for symbol in ("BTCUSDC", "ETHUSDC", "SOLUSDC")]
    for payload in failed:
        pipe.publish(payload)
    status = wait_state(pipe, "HALTED")
    assert status["trading"]["reasons"][0]["code"] == "trader_down"

    waiting = signal_payload("XRPUSDC")
    pipe.publish(waiting)
    # The failed ones are held for the reconciliation, not rejected: all four wait.
    wait_for(
        lambda: (
            sum((validator_snapshot(pipe, f"validator-{i}") or Waiting0).waiting for i in range(4))
            == 4
        ),
        message="the signals wait",
    )
    assert (pipe.stored(signal_id(waiting)) or {}).get("decision") is None

    requests.post(knobs, json={"error_rate": 0.0, "health_status": 200}, timeout=5)

    record = pipe.decision(signal_id(waiting))
    assert record["decision"]["outcome"] == "accepted"
    assert record["order"]["state"] == "accepted"
    for payload in failed:
        # Not found at the Trader once their window passed: sent again, filled once.
        assert pipe.decision(signal_id(payload), timeout=40)["decision"]["outcome"] == "accepted"
    assert set(pipe.paper.stats()["fills_by_client_order_id"].values()) == {1}


def test_a_signal_that_expires_while_the_trader_is_down_is_rejected_trader_unavailable(pipelines):
    pipe = pipelines(
        {"SIGNAL_TIMEOUT": "2", "BREAKER_OPEN_SECONDS": "30", "BREAKER_OPEN_MAX_SECONDS": "30"}
    )
    wait_state(pipe, "ACTIVE")
    requests.post(
        pipe.paper.url + "/_paper/knobs", json={"error_rate": 1.0, "health_status": 500}, timeout=5
    )
    wait_state(pipe, "HALTED")
    payload = signal_payload("ADAUSDC", timestamp_ms=int((time.time() - 1.0) * 1000))
    pipe.publish(payload)
    decision = pipe.decision(signal_id(payload))["decision"]
    assert decision["outcome"] == "rejected"
    assert decision["reason"] == "trader_unavailable"
    assert "signal_timeout" in decision["detail"]


def test_a_refused_connection_is_retried_as_the_same_intent(pipelines, tmp_path):
    paper = PaperExchange().start()
    port = int(paper.url.rsplit(":", 1)[1])
    paper.stop()
    # Nothing listens on the Trader's port: the order cannot leave.
    trader = f"http://127.0.0.1:{port}"
    portfolio = PaperExchange().start()
    try:
        for symbol, price in PRICES.items():
            portfolio.set_price(symbol, price)
        pipe = pipelines(
            {"TRADER_API_URL": trader, "SIGNAL_TIMEOUT": "30", "BREAKER_OPEN_SECONDS": "0.3"},
            paper=portfolio,
            wait_active=False,
        )
        wait_state(pipe, "HALTED")
        payload = signal_payload("DOGEUSDC")
        pipe.publish(payload)
        restarted = PaperExchange(port=port).start()
        try:
            restarted.set_price("DOGEUSDC", PRICES["DOGEUSDC"])
            record = pipe.decision(signal_id(payload))
            assert record["decision"]["outcome"] == "accepted"
            assert restarted.stats()["orders_received"] == 1
        finally:
            restarted.stop()
    finally:
        portfolio.stop()


# --- Portfolio, Redis, PostgreSQL ---------------------------------------------------


def test_portfolio_down_rejects_a_buy_with_its_reason(pipelines):
    broken = StubService("portfolio")
    broken.status = 500
    broken.start()
    try:
        pipe = pipelines({"PORTFOLIO_API_URL": broken.url}, wait_active=False)
        status = wait_state(pipe, "DEGRADED")
        assert any(r["code"] == "portfolio_down" for r in status["trading"]["reasons"])
        payload = signal_payload("ETHUSDC")
        pipe.publish(payload)
        decision = pipe.decision(signal_id(payload))["decision"]
        assert decision["outcome"] == "rejected"
        assert decision["reason"] in ("trading_degraded", "portfolio_unavailable")
        assert "portfolio" in decision["detail"]
    finally:
        broken.stop()


def test_redis_restarted_mid_stream_the_intake_reconnects_and_resumes(
    pipelines, own_redis, postgres
):
    pipe = pipelines(redis_url=own_redis.url)
    wait_state(pipe, "ACTIVE")
    before = signal_payload("BTCUSDC")
    pipe.publish(before)
    pipe.decision(signal_id(before))

    own_redis.stop()
    wait_for(
        lambda: any(
            not link["connected"]
            for link in requests.get(pipe.url + "/diagnostic", timeout=5).json()["intake_links"]
        ),
        message="the intake sees Redis gone",
    )
    own_redis.start()
    pipe.redis = redis.Redis.from_url(own_redis.url)

    after = signal_payload("ETHUSDC")
    pipe.publish(after)
    assert pipe.decision(signal_id(after))["decision"]["outcome"] in ("accepted", "rejected")
    # Each link comes back after its own backoff (up to 5 s once Redis was down a while):
    # the one that carried the signal may be back before the others.
    links = wait_for(
        lambda: (
            (found := requests.get(pipe.url + "/diagnostic", timeout=5).json()["intake_links"])
            and all(link["connected"] for link in found)
            and found
        ),
        timeout=15,
        message="every intake link connected again",
    )
    assert {link["link"] for link in links} == {"partitions", "pubsub", "stream"}


def test_a_signal_published_while_redis_was_away_is_taken_in_from_its_row_on_reconnect(
    pipelines, own_redis, own_postgres
):
    """The aggregator stores each consensus before it publishes it: a signal the
    subscription could not hear (Redis gone, or the link down) is still in
    ``trading_signals``, unprocessed, and is taken in from there once the link is back."""
    dsn = own_postgres.dsn
    create_trading_signals(dsn)
    pipe = pipelines(redis_url=own_redis.url, database_dsn=dsn)
    wait_state(pipe, "ACTIVE")

    own_redis.stop()
    wait_for(lambda: not pubsub_connected(pipe), message="the intake sees Redis gone")
    # Written while nobody could hear its publication.
    row_id = insert_consensus_row(dsn, "ETHUSDC")
    own_redis.start()
    pipe.redis = redis.Redis.from_url(own_redis.url)

    record = pipe.decision(f"db:{row_id}", timeout=30)
    assert record["signal"]["source"] == "database"
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    wait_for(
        lambda: db_rows(dsn, "SELECT processed FROM trading_signals") == [(True,)],
        message="the row marked processed",
    )
    assert pipe.paper.stats()["orders_received"] == 1


def pubsub_connected(pipe: Pipeline) -> bool:
    links = requests.get(pipe.url + "/diagnostic", timeout=5).json()["intake_links"]
    return any(link["link"] == "pubsub" and link["connected"] for link in links)


def test_postgres_restarted_mid_stream_loses_no_decision(pipelines, redis_server, own_postgres):
    pipe = pipelines(database_dsn=own_postgres.dsn)
    wait_state(pipe, "ACTIVE")
    payloads = []
    for index in range(60):
        if index == 20:
            own_postgres.stop()
        if index == 40:
            own_postgres.start()
        payload = signal_payload(SYMBOLS[index % len(SYMBOLS)], "BUY" if index % 2 else "SELL")
        payloads.append(payload)
        pipe.publish(payload)
    ids = [signal_id(p) for p in payloads]
    wait_all_decided(own_postgres.dsn, ids, timeout=60)
    assert pipe.store_snapshot().journaled == 0
    assert all(n == 1 for n in pipe.paper.stats()["fills_by_client_order_id"].values())
