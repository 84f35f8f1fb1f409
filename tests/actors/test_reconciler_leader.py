"""The Reconciler follows the leader lease (cluster mode): a follower settles only the
orders its own Validators hold; the leader settles every instance's unknown orders but
those another live instance holds, each settlement fenced; a settlement refused by the
fence makes it a follower with one WARNING, nothing written."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import psycopg2
import pytest

from coordinator.actors.reconciler import Reconciler
from coordinator.clock import ManualClock
from coordinator.cluster.lease import LossReason
from coordinator.config import load_config
from coordinator.infra.order_states import HELD_MARK
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.leadership import LeadershipLost
from coordinator.messages.reconcile import (
    GetReconcilerSnapshot,
    HeldOrderResolved,
    ReconcilerSnapshot,
)
from tests.actors.conftest import buy_at, elect, take_lease
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

TICK = 0.25
ME = "reconciler-me"


@pytest.fixture
def reconciler(paper: PaperExchange, own_database: str) -> Iterator[Callable[[], Solo]]:
    """The Reconciler of instance ``ME`` (cluster mode), its Validator and Ledger
    stand-ins that take what it tells them."""
    with ExitStack() as stack:

        def start() -> Solo:
            clock = ManualClock()
            config = load_config(
                {
                    "COORDINATOR_INSTANCE": ME,
                    "COORDINATOR_INSTANCES": "cluster",
                    "VALIDATION_THREADS": "1",
                }
            )
            services = make_services(
                config,
                redis_url="redis://unused",
                database_dsn=own_database,
                trader_url=paper.url,
                clock=clock,
            )
            stand_ins = {"ledger": None, "validator-0": None}
            return stack.enter_context(
                solo(Reconciler, "reconciler", services, clock=clock, stand_ins=stand_ins)
            )

        yield start


def instance_row(dsn: str, instance: str, *, live: bool) -> None:
    """Another instance as the registry keeps it: beating just now, or stopped."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO coordinator_instances (instance, host, pid, data_dir, incarnation,
                   started_at, heartbeat_at, stopped_at, mode)
               VALUES (%s, 'h', 1, '/d', gen_random_uuid(), now(), clock_timestamp(),
                       CASE WHEN %s THEN NULL ELSE now() END, 'cluster')""",
            (instance, live),
        )
    conn.close()


def filled_unknown_order(
    dsn: str, paper: PaperExchange, order_id: str, *, at: float, instance: str, held: bool
) -> None:
    """An order the Trader filled, stored unknown by ``instance`` (held after a 5xx, or
    timed out); its quantity is its own, so that the fill matches it alone."""
    quantity = 0.01 + (zlib.crc32(order_id.encode()) % 1000) / 1e5
    buy_at(paper, "ETHUSDC", quantity, at=at, order_id=order_id)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side,
                   quantity, reference_price, state, error, created_at, updated_at, instance)
               VALUES (%s, %s, 'ETHUSDC', 'BUY', %s, 3000, 'unknown', %s,
                       to_timestamp(%s), to_timestamp(%s), %s)""",
            (
                order_id,
                "s-" + order_id,
                quantity,
                f"{HELD_MARK}500" if held else "timed out",
                at,
                at,
                instance,
            ),
        )
    conn.close()


def order_state(dsn: str, order_id: str) -> str:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT state FROM coordinator_orders WHERE client_order_id = %s", (order_id,))
        (state,) = cur.fetchone()
    conn.close()
    return str(state)


def passes(reconciler: Solo, count: int) -> ReconcilerSnapshot:
    """``count`` more passes, each started by the clock and waited for."""
    snapshot: ReconcilerSnapshot = reconciler.ask(GetReconcilerSnapshot())
    for _ in range(count):
        runs = snapshot.runs
        reconciler.clock.advance(31.0)  # past RECONCILE_INTERVAL
        snapshot = wait_for(
            lambda r=runs: (s := reconciler.ask(GetReconcilerSnapshot())).runs > r and s,
            message="a pass",
        )
    return snapshot


def test_a_follower_settles_only_what_its_own_validators_hold(
    reconciler: Callable[[], Solo], paper: PaperExchange, own_database: str
) -> None:
    follower = reconciler()
    now = follower.clock.time()
    instance_row(own_database, "peer", live=True)
    filled_unknown_order(own_database, paper, "of-a-peer", at=now, instance="peer", held=False)
    filled_unknown_order(own_database, paper, "held-here", at=now, instance=ME, held=True)
    done = passes(follower, 2)
    assert done.resolved == frozenset({"held-here"}), done
    assert order_state(own_database, "held-here") == "accepted"
    assert order_state(own_database, "of-a-peer") == "unknown"
    handed = follower.told("validator-0", HeldOrderResolved)
    assert (handed.client_order_id, handed.accepted) == ("held-here", True)


def test_the_leader_settles_every_instances_orders_but_those_a_live_one_holds(
    reconciler: Callable[[], Solo], paper: PaperExchange, own_database: str
) -> None:
    leader = reconciler()
    now = leader.clock.time()
    instance_row(own_database, "peer", live=True)
    instance_row(own_database, "gone", live=False)
    filled_unknown_order(own_database, paper, "of-a-peer", at=now, instance="peer", held=False)
    filled_unknown_order(own_database, paper, "held-by-peer", at=now, instance="peer", held=True)
    filled_unknown_order(own_database, paper, "held-by-gone", at=now, instance="gone", held=True)
    elect(leader, own_database, f"{ME}#1")
    done = passes(leader, 2)
    assert done.resolved == frozenset({"of-a-peer", "held-by-gone"}), done
    assert order_state(own_database, "held-by-peer") == "unknown"
    assert all(s.client_order_id != "held-by-peer" for s in done.still_unknown)
    # The gone instance's Validator is no more: its signal is this process's to record.
    handed = leader.told("validator-0", HeldOrderResolved)
    assert (handed.client_order_id, handed.accepted) == ("held-by-gone", True)


def test_told_it_lost_it_settles_the_other_instances_orders_no_more(
    reconciler: Callable[[], Solo], paper: PaperExchange, own_database: str
) -> None:
    leader = reconciler()
    token = elect(leader, own_database, f"{ME}#1")
    passes(leader, 1)
    leader.tell(LeadershipLost(token=token, reason=LossReason.EXPIRED))
    now = leader.clock.time()
    filled_unknown_order(own_database, paper, "after-loss", at=now, instance="peer", held=False)
    assert passes(leader, 2).resolved == frozenset()
    assert order_state(own_database, "after-loss") == "unknown"


def test_a_settlement_refused_by_the_fence_makes_it_a_follower_with_one_warning(
    reconciler: Callable[[], Solo],
    paper: PaperExchange,
    own_database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="coordinator.actors.reconciler")
    stale = reconciler()
    token = elect(stale, own_database, "stale#1")
    take_lease(own_database, "other#1", now=stale.clock.time() + 61, lease=token.name)
    now = stale.clock.time()
    filled_unknown_order(own_database, paper, "refused", at=now, instance="peer", held=False)
    refused = passes(stale, 1)
    assert refused.resolved == frozenset() and "lease" in (refused.last_error or "")
    assert passes(stale, 2).resolved == frozenset()
    assert order_state(own_database, "refused") == "unknown"
    stops = [r for r in caplog.records if "stops here" in r.getMessage()]
    assert len(stops) == 1 and "fence refused" in stops[0].getMessage(), stops
