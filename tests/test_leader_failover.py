"""Two coordinators on one Redis and one PostgreSQL: one leads, `/status` says which,
and the other takes over when the leader stops."""

from __future__ import annotations

import queue
from typing import Any

import pytest
import requests

from coordinator.cluster.lease import LossReason, Role
from coordinator.config import load_config
from coordinator.daemon import Coordinator
from coordinator.infra.embedded import free_port
from coordinator.infra.lease_store import LeaseStore
from coordinator.messages.leadership import GetLeadership, LeaderElected, LeadershipLost
from coordinator.messages.supervision import DrillHang
from tests.trees import FAST_HEALTH
from tests.waiting import wait_for


@pytest.fixture
def coordinators(redis_server, postgres, trader, portfolio, clear_kill_switch, tmp_path):
    started: list[Coordinator] = []

    def start(**env: str) -> Coordinator:
        config = load_config(
            {
                **FAST_HEALTH,
                "REDIS_URL": redis_server.url,
                "DATABASE_URL": postgres.dsn,
                "TRADER_API_URL": trader.url,
                "PORTFOLIO_API_URL": portfolio.url,
                "COORDINATOR_PORT": str(free_port()),
                "COORDINATOR_DATA_DIR": str(tmp_path / f"data{len(started)}"),
                "HTTP_SNAPSHOT_TTL": "0",
                "COORDINATOR_INSTANCES": "cluster",
                **env,
            }
        )
        coordinator = Coordinator(config)
        coordinator.start()
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in started:
        coordinator.stop()


def role(coordinator: Coordinator) -> Any:
    assert coordinator.http is not None
    return requests.get(coordinator.http.url + "/status", timeout=5).json()["role"]


def test_one_of_two_coordinators_leads_and_the_other_takes_over_when_it_stops(
    coordinators, postgres
) -> None:
    first = coordinators()
    # A coordinator of an earlier test may have left its lease to lapse: within one.
    wait_for(lambda: role(first) == "leader", timeout=10, message="the first to lead")
    second = coordinators()
    for _ in range(5):
        assert (role(first), role(second)) == ("leader", "follower")
    store = LeaseStore(postgres.dsn, timeout=5)
    try:
        before = store.read("leader")
        assert before is not None
        # Named by its instance and this process's incarnation of it.
        assert first.config.instance.name in before.holder
        first.stop()
        # Released on the stop (taken at the follower's next try, not after a lapse),
        # unless the follower was quicker than this read.
        released = store.read("leader")
        assert released is not None
        assert released.expires_at == float("-inf") or released.holder != before.holder
        wait_for(lambda: role(second) == "leader", timeout=10, message="the second to lead")
        after = store.read("leader")
        assert after is not None
        assert after.generation == before.generation + 1
        assert after.holder != before.holder
    finally:
        store.close()


def test_a_paused_leader_is_taken_over_and_resumed_says_it_lost(coordinators, postgres) -> None:
    # The first's elector will hang for 4 s: its supervisor must not replace it meanwhile
    # (as a process paused whole would not be).
    first = coordinators(SUPERVISOR_LIVENESS_TIMEOUT="30")
    wait_for(lambda: role(first) == "leader", timeout=10, message="the first to lead")
    heard: queue.Queue[Any] = queue.Queue()
    first.directory.add_listener(heard.put)
    second = coordinators()
    assert role(second) == "follower"
    store = LeaseStore(postgres.dsn, timeout=5)
    try:
        before = store.read("leader")
        assert before is not None
        first.directory.tell("leader_elector", DrillHang(seconds=4.0))
        # Taken over once its lease lapses (how soon is measured by benchmarks, not here).
        wait_for(lambda: role(second) == "leader", timeout=10, message="the second to lead")
        after = store.read("leader")
        assert after is not None
        assert after.generation == before.generation + 1
        assert after.holder != before.holder
        # Resumed, the first finds its deadline passed: it says so, and leads no more.
        lost = wait_for(
            lambda: next((e for e in list(heard.queue) if isinstance(e, LeadershipLost)), None),
            timeout=10,
            message="the first to say it lost",
        )
        assert lost.token.generation == before.generation
        assert lost.reason is LossReason.EXPIRED
        snapshot = first.directory.ask("leader_elector", GetLeadership(), timeout=5)
        assert snapshot.role is Role.FOLLOWER
        assert not any(isinstance(e, LeaderElected) for e in list(heard.queue))
        assert (role(first), role(second)) == ("follower", "leader")
        assert store.read("leader").generation == after.generation
    finally:
        store.close()
