"""Two coordinators on the same streams, database and leader lease share the symbols:
each decides the signals of the partitions it holds, whichever of them heard a signal
and however (pub/sub reaches both, the stream and POST /signals one); when one stops,
the other takes its partitions and its signals."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg2
import requests

from coordinator.cluster.partitions import partition_of
from coordinator.messages.partitions import GetPartitions, PartitionsSnapshot
from coordinator.messages.pipeline import GetIntakeSnapshot, IntakeSnapshot
from coordinator.trading.signals import parse_signal
from tests.pipeline import PRICES, SYMBOLS, Pipeline, signal_payload
from tests.waiting import wait_for

PARTITIONS = 16


def partitions(pipe: Pipeline) -> PartitionsSnapshot:
    snapshot: PartitionsSnapshot = pipe.directory.ask(
        "partition_keeper", GetPartitions(), timeout=5
    )
    return snapshot


def held(pipe: Pipeline) -> frozenset[int]:
    return frozenset(partitions(pipe).held)


def admitted(pipe: Pipeline) -> int:
    snapshot: IntakeSnapshot = pipe.directory.ask("signal_intake", GetIntakeSnapshot(), timeout=5)
    return snapshot.admitted


def signal_id(payload: dict[str, Any]) -> str:
    return parse_signal(json.dumps(payload).encode()).signal_id


def deciders(dsn: str, ids: list[str]) -> dict[str, str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT signal_id, instance FROM coordinator_decisions WHERE signal_id = ANY(%s)",
            (ids,),
        )
        rows = dict(cur.fetchall())
    conn.close()
    return rows


def pair(pipelines: Any, postgres: Any) -> tuple[Pipeline, Pipeline]:
    lease = f"leader-{uuid.uuid4().hex[:8]}"
    first = pipelines(lease=lease)
    shared = {"SIGNALS_CHANNEL": first.channel, "SIGNALS_STREAM": first.stream}
    second = pipelines(shared, lease=lease, lead=False, paper=first.paper)
    wait_for(
        lambda: (
            settled(first)
            and settled(second)
            and held(first) | held(second) == frozenset(range(PARTITIONS))
            and not held(first) & held(second)
            and held(first)
            and held(second)
        ),
        timeout=20,
        message="the partitions shared between the two",
    )
    return first, second


def settled(pipe: Pipeline) -> bool:
    """It holds what it wants among both, and nothing more: a partition the first took
    before the second joined is held by the first until it is handed over."""
    snapshot = partitions(pipe)
    return snapshot.held == snapshot.wanted


def test_status_shows_the_partitions_each_holds(pipelines, postgres):
    first, second = pair(pipelines, postgres)
    shown = [
        requests.get(p.url + "/status", timeout=5).json()["partitions"] for p in (first, second)
    ]
    assert all(s["count"] == PARTITIONS for s in shown)
    assert sorted(shown[0]["held"] + shown[1]["held"]) == list(range(PARTITIONS))
    names = sorted(p.coordinator.config.instance.name for p in (first, second))
    assert sorted(shown[0]["members"]) == names


def test_each_signal_is_decided_once_by_the_holder_of_its_partition(pipelines, postgres):
    first, second = pair(pipelines, postgres)
    owner_of = {
        k: first.coordinator.config.instance.name
        if k in held(first)
        else second.coordinator.config.instance.name
        for k in range(PARTITIONS)
    }
    # Every symbol three ways: pub/sub (both hear it), the stream (one reads it), and
    # POST /signals to the one that does not hold it, half the time.
    payloads: list[dict[str, Any]] = []
    for n, symbol in enumerate(SYMBOLS):
        by_pubsub = signal_payload(symbol, "SELL")
        first.publish(by_pubsub)
        by_stream = signal_payload(symbol, "BUY")
        first.add_to_stream(by_stream)
        by_http = signal_payload(symbol, "SELL")
        answer = (first if n % 2 else second).post(by_http)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"
        payloads += [by_pubsub, by_stream, by_http]
    ids = [signal_id(p) for p in payloads]
    for sid in ids:
        first.decision(sid)
    decided = deciders(postgres.dsn, ids)
    assert set(decided) == set(ids)
    for payload in payloads:
        partition = partition_of(payload["symbol"], PARTITIONS)
        assert decided[signal_id(payload)] == owner_of[partition], payload["symbol"]
    # The buys became orders, each claimed under its partition's lease by its owner.
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT o.signal_id, o.instance FROM coordinator_orders o WHERE o.signal_id = ANY(%s)",
            (ids,),
        )
        orders = dict(cur.fetchall())
    conn.close()
    assert len(orders) >= 4
    for sid, instance in orders.items():
        assert instance == decided[sid]
    # Admitted once each, by one of them: none decided twice.
    assert admitted(first) + admitted(second) == len(ids)
    # POST /signals of a signal seen already, to either: a duplicate.
    again = second.post(payloads[0])
    assert again.status_code == 409, again.text


def payload_of(symbol: str, side: str) -> dict[str, Any]:
    return signal_payload(symbol, side, price=PRICES.get(symbol, 10.0))


def symbols_in(partitions: frozenset[int], count: int) -> list[str]:
    """Symbols of those partitions: the traded ones first, then made-up ones (decided all
    the same, as outside the universe): the split changes with the instances' names."""
    candidates = [*SYMBOLS, *(f"Z{n:03d}USDC" for n in range(1000))]
    return [s for s in candidates if partition_of(s, PARTITIONS) in partitions][:count]


def test_the_partitions_of_a_stopped_coordinator_go_to_the_other(pipelines, postgres):
    first, second = pair(pipelines, postgres)
    (symbol,) = symbols_in(held(first), 1)
    first.coordinator.stop()
    wait_for(
        lambda: held(second) == frozenset(range(PARTITIONS)),
        timeout=20,
        message="the second to hold every partition",
    )
    payload = payload_of(symbol, "SELL")
    # On the shared stream (the second's own attribute names a stream of its own).
    second.redis.xadd(first.stream, {"data": json.dumps(payload)})
    second.decision(signal_id(payload))
    assert deciders(postgres.dsn, [signal_id(payload)]) == {
        signal_id(payload): second.coordinator.config.instance.name
    }


def test_a_crashed_partition_keeper_comes_back_and_no_signal_is_lost_or_doubled(
    pipelines, postgres
):
    """Its replacement starts holding nothing (its predecessor's leases lapse or are
    taken back): meanwhile the signals of its partitions wait in their streams."""
    first, second = pair(pipelines, postgres)
    theirs = sorted(held(first))
    symbols = symbols_in(held(first), 4)
    first.drill("partition_keeper", "crash")
    payloads = []
    for symbol in symbols:
        for side in ("BUY", "SELL"):
            by_stream = payload_of(symbol, side)
            second.redis.xadd(first.stream, {"data": json.dumps(by_stream)})
            by_pubsub = payload_of(symbol, side)
            first.publish(by_pubsub)
            payloads += [by_stream, by_pubsub]
    ids = [signal_id(p) for p in payloads]
    for sid in ids:
        second.decision(sid)
    assert set(deciders(postgres.dsn, ids)) == set(ids)
    assert admitted(first) + admitted(second) == len(ids)
    wait_for(
        lambda: held(first) == frozenset(theirs),
        timeout=20,
        message="the first to hold its partitions again",
    )
