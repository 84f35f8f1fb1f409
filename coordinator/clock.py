"""Time as an injected object, so tests can drive it and never wait for intervals."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "TimerHold", "utc_iso"]


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


class TimerHold:
    """A timer's next firing on a ``ManualClock``: due at ``deadline``."""

    __slots__ = ("deadline",)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


class ManualClock:
    """A clock that moves only when told to (``advance``), for tests.

    Threads waiting on it (tickers) wake when an advance reaches their deadline, so a
    test sees a timer fire by moving the clock instead of shrinking the interval. The
    timers hold their next firing on it (``hold``, ``move``), so that a test can wait
    for every one that fell due to have done its work (``settle``): an actor asked
    after that has handled their ticks, and a check that nothing happened means it.
    """

    # A waiter also looks at its stop event this often, in real time: stopping a ticker
    # sets an Event, which cannot notify the clock's condition.
    _STOP_POLL = 0.05

    def __init__(self, *, monotonic: float = 1_000.0, wall: float | None = None) -> None:
        self._condition = threading.Condition()
        self._monotonic = monotonic
        self._offset = (time.time() if wall is None else wall) - monotonic
        self._holds: set[TimerHold] = set()

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

    def hold(self, deadline: float) -> TimerHold:
        """A timer's first firing, due at ``deadline``; ``move`` it once it fired."""
        with self._condition:
            hold = TimerHold(deadline)
            self._holds.add(hold)
            return hold

    def move(self, hold: TimerHold, deadline: float | None) -> None:
        """The work of ``hold``'s firing is done (or it never will be): it is due next
        at ``deadline`` (None: never again)."""
        with self._condition:
            if deadline is None:
                self._holds.discard(hold)
            else:
                hold.deadline = deadline
            self._condition.notify_all()

    def settle(self, timeout: float = 30.0) -> None:
        """Wait, up to ``timeout`` real seconds, until every timer due by now has done
        its work (told its message). TimeoutError past it, naming how many have not."""
        end = time.monotonic() + timeout
        with self._condition:
            while due := sum(1 for h in self._holds if h.deadline <= self._monotonic):
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{due} timer(s) due on the clock still at work")
                self._condition.wait(min(left, self._STOP_POLL))

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
