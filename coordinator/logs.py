"""Structured logs: one JSON object (or one key=value line) per record, with the actor."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from typing import Any, TextIO

from coordinator.clock import utc_iso

__all__ = [
    "PER_MESSAGE",
    "FailureLog",
    "configure_logging",
    "log_thread_stacks",
    "message_logger",
    "set_actor_name",
]

_local = threading.local()
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class FailureLog:
    """The last error of something done again and again (a fetch, a write): logged
    when it starts or changes, not each time it repeats, and once when it works again."""

    __slots__ = ("_failed", "_level", "_logger", "_recovered", "error")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        failed: str,
        recovered: str,
        level: int = logging.WARNING,
    ) -> None:
        self._logger = logger
        self._failed = failed
        self._recovered = recovered
        self._level = level
        self.error: str | None = None
        """The last error; None once it worked."""

    def failed(self, error: str | None) -> None:
        if error != self.error:
            self._logger.log(self._level, "%s: %s", self._failed, error)
        self.error = error

    def succeeded(self) -> None:
        if self.error is not None:
            self._logger.info(self._recovered)
        self.error = None


def set_actor_name(name: str | None) -> None:
    """Label every log line of the current thread with ``name``."""
    _local.actor = name


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": utc_iso(record.created),
        "level": record.levelname.lower(),
        "actor": getattr(_local, "actor", None) or "-",
        "thread": record.threadName,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        fields["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if not text or any(c in text for c in ' "=\n\t'):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class TextFormatter(logging.Formatter):
    """Lines for a person at a terminal: local time, level, actor, message, then any
    extra fields as key=value, and a traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        head = (
            f"{when}.{int(record.msecs):03d} {record.levelname:<7} "
            f"{fields.pop('actor'):<18} {fields.pop('msg')}"
        )
        for key in ("ts", "level", "thread", "logger"):
            fields.pop(key)
        trace = fields.pop("exc", None)
        extras = " ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
            for key, value in fields.items()
        )
        line = f"{head}  {extras}" if extras else head
        return f"{line}\n{trace}" if trace else line


def formatter_for(fmt: str, stream: TextIO) -> logging.Formatter:
    """``auto``: text for a person when the stream is a terminal, JSON lines for a
    collector otherwise (a container's log, a file, a pipe)."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        fmt = "text" if isatty is not None and isatty() else "json"
    if fmt == "text":
        return TextFormatter()
    return KeyValueFormatter() if fmt == "kv" else JsonFormatter()


PER_MESSAGE = "coordinator.flow"
"""Parent of the loggers that write a line per message (each signal, each candle or
tick, each request): on only when ``COORDINATOR_LOG_LEVEL`` asks for them."""

_LIBRARIES = ("pykka", "waitress", "redis", "psycopg2", "requests")
"""Libraries whose DEBUG lines only COORDINATOR_LOG_LEVEL=debug turns on."""


def message_logger(name: str) -> logging.Logger:
    """The logger of ``name``'s per-message lines (see ``PER_MESSAGE``)."""
    return logging.getLogger(f"{PER_MESSAGE}.{name}")


def configure_logging(
    level: str,
    fmt: str,
    stream: TextIO | None = None,
    *,
    coordinator_level: str | None = None,
) -> None:
    """``level`` is LOG_LEVEL, which RootTrading's env sets for all of its services
    (DEBUG in its example): it sets this service's level, but never below INFO for the
    per-message loggers and the libraries, so that it cannot flood the log.
    ``coordinator_level`` (COORDINATOR_LOG_LEVEL) wins over it, for everything."""
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter_for(fmt, target))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    effective = logging.getLevelName((coordinator_level or level).upper())
    root.setLevel(effective)
    floor = effective if coordinator_level is not None else max(effective, logging.INFO)
    for name in (PER_MESSAGE, *_LIBRARIES):
        logging.getLogger(name).setLevel(floor)
    # Third-party chatter below WARNING is noise in a service log.
    for noisy in ("urllib3", "waitress.queue"):
        logging.getLogger(noisy).setLevel(max(floor, logging.WARNING))


def log_thread_stacks(logger: logging.Logger) -> None:
    """Log the stack of every thread, one record each (SIGUSR1)."""
    frames = sys._current_frames()
    threads = threading.enumerate()
    logger.warning("thread dump: %d threads", len(threads))
    for thread in threads:
        frame = frames.get(thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
        logger.warning(
            "thread %s",
            thread.name,
            extra={"dump_thread": thread.name, "daemon": thread.daemon, "stack": stack},
        )
