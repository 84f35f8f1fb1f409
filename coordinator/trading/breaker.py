"""Circuit breaker as an immutable value: every transition returns a new breaker.

closed    calls go through; consecutive failures are counted (timeouts included)
open      calls are refused until ``open_until``; each re-open doubles the period
half_open one trial call is let through: success closes, failure re-opens
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from coordinator.trading.backoff import Backoff

__all__ = ["Breaker", "BreakerPhase", "BreakerPolicy"]


class BreakerPhase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int
    """Consecutive failures that open a closed breaker."""
    open_seconds: float
    """First open period."""
    open_max_seconds: float
    """The open period doubles on each failed trial, up to this."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if not 0 < self.open_seconds <= self.open_max_seconds:
            raise ValueError(
                f"expected 0 < open_seconds <= open_max_seconds, got "
                f"{self.open_seconds} and {self.open_max_seconds}"
            )

    def open_period(self, reopenings: int) -> float:
        return Backoff(self.open_seconds, self.open_max_seconds).delay(reopenings)


@dataclass(frozen=True, slots=True)
class Breaker:
    policy: BreakerPolicy
    phase: BreakerPhase = BreakerPhase.CLOSED
    failures: int = 0
    """Consecutive failures since the last success."""
    reopenings: int = 0
    """Failed half-open trials in a row; sets the next open period."""
    open_until: float | None = None
    """Monotonic time at which an open breaker lets a trial through."""
    trial_in_flight: bool = False

    def allows_call(self, now: float) -> bool:
        match self.phase:
            case BreakerPhase.CLOSED:
                return True
            case BreakerPhase.OPEN:
                return self.open_until is not None and now >= self.open_until
            case BreakerPhase.HALF_OPEN:
                return not self.trial_in_flight

    def before_call(self, now: float) -> Breaker:
        """The breaker as it is once a call is let through; refused calls raise."""
        if not self.allows_call(now):
            raise RuntimeError(f"breaker is {self.phase} until {self.open_until}")
        if self.phase is BreakerPhase.CLOSED:
            return self
        return replace(self, phase=BreakerPhase.HALF_OPEN, trial_in_flight=True)

    def after_success(self) -> Breaker:
        return replace(
            self,
            phase=BreakerPhase.CLOSED,
            failures=0,
            reopenings=0,
            open_until=None,
            trial_in_flight=False,
        )

    def after_failure(self, now: float) -> Breaker:
        failures = self.failures + 1
        match self.phase:
            case BreakerPhase.CLOSED if failures >= self.policy.failure_threshold:
                return replace(
                    self,
                    phase=BreakerPhase.OPEN,
                    failures=failures,
                    open_until=now + self.policy.open_period(0),
                )
            case BreakerPhase.CLOSED:
                return replace(self, failures=failures)
            case BreakerPhase.HALF_OPEN:
                reopenings = self.reopenings + 1
                return replace(
                    self,
                    phase=BreakerPhase.OPEN,
                    failures=failures,
                    reopenings=reopenings,
                    open_until=now + self.policy.open_period(reopenings),
                    trial_in_flight=False,
                )
            case _:
                # A late answer to a call made before the breaker opened.
                return replace(self, failures=failures)

    def seconds_until_trial(self, now: float) -> float | None:
        if self.phase is not BreakerPhase.OPEN or self.open_until is None:
            return None
        return max(0.0, self.open_until - now)
