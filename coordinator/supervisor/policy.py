"""Restart policy as plain functions: backoff delays and restart intensity."""

from __future__ import annotations

from collections import deque

from coordinator.supervisor.spec import Restart
from coordinator.trading.backoff import Backoff

__all__ = ["BackoffPolicy", "RestartIntensity", "wants_restart"]


BackoffPolicy = Backoff
"""The restart delays: the project's one exponential backoff."""


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
