"""Liveness on real actors: a Ping queued behind work the child keeps doing is no sign
of a hang; a child stuck inside one message is replaced."""

from __future__ import annotations

import threading
from dataclasses import replace

from coordinator.clock import ManualClock
from coordinator.messages import LivenessTick
from tests.test_supervisor import FAST, Step, Tree, specs, tree_factory
from tests.waiting import wait_for

__all__ = ["tree_factory"]  # the fixture, shared with test_supervisor.py


def liveness_check(tree: Tree) -> None:
    """One liveness check, handled before this returns (the snapshot is asked after it)."""
    tree.ref.tell(LivenessTick())
    tree.snapshot()


def test_a_busy_child_that_keeps_finishing_messages_is_not_taken_for_hung(tree_factory):
    """Its Ping waits behind a long queue of slow work far past the liveness timeout,
    but messages keep finishing: it is alive, and stays the same incarnation."""
    clock = ManualClock()
    # The checks are the test's own (liveness_check), on the test's clock.
    config = replace(FAST, liveness_interval=1_000.0, liveness_timeout=3.0)
    tree = tree_factory(specs("a"), config, clock)
    tree.wait_running("a", 1)
    gate = threading.Semaphore(0)
    for value in range(30):
        tree.directory.tell("a", Step(gate=gate, value=value))
    liveness_check(tree)  # the Ping, queued behind the 30 steps

    for done in range(1, 21):
        gate.release()
        wait_for(lambda n=done: len(tree.journal.records) == n, message=f"{done} steps")
        clock.advance(1.0)
        liveness_check(tree)

    # 20 s with its Ping unanswered, the limit 3 s: one message finished every second.
    child = tree.child("a")
    assert (child.state, child.incarnation, child.restarts) == ("running", 1, 0)
    for _ in range(10):
        gate.release()
    wait_for(lambda: len(tree.journal.records) == 30, message="every step")
    assert tree.journal.records == [("a", 1, value) for value in range(30)]


def test_a_child_stuck_in_one_message_after_progress_is_replaced(tree_factory):
    """Progress earlier does not cover a message that never finishes: once nothing has
    finished for longer than the limit while a Ping waits, it is hung, and the work
    queued behind reaches the next incarnation."""
    clock = ManualClock()
    config = replace(FAST, liveness_interval=1_000.0, liveness_timeout=3.0)
    tree = tree_factory(specs("a"), config, clock)
    tree.wait_running("a", 1)
    gate = threading.Semaphore(0)
    for value in range(5):
        tree.directory.tell("a", Step(gate=gate, value=value))
    liveness_check(tree)
    gate.release()
    wait_for(lambda: len(tree.journal.records) == 1, message="the first step")
    # The second begun (its start is progress) before the clock moves on.
    wait_for(lambda: len(tree.journal.begun) == 2, message="the second step begun")
    clock.advance(1.0)
    liveness_check(tree)

    # The second step never finishes by itself.
    clock.advance(2.5)
    liveness_check(tree)
    assert tree.child("a").incarnation == 1, "2.5 s without progress is within the limit"
    clock.advance(1.0)
    liveness_check(tree)

    child = wait_for(lambda: (c := tree.child("a")).state in ("backoff", "running") and c)
    assert child.last_failure.error_type == "Hung"
    assert child.last_failure.phase == "liveness"
    clock.advance(1.0)  # the restart's backoff, on the tree's clock
    for _ in range(5):
        gate.release()
    # The stuck step ends in the replaced incarnation once released; the three behind
    # it went to the next one.
    wait_for(
        lambda: [r for r in tree.journal.records if r[1] == 2] == [("a", 2, v) for v in (2, 3, 4)],
        message="the queued steps handled by incarnation 2",
    )
    tree.wait_running("a", 2)
