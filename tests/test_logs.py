"""Structured log lines carry the actor's name."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Iterator

from coordinator.logs import FailureLog, configure_logging, set_actor_name


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def _configured(fmt: str, stream: io.StringIO) -> Iterator[None]:
    """The root logger configured as the daemon does, then put back as it was."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("info", fmt, stream)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def _log_from_thread(fmt: str, stream: io.StringIO | None = None) -> str:
    stream = stream if stream is not None else io.StringIO()
    with _configured(fmt, stream):

        def work() -> None:
            set_actor_name("service_health#3")
            logging.getLogger("coordinator.test").warning(
                "probe failed: %s", "timeout after 2 s", extra={"dependency": "redis"}
            )

        thread = threading.Thread(target=work, name="service_health#3")
        thread.start()
        thread.join()
    return stream.getvalue()


def test_json_lines():
    record = json.loads(_log_from_thread("json"))
    assert record["actor"] == "service_health#3"
    assert record["level"] == "warning"
    assert record["msg"] == "probe failed: timeout after 2 s"
    assert record["dependency"] == "redis"
    assert record["ts"].endswith("+00:00")


def test_key_value_lines_quote_what_needs_it():
    line = _log_from_thread("kv").strip()
    assert "actor=service_health#3" in line
    assert 'msg="probe failed: timeout after 2 s"' in line
    assert "dependency=redis" in line
    assert "\n" not in line


def test_text_lines_are_for_people():
    line = _log_from_thread("text").rstrip("\n")
    assert "WARNING" in line and "service_health#3" in line
    assert "probe failed: timeout after 2 s" in line and line.endswith("dependency=redis")
    assert not line.startswith("{") and "\n" not in line


def test_auto_is_text_on_a_terminal_and_json_lines_otherwise():
    assert "probe failed" in _log_from_thread("auto", _Terminal())
    assert not _log_from_thread("auto", _Terminal()).startswith("{")
    record = json.loads(_log_from_thread("auto", io.StringIO()))
    assert record["msg"] == "probe failed: timeout after 2 s"


def test_a_traceback_follows_its_text_line():
    stream = io.StringIO()
    with _configured("text", stream):
        try:
            raise ValueError("bad candle")
        except ValueError:
            logging.getLogger("coordinator.test").exception("reading failed")
    first, *rest = stream.getvalue().rstrip("\n").split("\n")
    assert "ERROR" in first and "reading failed" in first
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: bad candle"


def test_a_repeated_failure_is_logged_when_it_starts_or_changes_and_once_when_it_ends(caplog):
    log = logging.getLogger("failure_log_test")
    failure = FailureLog(log, failed="thing not read", recovered="thing read again")
    with caplog.at_level(logging.INFO, logger="failure_log_test"):
        failure.succeeded()
        failure.failed("timeout")
        failure.failed("timeout")
        failure.failed("refused")
        assert failure.error == "refused"
        failure.succeeded()
        failure.succeeded()
    assert failure.error is None
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "thing not read: timeout"),
        (logging.WARNING, "thing not read: refused"),
        (logging.INFO, "thing read again"),
    ]
