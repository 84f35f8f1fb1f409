"""The trading state, derived from the dependencies and the kill switch.

HALTED    no BUY: manual halt, halt state unknown, Trader down or absent. SELLs (signals
          and stop exits) still pass while every cause of the halt leaves exits
          allowed: a halt whose operator did not block exits, or a kill switch that
          cannot be read. A held symbol stays sellable unless an operator blocks exits.
DEGRADED  exits only (SELL goes through, BUY is refused): Portfolio, PostgreSQL or
          Redis down, or a portfolio protection limit reached (daily loss, drawdown).
          HTTP intake keeps working without Redis.
ACTIVE    everything answers
A dependency not probed yet counts as down: the state starts cautious, not optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from coordinator.trading.breaker import Breaker, BreakerPhase

__all__ = [
    "Dependency",
    "DependencyStatus",
    "ExitPolicy",
    "HaltState",
    "StateReason",
    "TradingState",
    "TradingStatus",
    "dependency_status",
    "derive_trading_status",
]


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    HALTED = "HALTED"


class Dependency(StrEnum):
    TRADER = "trader"
    PORTFOLIO = "portfolio"
    REDIS = "redis"
    POSTGRES = "postgres"


class DependencyStatus(StrEnum):
    UP = "up"
    FAILING = "failing"
    """The last probe failed but the breaker is still closed."""
    DOWN = "down"
    """The breaker is open or half-open."""
    NOT_CONFIGURED = "not_configured"
    UNCHECKED = "unchecked"
    """Not probed yet."""

    @property
    def usable(self) -> bool:
        return self in (DependencyStatus.UP, DependencyStatus.FAILING)


class ExitPolicy(StrEnum):
    """What a manual halt does to exits (SELL signals and stop exits)."""

    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class HaltState:
    """The kill switch. ``active`` None means it could not be read from the store."""

    active: bool | None
    reason: str = ""
    by: str = ""
    at: float | None = None
    exits: ExitPolicy = ExitPolicy.ALLOW
    """While halted: whether SELLs still go (the default) or are blocked too."""


@dataclass(frozen=True, slots=True)
class StateReason:
    code: str
    """Machine-readable cause, such as ``trader_down`` or ``manual_halt``."""
    detail: str
    """The same for a person."""


@dataclass(frozen=True, slots=True)
class TradingStatus:
    state: TradingState
    reasons: tuple[StateReason, ...]
    """Every cause of the state, the most severe first; empty when ACTIVE."""
    sells_held: bool = True
    """When HALTED: whether a cause of the halt holds SELLs too (the Trader is down or
    absent, or an operator blocked exits). A HALTED status built without knowing its
    causes holds them."""

    @property
    def buys_allowed(self) -> bool:
        return self.state is TradingState.ACTIVE

    @property
    def sells_allowed(self) -> bool:
        return self.state is not TradingState.HALTED or not self.sells_held


_EFFECT: Mapping[Dependency, TradingState] = {
    Dependency.TRADER: TradingState.HALTED,
    Dependency.PORTFOLIO: TradingState.DEGRADED,
    Dependency.POSTGRES: TradingState.DEGRADED,
    Dependency.REDIS: TradingState.DEGRADED,
}

_CONSEQUENCE: Mapping[Dependency, str] = {
    Dependency.TRADER: "no order can be sent",
    Dependency.PORTFOLIO: "no BUY without balances and positions; exits still allowed",
    Dependency.POSTGRES: "decisions cannot be stored; no BUY, exits still allowed",
    Dependency.REDIS: "Redis intake and market data lost; no BUY, exits and HTTP intake still work",
}

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.DEGRADED: 1, TradingState.HALTED: 2}


def derive_trading_status(
    dependencies: Mapping[Dependency, DependencyStatus],
    halt: HaltState,
    guards: tuple[StateReason, ...] = (),
) -> TradingStatus:
    """``guards``: portfolio protection limits reached (DEGRADED each)."""
    causes: list[tuple[TradingState, StateReason]] = []
    sells_held = False
    if halt.active is None:
        # Unreadable (it recurs whenever ServiceHealth restarts during a PostgreSQL
        # outage): no BUY, but a protective exit must not wait for the database.
        causes.append(
            (
                TradingState.HALTED,
                StateReason(
                    "halt_state_unknown",
                    "the kill switch could not be read from PostgreSQL; no BUY until it can, "
                    "exits allowed",
                ),
            )
        )
    elif halt.active:
        by = f" by {halt.by}" if halt.by else ""
        said = f"halted{by}: {halt.reason or 'no reason given'}"
        if halt.exits is ExitPolicy.BLOCK:
            sells_held = True
            reason = StateReason("manual_halt_exits_blocked", f"{said} (exits blocked too)")
        else:
            reason = StateReason("manual_halt", said)
        causes.append((TradingState.HALTED, reason))
    for dependency in Dependency:
        status = dependencies.get(dependency, DependencyStatus.UNCHECKED)
        if status.usable:
            continue
        code = {
            DependencyStatus.DOWN: "down",
            DependencyStatus.NOT_CONFIGURED: "not_configured",
            DependencyStatus.UNCHECKED: "unchecked",
        }[status]
        what = {
            DependencyStatus.DOWN: "is down",
            DependencyStatus.NOT_CONFIGURED: "is not configured",
            DependencyStatus.UNCHECKED: "has not been checked yet",
        }[status]
        if _EFFECT[dependency] is TradingState.HALTED:
            sells_held = True
        causes.append(
            (
                _EFFECT[dependency],
                StateReason(
                    f"{dependency}_{code}", f"{dependency} {what}: {_CONSEQUENCE[dependency]}"
                ),
            )
        )
    causes.extend((TradingState.DEGRADED, reason) for reason in guards)
    if not causes:
        return TradingStatus(TradingState.ACTIVE, ())
    causes.sort(key=lambda cause: -_SEVERITY[cause[0]])
    return TradingStatus(causes[0][0], tuple(reason for _, reason in causes), sells_held=sells_held)


def dependency_status(breaker: Breaker, last_ok: bool | None) -> DependencyStatus:
    """A dependency is down while its breaker is not closed; failing after one bad probe."""
    if breaker.phase is not BreakerPhase.CLOSED:
        return DependencyStatus.DOWN
    if last_ok is None:
        return DependencyStatus.UNCHECKED
    return DependencyStatus.UP if last_ok else DependencyStatus.FAILING
