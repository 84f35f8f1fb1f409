"""Events published together reach each subscribed child as one message, and are handled
as if each had come alone: in order, a crash on one losing only that one, a replacement
while one hung handing the rest to the next incarnation; commands told together
(``CommandBatch``) the same; on real pykka actors."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import pykka

from coordinator.messages.base import Command, CommandBatch, Event, EventBatch
from coordinator.supervisor import ChildSpec, Directory, Restart
from tests.test_supervisor import FAST, Record, Tree, Worker
from tests.waiting import wait_for


@dataclass(frozen=True, slots=True, kw_only=True)
class Noted(Event):
    value: int
    gate: threading.Event | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Noting(Command):
    value: int
    gate: threading.Event | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Other(Event):
    value: int


class Recorder(pykka.ThreadingActor):
    def __init__(self, received: queue.Queue[Any]) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> None:
        self.received.put(message)


def test_each_child_gets_its_events_in_one_message_and_the_listeners_each() -> None:
    directory = Directory()
    inboxes: dict[str, queue.Queue[Any]] = {}
    refs = []
    for name, subscriptions in [("notes", (Noted,)), ("all", (Noted, Other)), ("none", ())]:
        directory.register(name, subscriptions)
        directory.expect(name, 1)
        inboxes[name] = queue.Queue()
        refs.append(Recorder.start(inboxes[name]))
        assert directory.install(name, refs[-1], 1)
    heard: list[Event] = []
    directory.add_listener(heard.append)
    try:
        events = [Noted(value=1), Other(value=2), Noted(value=3)]
        directory.publish_all(events)
        directory.publish_all([Other(value=4)])
        assert inboxes["notes"].get(timeout=5) == EventBatch(events=(events[0], events[2]))
        assert inboxes["all"].get(timeout=5) == EventBatch(events=tuple(events))
        assert inboxes["all"].get(timeout=5) == Other(value=4)  # alone: as itself
        assert heard == [*events, Other(value=4)]
        for ref in refs:
            ref.stop()
        assert inboxes["notes"].empty() and inboxes["none"].empty()
    finally:
        for ref in refs:
            if ref.is_alive():
                ref.stop()


class Listener(Worker):
    """Records each ``Noted``; the first incarnation crashes on 3, and waits on a gate
    when one comes with it."""

    subscriptions = (Noted,)

    def handle(self, message: Any) -> Any:
        match message:
            case Noted(value=value, gate=gate) | Noting(value=value, gate=gate):
                if gate is not None and self.context.incarnation == 1:
                    assert gate.wait(10), "the test never opened the gate"
                if value == 3 and self.context.incarnation == 1:
                    raise RuntimeError("crash on 3")
                return super().handle(Record(value=value))
        return super().handle(message)


def records(tree: Tree) -> list[tuple[int, Any]]:
    with tree.journal.lock:
        return [(incarnation, value) for _, incarnation, value in tree.journal.records]


def test_a_crash_on_one_event_hands_the_rest_of_its_batch_to_the_next_incarnation() -> None:
    tree = Tree([ChildSpec("a", Listener, Restart.PERMANENT)], FAST)
    try:
        assert tree.outcome.ready.wait(10)
        tree.directory.publish_all([Noted(value=v) for v in range(6)])
        tree.directory.tell("a", Record(value=99))
        wait_for(lambda: len(records(tree)) == 6, message="every event but the crashing one")
        assert records(tree) == [(1, 0), (1, 1), (1, 2), (2, 4), (2, 5), (2, 99)]
        assert tree.child("a").restarts == 1
    finally:
        tree.stop()


def test_a_crash_on_one_command_of_a_batch_hands_the_rest_to_the_next_incarnation() -> None:
    tree = Tree([ChildSpec("a", Listener, Restart.PERMANENT)], FAST)
    try:
        assert tree.outcome.ready.wait(10)
        tree.directory.tell("a", CommandBatch(commands=tuple(Noting(value=v) for v in range(6))))
        tree.directory.tell("a", Record(value=99))
        wait_for(lambda: len(records(tree)) == 6, message="every command but the crashing one")
        assert records(tree) == [(1, 0), (1, 1), (1, 2), (2, 4), (2, 5), (2, 99)]
        assert tree.child("a").restarts == 1
    finally:
        tree.stop()


def test_a_batch_whose_event_hung_goes_on_in_the_incarnation_that_replaced_it() -> None:
    tree = Tree([ChildSpec("a", Listener, Restart.PERMANENT)], FAST)
    gate = threading.Event()
    try:
        assert tree.outcome.ready.wait(10)
        events = [Noted(value=0), Noted(value=1, gate=gate), Noted(value=2), Noted(value=4)]
        tree.directory.publish_all(events)
        tree.directory.tell("a", Record(value=99))
        tree.wait_running("a", 2)  # replaced as hung while it waits on the gate
        wait_for(lambda: len(records(tree)) == 4, message="the rest handled by the new one")
        assert records(tree) == [(1, 0), (2, 2), (2, 4), (2, 99)]
        gate.set()  # the hung event ends in the old incarnation; nothing after it does
        wait_for(lambda: (1, 1) in records(tree), message="the hung event's end")
        assert records(tree) == [(1, 0), (2, 2), (2, 4), (2, 99), (1, 1)]
    finally:
        gate.set()
        tree.stop()


class TurnEnds(Listener):
    """Notes each end of a turn that handled a message of the test's, as "end" (not
    the supervisor's pings)."""

    handled = False

    def handle(self, message: Any) -> Any:
        self.handled = isinstance(message, Noting | Record) or self.handled
        return super().handle(message)

    def after_turn(self) -> None:
        if self.handled:
            self.handled = False
            journal = self.context.services
            journal.add(journal.records, (self.name, self.context.incarnation, "end"))


def test_a_turn_ends_once_per_message_or_batch_and_also_when_it_raised() -> None:
    tree = Tree([ChildSpec("a", TurnEnds, Restart.PERMANENT)], FAST)
    try:
        assert tree.outcome.ready.wait(10)
        tree.directory.tell("a", CommandBatch(commands=(Noting(value=1), Noting(value=2))))
        tree.directory.tell("a", CommandBatch(commands=(Noting(value=3), Noting(value=4))))
        wait_for(lambda: (2, 4) in records(tree), message="the rest after the crash")
        tree.directory.tell("a", Record(value=99))
        wait_for(lambda: (2, 99) in records(tree), message="a message after the batches")
        wait_for(lambda: len(records(tree)) == 8, message="the end of the last turn")
        assert records(tree) == [
            (1, 1),
            (1, 2),
            (1, "end"),
            (1, "end"),  # the turn that raised on 3
            (2, 4),
            (2, "end"),
            (2, 99),
            (2, "end"),
        ]
    finally:
        tree.stop()
