"""The hand-over of a batch between an incarnation and its supervisor, under any
interleaving of their steps: every message of a batch is handled by this incarnation,
handed to the next one, or lost with the one it crashed on; none twice, none both here
and handed on, and the hand-over keeps the batch's order.

The incarnation begins its messages one by one (``ActorContext.begin``, as
``ChildActor.begin_next`` does), may hang in one and resume, crash in one (its last
act hands the rest over, ``hand_over_unhandled``), or end the batch (``end_batch``).
The supervisor may retire it at any moment (``retire``, as a hung child is replaced).
Each step holds the context's lock as the real one does, so a step is atomic here as
there; the interleaving of steps is what hypothesis chooses."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.clock import SystemClock
from coordinator.messages.base import EventBatch
from coordinator.supervisor.context import ActorContext, DrillBoard
from coordinator.supervisor.directory import Directory


def _unwrapped(handed: tuple[Any, ...]) -> list[int]:
    """The messages of what a hand-over returns (one EventBatch of them, or nothing)."""
    assert len(handed) <= 1
    if not handed:
        return []
    [batch] = handed
    assert isinstance(batch, EventBatch)
    return list(batch.events)


class HandOverModel(RuleBasedStateMachine):
    @initialize(size=st.integers(min_value=1, max_value=8))
    def batch(self, size: int) -> None:
        self.context = ActorContext(
            name="child",
            incarnation=1,
            directory=Directory(),
            clock=SystemClock(),
            drills=DrillBoard(),
            report=lambda _report: None,
        )
        self.messages = list(range(size))
        self.handled: list[int] = []
        self.handed: list[int] = []
        self.lost: list[int] = []
        self.ended = False
        """The incarnation does nothing more (stopped, crashed, or its batch ended)."""
        self.retired = False
        # Taken from the inbox, the batch is begun at once with its first message, as
        # ``ChildActor._handle_batch`` does: before that it was in the inbox, which the
        # supervisor drains for the next incarnation.
        assert self.context.begin(tuple(self.messages[1:]))
        self.current: int | None = 0
        """The message being handled (begun, not finished)."""
        self.next = 1
        """The index of the next message the incarnation begins."""

    # --- the incarnation ----------------------------------------------------------------

    @precondition(lambda self: not self.ended and self.current is None)
    @rule()
    def begin_next(self) -> None:
        if self.next == len(self.messages):
            self.context.end_batch()
            self.ended = True
            return
        message = self.messages[self.next]
        if not self.context.begin(tuple(self.messages[self.next + 1 :])):
            # Retired: it stops, and its own last act hands over what is left.
            assert self.retired
            self.handed += _unwrapped(self.context.hand_over_unhandled())
            self.ended = True
            return
        self.current = message
        self.next += 1

    @precondition(lambda self: not self.ended and self.current is not None)
    @rule()
    def finish(self) -> None:
        """The message handled (also by an incarnation that hung in it and resumed)."""
        assert self.current is not None
        self.handled.append(self.current)
        self.current = None

    @precondition(lambda self: not self.ended and self.current is not None)
    @rule()
    def crash(self) -> None:
        """The incarnation crashes in the message: it is lost, the rest handed over."""
        assert self.current is not None
        self.lost.append(self.current)
        self.current = None
        self.handed += _unwrapped(self.context.hand_over_unhandled())
        self.ended = True

    # --- the supervisor -----------------------------------------------------------------

    @precondition(lambda self: not self.retired and not self.ended)
    @rule()
    def retire(self) -> None:
        self.handed += _unwrapped(self.context.retire())
        self.retired = True

    @rule()
    def time_passes(self) -> None:
        """Nothing happens: an incarnation that hangs for good, or one that ended."""

    # --- what must hold -----------------------------------------------------------------

    @invariant()
    def each_message_once_at_most(self) -> None:
        seen = self.handled + self.handed + self.lost
        assert len(seen) == len(set(seen)), (self.handled, self.handed, self.lost)

    @invariant()
    def handed_in_the_batchs_order(self) -> None:
        assert self.handed == sorted(self.handed)

    @invariant()
    def nothing_begun_after_retirement_but_what_was_in_hand(self) -> None:
        if self.retired and self.handed:
            assert all(m < self.handed[0] for m in self.handled + self.lost)

    @invariant()
    def at_the_end_every_message_is_accounted_for(self) -> None:
        if self.ended and self.current is None:
            assert sorted(self.handled + self.handed + self.lost) == self.messages


HandOverModel.TestCase.settings = settings(max_examples=300, stateful_step_count=30)
TestHandOver = HandOverModel.TestCase
