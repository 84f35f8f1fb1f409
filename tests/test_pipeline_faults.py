"""The pipeline under faults: crashes, outages and restarts lose no signal and send no
order twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pykka
import pytest
import redis
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.infra.embedded import free_port
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages import DrillCrash
from coordinator.messages.pipeline import GetValidatorSnapshot, RawSignal, SubmitSignal
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.routing import client_order_id, validator_for
from coordinator.trading.signals import parse_signal
from tests.http_stub import StubService
from tests.pipeline import PRICES, SYMBOLS, Pipeline, signal_payload
from tests.test_held_orders import trader_up_a_while
from tests.test_pipeline import signal_id
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


class Waiting0:
    waiting = 0


def wait_state(pipe: Pipeline, state: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (s := requests.get(pipe.url + "/status", timeout=5).json())["trading_state"] == state
            and s
        ),
        timeout=timeout,
        message=f"trading {state}",
    )


def validator_snapshot(pipe: Pipeline, name: str) -> Any:
    """The Validator's snapshot, or None while it restarts."""
    try:
        return pipe.directory.ask(name, GetValidatorSnapshot(), timeout=2)
    except (ChildUnavailable, pykka.ActorDeadError, pykka.Timeout):
        return None


def wait_all_decided(dsn: str, ids: list[str], timeout: float = 60.0) -> None:
    wait_for(
        lambda: (
            len(
                db_rows(
                    dsn, "SELECT 1 FROM coordinator_decisions WHERE signal_id = ANY(%s)", (ids,)
                )
            )
            == len(ids)
        ),
        timeout=timeout,
        message=f"a decision for each of {len(ids)} signals",
    )


def db_rows(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


# --- any input -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
signal_like = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.one_of(st.just("CONSENSUS"), json_values),
        "symbol": st.one_of(st.sampled_from(SYMBOLS), json_values),
        "side": st.one_of(st.sampled_from(["BUY", "SELL", "buy"]), json_values),
        "timestamp": st.one_of(st.just(None), st.integers(), st.text(max_size=30)),
        "price": st.one_of(st.floats(), st.integers(), json_values),
        "confidence": json_values,
        "metadata": st.one_of(
            st.dictionaries(
                st.sampled_from(["db_id", "consensus_id", "stop_price", "strategies_count"]),
                json_values,
            ),
            json_values,
        ),
    },
)


@pytest.fixture(scope="module")
def shared_pipeline(redis_server, postgres, tmp_path_factory) -> Iterator[Pipeline]:
    pipe = Pipeline(
        redis_url=redis_server.url,
        database_dsn=postgres.dsn,
        data_dir=tmp_path_factory.mktemp("anyjson"),
        env={"MAX_PENDING_SIGNALS": "10000"},
    )
    yield pipe
    pipe.stop()


ANSWERS: list[Any] = []


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.one_of(json_values, signal_like, st.binary(max_size=64)))
def test_any_input_gets_a_decision_or_a_reason(shared_pipeline, value):
    payload = value if isinstance(value, bytes) else json.dumps(value).encode()
    admission = shared_pipeline.directory.ask(
        "signal_intake",
        RawSignal(
            payload=payload, source="http", received_at=time.time(), received_mono=time.monotonic()
        ),
        timeout=5,
    )
    assert admission.status in ("accepted", "rejected", "duplicate")
    if admission.status != "accepted":
        assert admission.reason
    if admission.status != "duplicate":
        ANSWERS.append(admission)


def test_every_input_above_was_decided_and_the_intake_still_runs(shared_pipeline):
    assert ANSWERS, "the property test runs first"
    ids = sorted({a.signal_id for a in ANSWERS})
    wait_all_decided(shared_pipeline.config.database.url, ids, timeout=30)
    rows = db_rows(
        shared_pipeline.config.database.url,
        "SELECT outcome, reason FROM coordinator_decisions WHERE signal_id = ANY(%s)",
        (ids,),
    )
    assert all(reason for outcome, reason in rows if outcome == "rejected")
    tree = requests.get(shared_pipeline.url + "/supervisor", timeout=5).json()
    intake = next(c for c in tree["children"] if c["name"] == "signal_intake")
    assert intake["incarnation"] == 1 and intake["state"] == "running"


# --- crashes -------------------------------------------------------------------------


def test_validators_crashing_while_signals_flow_decide_each_once_and_order_at_most_once(
    pipelines, caplog
):
    pipe = pipelines({"MAX_PENDING_SIGNALS": "10000", "SUPERVISOR_MAX_RESTARTS": "1000"})
    wait_state(pipe, "ACTIVE")
    stop = threading.Event()
    crashes = 0

    def crash_validators() -> None:
        nonlocal crashes
        while not stop.is_set():
            for index in range(4):
                pipe.directory.tell(f"validator-{index}", DrillCrash())
                crashes += 1
            stop.wait(0.03)

    crasher = threading.Thread(target=crash_validators, daemon=True)
    crasher.start()
    payloads = []
    for round_ in range(25):
        for symbol in SYMBOLS:
            side = "BUY" if round_ % 2 == 0 else "SELL"
            payload = signal_payload(symbol, side)
            payloads.append(payload)
            pipe.publish(payload)
    stop.set()
    crasher.join()
    ids = [signal_id(p) for p in payloads]
    wait_all_decided(pipe.config.database.url, ids, timeout=60)
    assert crashes > 20
    stats = pipe.paper.stats()
    requested = stats["requests_by_client_order_id"]
    assert all(count == 1 for count in requested.values()), "an order was sent twice"
    assert stats["duplicates_by_client_order_id"] == 0
    sent = db_rows(
        pipe.config.database.url,
        "SELECT client_order_id FROM coordinator_orders WHERE signal_id = ANY(%s)"
        " AND coalesce(error, '') NOT LIKE 'never sent%%'",
        (ids,),
    )
    assert set(requested) == {row[0] for row in sent}
    # Every decision stands alone: no signal had a second one dropped.
    assert "second decision" not in caplog.text
    assert "decided elsewhere" not in caplog.text
    restarts = sum(
        c["restarts"]
        for c in requests.get(pipe.url + "/supervisor", timeout=5).json()["children"]
        if c["name"].startswith("validator-")
    )
    assert restarts > 10


def test_store_writer_and_intake_crashes_lose_nothing(pipelines):
    pipe = pipelines({"SUPERVISOR_MAX_RESTARTS": "100"})
    wait_state(pipe, "ACTIVE")
    payloads = [signal_payload(symbol) for symbol in SYMBOLS]
    for index, payload in enumerate(payloads):
        pipe.publish(payload)
        if index % 3 == 0:
            pipe.drill("store_writer")
        if index % 4 == 1:
            pipe.drill("signal_intake")
    for payload in payloads:
        pipe.decision(signal_id(payload), timeout=30)
    # No order twice: each accepted signal made exactly one order.
    assert all(n == 1 for n in pipe.paper.stats()["fills_by_client_order_id"].values())


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
    pipe = pipelines({"SIGNAL_TIMEOUT": "40", "BREAKER_OPEN_SECONDS": "0.5"})
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
    links = requests.get(pipe.url + "/diagnostic", timeout=5).json()["intake_links"]
    assert links and all(link["connected"] for link in links)


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


# --- the durable stream ------------------------------------------------------------


def test_stream_consumer_killed_mid_stream_decides_every_entry_once(
    redis_server, postgres, tmp_path, clear_kill_switch
):
    paper = PaperExchange().start()
    for symbol, price in PRICES.items():
        paper.set_price(symbol, price)
    stream = f"test:{os.getpid()}:{time.time_ns()}:stream"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "PG", "DATABASE_"))},
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": postgres.dsn,
        "TRADER_API_URL": paper.url,
        "PORTFOLIO_API_URL": paper.url,
        "SIGNALS_STREAM": stream,
        "SIGNALS_CHANNEL": stream + ":unused",
        "SIGNALS_STREAM_CONSUMER": "killed-consumer",
        "REQUIRE_MARKET_DATA": "false",
        "MAX_CONCURRENT_TRADES": "8",
        "MAX_ORDERS_PER_MINUTE": "10000",
        "MAX_EXPOSURE_PERCENT": "100",
        "MAX_PENDING_SIGNALS": "10000",
        "TRADING_SYMBOLS": ",".join(SYMBOLS),
        "HEALTH_CHECK_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
    }
    client = redis.Redis.from_url(redis_server.url)
    payloads = [
        signal_payload(SYMBOLS[i % len(SYMBOLS)], "BUY" if i % 3 else "SELL") for i in range(300)
    ]

    def start() -> subprocess.Popen[bytes]:
        process_env = {**env, "COORDINATOR_PORT": str(free_port())}
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator", "run", "--data-dir", str(tmp_path / "data")],
            cwd=ROOT,
            env=process_env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "log.txt").open("ab"),
        )

    first = start()
    try:
        for payload in payloads[:150]:
            client.xadd(stream, {"data": json.dumps(payload)})
        ids = [signal_id(p) for p in payloads]
        wait_for(
            lambda: (
                len(
                    db_rows(
                        postgres.dsn,
                        "SELECT 1 FROM coordinator_decisions WHERE signal_id = ANY(%s)",
                        (ids,),
                    )
                )
                >= 20
            ),
            timeout=60,
            message="some decisions",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        for payload in payloads[150:]:
            client.xadd(stream, {"data": json.dumps(payload)})
        second = start()
        try:
            wait_all_decided(postgres.dsn, ids, timeout=90)
            pending = wait_for(
                lambda: client.xpending(stream, "coordinator")["pending"] == 0,
                timeout=30,
                message="every entry acknowledged",
            )
            assert pending is not None
            fills = paper.stats()["fills_by_client_order_id"]
            assert all(count == 1 for count in fills.values())
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
    finally:
        if first.poll() is None:
            first.kill()
        paper.stop()
        client.close()


# --- the aggregator's table ------------------------------------------------------------


def test_unprocessed_trading_signals_rows_are_taken_in_at_start(pipelines, own_postgres):
    dsn = own_postgres.dsn
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """CREATE TABLE trading_signals (
                   id serial PRIMARY KEY, strategy text, symbol text, side text,
                   timestamp timestamptz, price double precision, confidence double precision,
                   strength text, metadata jsonb, processed boolean DEFAULT false,
                   created_at timestamptz DEFAULT now())"""
        )
        rows = [
            ("ETHUSDC", "BUY", "now()", False),
            ("SOLUSDC", "BUY", "now()", False),
            ("XRPUSDC", "BUY", "now() - interval '10 minutes'", False),
            ("BNBUSDC", "BUY", "now()", True),
        ]
        ids = []
        for symbol, side, moment, processed in rows:
            cur.execute(
                f"""INSERT INTO trading_signals (strategy, symbol, side, timestamp, price,
                        confidence, strength, metadata, processed, created_at)
                    VALUES ('CONSENSUS', %s, %s, {moment}, %s, 0.8, 'strong',
                            '{{"consensus_strength": 0.9, "strategies_count": 4}}', %s, {moment})
                    RETURNING id""",
                (symbol, side, PRICES[symbol], processed),
            )
            ids.append(cur.fetchone()[0])

    pipe = pipelines(database_dsn=dsn)

    for row_id in ids[:2]:
        record = pipe.decision(f"db:{row_id}")
        assert record["signal"]["source"] == "database"
    wait_for(
        lambda: (
            db_rows(dsn, "SELECT processed FROM trading_signals ORDER BY id")
            == [(True,), (True,), (False,), (True,)]
        ),
        message="the two taken in marked processed, the others untouched",
    )
    assert pipe.stored(f"db:{ids[2]}") is None
    assert pipe.stored(f"db:{ids[3]}") is None


def test_back_pressure_rejects_overloaded_and_decides_everything(pipelines):
    pipe = pipelines({"MAX_PENDING_SIGNALS": "2"})
    wait_state(pipe, "ACTIVE")
    requests.post(pipe.paper.url + "/_paper/knobs", json={"latency": 0.3}, timeout=5)
    payloads = [signal_payload(symbol) for symbol in SYMBOLS]
    for payload in payloads:
        pipe.publish(payload)
    reasons = [pipe.decision(signal_id(p))["decision"]["reason"] for p in payloads]
    assert reasons.count("overloaded") >= 4
    assert len(reasons) == len(SYMBOLS)
    overloaded = next(
        pipe.decision(signal_id(p))["decision"]
        for p, reason in zip(payloads, reasons, strict=True)
        if reason == "overloaded"
    )
    assert "MAX_PENDING_SIGNALS=2" in overloaded["detail"]


def test_entries_left_pending_by_a_dead_consumer_are_taken_over(pipelines, redis_server):
    pipe = pipelines()
    wait_state(pipe, "ACTIVE")
    client = redis.Redis.from_url(redis_server.url)
    payloads = [signal_payload(symbol) for symbol in SYMBOLS[:3]]
    # Another coordinator read these and died before deciding them.
    pipe.coordinator._readers.stop()
    for payload in payloads:
        client.xadd(pipe.stream, {"data": json.dumps(payload)})
    taken = client.xreadgroup("coordinator", "dead-consumer", {pipe.stream: ">"}, count=10)
    assert len(taken[0][1]) == 3
    pipe.coordinator._readers.start_again()
    for payload in payloads:
        assert pipe.decision(signal_id(payload))["signal"]["source"] == "stream"
    wait_for(
        lambda: client.xpending(pipe.stream, "coordinator")["pending"] == 0,
        message="every entry acknowledged",
    )
    client.close()
