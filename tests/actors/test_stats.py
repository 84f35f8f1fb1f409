"""Stats alone: counts what it is told, and its lifetime totals follow the clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from coordinator.actors.stats import Stats
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.messages.pipeline import (
    GetStats,
    OrderFinished,
    OrderRecord,
    ReservationsExpired,
    SignalDecided,
)
from tests.actors.conftest import decision
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for


@pytest.fixture
def stats(postgres: EmbeddedPostgres) -> Iterator[Solo]:
    clock = ManualClock()
    services = make_services(
        load_config({}), redis_url="redis://unused", database_dsn=postgres.dsn, clock=clock
    )
    with solo(Stats, "stats", services, clock=clock) as started:
        yield started


def lifetime(stats: Solo) -> dict | None:
    totals = stats.ask(GetStats()).lifetime
    return None if totals is None else dict(totals)


def order(state: str) -> OrderRecord:
    return OrderRecord(
        client_order_id="c",
        signal_id="s",
        symbol="BTCUSDC",
        side="BUY",
        quantity=1.0,
        reference_price=1.0,
        state=state,
        at=0.0,
    )


def test_it_counts_the_decisions_orders_and_expiries_it_is_told(stats: Solo) -> None:
    stats.tell(SignalDecided(decision=decision("accepted", to_order=5.0), source="redis"))
    stats.tell(SignalDecided(decision=decision("rejected", "blacklisted"), source="redis"))
    stats.tell(SignalDecided(decision=decision("accepted"), source="trailing_stop"))
    stats.tell(OrderFinished(order=order("accepted")))
    stats.tell(OrderFinished(order=order("unknown")))
    stats.tell(ReservationsExpired(count=2, owners=("validator-0", "validator-1")))
    since_start = stats.ask(GetStats())
    assert since_start.signals_processed == 2
    assert since_start.signals_accepted == 1
    assert dict(since_start.rejections_by_reason) == {"blacklisted": 1}
    assert since_start.orders_accepted + since_start.orders_unknown == 2
    assert dict(since_start.stop_exits) == {"accepted": 1}
    assert since_start.reservations_expired == 2


def test_its_lifetime_totals_are_read_again_when_the_clock_passes_the_interval(
    stats: Solo, postgres: EmbeddedPostgres
) -> None:
    first = wait_for(lambda: lifetime(stats), message="the totals read at start")
    before = first["signals_received"]
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO coordinator_signals (signal_id, source, received_at, valid, payload)"
            " VALUES (%s, 'redis', now(), true, '{}')",
            (f"stats-actor-{uuid.uuid4().hex}",),
        )
    conn.close()
    stats.clock.advance(29.0)
    stats.clock.settle()  # its ticks handled before the ask: not read again yet
    assert lifetime(stats)["signals_received"] == before
    stats.clock.advance(1.0)
    wait_for(
        lambda: lifetime(stats)["signals_received"] == before + 1, message="the totals read again"
    )


def test_it_counts_by_source_and_state_and_buckets_each_latency(stats: Solo) -> None:
    stats.tell(SignalDecided(decision=decision("accepted", to_order=5.0), source="pubsub"))
    stats.tell(SignalDecided(decision=decision("rejected", "blacklisted"), source="http"))
    stats.tell(SignalDecided(decision=decision("rejected", "stale_signal"), source="http"))
    stats.tell(SignalDecided(decision=decision("accepted", to_order=700.0), source="trailing_stop"))
    stats.tell(OrderFinished(order=order("accepted")))
    stats.tell(OrderFinished(order=order("accepted")))
    stats.tell(OrderFinished(order=order("rejected")))
    snapshot = stats.ask(GetStats())
    assert sorted(snapshot.signals_by_source) == [
        ("http", "rejected", 2),
        ("pubsub", "accepted", 1),
    ]
    assert dict(snapshot.orders_by_state) == {"accepted": 2, "rejected": 1}
    # 3 ms for every signal, 5 ms to the one order, 700 ms from the tick to the exit.
    decided = snapshot.intake_to_decision_buckets
    assert decided.count == 3 and decided.sum_s == pytest.approx(0.009)
    assert dict(zip(decided.bounds_s, decided.cumulative, strict=False))[0.0025] == 0
    assert dict(zip(decided.bounds_s, decided.cumulative, strict=False))[0.005] == 3
    assert snapshot.intake_to_order_buckets.count == 1
    exits = snapshot.tick_to_exit_order_buckets
    assert exits.count == 1
    assert dict(zip(exits.bounds_s, exits.cumulative, strict=False))[0.5] == 0
    assert dict(zip(exits.bounds_s, exits.cumulative, strict=False))[1.0] == 1
