"""A reader thread on Redis that reconnects with backoff and reports its connection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

import redis

from coordinator.logs import set_actor_name
from coordinator.trading.backoff import Backoff

__all__ = ["RECONNECT", "RedisReader"]

logger = logging.getLogger(__name__)

RECONNECT = Backoff(0.1, 5.0)
"""Waits between attempts to reach Redis again after the connection dropped."""


class RedisReader:
    """Runs ``_session`` on a daemon thread until stopped; when a session fails, runs
    it again after a backoff that grows until a session connects. Subclasses connect,
    call ``_up`` once connected, then read until ``_stopped`` is set."""

    what = "reader"
    """What it reads, in logs."""

    def __init__(
        self,
        *,
        name: str,
        actor: str | None,
        on_connection: Callable[[bool, str | None], None] | None,
        backoff: Backoff = RECONNECT,
    ) -> None:
        self._on_connection = on_connection or (lambda _up, _error: None)
        self._backoff = backoff
        self._actor = actor
        self._failures = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.connected = False

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Tell the thread to stop, waking a read that waits: several readers told
        first and joined after stop in the time of the slowest, not of their sum."""
        self._stopped.set()
        self._interrupt()

    def join(self, timeout: float = 2.0) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _interrupt(self) -> None:
        """Wakes a read waiting in ``_session`` (nothing by default: the read's own
        timeout bounds the stop)."""

    def _session(self) -> None:
        raise NotImplementedError

    def _connected_log(self) -> None:
        """Logs that a session connected (nothing by default)."""

    def _up(self) -> None:
        self._set_connected(True, None)
        self._failures = 0

    def _run(self) -> None:
        set_actor_name(self._actor)
        while not self._stopped.is_set():
            try:
                self._session()
            except (redis.RedisError, OSError) as exc:
                self._set_connected(False, f"{type(exc).__name__}: {exc}")
            except Exception:
                logger.exception("%s failed; reconnecting", self.what)
                self._set_connected(False, "reader error")
            if self._stopped.wait(self._backoff.delay(self._failures)):
                break
            self._failures += 1

    def _set_connected(self, up: bool, error: str | None) -> None:
        if up == self.connected:
            return
        self.connected = up
        if up:
            self._connected_log()
        else:
            logger.warning("%s lost (%s); reconnecting with backoff", self.what, error)
        try:
            self._on_connection(up, error)
        except Exception:
            logger.exception("connection callback failed")
