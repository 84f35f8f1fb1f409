"""The directory: the current ref of every child, by name, and a mailbox that outlives it.

No actor keeps another actor's ref, because a restart makes a new one. Senders go through
the directory at send time. While a child is down (crashed, in backoff, being replaced)
the directory keeps what is told to it, in order, and hands it to the next incarnation
before anything newer. Messages that were still in a dead child's inbox are moved back
here too, so a crash loses only the message that caused it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef
from pykka._envelope import Envelope  # the inbox holds these; we drain dead inboxes

from coordinator.errors import CoordinatorError
from coordinator.messages.base import Event, EventBatch

__all__ = ["ChildUnavailable", "Directory"]

logger = logging.getLogger(__name__)


class ChildUnavailable(CoordinatorError):
    """The named child cannot take this message now. Retry later; it is restarting."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass
class _Entry:
    ref: ActorRef[Any] | None = None
    incarnation: int = 0
    buffer: deque[Any] = field(default_factory=deque)
    subscriptions: tuple[type[Event], ...] = ()
    # A tell and the drain of a dead inbox must not interleave (a message put after
    # the drain would be lost with the inbox), so both hold this; one lock per child,
    # not one for all, so that senders to different children do not queue for it
    # (13 % of the CPU of a run of refused signals went waiting on a shared one).
    lock: threading.RLock = field(default_factory=threading.RLock)


class Directory:
    def __init__(self, *, buffer_limit: int = 10_000) -> None:
        # Guards the set of entries and the listeners; each entry has its own lock.
        # Entries are only added, never removed, so a name's entry is read without it.
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._buffer_limit = buffer_limit
        # Event type -> the children subscribed to it, in registration order: worked
        # out once per type, not with an isinstance per child and event on every
        # publish (a fifth of the StoreWriter's work under a sustained run).
        self._routes: dict[type, tuple[str, ...]] = {}

    # --- used by the supervisor -------------------------------------------------------

    def register(self, name: str, subscriptions: Iterable[type[Event]] = ()) -> None:
        with self._lock:
            if name in self._entries:
                raise ValueError(f"child {name!r} is already registered")
            self._entries[name] = _Entry(subscriptions=tuple(subscriptions))
            self._routes.clear()

    def expect(self, name: str, incarnation: int) -> None:
        """Announce the incarnation about to start; only it may install itself."""
        entry = self._entry(name)
        with entry.lock:
            entry.ref = None
            entry.incarnation = incarnation

    def install(self, name: str, ref: ActorRef[Any], incarnation: int) -> bool:
        """Make ``ref`` current, after handing it what was kept meanwhile.

        The child calls this itself once its ``on_start`` succeeded, so a child that
        fails to start never receives (and loses) the kept messages.
        """
        entry = self._entry(name)
        with entry.lock:
            if entry.incarnation != incarnation or not ref.is_alive():
                return False
            while entry.buffer:
                ref.tell(entry.buffer.popleft())
            entry.ref = ref
            return True

    def withdraw(
        self, name: str, incarnation: int, *, drain: bool, first: Sequence[Any] = ()
    ) -> None:
        """Stop delivering to ``incarnation``; from now on messages are kept here.

        With ``drain`` (a crashed or hung child) what is still in its inbox is moved
        here too, after ``first`` (what it took from its inbox and did not handle: the
        rest of a batch), and queries still waiting get ActorDeadError so their callers
        do not wait for a timeout. Without it (an orderly stop) the child works through
        its inbox before it stops.
        """
        entry = self._entry(name)
        with entry.lock:
            if entry.ref is None or entry.incarnation != incarnation:
                return
            ref, entry.ref = entry.ref, None
            if not drain:
                return
            entry.buffer.extend(first)
            kept = len(first)
            inbox = ref.actor_inbox
            while True:
                # Never a blocking take: a hung child that comes back to life may take
                # the last message between a check for empty and the take, which would
                # then wait forever here, holding every sender to this child. (pykka's
                # ActorInbox protocol leaves out ``block``, which every inbox here has.)
                try:
                    envelope: Envelope[Any] = inbox.get(block=False)  # type: ignore[call-arg]
                except queue.Empty:
                    break
                if isinstance(envelope.message, pykka.messages._ActorStop):
                    if envelope.reply_to is not None:
                        envelope.reply_to.set(None)
                elif envelope.reply_to is not None:
                    envelope.reply_to.set_exception(
                        (ActorDeadError, ActorDeadError(f"{name} stopped before answering"), None)
                    )
                else:
                    entry.buffer.append(envelope.message)
                    kept += 1
            if kept:
                logger.info(
                    "kept %d undelivered message(s) of %s#%d for its next incarnation",
                    kept,
                    name,
                    incarnation,
                )

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` with every published event; it must not block."""
        with self._lock:
            self._listeners.append(listener)

    # --- used by everyone -------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._entries)

    def ref(self, name: str) -> ActorRef[Any]:
        """The current ref of ``name``; ChildUnavailable while it is down."""
        entry = self._entry(name)
        with entry.lock:
            if entry.ref is None or not entry.ref.is_alive():
                raise ChildUnavailable(name, "not running (restarting or stopped)")
            return entry.ref

    def tell(self, name: str, message: Any) -> None:
        """Deliver now, or keep for the next incarnation while the child is down."""
        entry = self._entry(name)
        with entry.lock:
            if entry.ref is not None:
                try:
                    entry.ref.tell(message)
                    return
                except ActorDeadError:
                    pass  # died a moment ago; its own withdraw follows
            if len(entry.buffer) >= self._buffer_limit:
                raise ChildUnavailable(
                    name, f"down with {len(entry.buffer)} messages waiting (the limit)"
                )
            entry.buffer.append(message)

    def ask(self, name: str, message: Any, *, timeout: float) -> Any:
        """Ask the current incarnation; ChildUnavailable at once while it is down,
        pykka.Timeout when it does not answer in ``timeout`` seconds."""
        return self.ref(name).ask(message, timeout=timeout)

    def publish(self, event: Event) -> None:
        """Tell ``event`` to every child subscribed to its type, and to the listeners."""
        self.publish_all((event,))

    def publish_all(self, events: Sequence[Event]) -> None:
        """Publish ``events`` in order: each child gets the ones it subscribes to in one
        ``EventBatch`` (one alone as itself), the listeners each in turn."""
        by_child: dict[str, list[Event]] = {}
        with self._lock:
            for event in events:
                for name in self._routes_of(type(event)):
                    by_child.setdefault(name, []).append(event)
            listeners = list(self._listeners)
        for name, mine in by_child.items():
            try:
                self.tell(name, mine[0] if len(mine) == 1 else EventBatch(events=tuple(mine)))
            except ChildUnavailable as exc:
                kinds = ", ".join(sorted({type(e).__name__ for e in mine}))
                logger.error("%d event(s) %s not delivered: %s", len(mine), kinds, exc)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("event listener failed on %s", type(event).__name__)

    def _routes_of(self, kind: type) -> tuple[str, ...]:
        """The children subscribed to events of ``kind`` (the lock held)."""
        names = self._routes.get(kind)
        if names is None:
            names = self._routes[kind] = tuple(
                name
                for name, entry in self._entries.items()
                if issubclass(kind, entry.subscriptions)
            )
        return names

    def depth(self, name: str) -> int:
        """Messages waiting for ``name``: its inbox, or what is kept while it is down."""
        entry = self._entry(name)
        with entry.lock:
            if entry.ref is not None:
                # pykka's ActorInbox protocol leaves out qsize, which the threading
                # actor's inbox (a queue.Queue) has.
                waiting: int = entry.ref.actor_inbox.qsize()  # type: ignore[attr-defined]
                return waiting + len(entry.buffer)
            return len(entry.buffer)

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ChildUnavailable(name, "no such actor in the tree") from None
