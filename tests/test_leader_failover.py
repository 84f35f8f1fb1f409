"""Two coordinators on one Redis and one PostgreSQL: one leads, `/status` says which,
and the other takes over when the leader stops."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from coordinator.config import load_config
from coordinator.daemon import Coordinator
from coordinator.infra.embedded import free_port
from coordinator.infra.lease_store import LeaseStore
from tests.trees import FAST_HEALTH
from tests.waiting import wait_for


@pytest.fixture
def coordinators(redis_server, postgres, trader, portfolio, clear_kill_switch, tmp_path):
    started: list[Coordinator] = []

    def start() -> Coordinator:
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
        first.stop()
        stopped = time.monotonic()
        wait_for(lambda: role(second) == "leader", timeout=10, message="the second to lead")
        # Released on the stop: taken at the follower's next try, not after a lapse.
        assert time.monotonic() - stopped < 2.0
        after = store.read("leader")
        assert after is not None
        assert after.generation == before.generation + 1
        assert after.holder != before.holder
    finally:
        store.close()
