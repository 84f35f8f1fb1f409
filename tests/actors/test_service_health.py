"""ServiceHealth alone, on a test clock: probes fall due when the clock passes the
interval (60 s, the default), a breaker opens after its failures and closes on a trial."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from coordinator.actors.service_health import ServiceHealth
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import free_port
from coordinator.messages.health import (
    DependencyChanged,
    GetHealthSnapshot,
    HaltTrading,
    HealthSnapshot,
    ResumeTrading,
    TradingStateChanged,
)
from coordinator.messages.pipeline import TraderCallOutcome
from coordinator.trading.trading_state import Dependency, DependencyStatus, TradingState
from tests.solo import Solo
from tests.trees import make_services
from tests.waiting import wait_for

INTERVAL = 60.0
FAILURES = 3
OPEN_SECONDS = 30.0


@pytest.fixture
def health(redis_server, postgres, portfolio, clear_kill_switch) -> Iterator[Any]:
    started: list[Solo] = []

    def start(trader_url: str) -> Solo:
        clock = ManualClock()
        config = load_config(
            {
                "HEALTH_CHECK_INTERVAL": str(INTERVAL),
                "BREAKER_FAILURE_THRESHOLD": str(FAILURES),
                "BREAKER_OPEN_SECONDS": str(OPEN_SECONDS),
            }
        )
        services = make_services(
            config,
            redis_url=redis_server.url,
            database_dsn=postgres.dsn,
            trader_url=trader_url,
            portfolio_url=portfolio.url,
            clock=clock,
        )
        solo = Solo(ServiceHealth, "service_health", services, clock=clock)
        solo.services = services  # type: ignore[attr-defined]
        started.append(solo)
        return solo

    yield start
    for solo in started:
        solo.stop()


def snapshot(solo: Solo) -> HealthSnapshot:
    return solo.ask(GetHealthSnapshot())


def trader_of(snapshot: HealthSnapshot) -> Any:
    return next(d for d in snapshot.dependencies if d.dependency is Dependency.TRADER)


def settled(solo: Solo, failures: int) -> HealthSnapshot:
    """The snapshot once the Trader's probe is back with ``failures`` in a row."""
    return wait_for(
        lambda: (
            (s := snapshot(solo))
            and not trader_of(s).probe_in_flight
            and trader_of(s).consecutive_failures == failures
            and s
        ),
        message=f"the Trader's probe back with {failures} failure(s)",
    )


def test_everything_up_at_start_is_active_and_the_kill_switch_halts_and_resumes(
    health, trader
) -> None:
    solo = health(trader.url)
    solo.published(TradingStateChanged, lambda e: e.status.state is TradingState.ACTIVE)
    halted = solo.ask(HaltTrading(reason="drill", by="test"))
    assert halted.trading.state is TradingState.HALTED
    solo.published(TradingStateChanged, lambda e: e.status.state is TradingState.HALTED)
    assert solo.ask(ResumeTrading(by="test")).trading.state is TradingState.ACTIVE


def test_the_trader_goes_down_after_its_failures_one_probe_per_interval_and_comes_back(
    health, trader
) -> None:
    trader.status = 503
    solo = health(trader.url)
    assert trader_of(settled(solo, 1)).status is DependencyStatus.FAILING
    for failures in range(2, FAILURES + 1):
        # No probe until the clock passes the interval.
        assert trader_of(snapshot(solo)).consecutive_failures == failures - 1
        solo.clock.advance(INTERVAL)
        settled(solo, failures)
    down = solo.published(
        DependencyChanged,
        lambda e: e.dependency is Dependency.TRADER and e.status is DependencyStatus.DOWN,
    )
    assert down.previous is DependencyStatus.FAILING
    assert snapshot(solo).trading.state is not TradingState.ACTIVE
    # The breaker's trial, once the clock passed its open period, finds it answering.
    trader.status = 200
    solo.clock.advance(INTERVAL)
    solo.published(
        DependencyChanged,
        lambda e: e.dependency is Dependency.TRADER and e.status is DependencyStatus.UP,
    )


def test_an_open_breaker_is_tried_when_the_clock_passes_its_open_period(health, trader) -> None:
    """The trial comes when the breaker allows (30 s of the clock here), before the next
    regular probe (60 s), and on the clock: not after 30 s of real time."""
    trader.status = 503
    solo = health(trader.url)
    settled(solo, 1)
    for failures in range(2, FAILURES + 1):
        solo.clock.advance(INTERVAL)
        settled(solo, failures)
    assert trader_of(snapshot(solo)).status is DependencyStatus.DOWN
    trader.status = 200
    solo.clock.advance(OPEN_SECONDS + 1)
    solo.published(
        DependencyChanged,
        lambda e: e.dependency is Dependency.TRADER and e.status is DependencyStatus.UP,
    )


def test_a_trader_nobody_listens_on_is_failing_at_its_first_probe(health) -> None:
    solo = health(f"http://127.0.0.1:{free_port()}")
    assert trader_of(settled(solo, 1)).status is DependencyStatus.FAILING


def test_the_trader_calls_are_flagged_clean_only_while_nothing_is_counted(health, trader) -> None:
    """Validators leave out telling a successful order while the flag is set: it is set
    only while a success would change nothing (breaker closed, no failure counted)."""
    solo = health(trader.url)
    settled(solo, 0)
    clean = solo.services.trader_calls_clean
    assert clean.is_set()
    solo.tell(TraderCallOutcome(ok=False, error="500"))
    wait_for(lambda: trader_of(snapshot(solo)).consecutive_failures == 1, message="counted")
    assert not clean.is_set()
    solo.tell(TraderCallOutcome(ok=True, error=None))
    wait_for(lambda: trader_of(snapshot(solo)).consecutive_failures == 0, message="reset")
    assert clean.is_set()
