"""Time as an injected object, so tests can drive it and never wait for intervals."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "utc_iso"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: durations and deadlines."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch: timestamps shown to people."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


def utc_iso(epoch_seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, the form every timestamp of the API takes."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
