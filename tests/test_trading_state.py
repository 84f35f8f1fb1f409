"""The trading state, over every combination of dependency statuses and kill switch."""

from __future__ import annotations

import itertools

import pytest

from coordinator.trading.breaker import Breaker, BreakerPolicy
from coordinator.trading.trading_state import (
    Dependency,
    DependencyStatus,
    HaltState,
    TradingState,
    dependency_status,
    derive_trading_status,
)

HALTS = [
    HaltState(active=False),
    HaltState(active=True, reason="r", by="ops"),
    HaltState(active=None),
]
COMBINATIONS = list(itertools.product(DependencyStatus, repeat=len(Dependency)))


@pytest.mark.parametrize("halt", HALTS, ids=["clear", "halted", "unknown"])
def test_every_combination(halt):
    for combination in COMBINATIONS:
        statuses = dict(zip(Dependency, combination, strict=True))
        status = derive_trading_status(statuses, halt)
        unusable = [d for d, s in statuses.items() if not s.usable]
        trader_usable = statuses[Dependency.TRADER].usable
        if halt.active is not False or not trader_usable:
            expected = TradingState.HALTED
        elif unusable:
            expected = TradingState.DEGRADED
        else:
            expected = TradingState.ACTIVE
        assert status.state is expected, (statuses, halt)
        assert len(status.reasons) == len(unusable) + (halt.active is not False)
        assert status.buys_allowed == (expected is TradingState.ACTIVE)
        assert status.sells_allowed == (expected is not TradingState.HALTED)
        for dependency in unusable:
            assert any(r.code.startswith(dependency.value + "_") for r in status.reasons)


def test_reasons_name_the_cause():
    status = derive_trading_status(
        {
            Dependency.TRADER: DependencyStatus.UP,
            Dependency.PORTFOLIO: DependencyStatus.UP,
            Dependency.REDIS: DependencyStatus.DOWN,
            Dependency.POSTGRES: DependencyStatus.FAILING,
        },
        HaltState(active=False),
    )
    assert status.state is TradingState.DEGRADED
    assert [r.code for r in status.reasons] == ["redis_down"]
    assert "HTTP intake still work" in status.reasons[0].detail


def test_manual_halt_comes_first_and_says_who():
    status = derive_trading_status(
        dict.fromkeys(Dependency, DependencyStatus.DOWN),
        HaltState(active=True, reason="maintenance", by="alice"),
    )
    assert status.reasons[0].code == "manual_halt"
    assert status.reasons[0].detail == "halted by alice: maintenance"


def test_not_probed_yet_is_cautious():
    assert derive_trading_status({}, HaltState(active=False)).state is TradingState.HALTED


def test_dependency_status_follows_the_breaker():
    breaker = Breaker(BreakerPolicy(2, 1, 1))
    assert dependency_status(breaker, None) is DependencyStatus.UNCHECKED
    assert dependency_status(breaker, True) is DependencyStatus.UP
    once = breaker.after_failure(0)
    assert dependency_status(once, False) is DependencyStatus.FAILING
    assert dependency_status(once.after_failure(0), False) is DependencyStatus.DOWN
