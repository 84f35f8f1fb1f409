"""Two coordinators on one database, one Redis and one paper exchange: the trailing
stops run on the leader alone, and the other, taking over, resumes them from the store
with their peaks and sells once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from coordinator.messages.supervision import DrillHang
from tests.pipeline import Pipeline
from tests.test_trailing_stops import ENV, seed, sells, stops, stored_stop, tick, watched
from tests.waiting import wait_for


def two_on_one_lease(pipelines: Any, dsn: str, **first_env: str) -> tuple[Pipeline, Pipeline]:
    lease = f"leader-{uuid.uuid4().hex[:8]}"
    first = pipelines({**ENV, **first_env}, database_dsn=dsn, lease=lease)
    second = pipelines(ENV, database_dsn=dsn, paper=first.paper, lease=lease, lead=False)
    assert (first.role(), second.role()) == ("leader", "follower")
    return first, second


def watched_with_peak(leader: Pipeline, follower: Pipeline, dsn: str) -> str:
    """A DOGEUSDC position watched by the leader alone, its peak at 0.215 stored."""
    seed(leader, "DOGEUSDC", 1_000.0, 0.2)
    key: str = watched(leader, "DOGEUSDC")["position_key"]
    for price in (0.205, 0.21, 0.215):
        tick(leader, "DOGEUSDC", price)
    wait_for(lambda: stored_stop(dsn, key)[0] == 0.215, message="the peak stored")
    # The follower watches none: it shows the leader's as stored, peak included.
    shown = stops(follower)
    assert (shown["leading"], shown["source"]) == (False, "store")
    assert shown["leader"] == stops(leader)["leader"] is not None
    (row,) = shown["positions"]
    assert (row["position_key"], row["peak"], row["last_price"]) == (key, 0.215, None)
    return key


def sold_once(pipe: Pipeline) -> None:
    pipe.paper.set_price("DOGEUSDC", 0.2)
    tick(pipe, "DOGEUSDC", 0.2)
    wait_for(lambda: "DOGEUSDC" not in pipe.positions(), message="sold by the new leader")
    assert len(sells(pipe, "DOGEUSDC")) == 1
    requested = pipe.paper.stats()["requests_by_client_order_id"]
    assert all(n == 1 for n in requested.values()), requested


def test_the_follower_takes_over_the_stops_with_their_peaks_and_sells_once(
    pipelines, own_postgres
) -> None:
    first, second = two_on_one_lease(pipelines, own_postgres.dsn)
    key = watched_with_peak(first, second, own_postgres.dsn)
    first.coordinator.stop()
    wait_for(lambda: second.role() == "leader", timeout=10, message="the second to lead")
    resumed = watched(second, "DOGEUSDC")
    assert resumed["position_key"] == key
    assert resumed["peak"] == 0.215 and resumed["stop"] == pytest.approx(0.215 * 0.98)
    sold_once(second)


def test_a_leader_whose_elector_froze_is_fenced_off_and_the_new_one_sells_once(
    pipelines, own_postgres
) -> None:
    """The first's elector hangs (a pause): the second takes over while the first's
    TrailingStop still believes it leads and sees the same ticks. Its writes and its
    exit are refused by the fence; the second sells once."""
    first, second = two_on_one_lease(pipelines, own_postgres.dsn, SUPERVISOR_LIVENESS_TIMEOUT="30")
    key = watched_with_peak(first, second, own_postgres.dsn)
    first.directory.tell("leader_elector", DrillHang(seconds=8.0))
    wait_for(lambda: second.role() == "leader", timeout=10, message="the second to lead")
    assert watched(second, "DOGEUSDC")["peak"] == 0.215
    tick(second, "DOGEUSDC", 0.214)  # a change the first may try to store: refused
    sold_once(second)
    wait_for(lambda: stops(first)["source"] == "store", timeout=15, message="the first dormant")
    assert stored_stop(own_postgres.dsn, key)[0] == 0.215
    wait_for(lambda: first.role() == "follower", timeout=15, message="the first to follow")
    assert len(sells(first, "DOGEUSDC")) == 1
