"""StoreWriter alone: batches until its flush falls due on the clock, publishes the first
decision per signal, journals what PostgreSQL refuses and replays it after its backoff."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from coordinator.actors.store_writer import StoreWriter
from coordinator.clock import ManualClock
from coordinator.compact_ids import id_digest, pack_digests, pack_sorted_digests, unpack_digests
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.journal import Journal
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.records import decision_record
from coordinator.messages.leadership import LeaderElected
from coordinator.messages.pipeline import (
    Decision,
    GetStoreSnapshot,
    GetUndecided,
    RecordDecision,
    RecordSignal,
    SignalDecided,
    StoreSnapshot,
)
from tests.actors.conftest import decision, take_lease
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

FLUSH_EVERY = 1.0


@pytest.fixture
def writer(own_postgres: EmbeddedPostgres, tmp_path: Path) -> Iterator[Solo]:
    clock = ManualClock()
    config = load_config(
        {"COORDINATOR_DATA_DIR": str(tmp_path / "data"), "STORE_FLUSH_INTERVAL": str(FLUSH_EVERY)}
    )
    services = make_services(
        config, redis_url="redis://unused", database_dsn=own_postgres.dsn, clock=clock
    )
    services = dataclasses.replace(services, journal=Journal(tmp_path / "data" / "journal.jsonl"))
    with solo(StoreWriter, "store_writer", services, clock=clock) as started:
        yield started


def received(signal_id: str, clock: ManualClock) -> RecordSignal:
    return RecordSignal(
        signal_id=signal_id,
        source="http",
        received_at=clock.time(),
        received_mono=clock.monotonic(),
        signal=None,
        payload="{not json",
    )


def decided(signal_id: str, outcome: str) -> Decision:
    return decision(outcome, "invalid_signal", signal_id=signal_id, symbol=None)


def snapshot(writer: Solo) -> StoreSnapshot:
    return writer.ask(GetStoreSnapshot())


def test_records_wait_for_the_flush_and_only_the_first_decision_is_published(
    writer: Solo,
) -> None:
    writer.tell(received("s1", writer.clock))
    writer.tell(RecordDecision(decision=decided("s1", "rejected")))
    writer.tell(RecordDecision(decision=decided("s1", "accepted")))
    assert snapshot(writer).pending == 2
    writer.clock.advance(FLUSH_EVERY)
    event = writer.published(SignalDecided)
    assert (event.decision.signal_id, event.decision.outcome, event.source) == (
        "s1",
        "rejected",
        "http",
    )
    state = wait_for(lambda: (s := snapshot(writer)).written == 2 and s, message="the flush")
    assert (state.pending, state.undecided, state.postgres_ok) == (0, 0, True)
    assert writer.events.empty()


def test_a_batch_postgresql_refuses_is_journaled_and_replayed_after_the_backoff(
    writer: Solo, own_postgres: EmbeddedPostgres
) -> None:
    own_postgres.stop()
    writer.tell(received("s2", writer.clock))
    writer.tell(RecordDecision(decision=decided("s2", "rejected")))
    writer.clock.advance(FLUSH_EVERY)
    # Journaled counts as stored: the decision is published while PostgreSQL is down.
    writer.published(SignalDecided)
    down = wait_for(lambda: (s := snapshot(writer)).journaled and s, message="journaled")
    assert (down.postgres_ok, down.journaled, down.written) == (False, 2, 0)
    own_postgres.start()
    writer.clock.advance(FLUSH_EVERY)
    wait_for(
        lambda: (s := snapshot(writer)).postgres_ok and s.journaled == 0 and s.written == 2,
        message="the journal replayed",
    )


def pending_order(
    dsn: str, client_order_id: str, created_at: float, instance: str | None = None
) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side,
                   quantity, reference_price, state, created_at, updated_at, instance)
               VALUES (%s, %s, 'BTCUSDC', 'BUY', 0.01, 50000, 'pending',
                       to_timestamp(%s), to_timestamp(%s), %s)""",
            (client_order_id, "s-" + client_order_id, created_at, created_at, instance),
        )
    conn.close()


def instance_row(dsn: str, instance: str, *, live: bool) -> None:
    """An instance as the identity registry keeps it: beating (its last heartbeat just
    now), or stopped."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO coordinator_instances (instance, host, pid, data_dir, incarnation,
                   started_at, heartbeat_at, stopped_at)
               VALUES (%s, 'h', 1, '/d', gen_random_uuid(), now(),
                       clock_timestamp(), CASE WHEN %s THEN NULL ELSE now() END)""",
            (instance, live),
        )
    conn.close()


def beat(dsn: str, instance: str) -> None:
    """A heartbeat of ``instance``, as its InstanceKeeper writes one every second."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE coordinator_instances SET heartbeat_at = clock_timestamp() WHERE instance = %s",
            (instance,),
        )
    conn.close()


def order_state(dsn: str, client_order_id: str) -> str:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT state FROM coordinator_orders WHERE client_order_id = %s", (client_order_id,)
        )
        (state,) = cur.fetchone()
    conn.close()
    return str(state)


def test_orders_in_flight_are_not_swept_while_another_instance_leads(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A second instance starting beside a live leader must not make the leader's orders
    in flight unknown. Once it leads itself (the holder gone), it sweeps what is older
    than its own start, and the orders of instances gone, under its lease; a live
    instance's orders, never."""
    clock = ManualClock()
    dsn = own_postgres.dsn
    pending_order(dsn, "before-start", clock.time() - 3600)
    instance_row(dsn, "follower", live=True)
    instance_row(dsn, "gone", live=False)
    pending_order(dsn, "of-a-live-follower", clock.time() - 3600, instance="follower")
    holder = take_lease(dsn, "live#1", now=clock.time(), duration=60.0)
    config = load_config({"COORDINATOR_DATA_DIR": str(tmp_path / "data")})
    services = make_services(config, redis_url="redis://unused", database_dsn=dsn, clock=clock)
    services = dataclasses.replace(services, journal=Journal(tmp_path / "data" / "journal.jsonl"))
    with solo(StoreWriter, "store_writer", services, clock=clock) as writer:
        writer.ask(GetStoreSnapshot())
        assert order_state(dsn, "before-start") == "pending"
        pending_order(dsn, "after-start", services.started_at + 1)
        pending_order(dsn, "of-the-dead-leader", services.started_at + 1, instance="gone")
        # The holder died: its lease lapsed and this instance took it.
        mine = take_lease(dsn, "me#1", now=clock.time() + 61, lease=holder.name)
        beat(dsn, "follower")  # beating as it should, only not in the future
        writer.tell(LeaderElected(token=mine))
        wait_for(
            lambda: order_state(dsn, "before-start") == "unknown",
            message="the orphan swept under our lease",
        )
        assert order_state(dsn, "after-start") == "pending"
        assert order_state(dsn, "of-the-dead-leader") == "unknown"
        assert order_state(dsn, "of-a-live-follower") == "pending"


def test_an_undecided_exit_is_not_handed_to_the_intake(writer: Solo) -> None:
    """An exit left undecided (its Validator crashed, or its lease was lost) is the
    TrailingStop's to follow up: the intake, taking it in again, would send it as a
    plain SELL."""
    exit_id = "exit:BTCUSDC@1@50000:1"
    writer.tell(dataclasses.replace(received(exit_id, writer.clock), source="trailing_stop"))
    writer.tell(received("plain", writer.clock))
    undecided = writer.ask(GetUndecided())
    assert [r.signal_id for r in undecided.signals] == ["plain"]


def test_the_intake_is_handed_the_ids_not_written_yet_each_once(writer: Solo) -> None:
    """The intake reads the store's ids itself; the writer hands it those it holds
    batched (or journaled), which the store has not."""
    writer.tell(received("written", writer.clock))
    writer.tell(RecordDecision(decision=decided("written", "rejected")))
    writer.clock.advance(FLUSH_EVERY)
    wait_for(lambda: snapshot(writer).written == 2, message="the flush")
    writer.tell(received("not-written-yet", writer.clock))
    writer.tell(RecordDecision(decision=decided("not-written-yet", "rejected")))
    assert list(unpack_digests(writer.ask(GetUndecided()).unwritten)) == [
        id_digest("not-written-yet")
    ]


def test_a_start_restores_the_newest_decisions_oldest_first(
    writer: Solo, own_postgres: EmbeddedPostgres
) -> None:
    """The decided signals hold the newest ones: a read of the oldest (an hour at
    hundreds a second is more than the limit) would restore those that matter least."""
    start = writer.clock.time()
    for n in range(5):
        writer.tell(
            RecordDecision(
                decision=dataclasses.replace(decided(f"d{n}", "rejected"), decided_at=start + n)
            )
        )
    writer.clock.advance(FLUSH_EVERY)
    wait_for(lambda: snapshot(writer).written == 5, message="the flush")
    store = PipelineStore(own_postgres.dsn, timeout=5.0)
    taken: list[tuple[float, bytes]] = []
    try:
        assert (
            store.recent_decision_digests(
                writer.clock.time() - 60.0, 3, 2, lambda *batch: taken.append(batch)
            )
            == 3
        )
    finally:
        store.close()
    assert [newest for newest, _ in taken] == pytest.approx([start + 2, start + 4], abs=1e-5)
    assert [packed for _, packed in taken] == [
        pack_digests([id_digest("d2")]),
        pack_sorted_digests([id_digest("d3"), id_digest("d4")]),
    ]


def test_a_new_process_knows_the_signals_decided_before_it_started(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A copy of a signal an earlier process decided, delivered again to this one, is
    not decided a second time: the first StoreWriter of a process reads the newest
    decisions back into the decided signals the Validators look at."""
    clock = ManualClock()
    store = PipelineStore(own_postgres.dsn, timeout=5.0)
    try:
        for n in range(3):
            store.write(
                [
                    decision_record(
                        dataclasses.replace(
                            decided(f"before-{n}", "rejected"), decided_at=clock.time() - 60 + n
                        )
                    )
                ]
            )
    finally:
        store.close()
    config = load_config({"COORDINATOR_DATA_DIR": str(tmp_path / "data")})
    services = make_services(
        config, redis_url="redis://unused", database_dsn=own_postgres.dsn, clock=clock
    )
    services = dataclasses.replace(services, journal=Journal(tmp_path / "data" / "journal.jsonl"))
    with solo(StoreWriter, "store_writer", services, clock=clock):
        assert all(f"before-{n}" in services.decided for n in range(3))
        assert "never-decided" not in services.decided
