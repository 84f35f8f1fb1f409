"""The Reconciler alone, its Trader a paper exchange on real HTTP and its store the real
PostgreSQL: passes fall due on the clock, and an unknown order the Trader filled is
marked accepted. It leads alone, as in single mode (tests/actors/test_reconciler_leader.py:
cluster mode)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator.actors.reconciler import RECONCILE_INTERVAL, Reconciler
from coordinator.clock import ManualClock
from coordinator.cluster.fencing import LeaseToken
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.records import order_record
from coordinator.messages.leadership import LeaderElected
from coordinator.messages.pipeline import OrderRecord
from coordinator.messages.reconcile import GetReconcilerSnapshot, ReconcilerSnapshot
from tests.actors.conftest import buy_at
from tests.pipeline import PRICES
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

TICK = 0.25


@pytest.fixture
def reconciler(
    postgres: EmbeddedPostgres, clear_kill_switch: None, paper: PaperExchange
) -> Iterator[Solo]:
    clock = ManualClock()
    services = make_services(
        load_config({}),
        redis_url="redis://unused",
        database_dsn=postgres.dsn,
        trader_url=paper.url,
        clock=clock,
    )
    with solo(Reconciler, "reconciler", services, clock=clock) as started:
        started.tell(LeaderElected(token=LeaseToken.alone("leader", "reconciler-test")))
        yield started


def snapshot(reconciler: Solo) -> ReconcilerSnapshot:
    return reconciler.ask(GetReconcilerSnapshot())


def runs_after(reconciler: Solo, runs: int) -> ReconcilerSnapshot:
    return wait_for(
        lambda: (s := snapshot(reconciler)).runs == runs and s, message=f"pass {runs} done"
    )


def test_passes_run_soon_after_start_then_once_per_interval_of_the_clock(
    reconciler: Solo,
) -> None:
    assert snapshot(reconciler).runs == 0
    reconciler.clock.advance(TICK)
    assert runs_after(reconciler, 1).last_error is None
    reconciler.clock.advance(RECONCILE_INTERVAL - TICK)
    assert snapshot(reconciler).runs == 1
    reconciler.clock.advance(TICK)
    runs_after(reconciler, 2)


def test_an_unknown_order_the_trader_filled_is_accepted(
    reconciler: Solo, paper: PaperExchange, postgres: EmbeddedPostgres
) -> None:
    order_id = "coord-reconciler-actor-test-0001"
    sent_at = reconciler.clock.time()
    buy_at(paper, "ETHUSDC", 0.01, at=sent_at, order_id=order_id)
    unknown = OrderRecord(
        client_order_id=order_id,
        signal_id="s-reconciler-actor",
        symbol="ETHUSDC",
        side="BUY",
        quantity=0.01,
        reference_price=PRICES["ETHUSDC"],
        state="unknown",
        error="timed out",
        at=sent_at,
    )
    store = PipelineStore(postgres.dsn, timeout=5.0)
    try:
        store.write([order_record(unknown)])
    finally:
        store.close()
    reconciler.clock.advance(TICK)
    found = runs_after(reconciler, 1)
    assert (found.accepted, found.last_error) == (1, None), found
    assert order_id in found.resolved
