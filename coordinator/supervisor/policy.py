"""Restart policy as plain functions: backoff delays and restart intensity."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.supervisor.spec import Restart

__all__ = ["BackoffPolicy", "RestartIntensity", "wants_restart"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base: float
    """Delay before the first restart, seconds."""
    maximum: float
    """The delay doubles per consecutive failure up to this."""
    jitter: float
    """Up to this fraction of the delay is taken off at random, so that children
    failing together do not restart in lock-step."""

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before restart number ``attempt`` (0 for the first since a reset)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        exact = min(self.maximum, self.base * 2 ** min(attempt, 62))
        return exact * (1.0 - self.jitter * rand())


class RestartIntensity:
    """At most ``max_restarts`` restarts within any ``window`` seconds."""

    def __init__(self, max_restarts: int, window: float) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count a restart at ``now``; False when that exceeds the intensity."""
        self._times.append(now)
        self._prune(now)
        return len(self._times) <= self.max_restarts

    def count(self, now: float) -> int:
        self._prune(now)
        return len(self._times)

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()


def wants_restart(restart: Restart, *, failed: bool) -> bool:
    """Whether a child that stopped (``failed`` or normally) is started again."""
    match restart:
        case Restart.PERMANENT:
            return True
        case Restart.TRANSIENT:
            return failed
        case Restart.TEMPORARY:
            return False
