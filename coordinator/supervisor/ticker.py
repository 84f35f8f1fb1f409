"""Threads that call a function at a fixed interval until stopped (Ticker), or once
after a delay unless cancelled (Alarm), on the injected clock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from coordinator.clock import Clock, ManualClock, TimerHold

__all__ = ["Alarm", "Ticker"]

logger = logging.getLogger(__name__)


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread.

    Actors get their timer ticks as messages from a Ticker, so their handlers never
    sleep and tests can send the same ticks themselves. Given the actor's clock, the
    intervals are that clock's seconds: a test that advances its clock fires the ticks.
    """

    def __init__(
        self,
        interval: float,
        tick: Callable[[], None],
        *,
        name: str,
        clock: Clock | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._interval = interval
        self._tick = tick
        self._clock = clock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._hold: TimerHold | None = None

    def start(self, *, immediately: bool = False) -> Ticker:
        self._immediately = immediately
        # On a clock that can be waited on (a test's), ticks fall due at fixed points
        # from the start: an advance made before the thread waits still fires them.
        self._due = self._clock.monotonic() if self._clock is not None else 0.0
        if isinstance(self._clock, ManualClock):
            # Held from here, not from the thread's first wait: a test that settles
            # the clock before the thread runs still waits for the first tick.
            first = self._due if immediately else self._due + self._interval
            self._hold = self._clock.hold(first)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    @property
    def running(self) -> bool:
        """Whether its thread still runs (it ends within an interval of ``stop``)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self._immediately:
                self._call()
                self._ticked(self._due + self._interval)
            while not self._wait():
                self._call()
                self._ticked(self._due + self._interval)
        finally:
            self._ticked(None)

    def _ticked(self, next_due: float | None) -> None:
        """On a test's clock: this tick's work done, the next due at ``next_due``."""
        if self._hold is not None and isinstance(self._clock, ManualClock):
            self._clock.move(self._hold, next_due)

    def _wait(self) -> bool:
        """Wait for the next tick; whether the ticker was stopped meanwhile."""
        wait_until = getattr(self._clock, "wait_until", None)
        if wait_until is None:
            return self._stopped.wait(self._interval)
        self._due += self._interval
        stopped: bool = wait_until(self._stopped, self._due)
        return stopped

    def _call(self) -> None:
        try:
            self._tick()
        except Exception:
            # The receiver is gone or restarting; the next tick finds the new one.
            logger.debug("tick not delivered", exc_info=True)


class Alarm:
    """Calls ``ring`` once, ``delay`` seconds after ``start``, unless cancelled first.

    Given a clock that can be waited on (a test's), the delay is that clock's seconds:
    a test that advances its clock past the delay rings the alarm.
    """

    def __init__(
        self,
        delay: float,
        ring: Callable[[], None],
        *,
        name: str,
        clock: Clock | None = None,
    ) -> None:
        self._delay = max(0.0, delay)
        self._ring = ring
        self._clock = clock
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._deadline = 0.0
        self._hold: TimerHold | None = None

    def start(self) -> Alarm:
        self._deadline = (self._clock.monotonic() if self._clock is not None else 0.0) + (
            self._delay
        )
        if isinstance(self._clock, ManualClock):
            self._hold = self._clock.hold(self._deadline)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancelled.set()

    def _run(self) -> None:
        try:
            wait_until = getattr(self._clock, "wait_until", None)
            if wait_until is None:
                cancelled = self._cancelled.wait(self._delay)
            else:
                cancelled = wait_until(self._cancelled, self._deadline)
            if cancelled:
                return
            try:
                self._ring()
            except Exception:
                # The receiver is gone or restarting: it schedules its own alarm again.
                logger.debug("alarm not delivered", exc_info=True)
        finally:
            if self._hold is not None and isinstance(self._clock, ManualClock):
                self._clock.move(self._hold, None)
