"""Time as an injected object, so tests can drive it and never wait for intervals."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "utc_iso"]


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


class ManualClock:
    """A clock that moves only when told to (``advance``), for tests.

    Threads waiting on it (tickers) wake when an advance reaches their deadline, so a
    test sees a timer fire by moving the clock instead of shrinking the interval.
    """

    # A waiter also looks at its stop event this often, in real time: stopping a ticker
    # sets an Event, which cannot notify the clock's condition.
    _STOP_POLL = 0.05

    def __init__(self, *, monotonic: float = 1_000.0, wall: float | None = None) -> None:
        self._condition = threading.Condition()
        self._monotonic = monotonic
        self._offset = (time.time() if wall is None else wall) - monotonic

    def monotonic(self) -> float:
        with self._condition:
            return self._monotonic

    def time(self) -> float:
        with self._condition:
            return self._monotonic + self._offset

    def advance(self, seconds: float) -> None:
        """Move both readings forward and wake every waiter whose deadline is reached."""
        if seconds < 0:
            raise ValueError(f"a clock never goes back: advance({seconds})")
        with self._condition:
            self._monotonic += seconds
            self._condition.notify_all()

    def wait_until(self, stopped: threading.Event, deadline: float) -> bool:
        """Block until the clock reads ``deadline`` or ``stopped`` is set; whether it
        was set."""
        with self._condition:
            while self._monotonic < deadline:
                if stopped.is_set():
                    return True
                self._condition.wait(self._STOP_POLL)
        return stopped.is_set()


def utc_iso(epoch_seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, the form every timestamp of the API takes."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
