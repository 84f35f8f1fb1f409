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
from coordinator.messages.pipeline import GetValidatorSnapshot, RawSignal
from coordinator.supervisor.directory import ChildUnavailable
from tests.aggregator_table import create_trading_signals, insert_consensus_row
from tests.pipeline import PRICES, SYMBOLS, Pipeline, signal_payload
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
    missing = list(ids)

    def all_decided() -> bool:
        rows = db_rows(
            dsn, "SELECT signal_id FROM coordinator_decisions WHERE signal_id = ANY(%s)", (ids,)
        )
        decided = {row[0] for row in rows}
        missing[:] = [i for i in ids if i not in decided]
        return not missing

    try:
        wait_for(all_decided, timeout=timeout, message=f"a decision for each of {len(ids)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {len(missing)} undecided, first {missing[:5]}") from None


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


def test_any_input_gets_a_decision_or_a_reason_and_the_intake_still_runs(shared_pipeline):
    # One test, the examples first and the check of them all after: as two tests, the
    # second found nothing whenever pytest-xdist ran them in different workers.
    answers: list[Any] = []

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.one_of(json_values, signal_like, st.binary(max_size=64)))
    def admitted(value: Any) -> None:
        payload = value if isinstance(value, bytes) else json.dumps(value).encode()
        admission = shared_pipeline.directory.ask(
            "signal_intake",
            RawSignal(
                payload=payload,
                source="http",
                received_at=time.time(),
                received_mono=time.monotonic(),
            ),
            timeout=5,
        )
        assert admission.status in ("accepted", "rejected", "duplicate")
        if admission.status != "accepted":
            assert admission.reason
        if admission.status != "duplicate":
            answers.append(admission)

    admitted()
    assert answers
    ids = sorted({a.signal_id for a in answers})
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

    def incarnations() -> dict[str, int]:
        tree = requests.get(pipe.url + "/supervisor", timeout=5).json()
        return {
            c["name"]: c["incarnation"]
            for c in tree["children"]
            if c["name"].startswith("validator-") and c["state"] == "running"
        }

    def crash_validators() -> None:
        # One crash at a time per Validator, the next once it has restarted: crashes
        # told faster than a loaded machine restarts it queue up, each kept for the next
        # incarnation, and the signals behind them wait for the last of them (126 of
        # 200 were still waiting after 60 s at a load of 5).
        nonlocal crashes
        crashed: dict[str, int] = {}
        pace = threading.Event()  # never set: the crashes' pace
        while not (stop.is_set() and crashes >= 24):
            for name, incarnation in incarnations().items():
                if crashed.get(name, 0) < incarnation:
                    pipe.directory.tell(name, DrillCrash())
                    crashed[name] = incarnation
                    crashes += 1
            pace.wait(0.03)

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


def test_a_restarted_intake_of_the_leader_reads_the_aggregator_table_again(pipelines, own_postgres):
    """What reached the intake while it was down waited in the directory, up to a
    limit: a pub/sub signal past it was dropped, though its row is in the table. The
    next incarnation reads the table, so such a signal is still decided."""
    dsn = own_postgres.dsn
    create_trading_signals(dsn)
    pipe = pipelines(database_dsn=dsn)
    wait_state(pipe, "ACTIVE")
    # As if published while the intake was down and dropped: the row alone is left.
    row_id = insert_consensus_row(dsn, "ETHUSDC")
    pipe.drill("signal_intake")

    record = pipe.decision(f"db:{row_id}", timeout=30)
    assert record["signal"]["source"] == "database"


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
        "COORDINATOR_INSTANCE": f"killed-{os.getpid()}-{time.time_ns()}",
        "INSTANCE_HEARTBEAT": "0.25",
        "INSTANCE_LIVENESS": "1",
        # Beside other tests' coordinators on the session's database.
        "COORDINATOR_INSTANCES": "cluster",
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
        # Its identity is free once its last heartbeat is older than INSTANCE_LIVENESS:
        # what an orchestrator's restart finds when it tries again.
        wait_for(
            lambda: db_rows(
                postgres.dsn,
                "SELECT 1 FROM coordinator_instances WHERE instance = %s"
                " AND heartbeat_at < clock_timestamp() - interval '1 second'",
                (env["COORDINATOR_INSTANCE"],),
            ),
            message="the killed process's identity free",
        )
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
    create_trading_signals(dsn)
    rows = [
        ("ETHUSDC", "now()", False),
        ("SOLUSDC", "now()", False),
        ("XRPUSDC", "now() - interval '10 minutes'", False),
        ("BNBUSDC", "now()", True),
    ]
    ids = [
        insert_consensus_row(dsn, symbol, moment=moment, processed=processed)
        for symbol, moment, processed in rows
    ]

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
