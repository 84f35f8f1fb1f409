"""ServiceHealth: probes, breakers, the trading state and the kill switch."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.messages.base import Command, Event, Query
from coordinator.trading.breaker import BreakerPhase
from coordinator.trading.trading_state import (
    Dependency,
    DependencyStatus,
    ExitPolicy,
    StateReason,
    TradingStatus,
)

__all__ = [
    "DependencyChanged",
    "DependencySnapshot",
    "GetHealthSnapshot",
    "HaltStateLoaded",
    "HaltStatePersisted",
    "HaltTrading",
    "HealthSnapshot",
    "HealthTick",
    "PortfolioGuardsChanged",
    "ProbeCompleted",
    "ResumeTrading",
    "TradingStateChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthTick(Command):
    """Time to probe every dependency whose breaker lets a call through."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeCompleted(Event):
    """A probe thread finished; sent by ServiceHealth's worker to ServiceHealth."""

    dependency: Dependency
    """Which dependency was probed."""
    sequence: int
    """Number of the probe; a late answer to an abandoned probe is ignored."""
    ok: bool
    """Whether the dependency answered correctly in time."""
    latency: float
    """Seconds the probe took."""
    error: str | None
    """What went wrong, when not ok."""
    at: float
    """Wall-clock time the probe ended, epoch seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltTrading(Command):
    """The kill switch: no new orders until ``ResumeTrading``. Answered with a snapshot."""

    reason: str
    """Why, as the operator said it."""
    by: str
    """Who asked (the API client's description)."""
    exits: ExitPolicy = ExitPolicy.ALLOW
    """Whether SELLs (signals and stop exits) still go while halted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeTrading(Command):
    """Clears the kill switch. Answered with a snapshot."""

    by: str
    """Who asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetHealthSnapshot(Query):
    """Ask ServiceHealth for a ``HealthSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencySnapshot:
    dependency: Dependency
    """Which dependency."""
    status: DependencyStatus
    """up, failing, down, not_configured or unchecked."""
    target: str | None
    """Where it is reached (URL with secrets hidden); None when not configured."""
    breaker: BreakerPhase
    """closed, open or half_open."""
    consecutive_failures: int
    """Failed probes in a row."""
    retry_in: float | None
    """Seconds until the open breaker lets a trial probe through."""
    last_probe_at: float | None
    """Wall-clock time of the last finished probe."""
    last_latency: float | None
    """Seconds the last probe took."""
    last_error: str | None
    """Error of the last failed probe, kept after a success for diagnosis."""
    last_error_at: float | None
    """When that error happened."""
    probe_in_flight: bool
    """A probe is running now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSnapshot:
    trading: TradingStatus
    """The trading state and every reason for it."""
    trading_since: float
    """Wall-clock time the trading state last changed."""
    dependencies: tuple[DependencySnapshot, ...]
    """One per dependency."""
    halted: bool | None
    """Kill switch: True halted, False clear, None unknown (store unreachable)."""
    halt_reason: str
    """What the operator said when halting."""
    halt_persisted: bool
    """Whether the current kill-switch position is stored in PostgreSQL."""
    halt_exits: ExitPolicy = ExitPolicy.ALLOW
    """While halted: whether exits are allowed or blocked."""
    intake_links: tuple[tuple[str, bool, str | None], ...] = ()
    """(reader, connected, last error) of the intake's Redis readers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencyChanged(Event):
    """A dependency's status changed (up, failing, down...)."""

    dependency: Dependency
    """Which dependency."""
    status: DependencyStatus
    """Its new status."""
    previous: DependencyStatus
    """Its status before."""
    breaker: BreakerPhase
    """Its breaker now."""
    error: str | None
    """The error that caused the change, if any."""
    at: float
    """Wall-clock time of the change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Event):
    """The trading state or its reasons changed; Validators act on it."""

    status: TradingStatus
    """The new state with its reasons."""
    previous: TradingStatus
    """The state before."""
    at: float
    """Wall-clock time of the change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltStateLoaded(Event):
    """The kill switch as read from PostgreSQL by a ServiceHealth worker."""

    generation: int
    """Operator actions seen when the read started; a stale read is ignored."""
    halted: bool | None
    """True halted, False clear, None when it could not be read."""
    reason: str
    """The operator's reason for the stored halt."""
    by: str
    """Who set the stored state."""
    at: float | None
    """When it was set, epoch seconds."""
    error: str | None
    """Why it could not be read."""
    exits: ExitPolicy = ExitPolicy.ALLOW
    """The stored halt's exit policy."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltStatePersisted(Event):
    """A ServiceHealth worker stored (or failed to store) a kill-switch change."""

    generation: int
    """The operator action that was stored."""
    error: str | None
    """Why it could not be stored; retried on the next tick."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioGuardsChanged(Event):
    """Ledger to ServiceHealth: the portfolio protection limits reached now."""

    reasons: tuple[StateReason, ...]
    """``daily_loss_limit`` / ``drawdown_guard`` reasons; empty when none holds."""
