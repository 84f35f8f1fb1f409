"""Threads named in /proc after their Python names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from coordinator.supervisor.thread_labels import ThreadLabels

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="thread names through /proc are Linux's"
)


def _os_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


@contextmanager
def _running_thread(name: str) -> Iterator[int]:
    """A thread named ``name`` that runs until the block ends; its native id."""
    started, finish = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        finish.wait(10)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        assert thread.native_id is not None
        yield thread.native_id
    finally:
        finish.set()
        thread.join(10)


def test_a_running_thread_gets_its_python_name_cut_to_what_the_kernel_keeps() -> None:
    with _running_thread("UniverseManager-12") as native_id:
        labels = ThreadLabels()
        assert labels.label() >= 1
        assert _os_name(native_id) == "UniverseManager"


def test_a_thread_renamed_in_python_is_named_again() -> None:
    with _running_thread("first") as native_id:
        labels = ThreadLabels()
        labels.label()
        thread = next(t for t in threading.enumerate() if t.native_id == native_id)
        thread.name = "second"
        assert labels.label() >= 1
        assert _os_name(native_id) == "second"


def test_the_actors_threads_are_named_once_the_tree_runs_not_at_the_first_tick() -> None:
    from dataclasses import replace

    from coordinator.supervisor import ChildSpec, Restart
    from tests.test_supervisor import FAST, Tree, Worker

    tree = Tree(
        [ChildSpec("labelled-worker", Worker, Restart.PERMANENT)],
        replace(FAST, liveness_interval=600.0),
    )
    try:
        assert tree.outcome.ready.wait(10)
        thread = next(t for t in threading.enumerate() if t.name.startswith("labelled-worker"))
        assert thread.native_id is not None
        assert _os_name(thread.native_id) == thread.name[:15]
    finally:
        tree.stop()
