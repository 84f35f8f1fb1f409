"""The trading state, over every combination of dependency statuses and kill switch."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.breaker import Breaker, BreakerPolicy
from coordinator.trading.trading_state import (
    Dependency,
    DependencyStatus,
    ExitPolicy,
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
        # Only an unusable Trader holds exits here (these halts leave exits allowed).
        assert status.sells_allowed == trader_usable, (statuses, halt)
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


ALL_UP = dict.fromkeys(Dependency, DependencyStatus.UP)


def test_an_unreadable_kill_switch_refuses_buys_and_allows_exits():
    status = derive_trading_status(ALL_UP, HaltState(active=None))
    assert status.state is TradingState.HALTED
    assert (status.buys_allowed, status.sells_allowed) == (False, True)
    assert "exits allowed" in status.reasons[0].detail


@pytest.mark.parametrize(
    ("exits", "code", "sells"),
    [
        (ExitPolicy.ALLOW, "manual_halt", True),
        (ExitPolicy.BLOCK, "manual_halt_exits_blocked", False),
    ],
)
def test_a_manual_halt_blocks_exits_only_when_the_operator_says_so(exits, code, sells):
    status = derive_trading_status(
        ALL_UP, HaltState(active=True, reason="r", by="ops", exits=exits)
    )
    assert status.state is TradingState.HALTED
    assert status.reasons[0].code == code
    assert (status.buys_allowed, status.sells_allowed) == (False, sells)


@given(
    statuses=st.fixed_dictionaries({d: st.sampled_from(DependencyStatus) for d in Dependency}),
    active=st.sampled_from([None, False, True]),
    exits=st.sampled_from(ExitPolicy),
)
def test_a_held_symbol_is_sellable_unless_exits_are_blocked_or_the_trader_is_out(
    statuses, active, exits
):
    status = derive_trading_status(statuses, HaltState(active=active, exits=exits))
    blocked = active is True and exits is ExitPolicy.BLOCK
    assert status.sells_allowed == (statuses[Dependency.TRADER].usable and not blocked)
    assert not status.buys_allowed or (active is False and status.state is TradingState.ACTIVE)
