"""COORDINATOR_INSTANCES=single: a coordinator that runs alone leads from its start
without a lease, keeps its trailing stops and sends their exits through a PostgreSQL
outage (the intent in the local journal), and refuses to start beside another live
instance; a cluster instance refuses to start beside a lone one."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import pytest
import requests

from coordinator.actors.leader_elector import LeaderElector
from coordinator.clock import ManualClock
from coordinator.cluster.fencing import LeaseToken
from coordinator.cluster.lease import LeaseTimings, Role
from coordinator.config.identity import InstanceMode
from coordinator.config.parts import ElectorSettings
from coordinator.infra.instances import InstanceBeside, InstanceRegistry
from coordinator.messages.leadership import GetLeadership, LeaderElected, LeadershipLost
from tests.solo import Solo
from tests.test_trailing_stops import (
    ENV,
    seed,
    sells,
    stop_of,
    stops,
    stored_stop,
    tick,
    watched,
)
from tests.trees import fast_config, make_services
from tests.waiting import wait_for

SINGLE = {
    **ENV,
    "COORDINATOR_INSTANCES": "single",
    # Short, so that a cluster instance would have stopped leading long before the
    # outage below is even noticed.
    "LEADER_LEASE_DURATION": "0.3",
    "LEADER_LEASE_RENEW": "0.1",
}


def postgres_seen_down(pipe: Any) -> bool:
    status = requests.get(pipe.url + "/status", timeout=5).json()
    return bool(status["dependencies"]["postgres"]["status"] == "down")


def watched_with_peak(pipe: Any, dsn: str) -> str:
    """A DOGEUSDC position watched, its peak at 0.215 stored."""
    seed(pipe, "DOGEUSDC", 1_000.0, 0.2)
    key: str = watched(pipe, "DOGEUSDC")["position_key"]
    for price in (0.205, 0.21, 0.215):
        tick(pipe, "DOGEUSDC", price)
    wait_for(lambda: stored_stop(dsn, key)[0] == 0.215, message="the peak stored")
    return key


def leases(dsn: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM coordinator_leases")
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


def test_a_lone_coordinator_fires_its_stop_through_a_postgresql_outage_once(
    pipelines, own_postgres
) -> None:
    pipe = pipelines(SINGLE, database_dsn=own_postgres.dsn)
    assert pipe.role() == "leader"
    assert requests.get(pipe.url + "/status", timeout=5).json()["instances"] == "single"
    key = watched_with_peak(pipe, own_postgres.dsn)

    own_postgres.stop()
    try:
        wait_for(lambda: postgres_seen_down(pipe), timeout=20, message="PostgreSQL seen down")
        assert pipe.role() == "leader"
        # Still watched, well past what a lease would have lasted, and still trailing.
        tick(pipe, "DOGEUSDC", 0.22)
        view = wait_for(
            lambda: (s := stop_of(pipe, "DOGEUSDC")) and s["peak"] == 0.22 and s,
            message="the stop trailing the new peak",
        )
        assert view["stop"] == pytest.approx(0.22 * 0.98)
        assert requests.get(pipe.url + "/trailing-stops", timeout=5).json()["leading"] is True
        assert sells(pipe, "DOGEUSDC") == []

        pipe.paper.set_price("DOGEUSDC", 0.21)
        tick(pipe, "DOGEUSDC", 0.21)
        wait_for(lambda: "DOGEUSDC" not in pipe.positions(), message="sold during the outage")
        assert pipe.role() == "leader"
    finally:
        own_postgres.start()
    assert len(sells(pipe, "DOGEUSDC")) == 1
    requested = pipe.paper.stats()["requests_by_client_order_id"]
    assert all(n == 1 for n in requested.values()), requested
    # The exit's intent went to the local journal, and reaches PostgreSQL once it is back.
    record = pipe.decision(f"exit:{key}:1", timeout=30)
    assert record["decision"]["outcome"] == "accepted"
    assert record["order"]["client_order_id"] == sells(pipe, "DOGEUSDC")[0]["client_order_id"]
    assert leases(own_postgres.dsn) == 0, "no lease taken"


def test_in_a_cluster_no_stop_fires_during_the_outage_and_it_resumes_after(
    pipelines, own_postgres, caplog
) -> None:
    """The trade-off of cluster mode: no instance leads while PostgreSQL is down."""
    pipe = pipelines({**ENV, "COORDINATOR_INSTANCES": "cluster"}, database_dsn=own_postgres.dsn)
    key = watched_with_peak(pipe, own_postgres.dsn)
    own_postgres.stop()
    try:
        # Down for good first: a renewal merely late (a loaded machine) loses the lease
        # too, but the next try takes it again while PostgreSQL still answers.
        wait_for(lambda: postgres_seen_down(pipe), timeout=20, message="PostgreSQL seen down")
        wait_for(lambda: pipe.role() == "follower", timeout=20, message="no longer leading")
        # Dropped: what it shows now is read from the store, which does not answer.
        wait_for(lambda: stops(pipe)["source"] == "store", message="the stops dropped")
        assert stops(pipe)["count"] == 0 and stops(pipe)["store_error"]
        pipe.paper.set_price("DOGEUSDC", 0.2)
        tick(pipe, "DOGEUSDC", 0.2)
        assert "DOGEUSDC" in pipe.positions()
    finally:
        own_postgres.start()
    wait_for(lambda: pipe.role() == "leader", timeout=30, message="leading again")
    restored = watched(pipe, "DOGEUSDC")
    assert restored["position_key"] == key
    # Restored from the store with its peak, not started afresh from the entry.
    assert restored["peak"] == 0.215 and restored["stop"] == pytest.approx(0.215 * 0.98)
    # Under the restored stop, above a stop-loss from the entry: only the peak sells it.
    pipe.paper.set_price("DOGEUSDC", 0.209)
    tick(pipe, "DOGEUSDC", 0.209)
    wait_for(lambda: "DOGEUSDC" not in pipe.positions(), message="sold once leading again")
    assert len(sells(pipe, "DOGEUSDC")) == 1
    # The orphan sweep of the new term ran too (a connection broken by the outage is
    # not the end of it).
    assert "orders in flight not swept" not in caplog.text


def test_a_second_lone_instance_and_a_cluster_one_are_refused_beside_a_lone_one(
    pipelines, own_postgres
) -> None:
    first = pipelines(SINGLE, database_dsn=own_postgres.dsn)
    name = first.config.instance.name
    for mode in ("single", "cluster"):
        with pytest.raises(InstanceBeside) as refused:
            pipelines(
                {**SINGLE, "COORDINATOR_INSTANCES": mode},
                database_dsn=own_postgres.dsn,
                paper=first.paper,
            )
        message = str(refused.value)
        assert f"instance {name!r} (single) is live" in message, message
        assert "set COORDINATOR_INSTANCES=cluster on every instance" in message, message
    assert first.role() == "leader"


def registry(dsn: str, instance: str, mode: InstanceMode) -> InstanceRegistry:
    return InstanceRegistry(
        dsn,
        instance=instance,
        host="host",
        pid=1,
        data_dir=f"/data/{instance}",
        liveness=30.0,
        mode=mode,
    )


def test_the_claim_refuses_what_may_not_run_together_and_only_that(own_postgres) -> None:
    dsn = own_postgres.dsn
    one = registry(dsn, "one", InstanceMode.CLUSTER)
    two = registry(dsn, "two", InstanceMode.CLUSTER)
    one.claim()
    two.claim()  # several of a cluster run together
    with pytest.raises(InstanceBeside) as refused:
        registry(dsn, "alone", InstanceMode.SINGLE).claim()
    assert "instance 'alone' runs alone (COORDINATOR_INSTANCES=single)" in str(refused.value)
    assert "instance 'two' (cluster) is live" in str(refused.value), "the latest heartbeat"
    one.release()
    two.release()
    alone = registry(dsn, "alone", InstanceMode.SINGLE)
    alone.claim()  # the others stopped cleanly: free at once
    alone.release()
    alone.claim()  # and its own restart is its own row's business
    assert alone.read() is not None and alone.read().mode is InstanceMode.SINGLE  # type: ignore[union-attr]
    alone.release()
    for each in (one, two, alone):
        each.close()


def test_a_row_from_before_modes_is_taken_as_running_alone(own_postgres) -> None:
    with psycopg2.connect(own_postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO coordinator_instances (instance, host, pid, data_dir, incarnation,"
            " started_at, heartbeat_at) VALUES ('old', 'h', 1, '/d', %s, clock_timestamp(),"
            " clock_timestamp())",
            (str(uuid.uuid4()),),
        )
    conn.close()
    with pytest.raises(InstanceBeside) as refused:
        registry(own_postgres.dsn, "new", InstanceMode.CLUSTER).claim()
    assert "instance 'old' (single) is live" in str(refused.value)


def test_a_lone_elector_leads_at_once_without_postgresql_and_never_stops(tmp_path) -> None:
    clock = ManualClock(monotonic=1_000.0, wall=1_800_000_000.0)
    # Nothing listens there: no lease could be taken or renewed.
    services = make_services(
        fast_config(),
        redis_url="redis://unused",
        database_dsn="postgresql://postgres@127.0.0.1:1/none",
        clock=clock,
    )
    settings = ElectorSettings(
        LeaseTimings(duration=1.5, renew_every=0.5), "alone:1234", "leader", InstanceMode.SINGLE
    )
    solo = Solo(LeaderElector, "leader_elector", services, clock=clock, settings=settings)
    try:
        elected = solo.published(LeaderElected)
        assert elected.token == LeaseToken.alone("leader", "alone:1234")
        assert elected.token.fenced is False
        clock.advance(60.0)
        clock.settle()  # every renewal due told, so handled before the ask
        snapshot = solo.ask(GetLeadership())
        assert snapshot.role is Role.LEADER and snapshot.alone
        assert snapshot.token == elected.token
    finally:
        solo.stop()
    assert not any(isinstance(e, LeadershipLost) for e in list(solo.events.queue))
