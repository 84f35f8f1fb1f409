"""A thread that calls a function at a fixed interval until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from coordinator.clock import Clock

__all__ = ["Ticker"]

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

    def start(self, *, immediately: bool = False) -> Ticker:
        self._immediately = immediately
        # On a clock that can be waited on (a test's), ticks fall due at fixed points
        # from the start: an advance made before the thread waits still fires them.
        self._due = self._clock.monotonic() if self._clock is not None else 0.0
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    @property
    def running(self) -> bool:
        """Whether its thread still runs (it ends within an interval of ``stop``)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        if self._immediately:
            self._call()
        while not self._wait():
            self._call()

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
