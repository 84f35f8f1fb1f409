"""Two coordinators on one database, one lease and one paper exchange: the follower's
Reconciler settles only what its own Validators hold; an unknown order the follower
sent is the leader's to settle."""

from __future__ import annotations

import uuid
from typing import Any

from coordinator.messages.reconcile import (
    GetReconcilerSnapshot,
    ReconcilerSnapshot,
    ReconcileSoon,
)
from coordinator.trading.routing import client_order_id
from tests.pipeline import Pipeline, signal_payload
from tests.test_held_orders import knobs, order_state
from tests.test_pipeline import signal_id
from tests.waiting import wait_for


def two_on_one_lease(pipelines: Any, dsn: str, **follower_env: str) -> tuple[Pipeline, Pipeline]:
    lease = f"leader-{uuid.uuid4().hex[:8]}"
    leader = pipelines({"SIGNAL_TIMEOUT": "60"}, database_dsn=dsn, lease=lease)
    follower = pipelines(
        {"SIGNAL_TIMEOUT": "60", **follower_env},
        database_dsn=dsn,
        paper=leader.paper,
        lease=lease,
        lead=False,
    )
    assert (leader.role(), follower.role()) == ("leader", "follower")
    return leader, follower


def reconciler(pipe: Pipeline) -> ReconcilerSnapshot:
    snapshot: ReconcilerSnapshot = pipe.directory.ask(
        "reconciler", GetReconcilerSnapshot(), timeout=5
    )
    return snapshot


def test_a_follower_settles_the_order_its_validator_holds(pipelines, own_postgres) -> None:
    leader, follower = two_on_one_lease(pipelines, own_postgres.dsn)
    knobs(follower, fail_after_fill=1)  # filled, then answered 5xx: held
    payload = signal_payload("LTCUSDC")
    assert follower.post(payload).status_code == 202

    record = follower.decision(signal_id(payload), timeout=30)

    assert record["decision"]["outcome"] == "accepted"
    assert "found at the Trader" in record["decision"]["detail"]
    cid = client_order_id(signal_id(payload))
    assert cid in reconciler(follower).resolved
    assert cid not in reconciler(leader).resolved
    assert follower.paper.stats()["requests_by_client_order_id"] == {cid: 1}


def test_an_unknown_order_of_the_follower_is_settled_by_the_leader(pipelines, own_postgres) -> None:
    leader, follower = two_on_one_lease(pipelines, own_postgres.dsn, TRADER_READ_TIMEOUT="0.3")
    knobs(follower, timeout=2)  # filled, answered too late: unknown
    payload = signal_payload("DOGEUSDC")
    assert follower.post(payload).status_code == 202
    assert follower.decision(signal_id(payload))["decision"]["outcome"] == "unknown"
    cid = client_order_id(signal_id(payload))
    knobs(follower, timeout=0)
    # The follower's Reconciler, asked to look (as its Validator did), leaves it.
    runs = reconciler(follower).runs
    follower.directory.tell("reconciler", ReconcileSoon(client_order_id=cid, sent_at=0.0))
    wait_for(lambda: reconciler(follower).runs > runs, message="a follower pass")
    assert order_state(follower, cid)[0] == "unknown"

    # The leader's next pass (due every RECONCILE_INTERVAL; asked for now) settles it.
    leader.directory.tell("reconciler", ReconcileSoon(client_order_id=cid, sent_at=0.0))
    wait_for(lambda: order_state(leader, cid)[0] == "accepted", timeout=20, message="settled")

    assert cid in reconciler(leader).resolved
    assert cid not in reconciler(follower).resolved
    assert leader.paper.stats()["requests_by_client_order_id"] == {cid: 1}
