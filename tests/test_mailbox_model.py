"""The deferring inbox under any sequence of puts and takes: what the actor takes, by
``get`` or by ``take_leading``, is every message put, once each, in the order put;
``take_leading`` takes only told messages it accepts, from the head, up to its limit."""

from __future__ import annotations

import queue
from collections import deque
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pykka._envelope import Envelope

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

    @rule(
        kind=st.sampled_from(["plain", "deferred", "deferred_waking"]),
        asked=st.booleans(),
    )
    def put(self, kind: str, asked: bool) -> None:
        self.count += 1
        message: Any = (
            Plain(self.count) if kind == "plain" else Deferred(self.count, kind.endswith("waking"))
        )
        envelope: Envelope[Any] = Envelope(message, reply_to=LatchFuture() if asked else None)
        self.inbox.put(envelope)
        self.expected.append(envelope)

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
            return parity is None or message.n % 2 == parity

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
    def sizes_agree(self) -> None:
        assert self.inbox.qsize() == len(self.expected)
        assert self.inbox.empty() == (not self.expected)


TestInboxModel = InboxModel.TestCase
TestInboxModel.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
