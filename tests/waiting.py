"""Waiting in tests: on a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        pause.wait(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message} (last: {last!r})")
