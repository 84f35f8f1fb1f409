"""What the actor-level tests share: a paper exchange standing in for the Trader and the
Portfolio (real HTTP), priced like the pipeline tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg2
import pytest
import requests

from coordinator.actors.trailing_stop import TrailingStop
from coordinator.clock import ManualClock
from coordinator.cluster.fencing import LeaseToken
from coordinator.config import load_config
from coordinator.config.parts import LEADER_LEASE
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.store import apply_migrations
from coordinator.messages.leadership import LeaderElected
from coordinator.messages.pipeline import Decision
from tests.pipeline import PRICES
from tests.solo import Solo, solo
from tests.trees import make_services


@pytest.fixture
def paper() -> Iterator[PaperExchange]:
    exchange = PaperExchange(redis_url=None).start()
    for symbol, price in PRICES.items():
        exchange.set_price(symbol, price)
    yield exchange
    exchange.stop()


@pytest.fixture
def own_database(postgres: EmbeddedPostgres) -> str:
    """The DSN of a migrated database of this test alone, on the session's server.

    Clearing the session's database at setup is not enough for an actor that restores
    its state at start: an earlier test's actor may still write after its test ended
    (its last write runs on a worker thread that outlives it) and land after the clear.
    """
    name = "actor_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(postgres.dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/" + name
    apply_migrations(dsn)
    return dsn


def buy_at(paper: PaperExchange, symbol: str, quantity: float, *, at: float, order_id: str) -> None:
    """A BUY filled by the paper exchange, as the Validator sends it."""
    body = {
        "symbol": symbol,
        "side": "BUY",
        "quantity": quantity,
        "price": None,
        "strategy": "CONSENSUS",
        "timestamp": int(at * 1000),
        "metadata": {"client_order_id": order_id},
    }
    assert requests.post(paper.url + "/order", json=body, timeout=10).ok


def decision(
    outcome: str,
    reason: str | None = None,
    *,
    signal_id: str = "s",
    symbol: str | None = "BTCUSDC",
    to_order: float | None = None,
) -> Decision:
    """A decision as a Validator records it, without checks or order."""
    return Decision(
        signal_id=signal_id,
        symbol=symbol,
        side=None if symbol is None else "BUY",
        outcome=outcome,
        reason=reason,
        detail=reason or "",
        checks=(),
        quantity=None,
        decided_at=0.0,
        decided_by="validator-0#1",
        intake_to_decision_ms=3.0,
        intake_to_order_ms=to_order,
    )


def take_lease(
    dsn: str, holder: str, *, now: float, lease: str = LEADER_LEASE, duration: float = 60.0
) -> LeaseToken:
    """The lease taken in the store by ``holder`` at ``now`` (free or expired)."""
    store = LeaseStore(dsn, timeout=5)
    try:
        answer = store.acquire(lease, holder, now=now, duration=duration)
    finally:
        store.close()
    assert answer.granted and answer.row is not None, answer
    return answer.row.token()


def elect(actor: Solo, dsn: str, holder: str) -> LeaseToken:
    """What the LeaderElector does for leader-only work: a lease taken (one of this
    test's own, whatever else runs on the database), and the actor told it leads."""
    lease = f"leader-{uuid.uuid4().hex[:8]}"
    token = take_lease(dsn, holder, now=actor.clock.time(), lease=lease)
    actor.tell(LeaderElected(token=token))
    return token


@contextmanager
def trailing_stop_alone(
    dsn: str, paper: PaperExchange, clock: ManualClock, settings: Mapping[str, str]
) -> Iterator[Solo]:
    """A TrailingStop started alone on ``dsn``, its positions from ``paper``, with one
    Validator and the Ledger as stand-ins that take what it tells them."""
    config = load_config({"VALIDATION_THREADS": "1", **settings})
    services = make_services(
        config, redis_url="redis://unused", database_dsn=dsn, portfolio_url=paper.url, clock=clock
    )
    stand_ins = {"ledger": None, "validator-0": None}
    with solo(TrailingStop, "trailing_stop", services, clock=clock, stand_ins=stand_ins) as s:
        yield s
