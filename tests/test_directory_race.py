"""The directory under senders on many threads while a child's incarnations are
withdrawn (their inboxes drained) and replaced: every message told reaches exactly one
incarnation, and senders to one child never lose one while another child churns; the
child left alone gets each sender's messages in order. Real pykka actors.

(The replaced incarnations here are alive, unlike a crashed child, so one may still be
recording the message it took when the next starts on what was kept: across
incarnations, order is not asked.)"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pykka
from pykka._envelope import Envelope

from coordinator.supervisor.directory import Directory

SENDERS = 4
PER_SENDER = 3_000


class Recorder(pykka.ThreadingActor):
    def __init__(self, seen: list[tuple[int, int]]) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message: Any) -> None:
        self.seen.append(message)


def test_tells_racing_withdrawals_and_installs_lose_nothing_and_keep_order() -> None:
    directory = Directory(buffer_limit=1_000_000)
    for name in ("churned", "steady"):
        directory.register(name)
    seen: dict[str, list[tuple[int, int]]] = {"churned": [], "steady": []}
    steady = Recorder.start(seen["steady"])
    directory.expect("steady", 1)
    assert directory.install("steady", steady, 1)
    refs: list[pykka.ActorRef[Any]] = [steady]
    incarnation = 1
    first = Recorder.start(seen["churned"])
    directory.expect("churned", incarnation)
    assert directory.install("churned", first, incarnation)
    current = first
    refs.append(first)

    start = threading.Barrier(SENDERS + 1)
    # Half of each sender's messages wait for a few replacements: on a loaded machine
    # the senders could otherwise be done before the churn replaced any.
    churning = threading.Event()

    def send(sender: int) -> None:
        start.wait()
        for n in range(PER_SENDER):
            if n == PER_SENDER // 2:
                churning.wait(30)
            directory.tell("churned", (sender, n))
            directory.tell("steady", (sender, n))

    threads = [threading.Thread(target=send, args=(s,)) for s in range(SENDERS)]
    for thread in threads:
        thread.start()
    start.wait()
    pace = threading.Event()  # never set: the churn's pace
    while any(t.is_alive() for t in threads) and incarnation < 200:
        # A crash: the incarnation is withdrawn and its inbox drained into the
        # directory's keeping, then a new one installs and gets what was kept.
        directory.withdraw("churned", incarnation, drain=True)
        current.stop(block=False)
        incarnation += 1
        current = Recorder.start(seen["churned"])
        refs.append(current)
        directory.expect("churned", incarnation)
        assert directory.install("churned", current, incarnation)
        if incarnation >= 4:
            churning.set()
        pace.wait(0.002)
    for thread in threads:
        thread.join(60)
    for ref in refs:
        ref.stop(block=True, timeout=10)
    assert incarnation > 2, "no incarnation was replaced while the senders ran"
    for name, got in seen.items():
        assert len(got) == SENDERS * PER_SENDER, (name, len(got))
        for sender in range(SENDERS):
            mine = [n for s, n in got if s == sender]
            if name == "steady":
                assert mine == list(range(PER_SENDER)), f"sender {sender} out of order"
            else:
                assert sorted(mine) == list(range(PER_SENDER)), f"sender {sender}: lost or twice"


class TakenMeanwhile(queue.Queue[Any]):
    """An inbox whose child, hung until now, takes its last message between the
    directory's look and its take (made certain here: the look takes it)."""

    def empty(self) -> bool:
        was_empty = super().empty()
        if not was_empty and self.qsize() == 1:
            self.get_nowait()  # the child, alive again, took it
        return was_empty


class Reviving(pykka.ThreadingActor):
    def __init__(self, holding: threading.Event, gate: threading.Event) -> None:
        super().__init__()
        self.holding, self.gate = holding, gate

    @staticmethod
    def _create_actor_inbox() -> Any:
        return TakenMeanwhile()

    def on_receive(self, message: Any) -> Any:
        if message == "hang":
            self.holding.set()
            self.gate.wait(30)
        return message


def test_a_withdrawal_never_waits_on_an_inbox_its_child_emptied_meanwhile() -> None:
    directory = Directory()
    directory.register("hung")
    holding, gate = threading.Event(), threading.Event()
    ref = Reviving.start(holding, gate)
    try:
        directory.expect("hung", 1)
        assert directory.install("hung", ref, 1)
        directory.tell("hung", "hang")
        assert holding.wait(10)
        # Hung: what waits in its inbox is the directory's to move; the last message
        # is taken by the child meanwhile.
        ref.actor_inbox.put(Envelope("kept"))
        ref.actor_inbox.put(Envelope("taken"))
        done = threading.Event()
        withdrawal = threading.Thread(
            target=lambda: (directory.withdraw("hung", 1, drain=True), done.set()), daemon=True
        )
        withdrawal.start()
        assert done.wait(10), "the withdrawal waited on an empty inbox"
        assert directory.depth("hung") >= 1  # "kept" at least, for the next incarnation
    finally:
        gate.set()
        ref.stop()
