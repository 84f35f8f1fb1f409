"""waitress's "Task queue depth is N" warnings, summed up in at most one line a minute.

waitress warns each time a request is handed to its workers while none is idle. Under a
steady load of a few more connections than HTTP_THREADS that is most requests: thousands
of lines a second that say one thing, a request waited for a worker a moment. One line
a minute with the count and the deepest queue says it as well and keeps the log
readable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["QUEUE_LOGGER", "QueueDepthSummary", "summarize_queue_warnings"]

QUEUE_LOGGER = "waitress.queue"
"""The logger waitress's task dispatcher warns on."""

SUMMARY_INTERVAL = 60.0


class QueueDepthSummary(logging.Filter):
    """Lets through the first warning, then one per ``interval`` at most, each saying
    how many it stands for and the deepest queue among them; drops the others."""

    def __init__(
        self,
        *,
        threads: int,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.threads = threads
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._count = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        depth = _depth_of(record)
        with self._lock:
            self._count += 1
            self._deepest = max(self._deepest, depth)
            now = self._clock()
            if self._last is not None and now - self._last < self._interval:
                return False
            since = "" if self._last is None else f" in the last {now - self._last:.0f} s"
            count, deepest = self._count, self._deepest
            self._last, self._count, self._deepest = now, 0, 0
        record.msg = (
            "%d requests waited for a free HTTP worker thread%s (deepest queue %d, "
            "HTTP_THREADS=%d); at most one such line a minute"
        )
        record.args = (count, since, deepest, self.threads)
        return True


def _depth_of(record: logging.LogRecord) -> int:
    args = record.args
    if isinstance(args, tuple) and args and isinstance(args[0], int):
        return args[0]
    return 0


_installed: QueueDepthSummary | None = None
_install_lock = threading.Lock()


def summarize_queue_warnings(threads: int) -> QueueDepthSummary:
    """Put the summary on waitress's queue logger, once per process (every server of the
    process shares that logger); the summary names the largest thread count given."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = QueueDepthSummary(threads=threads)
            logging.getLogger(QUEUE_LOGGER).addFilter(_installed)
        else:
            _installed.threads = max(_installed.threads, threads)
        return _installed
