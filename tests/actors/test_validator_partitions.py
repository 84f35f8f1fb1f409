"""A Validator of a cluster instance alone: a signal read under its symbol partition's
lease is decided while the lease is held here; once the lease lapsed on this process's
clock (a pause), or PostgreSQL's fence refuses it (taken over), the signal is left to
the partition's owner: no decision, no order, the intake told to let it go."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.actors.validator import Validator
from coordinator.clock import ManualClock
from coordinator.cluster.fencing import LeaseToken
from coordinator.cluster.ownership import PartitionOwnership
from coordinator.cluster.partitions import lease_name
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.intent_claims import IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.pipeline import RecordDecision, ReleaseSignal, SubmitSignal
from coordinator.trading.signals import Signal
from tests.actors.test_validator import Ledger, make_signal, service_health, universe_manager
from tests.pipeline import SYMBOLS
from tests.solo import Solo
from tests.trees import make_services

LEASE_S = 5.0


@pytest.fixture
def cluster(
    postgres: EmbeddedPostgres, clear_kill_switch: None, tmp_path: Path, paper: PaperExchange
) -> Iterator[dict[str, Any]]:
    clock = ManualClock()
    config = load_config(
        {
            "VALIDATION_THREADS": "1",
            "TRADING_SYMBOLS": ",".join(SYMBOLS),
            "COORDINATOR_DATA_DIR": str(tmp_path / "data"),
        }
    )
    prefix = f"test:{uuid.uuid4().hex[:8]}:partition:"
    ownership = PartitionOwnership(16, prefix, clock.monotonic)
    services = make_services(
        config,
        redis_url="redis://unused",
        database_dsn=postgres.dsn,
        trader_url=paper.url,
        portfolio_url=paper.url,
        clock=clock,
    )
    journal = Journal(tmp_path / "data" / "journal.jsonl")
    services = dataclasses.replace(
        services,
        journal=journal,
        intents=IntentClaims(postgres.dsn, journal, timeout=2.0, clock=clock),
        ownership=ownership,
    )
    partition = ownership.partition_of("ETHUSDC")
    leases = LeaseStore(postgres.dsn, timeout=5)
    granted = leases.acquire(lease_name(prefix, partition), "me", now=clock.time(), duration=60)
    assert granted.granted and granted.row is not None
    token = LeaseToken(lease_name(prefix, partition), "me", granted.row.generation)
    ownership.update({partition: token}, {partition: clock.monotonic() + LEASE_S}, frozenset())
    stand_ins = {
        "service_health": service_health,
        "universe_manager": universe_manager,
        "ledger": Ledger(),
        "store_writer": None,
        "reconciler": None,
        "signal_intake": None,
    }
    validator = Solo(Validator, "validator-0", services, clock=clock, stand_ins=stand_ins)
    try:
        yield {
            "validator": validator,
            "paper": paper,
            "token": token,
            "leases": leases,
            "clock": clock,
            "name": lease_name(prefix, partition),
        }
    finally:
        validator.stop()
        leases.close()


def submit(validator: Solo, fence: LeaseToken | None) -> Signal:
    """A fresh ETHUSDC signal read under ``fence`` (None: not read from a partition)."""
    signal = make_signal(validator, "ETHUSDC")
    validator.tell(
        SubmitSignal(
            signal=signal,
            source="stream",
            received_at=validator.clock.time(),
            received_mono=validator.clock.monotonic(),
            fence=fence,
        )
    )
    return signal


def decisions_until(validator: Solo, signal: Signal) -> list[str]:
    """The ids of the decisions told to the store, up to ``signal``'s."""
    seen: list[str] = []

    def note(message: RecordDecision) -> bool:
        seen.append(message.decision.signal_id)
        return message.decision.signal_id == signal.signal_id

    validator.told("store_writer", RecordDecision, note)
    return seen


def test_a_signal_under_the_lease_held_is_decided_and_its_order_sent(cluster) -> None:
    validator: Solo = cluster["validator"]
    signal = submit(validator, cluster["token"])
    assert decisions_until(validator, signal) == [signal.signal_id]
    assert sum(cluster["paper"].fills_by_client_id.values()) == 1


def test_a_signal_whose_lease_lapsed_here_is_left_to_the_owner(cluster) -> None:
    validator: Solo = cluster["validator"]
    cluster["clock"].advance(LEASE_S + 0.1)
    stale = submit(validator, cluster["token"])
    released = validator.told("signal_intake", ReleaseSignal)
    assert released.signal_id == stale.signal_id
    assert sum(cluster["paper"].fills_by_client_id.values()) == 0
    after = submit(validator, None)
    assert decisions_until(validator, after)[0] == after.signal_id


def test_a_signal_whose_lease_was_taken_over_is_refused_by_the_fence(cluster) -> None:
    """The process still believes it holds the lease; PostgreSQL knows better."""
    validator: Solo = cluster["validator"]
    leases: LeaseStore = cluster["leases"]
    token: LeaseToken = cluster["token"]
    assert leases.release(cluster["name"], "me", token.generation)
    assert leases.acquire(
        cluster["name"], "other", now=cluster["clock"].time(), duration=60
    ).granted
    taken = submit(validator, token)
    released = validator.told("signal_intake", ReleaseSignal)
    assert released.signal_id == taken.signal_id
    assert sum(cluster["paper"].fills_by_client_id.values()) == 0
    # Nothing decided for it: the next decision told to the store is another signal's.
    cluster["clock"].advance(LEASE_S + 0.1)
    after = submit(validator, None)
    assert decisions_until(validator, after)[0] == after.signal_id
