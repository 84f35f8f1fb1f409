"""The actors' lighter inbox and answer futures keep pykka's contract: on real actors,
an answer or an error reaches every reader once set, a wait ends at its timeout, a
future is set once, pykka's combinators work, and an actor stopping answers what
waited in its inbox with ActorDeadError."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka
import pytest
from pykka._envelope import Envelope

from coordinator.messages.base import CommandBatch
from coordinator.supervisor.mailbox import DeferringInbox, LatchFuture, LeanMailbox


class Answering(LeanMailbox, pykka.ThreadingActor):
    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        if message == "wait":
            assert self.gate is not None
            self.gate.wait(10)
            return "waited"
        if message == "fail":
            raise ValueError("refused: fail")
        return message * 2


@pytest.fixture
def actor() -> Any:
    ref = Answering.start()
    yield ref
    ref.stop()


def test_an_ask_is_answered_on_a_latch_future_through_a_simple_queue(actor: Any) -> None:
    future = actor.ask(21, block=False)
    assert isinstance(future, LatchFuture)
    assert isinstance(actor.actor_inbox, queue.SimpleQueue)
    assert future.get(timeout=5) == 42
    assert future.get(timeout=0) == 42  # read again, at once
    assert [actor.ask(n, timeout=5) for n in range(100)] == [2 * n for n in range(100)]


def test_an_error_of_the_actor_is_raised_to_each_reader_with_its_traceback(actor: Any) -> None:
    future = actor.ask("fail", block=False)
    for _ in range(2):
        with pytest.raises(ValueError, match="refused: fail") as raised:
            future.get(timeout=5)
        assert any(entry.name == "on_receive" for entry in raised.traceback)
    assert actor.ask(1, timeout=5) == 2  # the actor lives on


def test_a_wait_ends_at_its_timeout_and_the_answer_still_comes() -> None:
    gate = threading.Event()
    ref = Answering.start(gate)
    try:
        future = ref.ask("wait", block=False)
        with pytest.raises(pykka.Timeout):
            future.get(timeout=0.05)
        with pytest.raises(pykka.Timeout):
            future.get(timeout=0)
        gate.set()
        assert future.get(timeout=5) == "waited"
    finally:
        ref.stop()


def test_every_reader_waiting_on_one_future_gets_its_value() -> None:
    future: LatchFuture[int] = LatchFuture()
    started = threading.Barrier(9)

    def read() -> int:
        started.wait(5)
        return future.get(timeout=5)

    with ThreadPoolExecutor(8) as pool:
        reads = [pool.submit(read) for _ in range(8)]
        started.wait(5)
        future.set(7)
        assert [r.result(timeout=5) for r in reads] == [7] * 8


def test_a_future_is_set_once() -> None:
    future: LatchFuture[int] = LatchFuture()
    future.set(1)
    with pytest.raises(queue.Full):
        future.set(2)
    with pytest.raises(queue.Full):
        future.set_exception((ValueError, ValueError("late"), None))
    with pytest.raises(queue.Full):
        future.set_get_hook(lambda timeout: 3)
    assert future.get(timeout=0) == 1

    hooked: LatchFuture[int] = LatchFuture()
    hooked.set_get_hook(lambda timeout: 5)
    with pytest.raises(queue.Full):
        hooked.set(6)
    assert hooked.get(timeout=0) == 5


def test_an_exception_set_without_a_value_is_made_when_read() -> None:
    future: LatchFuture[int] = LatchFuture()
    future.set_exception((KeyError, None, None))
    with pytest.raises(KeyError):
        future.get(timeout=0)


def test_pykkas_combinators_work_on_the_answers(actor: Any) -> None:
    first = actor.ask(1, block=False)
    second = actor.ask(2, block=False)
    assert first.map(lambda v: v + 1).get(timeout=5) == 3
    assert first.join(second).get(timeout=5) == [2, 4]
    assert pykka.get_all([first, second], timeout=5) == [2, 4]


def test_an_actor_stopping_answers_what_waited_in_its_inbox_with_actor_dead() -> None:
    gate = threading.Event()
    ref = Answering.start(gate)
    busy = ref.ask("wait", block=False)
    stopping = ref.stop(block=False)  # queued behind the busy message
    # Put behind the stop directly (tell/ask refuse once the actor is stopping).
    late = LatchFuture[int]()
    ref.actor_inbox.put(Envelope(3, reply_to=late))
    gate.set()
    assert busy.get(timeout=5) == "waited"
    stopping.get(timeout=5)
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=5)


class Note:
    """A told message that need not wake its actor."""

    def __init__(self, n: int) -> None:
        self.n = n


class Deferring(LeanMailbox, pykka.ThreadingActor):
    deferred_messages = (Note,)

    def __init__(self, noted: threading.Event | None = None) -> None:
        super().__init__()
        self.handled: list[Any] = []
        self.noted = noted or threading.Event()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Note):
            self.handled.append(message.n)
            self.noted.set()
            return message.n
        self.handled.append(message)
        return list(self.handled)


def test_a_deferred_message_waits_for_the_next_wake_and_keeps_its_place() -> None:
    noted = threading.Event()
    ref = Deferring.start(noted)
    try:
        assert isinstance(ref.actor_inbox, DeferringInbox)
        ref.ask("started", timeout=5)  # the actor is now asleep on an empty inbox
        ref.tell(Note(1))
        ref.tell(Note(2))
        assert not noted.wait(0.2)  # nothing woke it
        assert ref.actor_inbox.qsize() == 2
        ref.tell("tick")
        assert noted.wait(5)
        assert ref.ask("after", timeout=5) == ["started", 1, 2, "tick", "after"]
        # An ask of a deferred type is answered at once: someone waits on it.
        assert ref.ask(Note(3), timeout=5) == 3
    finally:
        ref.stop()


def test_a_deferring_inbox_loses_nothing_and_keeps_each_senders_order() -> None:
    inbox = DeferringInbox(frozenset({Note}))
    senders, each = 4, 3000
    taken: list[tuple[int, int]] = []

    def send(sender: int) -> None:
        for n in range(each):
            # Mostly deferred, now and then one that wakes; the last always wakes.
            message = (sender, n) if n % 7 == 0 or n == each - 1 else Note(sender * each + n)
            inbox.put(Envelope(message))

    def take() -> None:
        for _ in range(senders * each):
            message = inbox.get(timeout=5).message  # queue.Empty if a wake was lost
            if isinstance(message, Note):
                taken.append(divmod(message.n, each))
            else:
                taken.append(message)

    taker = threading.Thread(target=take)
    taker.start()
    with ThreadPoolExecutor(senders) as pool:
        for result in [pool.submit(send, s) for s in range(senders)]:
            result.result(timeout=30)
    taker.join(30)
    assert not taker.is_alive()
    assert len(taken) == senders * each
    for sender in range(senders):
        assert [n for s, n in taken if s == sender] == list(range(each))
    assert inbox.empty() and inbox.qsize() == 0
    with pytest.raises(queue.Empty):
        inbox.get(block=False)
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)


def test_a_deferring_actor_stopping_answers_what_waited_with_actor_dead() -> None:
    ref = Deferring.start()
    ref.ask("started", timeout=5)
    stopping = ref.stop(block=False)
    late = LatchFuture[int]()
    ref.actor_inbox.put(Envelope(Note(4), reply_to=late))
    stopping.get(timeout=5)
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=5)


class _SpuriousFirstWake:
    """Stands for a deferring inbox's wake lock holding a wake whose message was taken
    already: the first take passes after a while (the time a waiter would spend before
    its turn came round), every later one finds nothing and times out at once. The
    timeouts asked for are kept."""

    def __init__(self, first_after: float) -> None:
        self.first_after = first_after
        self.timeouts: list[float] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.timeouts.append(timeout)
        if len(self.timeouts) == 1:
            threading.Event().wait(self.first_after)
            return True
        return False

    def release(self) -> None:
        raise AssertionError("nothing is put in this test")


def test_a_deferring_inbox_wait_ends_at_its_timeout_from_the_call_despite_a_stale_wake() -> None:
    # A wake with nothing behind it sends get round again: the wait that follows is
    # what is left of the caller's timeout, not the whole of it again.
    inbox = DeferringInbox(frozenset({Note}))
    wake = _SpuriousFirstWake(first_after=0.3)
    inbox._wake = wake  # type: ignore[assignment]
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.5)
    first, second = wake.timeouts
    assert first <= 0.5
    assert second <= 0.5 - 0.3


class UrgentNote(Note):
    """A deferred type whose message says it must wake its actor."""

    wakes = True


def test_a_deferred_message_that_says_it_wakes_wakes_its_actor() -> None:
    noted = threading.Event()

    class DeferringUrgent(Deferring):
        deferred_messages = (Note, UrgentNote)

    ref = DeferringUrgent.start(noted)
    try:
        ref.ask("started", timeout=5)
        ref.tell(UrgentNote(1))
        assert noted.wait(5), "an urgent note woke it"
        assert ref.ask("after", timeout=5) == ["started", 1, "after"]
    finally:
        ref.stop()


def test_commands_told_together_wait_for_the_next_wake_unless_one_of_them_wakes() -> None:
    noted = threading.Event()

    class DeferringUrgent(Deferring):
        deferred_messages = (Note, UrgentNote)

        def on_receive(self, message: Any) -> Any:
            if isinstance(message, CommandBatch):  # as a child takes one: each alone
                return [self.on_receive(command) for command in message.commands]
            return super().on_receive(message)

    ref = DeferringUrgent.start(noted)
    try:
        ref.ask("started", timeout=5)
        ref.tell(CommandBatch(commands=(Note(1), Note(2))))  # type: ignore[arg-type]
        assert not noted.wait(0.2), "deferred notes alone woke it"
        ref.tell(CommandBatch(commands=(Note(3), UrgentNote(4))))  # type: ignore[arg-type]
        assert noted.wait(5), "a batch with an urgent note woke it"
        assert ref.ask("after", timeout=5) == ["started", 1, 2, 3, 4, "after"]
    finally:
        ref.stop()


def test_the_head_of_a_deferring_inbox_is_taken_while_accepted_and_told() -> None:
    """``take_leading`` takes from the head only: it stops at the first message it
    does not accept, at an ask (its answer is owed), and at its limit; what it leaves
    is taken by ``get`` in order."""
    inbox = DeferringInbox(frozenset())
    asked = LatchFuture[Any]()
    for message, reply_to in (
        (Note(1), None),
        (Note(2), None),
        ("state changed", None),
        (Note(3), None),
        (Note(4), asked),
        (Note(5), None),
        (Note(6), None),
        (Note(7), None),
    ):
        inbox.put(Envelope(message, reply_to=reply_to))

    def notes(taken: list[Any]) -> list[int]:
        return [n.n for n in taken]

    def accept(message: Any) -> bool:
        return isinstance(message, Note)

    assert notes(inbox.take_leading(accept, 10)) == [1, 2]
    assert inbox.get(block=False).message == "state changed"
    assert notes(inbox.take_leading(accept, 10)) == [3]
    assert inbox.get(block=False).reply_to is asked
    assert notes(inbox.take_leading(accept, 2)) == [5, 6]
    assert notes(inbox.take_leading(lambda m: m.n != 7, 10)) == []
    assert inbox.get(block=False).message.n == 7
    assert inbox.empty()
