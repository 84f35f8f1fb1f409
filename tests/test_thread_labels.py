"""Threads named in /proc after their Python names."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coordinator.supervisor.thread_labels import ThreadLabels

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="thread names through /proc are Linux's"
)


def _os_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_running_thread_gets_its_python_name_cut_to_what_the_kernel_keeps() -> None:
    started, finish = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        finish.wait(10)

    thread = threading.Thread(target=work, name="UniverseManager-12", daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        assert thread.native_id is not None
        labels = ThreadLabels()
        assert labels.label() >= 1
        assert _os_name(thread.native_id) == "UniverseManager"
    finally:
        finish.set()
        thread.join(10)


def test_a_thread_renamed_in_python_is_named_again() -> None:
    started, finish = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        finish.wait(10)

    thread = threading.Thread(target=work, name="first", daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        assert thread.native_id is not None
        labels = ThreadLabels()
        labels.label()
        thread.name = "second"
        assert labels.label() >= 1
        assert _os_name(thread.native_id) == "second"
    finally:
        finish.set()
        thread.join(10)
