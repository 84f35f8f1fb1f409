"""A coordinator's identity at work: claimed before anything trades, beaten on the
clock, stored with every decision and order, shown in /status; a second process of the
same identity refused; an identity taken over stops the one that lost it."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import uuid
from typing import Any

import pytest
import requests

from coordinator.actors.instance_keeper import InstanceKeeper
from coordinator.clock import ManualClock
from coordinator.infra.instances import IdentityInUse, InstanceRegistry
from coordinator.messages.supervision import Ping, StopTree
from tests.pipeline import signal_payload
from tests.solo import solo
from tests.test_instances import sql
from tests.trees import fast_config, make_services
from tests.waiting import wait_for


def take_over(dsn: str, instance: str, *, host: str = "other-host", pid: int = 99999) -> str:
    """What another process of this identity does once ours has been silent past the
    liveness: its incarnation now holds the row."""
    incarnation = str(uuid.uuid4())
    sql(
        dsn,
        "UPDATE coordinator_instances SET incarnation = %s, host = %s, pid = %s,"
        " started_at = clock_timestamp(), heartbeat_at = clock_timestamp()"
        " WHERE instance = %s",
        incarnation,
        host,
        pid,
        instance,
    )
    return incarnation


def drain(reports: queue.Queue[Any]) -> list[Any]:
    """What the actor has reported so far."""
    taken = []
    while True:
        try:
            taken.append(reports.get_nowait())
        except queue.Empty:
            return taken


def heartbeat_at(dsn: str, instance: str) -> Any:
    rows = sql(dsn, "SELECT heartbeat_at FROM coordinator_instances WHERE instance = %s", instance)
    return rows[0][0] if rows else None


def beaten_on(clock: ManualClock, dsn: str, instance: str, before: Any) -> Any:
    """The clock moved a heartbeat on, then the row's heartbeat if later than ``before``.
    The clock moves at each look: a tick that fell while the last beat was still on its
    way was skipped, by design, and the next one is what writes."""
    clock.advance(1.0)
    at = heartbeat_at(dsn, instance)
    return at > before and at


# --- the InstanceKeeper alone ---------------------------------------------------------


def claimed(dsn: str, clock: ManualClock) -> tuple[Any, InstanceRegistry]:
    """Services holding a freshly claimed identity, for an InstanceKeeper on ``clock``."""
    instance = f"keeper-{uuid.uuid4().hex[:10]}"
    config = fast_config({"COORDINATOR_INSTANCE": instance})
    registry = InstanceRegistry(
        dsn,
        instance=instance,
        host=socket.gethostname(),
        pid=os.getpid(),
        data_dir="/test",
        liveness=config.instance.liveness,
        timeout=1.0,
    )
    registry.claim()
    services = make_services(config, redis_url="redis://unused", database_dsn=dsn, clock=clock)
    return dataclasses.replace(services, identity=registry), registry


@pytest.fixture
def migrated(postgres) -> str:
    from coordinator.infra.store import apply_migrations

    apply_migrations(postgres.dsn)
    return str(postgres.dsn)


def test_the_heartbeat_moves_with_the_clock(migrated):
    clock = ManualClock()
    services, registry = claimed(migrated, clock)
    at_claim = heartbeat_at(migrated, registry.instance)
    with solo(InstanceKeeper, "instance_keeper", services, clock=clock) as keeper:
        # The first beat goes at once, the next when the clock has moved a heartbeat on.
        last = wait_for(
            lambda: (at := heartbeat_at(migrated, registry.instance)) > at_claim and at,
            message="the first heartbeat",
        )
        for _ in range(3):
            last = wait_for(
                lambda before=last: beaten_on(clock, migrated, registry.instance, before),
                message="a heartbeat once the clock has moved on",
            )
        assert keeper.reports.empty()


def test_an_identity_taken_over_stops_the_tree_naming_the_other(migrated, caplog):
    caplog.set_level(logging.INFO)
    clock = ManualClock()
    services, registry = claimed(migrated, clock)
    with solo(InstanceKeeper, "instance_keeper", services, clock=clock) as keeper:
        take_over(migrated, registry.instance, host="box-9", pid=4321)

        def stop_asked() -> StopTree | None:
            # A tick that falls while the first beat is still on its way is skipped, by
            # design: the clock moves on at each look until a beat has found the row.
            clock.advance(1.0)
            return next((r for r in drain(keeper.reports) if isinstance(r, StopTree)), None)

        stop = wait_for(stop_asked, message="the keeper asking the supervisor to stop the tree")
        assert "identity lost" in stop.reason and "host box-9" in stop.reason
        assert registry.lost is not None and "pid 4321" in str(registry.lost)
        critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert critical and "host box-9, pid 4321" in critical[0].getMessage()
        # No more beats: the other's row stays as the other wrote it.
        before = heartbeat_at(migrated, registry.instance)
        clock.advance(3.0)
        clock.settle()
        assert keeper.ask(Ping()) is not None, "the ticks were handled"
        assert heartbeat_at(migrated, registry.instance) == before
        assert registry.release() is False


def test_postgresql_down_at_heartbeat_time_is_logged_and_retried(own_postgres, caplog):
    caplog.set_level(logging.INFO)
    clock = ManualClock()
    dsn = own_postgres.dsn
    services, registry = claimed(dsn, clock)
    at_claim = heartbeat_at(dsn, registry.instance)
    with solo(InstanceKeeper, "instance_keeper", services, clock=clock) as keeper:
        wait_for(lambda: heartbeat_at(dsn, registry.instance) > at_claim, message="first beat")
        own_postgres.stop()

        def warned(text: str) -> bool:
            clock.advance(1.0)
            return any(
                text in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
            )

        wait_for(lambda: warned("instance heartbeat not written"), message="the failure logged")
        wait_for(lambda: warned("this identity may be taken over"), message="past the liveness")
        assert not any(isinstance(r, StopTree) for r in drain(keeper.reports)), "not fatal"
        own_postgres.start()
        wait_for(lambda: warned("instance heartbeat written again"), message="beating again")
        assert registry.lost is None


# --- whole coordinators ---------------------------------------------------------------


def test_a_second_coordinator_of_the_same_identity_is_refused_and_a_clean_stop_frees_it(
    pipelines, postgres, caplog
):
    instance = f"pipe-{uuid.uuid4().hex[:10]}"
    first = pipelines({"COORDINATOR_INSTANCE": instance})
    row = sql(
        postgres.dsn,
        "SELECT host, pid, heartbeat_at FROM coordinator_instances WHERE instance = %s",
        instance,
    )
    assert row[0][:2] == (socket.gethostname(), os.getpid())

    with pytest.raises(IdentityInUse) as refused:
        pipelines({"COORDINATOR_INSTANCE": instance}, paper=first.paper)
    text = str(refused.value)
    assert f"host {socket.gethostname()}, pid {os.getpid()}" in text
    assert "last heartbeat" in text
    # The first goes on, still holding it.
    assert requests.get(first.url + "/status", timeout=5).json()["instance"] == instance
    assert first.coordinator.identity_lost is None

    first.coordinator.stop()
    stopped = sql(
        postgres.dsn, "SELECT stopped_at FROM coordinator_instances WHERE instance = %s", instance
    )
    assert stopped[0][0] is not None
    # A restart at once takes it: no wait for a heartbeat to age.
    again = pipelines({"COORDINATOR_INSTANCE": instance})
    assert requests.get(again.url + "/status", timeout=5).json()["instance"] == instance
    assert not [r for r in caplog.records if "taken over from" in r.getMessage()]


def test_decisions_and_orders_carry_the_instance_and_status_shows_it(pipelines, postgres):
    pipe = pipelines()
    instance = pipe.config.instance.name
    status = requests.get(pipe.url + "/status", timeout=5).json()
    assert (status["instance"], status["instances"]) == (instance, "cluster")
    diagnostic = requests.get(pipe.url + "/diagnostic", timeout=5).json()
    assert (diagnostic["instance"], diagnostic["instances"]) == (instance, "cluster")
    assert pipe.config.intake.stream_consumer != instance, "the pipeline names its consumer"

    buy = signal_payload("ETHUSDC", "BUY")
    pipe.publish(buy)
    signal = "consensus:" + buy["metadata"]["consensus_id"]
    record = pipe.decision(signal)
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    # A SELL of nothing held: a rejection, stored with its instance too.
    refused = signal_payload("SOLUSDC", "SELL")
    pipe.publish(refused)
    rejected = pipe.decision("consensus:" + refused["metadata"]["consensus_id"])
    assert rejected["decision"]["outcome"] == "rejected", rejected["decision"]

    for table in ("coordinator_decisions", "coordinator_orders"):
        rows = sql(postgres.dsn, f"SELECT instance FROM {table} WHERE signal_id = %s", signal)
        assert rows == [(instance,)], table
    rows = sql(
        postgres.dsn,
        "SELECT instance FROM coordinator_decisions WHERE signal_id = %s",
        "consensus:" + refused["metadata"]["consensus_id"],
    )
    assert rows == [(instance,)]


def test_a_coordinator_whose_identity_is_taken_over_stops(pipelines, postgres, caplog):
    caplog.set_level(logging.INFO)
    pipe = pipelines()
    instance = pipe.config.instance.name
    take_over(postgres.dsn, instance, host="box-7", pid=777)

    assert pipe.coordinator.outcome.finished.wait(15), "the tree stopped"
    lost = pipe.coordinator.identity_lost
    assert lost is not None and "host box-7, pid 777" in str(lost)
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("box-7" in message for message in critical), critical
    pipe.stop()
    # The other's row is left as it is: no stopped_at written over it.
    rows = sql(
        postgres.dsn,
        "SELECT host, stopped_at FROM coordinator_instances WHERE instance = %s",
        instance,
    )
    assert rows == [("box-7", None)]
