"""The deferring inbox under any sequence of puts and takes: what the actor takes, by
``get`` or by ``take_leading``, is every message put, once each, in the order put;
``take_leading`` takes only told messages it accepts, from the head, up to its limit;
and the actor is woken by what wakes it only: an ask, a message not deferred, a
deferred one that says it wakes, commands told together of which one would wake it."""

from __future__ import annotations

import queue
from collections import deque
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pykka._envelope import Envelope

from coordinator.messages.base import CommandBatch
from coordinator.supervisor.mailbox import DeferringInbox, LatchFuture


class Deferred:
    """A told message of the deferred type; ``wakes`` set on some."""

    def __init__(self, n: int, wakes: bool) -> None:
        self.n = n
        self.wakes = wakes


class Plain:
    def __init__(self, n: int) -> None:
        self.n = n


class InboxModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.inbox = DeferringInbox(frozenset({Deferred}))
        self.expected: deque[Envelope[Any]] = deque()
        """What was put and not taken yet, in order: the model."""
        self.count = 0
        self.woken = False
        """Whether anything put so far wakes the actor (nothing here takes a wake)."""

    def _message(self, kind: str) -> Any:
        self.count += 1
        if kind == "plain":
            return Plain(self.count)
        return Deferred(self.count, kind.endswith("waking"))

    @rule(
        kind=st.sampled_from(["plain", "deferred", "deferred_waking"]),
        asked=st.booleans(),
    )
    def put(self, kind: str, asked: bool) -> None:
        message = self._message(kind)
        envelope: Envelope[Any] = Envelope(message, reply_to=LatchFuture() if asked else None)
        self.inbox.put(envelope)
        self.expected.append(envelope)
        self.woken = self.woken or asked or kind != "deferred"

    @rule(kinds=st.lists(st.sampled_from(["plain", "deferred", "deferred_waking"]), max_size=3))
    def put_together(self, kinds: list[str]) -> None:
        batch = CommandBatch(commands=tuple(self._message(k) for k in kinds))
        self.count += 1
        batch_envelope: Envelope[Any] = Envelope(batch)
        self.inbox.put(batch_envelope)
        self.expected.append(batch_envelope)
        self.woken = self.woken or any(k != "deferred" for k in kinds)

    @rule()
    def get(self) -> None:
        if not self.expected:
            try:
                self.inbox.get(block=False)
            except queue.Empty:
                return
            raise AssertionError("an empty inbox gave a message")
        # A wake may be pending or not; the head is there either way.
        assert self.inbox.get(block=False) is self.expected.popleft()

    @rule(parity=st.sampled_from([0, 1, None]), limit=st.integers(0, 4))
    def take_leading(self, parity: int | None, limit: int) -> None:
        def accept(message: Any) -> bool:
            # Commands told together have no number: taken only when all are.
            n = getattr(message, "n", None)
            return parity is None or (n is not None and n % 2 == parity)

        taken = self.inbox.take_leading(accept, limit)
        wanted: list[Any] = []
        while (
            len(wanted) < limit
            and self.expected
            and self.expected[0].reply_to is None
            and accept(self.expected[0].message)
        ):
            wanted.append(self.expected.popleft().message)
        assert taken == wanted

    @invariant()
    def woken_by_what_wakes_only(self) -> None:
        # A pending wake is the released lock the actor's get would take.
        assert self.inbox._wake.locked() is not self.woken  # the state under test

    @invariant()
    def sizes_agree(self) -> None:
        assert self.inbox.qsize() == len(self.expected)
        assert self.inbox.empty() == (not self.expected)


TestInboxModel = InboxModel.TestCase
TestInboxModel.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
