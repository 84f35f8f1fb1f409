"""The UniverseManager alone on real Redis and PostgreSQL, a stand-in for the Ledger:
the initial universe, a blacklist entry that ends when the clock passes its ttl, and the
first rotation when the clock reaches it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator.actors.universe_manager import UniverseManager
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.http.views_records import universe_view
from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis
from coordinator.messages.ledger import GetLedgerSnapshot, LedgerSnapshot
from coordinator.messages.universe import (
    BlacklistSymbol,
    GetUniverse,
    UniverseChanged,
    UniverseSnapshot,
)
from tests.actors.conftest import elect
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

SYMBOLS = ("BTCUSDC", "ETHUSDC", "SOLUSDC")


def ledger(message: object) -> object:
    if isinstance(message, GetLedgerSnapshot):
        return LedgerSnapshot(
            positions=(), reservations=0, reserved_quote=0.0, view_age=None, error=None
        )
    return None


@pytest.fixture
def universe(
    redis_server: EmbeddedRedis, postgres: EmbeddedPostgres, clear_kill_switch: None
) -> Iterator[Solo]:
    clock = ManualClock()
    config = load_config({"TRADING_SYMBOLS": ",".join(SYMBOLS), "UNIVERSE_UPDATE_INTERVAL": "3600"})
    services = make_services(
        config, redis_url=redis_server.url, database_dsn=postgres.dsn, clock=clock
    )
    stand_ins = {"ledger": ledger}
    with solo(UniverseManager, "universe_manager", services, clock=clock, stand_ins=stand_ins) as s:
        elect(s, postgres.dsn, "universe-test#1")
        yield s


def snapshot(universe: Solo) -> UniverseSnapshot:
    return universe.ask(GetUniverse())


def test_it_starts_from_the_candidates_and_says_so(universe: Solo) -> None:
    initial = universe.published(UniverseChanged)
    assert initial.selected == snapshot(universe).selected
    assert initial.selected <= set(SYMBOLS) and initial.selected


def test_a_blacklisting_ends_when_the_clock_passes_its_ttl(universe: Solo) -> None:
    universe.published(UniverseChanged)
    listed = universe.ask(BlacklistSymbol(symbol="SOLUSDC", reason="test", source="ops", ttl=600))
    assert "SOLUSDC" in dict(listed.blacklist)
    universe.clock.advance(590)
    assert "SOLUSDC" in dict(snapshot(universe).blacklist)
    # Swept on the manager's tick (every 30 s of the clock).
    universe.clock.advance(30)
    wait_for(
        lambda: "SOLUSDC" not in dict(snapshot(universe).blacklist),
        message="the entry's end",
    )


def test_the_first_rotation_runs_when_the_clock_reaches_it(universe: Solo) -> None:
    universe.published(UniverseChanged)
    universe.clock.advance(59)
    assert last(universe)["last_reason"] == "initial"
    universe.clock.advance(1)
    # The held symbols are asked of the Ledger: they never leave the universe.
    universe.told("ledger", GetLedgerSnapshot)
    rotated = wait_for(
        lambda: (body := last(universe))["last_reason"] == "interval" and body,
        message="the interval's rotation",
    )
    assert rotated["last_update"] is not None


def last(universe: Solo) -> dict:
    return universe_view(snapshot(universe))
