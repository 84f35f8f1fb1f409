"""The supervisor, on real pykka actors."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from coordinator.clock import Clock, ManualClock, SystemClock
from coordinator.config import SupervisorConfig, load_config
from coordinator.messages import (
    DrillCrash,
    DrillHang,
    GetSupervisorSnapshot,
    StopTree,
)
from coordinator.messages.base import Command, Query
from coordinator.supervisor import (
    NOT_HANDLED,
    ChildActor,
    ChildSpec,
    ChildUnavailable,
    Directory,
    DrillBoard,
    EscapedBaseException,
    Restart,
    Supervisor,
    TreeOutcome,
)
from tests.waiting import wait_for

FAST = replace(
    load_config({}).supervisor,
    start_timeout=3.0,
    stop_timeout=2.0,
    liveness_interval=0.05,
    liveness_timeout=1.0,
    backoff_base=0.02,
    backoff_max=0.2,
    backoff_jitter=0.0,
    backoff_reset=60.0,
    max_restarts=50,
    restart_window=60.0,
    max_start_failures=5,
)


# --- test actors ----------------------------------------------------------------------


@dataclass
class Journal:
    """What the test actors did, shared with the test (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[tuple[str, int, Any]] = field(default_factory=list)
    begun: list[tuple[str, int, Any]] = field(default_factory=list)
    """Steps begun (their ``records`` entry is written when they end)."""
    starts: list[tuple[str, int, float]] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)

    def add(self, kind: list, item: Any) -> None:
        with self.lock:
            kind.append(item)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record(Command):
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Boom(Command):
    gate: threading.Event | None = None
    error: type[BaseException] = RuntimeError


@dataclass(frozen=True, slots=True, kw_only=True)
class Step(Command):
    """Slow work: finishes once the test releases ``gate`` (each release lets one
    step finish), then records its value."""

    gate: threading.Semaphore
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish(Command):
    """The child stops itself, normally."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetIncarnation(Query):
    pass


class Worker(ChildActor):
    def setup(self) -> None:
        journal: Journal = self.context.services
        journal.add(
            journal.starts, (self.name, self.context.incarnation, SystemClock().monotonic())
        )

    def handle(self, message: Any) -> Any:
        journal: Journal = self.context.services
        match message:
            case Record(value=value):
                journal.add(journal.records, (self.name, self.context.incarnation, value))
                return value
            case Boom(gate=gate, error=error):
                if gate is not None:
                    gate.wait(5)
                raise error("boom")
            case Step(gate=gate, value=value):
                journal.add(journal.begun, (self.name, self.context.incarnation, value))
                assert gate.acquire(timeout=10), "the test never released this step"
                journal.add(journal.records, (self.name, self.context.incarnation, value))
                return None
            case Finish():
                self.stop()
                return None
            case GetIncarnation():
                return self.context.incarnation
        return NOT_HANDLED

    def cleanup(self) -> None:
        journal: Journal = self.context.services
        journal.add(journal.stops, self.name)


class Tree:
    def __init__(
        self, specs: list[ChildSpec], config: SupervisorConfig = FAST, clock: Clock | None = None
    ) -> None:
        self.journal = Journal()
        self.directory = Directory()
        self.outcome = TreeOutcome()
        self.drills = DrillBoard()
        self.ref = Supervisor.start(
            specs,
            config,
            directory=self.directory,
            clock=clock or SystemClock(),
            outcome=self.outcome,
            drills=self.drills,
            services=self.journal,
        )

    def snapshot(self) -> Any:
        return self.ref.ask(GetSupervisorSnapshot(), timeout=5)

    def child(self, name: str) -> Any:
        return next(c for c in self.snapshot().children if c.name == name)

    def wait_running(self, name: str, incarnation: int) -> Any:
        return wait_for(
            lambda: (
                (c := self.child(name)).state == "running" and c.incarnation == incarnation and c
            ),
            message=f"{name} running as incarnation {incarnation}",
        )

    def stop(self) -> None:
        if self.ref.is_alive():
            self.ref.ask(StopTree(reason="test over"), timeout=10)
            self.ref.stop(timeout=10)


@pytest.fixture
def tree_factory() -> Iterator[Any]:
    trees: list[Tree] = []

    def make(
        specs: list[ChildSpec], config: SupervisorConfig = FAST, clock: Clock | None = None
    ) -> Tree:
        tree = Tree(specs, config, clock)
        trees.append(tree)
        assert tree.outcome.ready.wait(10) or tree.outcome.finished.is_set()
        return tree

    yield make
    for tree in trees:
        tree.stop()


def specs(*names: str, restart: Restart = Restart.PERMANENT) -> list[ChildSpec]:
    return [ChildSpec(name, Worker, restart) for name in names]


# --- tests ----------------------------------------------------------------------------


def test_children_start_in_order_and_stop_in_reverse(tree_factory):
    tree = tree_factory(specs("a", "b", "c"))
    assert [name for name, _, _ in tree.journal.starts] == ["a", "b", "c"]
    tree.stop()
    assert tree.journal.stops == ["c", "b", "a"]


def test_crash_in_tell_is_replaced_and_counted(tree_factory):
    tree = tree_factory(specs("a", "b"))
    old_ref = tree.directory.ref("a")

    tree.directory.tell("a", Boom())

    child = tree.wait_running("a", 2)
    assert child.restarts == 1
    assert child.errors == 1
    assert child.last_failure.error_type == "RuntimeError"
    assert child.last_failure.phase == "message"
    new_ref = tree.directory.ref("a")
    assert new_ref is not old_ref
    assert not old_ref.is_alive()
    assert tree.directory.ask("a", GetIncarnation(), timeout=2) == 2
    assert tree.child("b").incarnation == 1


def test_crash_in_ask_leaves_it_alive_and_counts_an_error(tree_factory):
    tree = tree_factory(specs("a"))
    ref = tree.directory.ref("a")

    with pytest.raises(RuntimeError, match="boom"):
        tree.directory.ask("a", Boom(), timeout=2)

    child = wait_for(lambda: (c := tree.child("a")).errors == 1 and c)
    assert child.restarts == 0
    assert child.incarnation == 1
    assert ref.is_alive()
    assert tree.directory.ask("a", Record(value=7), timeout=2) == 7


def test_messages_behind_a_crash_reach_the_next_incarnation(tree_factory):
    tree = tree_factory(specs("a"))
    gate = threading.Event()
    tree.directory.tell("a", Boom(gate=gate))
    for value in range(5):
        tree.directory.tell("a", Record(value=value))
    gate.set()

    tree.wait_running("a", 2)
    wait_for(lambda: len(tree.journal.records) == 5, message="five records")
    assert tree.journal.records == [("a", 2, value) for value in range(5)]


def test_messages_told_while_down_are_delivered_after_restart(tree_factory):
    # The backoff on the test's clock: the child stays down while the test looks.
    clock = ManualClock()
    config = replace(FAST, backoff_base=0.3, backoff_max=0.3, liveness_interval=1_000.0)
    tree = tree_factory(specs("a"), config, clock)
    tree.wait_running("a", 1)
    tree.directory.tell("a", Boom())
    wait_for(lambda: tree.child("a").state == "backoff", message="a in backoff")

    with pytest.raises(ChildUnavailable):
        tree.directory.ask("a", GetIncarnation(), timeout=1)
    tree.directory.tell("a", Record(value="kept"))
    assert tree.child("a").mailbox_depth == 1

    clock.advance(0.5)
    tree.wait_running("a", 2)
    wait_for(lambda: tree.journal.records == [("a", 2, "kept")], message="the kept record")


def test_failing_start_is_retried_with_growing_backoff_then_escalates(tree_factory):
    tree = tree_factory(specs("a", "b"))
    tree.drills.arm_start_failure("b", count=100)

    tree.directory.tell("b", DrillCrash())

    assert tree.outcome.finished.wait(15), "the tree should escalate"
    assert "b failed to start 6 times in a row" in tree.outcome.failure
    snapshot = tree.snapshot()
    assert snapshot.state == "failed"
    assert {c.name: c.state for c in snapshot.children} == {"a": "stopped", "b": "stopped"}
    assert {c.name: c.incarnation for c in snapshot.children} == {"a": 1, "b": 7}
    # The tree was stopped cleanly: the healthy child ran its cleanup.
    assert tree.journal.stops[-1] == "a"


def test_backoff_delays_grow_between_start_attempts(tree_factory):
    tree = tree_factory(specs("a"))
    times: list[float] = []
    tree.drills.arm_start_failure("a", count=3)
    original = tree.drills.take_start_failure

    def recording(name: str) -> bool:
        times.append(SystemClock().monotonic())
        return original(name)

    tree.drills.take_start_failure = recording  # type: ignore[method-assign]
    tree.directory.tell("a", DrillCrash())

    tree.wait_running("a", 5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # With no jitter the delays are exactly 0.02, 0.04, 0.08 s after each failure;
    # a Timer never fires early, so each gap is at least its delay.
    assert len(gaps) == 3
    for gap, delay in zip(gaps, (0.04, 0.08, 0.16), strict=True):
        assert gap >= delay
    assert tree.child("a").restarts == 4


def test_a_restart_falls_due_when_the_trees_clock_passes_its_backoff(tree_factory):
    """The backoff is the tree's clock's: a test clock restarts the child when advanced
    past the delay (30 s here), not after 30 s of real time."""
    clock = ManualClock()
    # Liveness pings fall due on the same clock: far enough not to run meanwhile.
    config = replace(FAST, backoff_base=30.0, backoff_max=30.0, liveness_interval=1_000.0)
    tree = tree_factory(specs("a"), config, clock)
    tree.wait_running("a", 1)
    tree.directory.tell("a", DrillCrash())
    assert wait_for(
        lambda: (c := tree.child("a")).state == "backoff" and c
    ).restart_in == pytest.approx(30.0)
    clock.advance(29.0)
    assert tree.child("a").state == "backoff"
    clock.advance(1.5)
    tree.wait_running("a", 2)


def test_restart_intensity_exceeded_stops_the_tree(tree_factory):
    config = replace(FAST, max_restarts=3, restart_window=60.0)
    tree = tree_factory(specs("a", "b"), config)
    for incarnation in range(1, 5):
        tree.wait_running("a", incarnation)
        tree.directory.tell("a", DrillCrash())

    assert tree.outcome.finished.wait(10)
    assert "restart intensity exceeded" in tree.outcome.failure
    assert tree.snapshot().state == "failed"
    assert tree.journal.stops[-1] == "b"


def test_hung_child_is_detected_and_replaced_without_losing_messages(tree_factory):
    tree = tree_factory(specs("a", "b"))
    tree.directory.tell("a", DrillHang(seconds=30))
    tree.directory.tell("a", Record(value="after the hang"))

    child = tree.wait_running("a", 2)
    assert child.last_failure.error_type == "Hung"
    assert child.last_failure.phase == "liveness"
    wait_for(
        lambda: ("a", 2, "after the hang") in tree.journal.records,
        message="the message queued behind the hang",
    )
    assert tree.child("b").incarnation == 1


def test_rest_for_one_restarts_the_failed_child_and_later_ones(tree_factory):
    config = replace(FAST, strategy="rest_for_one")
    tree = tree_factory(specs("a", "b", "c"), config)

    tree.directory.tell("b", DrillCrash())

    tree.wait_running("c", 2)
    children = {c.name: c for c in tree.snapshot().children}
    assert children["a"].incarnation == 1
    assert children["b"].incarnation == 2
    assert children["c"].incarnation == 2
    restarted = [name for name, incarnation, _ in tree.journal.starts if incarnation == 2]
    assert restarted == ["b", "c"]


def test_one_for_one_restarts_only_the_failed_child(tree_factory):
    tree = tree_factory(specs("a", "b", "c"))
    tree.directory.tell("b", DrillCrash())
    tree.wait_running("b", 2)
    assert {c.name: c.incarnation for c in tree.snapshot().children} == {"a": 1, "b": 2, "c": 1}


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_base_exception_in_a_child_takes_down_only_that_child(tree_factory, error):
    tree = tree_factory(specs("a", "b"))
    other = tree.directory.ref("b")

    tree.directory.tell("a", Boom(error=error))

    child = tree.wait_running("a", 2)
    assert child.last_failure.error_type == error.__name__
    assert other.is_alive()
    assert tree.ref.is_alive()
    with pytest.raises(EscapedBaseException):
        tree.directory.ask("b", Boom(error=error), timeout=2)
    assert other.is_alive()


@pytest.mark.parametrize(
    ("restart", "restarted"),
    [(Restart.PERMANENT, True), (Restart.TRANSIENT, False), (Restart.TEMPORARY, False)],
)
def test_normal_stop_restarts_only_permanent_children(tree_factory, restart, restarted):
    tree = tree_factory(specs("a", restart=restart))
    tree.directory.tell("a", Finish())
    if restarted:
        tree.wait_running("a", 2)
    else:
        wait_for(lambda: tree.child("a").state == "stopped", message="a stopped for good")
        assert tree.child("a").incarnation == 1


@pytest.mark.parametrize(
    ("restart", "state"),
    [(Restart.TRANSIENT, "running"), (Restart.TEMPORARY, "failed")],
)
def test_failure_restarts_transient_but_not_temporary(tree_factory, restart, state):
    tree = tree_factory(specs("a", restart=restart))
    tree.directory.tell("a", DrillCrash())
    wait_for(
        lambda: (c := tree.child("a")).state == state and c.restarts == (state == "running"),
        message=f"a {state}",
    )


def test_unknown_message_is_an_error_not_a_crash(tree_factory):
    tree = tree_factory(specs("a"))
    tree.directory.tell("a", object())
    tree.directory.tell("a", Record(value=1))
    wait_for(lambda: tree.journal.records == [("a", 1, 1)])
    child = tree.child("a")
    assert child.errors == 1
    assert child.incarnation == 1


def test_stop_of_a_child_that_does_not_stop_is_bounded(tree_factory):
    config = replace(FAST, stop_timeout=0.3, liveness_timeout=30.0)
    tree = tree_factory(specs("a", "b"), config)
    tree.directory.tell("b", DrillHang(seconds=30))
    wait_for(lambda: tree.directory.depth("b") == 0)

    state = tree.ref.ask(StopTree(reason="test"), timeout=5)

    assert state == "stopped"
    assert "a" in tree.journal.stops
    assert tree.outcome.finished.is_set()
    assert tree.outcome.failure is None


def test_unknown_name_is_refused_with_its_name():
    with pytest.raises(ChildUnavailable, match="nobody: no such actor"):
        Directory().tell("nobody", Record(value=1))


def test_backoff_grows_with_quick_failures_and_resets_after_a_quiet_period(tree_factory):
    # On the test's clock: how long the child ran is what the test says, not how fast
    # the machine happened to be.
    clock = ManualClock()
    config = replace(
        FAST, backoff_base=0.5, backoff_max=10.0, backoff_reset=1.0, liveness_interval=1_000.0
    )
    tree = tree_factory(specs("a"), config, clock)

    def crash_and_read_delay(incarnation: int) -> float:
        tree.wait_running("a", incarnation)
        tree.directory.tell("a", DrillCrash())
        child = wait_for(lambda: (c := tree.child("a")).state == "backoff" and c)
        clock.advance(child.restart_in + 0.01)
        return child.restart_in

    first = crash_and_read_delay(1)
    second = crash_and_read_delay(2)  # crashed at once after starting again
    child = tree.wait_running("a", 3)
    clock.advance(1.0)
    assert tree.child("a").uptime >= 1.0, "a quiet second"
    third = crash_and_read_delay(3)

    assert first <= 0.5
    assert second > 0.5, "a quick second failure waits twice as long (1.0 s)"
    assert third <= 0.5, "after a quiet period the backoff starts over"
    assert child.restarts == 2
