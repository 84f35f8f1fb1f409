"""StoreWriter alone: batches until its flush falls due on the clock, publishes the first
decision per signal, journals what PostgreSQL refuses and replays it after its backoff."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.actors.store_writer import StoreWriter
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.journal import Journal
from coordinator.messages.pipeline import (
    Decision,
    GetStoreSnapshot,
    RecordDecision,
    RecordSignal,
    SignalDecided,
    StoreSnapshot,
)
from tests.actors.conftest import decision
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
