"""What each incarnation of a supervised actor is given (``ActorContext``), and the
fault injections that outlive an incarnation (``DrillBoard``).

An incarnation and its supervisor share the context from two threads: the batch's
hand-over (``begin``, ``end_batch``, ``hand_over_unhandled``, ``retire``) is the part
they both change, under ``batch_lock``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coordinator.clock import Clock
from coordinator.messages.base import Command, Event, EventBatch
from coordinator.supervisor.directory import Directory

__all__ = ["ActorContext", "DrillBoard"]


class DrillBoard:
    """Fault injections that must outlive an incarnation (fail the next start)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start_failures: Counter[str] = Counter()

    def arm_start_failure(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._start_failures[name] += count

    def take_start_failure(self, name: str) -> bool:
        with self._lock:
            if self._start_failures[name] <= 0:
                return False
            self._start_failures[name] -= 1
            return True


@dataclass
class ActorContext:
    """Everything one incarnation of a child is started with."""

    name: str
    """The child's name in the tree."""
    incarnation: int
    """1 for the first start, then one more per restart."""
    directory: Directory
    """Where the current ref of every child is found at send time."""
    clock: Clock
    """The only source of time for the actor."""
    drills: DrillBoard
    """Armed fault injections."""
    report: Callable[[Event | Command], None]
    """Tells the supervisor: failure reports, and the ``StopTree`` of a child that must
    end the process (the InstanceKeeper, once its identity is lost)."""
    services: Any = None
    """The application's shared, thread-safe services (config, clients)."""
    retired: threading.Event = field(default_factory=threading.Event)
    """Set by the supervisor when it replaced this incarnation (it hung)."""
    thread: threading.Thread | None = None
    """The actor's thread, recorded when it starts, so the watcher can join it."""
    progress: int = 0
    """Messages this incarnation has begun to handle. The supervisor reads it without
    going through the mailbox: a count that moves is an actor at work, however long the
    queue its liveness Ping waits behind."""
    unhandled: tuple[Any, ...] = ()
    """The messages of a batch after the one being handled (the events of an
    ``EventBatch``, or the messages an actor took at once from its inbox): the next
    incarnation's first messages if this one crashes or is replaced on it."""
    batch_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held to take the next event of a batch, and by the supervisor to retire this
    incarnation and take ``unhandled``: no event is both handled here and handed on."""

    def begin(self, rest: tuple[Any, ...]) -> bool:
        """The incarnation begins a message of its batch, ``rest`` the ones after it;
        False when it was retired already (the supervisor took the rest): it begins
        nothing more."""
        with self.batch_lock:
            if self.retired.is_set():
                return False
            self.unhandled = rest
            return True

    def end_batch(self) -> None:
        """Every message of the batch begun: none left to hand over."""
        with self.batch_lock:
            self.unhandled = ()

    def hand_over_unhandled(self) -> tuple[Any, ...]:
        """The rest of the batch being handled, as the messages that go first to the next
        incarnation; none is handled here after this."""
        return self._hand_over(retiring=False)

    def retire(self) -> tuple[Any, ...]:
        """The supervisor replaces this incarnation (it hung): it begins nothing more,
        and the rest of its batch goes first to the next one (``hand_over_unhandled``).
        In one hold of the lock, so that nothing the incarnation does in between (its
        batch ending) can come between the two."""
        return self._hand_over(retiring=True)

    def _hand_over(self, *, retiring: bool) -> tuple[Any, ...]:
        with self.batch_lock:
            if retiring:
                self.retired.set()
            rest, self.unhandled = self.unhandled, ()
        return (EventBatch(events=rest),) if rest else ()
