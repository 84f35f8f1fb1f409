"""A thread that calls a function at a fixed interval until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Ticker"]

logger = logging.getLogger(__name__)


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread.

    Actors get their timer ticks as messages from a Ticker, so their handlers never
    sleep and tests can send the same ticks themselves.
    """

    def __init__(self, interval: float, tick: Callable[[], None], *, name: str) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._interval = interval
        self._tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, *, immediately: bool = False) -> Ticker:
        self._immediately = immediately
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
        while not self._stopped.wait(self._interval):
            self._call()

    def _call(self) -> None:
        try:
            self._tick()
        except Exception:
            # The receiver is gone or restarting; the next tick finds the new one.
            logger.debug("tick not delivered", exc_info=True)
