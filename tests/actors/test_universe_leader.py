"""The UniverseManager follows the leader lease: the leader rotates and keeps the
blacklist, a follower serves what the leader stored (read again on its ticks) and
answers the operator's commands NotLeading; a leader whose write is refused by the
fence rotates no more."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from coordinator.actors.universe_manager import UniverseManager
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedRedis
from coordinator.infra.universe_store import UniverseStore
from coordinator.messages.leadership import NotLeading
from coordinator.messages.universe import BlacklistSymbol, GetUniverse, UniverseSnapshot
from tests.actors.conftest import elect, take_lease
from tests.actors.test_universe_manager import SYMBOLS, ledger
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

FIRST_ROTATION = 60.0  # after the start, for candles to arrive
TICK = 30.0


@pytest.fixture
def managers(redis_server: EmbeddedRedis, own_database: str) -> Iterator[Callable[[], Solo]]:
    """UniverseManagers of separate instances on one database, each on its own clock."""
    with ExitStack() as stack:

        def start() -> Solo:
            clock = ManualClock()
            config = load_config(
                {"TRADING_SYMBOLS": ",".join(SYMBOLS), "UNIVERSE_UPDATE_INTERVAL": "3600"}
            )
            services = make_services(
                config, redis_url=redis_server.url, database_dsn=own_database, clock=clock
            )
            return stack.enter_context(
                solo(
                    UniverseManager,
                    "universe_manager",
                    services,
                    clock=clock,
                    stand_ins={"ledger": ledger},
                )
            )

        yield start


def snapshot(manager: Solo) -> UniverseSnapshot:
    return manager.ask(GetUniverse())


def stored_rotations(dsn: str) -> int:
    store = UniverseStore(dsn)
    try:
        return len(store.history(500))
    finally:
        store.close()


def test_a_follower_rotates_nothing_and_refuses_the_operators_commands(
    managers: Callable[[], Solo], own_database: str
) -> None:
    follower = managers()
    follower.clock.advance(FIRST_ROTATION + TICK)
    follower.clock.settle()  # its ticks told, so handled before the next ask
    assert snapshot(follower).last_reason == "initial"
    assert stored_rotations(own_database) == 0
    answer = follower.ask(BlacklistSymbol(symbol="SOLUSDC", reason="t", source="api", ttl=None))
    assert isinstance(answer, NotLeading)
    assert "SOLUSDC" not in dict(snapshot(follower).blacklist)


def test_a_follower_serves_what_the_leader_stored(
    managers: Callable[[], Solo], own_database: str
) -> None:
    leader, follower = managers(), managers()
    elect(leader, own_database, "leader#1")
    leader.ask(BlacklistSymbol(symbol="SOLUSDC", reason="ops", source="api", ttl=None))
    leader.clock.advance(FIRST_ROTATION)
    rotated = wait_for(
        lambda: (s := snapshot(leader)).last_reason == "interval" and s,
        message="the leader's rotation",
    )
    assert stored_rotations(own_database) == 1
    follower.clock.advance(TICK)
    followed = wait_for(
        lambda: (s := snapshot(follower)).last_at == pytest.approx(rotated.last_at, abs=1e-3) and s,
        message="the follower to take the leader's universe",
    )
    assert followed.selected == rotated.selected and "SOLUSDC" not in followed.selected
    assert dict(followed.blacklist) == {"SOLUSDC": "ops"}
    assert stored_rotations(own_database) == 1


def test_a_leader_whose_write_is_refused_by_the_fence_rotates_no_more(
    managers: Callable[[], Solo], own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="coordinator.actors.universe_manager")
    stale = managers()
    token = elect(stale, own_database, "stale#1")
    take_lease(own_database, "other#1", now=stale.clock.time() + 61, lease=token.name)
    stale.clock.advance(FIRST_ROTATION)
    wait_for(
        lambda: any("rotations stop here" in r.getMessage() for r in caplog.records),
        message="the stale leader to stop",
    )
    assert stored_rotations(own_database) == 0
    answer = stale.ask(BlacklistSymbol(symbol="SOLUSDC", reason="t", source="api", ttl=None))
    assert isinstance(answer, NotLeading)
    stale.clock.advance(3600 + TICK)
    stale.clock.settle()
    snapshot(stale)  # the ticks handled
    assert stored_rotations(own_database) == 0
    stops = [r for r in caplog.records if "rotations stop here" in r.getMessage()]
    assert len(stops) == 1 and "fence refused" in stops[0].getMessage()
