"""The base of every supervised actor, and what each incarnation is given."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import pykka

from coordinator.logs import set_actor_name
from coordinator.messages.base import Command, CommandBatch, Event, EventBatch
from coordinator.messages.supervision import (
    ChildErrored,
    ChildExited,
    ChildFailed,
    DrillCrash,
    DrillHang,
    FailureInfo,
    Ping,
    Pong,
)
from coordinator.supervisor.context import ActorContext, DrillBoard
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.supervisor.mailbox import DeferringInbox, LeanMailbox
from coordinator.supervisor.ticker import Alarm, Ticker

__all__ = [
    "NOT_HANDLED",
    "ActorContext",
    "ChildActor",
    "ContainBaseExceptions",
    "DrillBoard",
    "DrillCrashError",
    "DrillStartFailure",
    "EscapedBaseException",
    "tell_unless_ended",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

NOT_HANDLED: Any = object()
"""What ``handle`` returns for a message it does not know."""


def tell_unless_ended(ref: pykka.ActorRef[Any], message: Any) -> bool:
    """Tell ``message`` to ``ref``; False, and nothing told, once that actor has ended
    (what its threads and timers still send then must not reach anyone else)."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


class DrillCrashError(Exception):
    """Raised on purpose by a crash drill."""


class DrillStartFailure(Exception):
    """Raised on purpose in ``on_start`` by a fail-start drill."""


class EscapedBaseException(Exception):
    """A BaseException (SystemExit, KeyboardInterrupt...) raised inside an actor.

    pykka answers a BaseException by stopping every actor in the process. Wrapped in
    this, it is an ordinary failure of the one actor, which the supervisor restarts.
    """


class ContainBaseExceptions:
    """A ``with`` block out of which a BaseException comes as an EscapedBaseException;
    ``report`` (if given) is told of every exception first. An Exception goes on as it
    is."""

    __slots__ = ("_report",)

    def __init__(self, report: Callable[[BaseException], object] | None = None) -> None:
        self._report = report

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Never True: nothing is swallowed.
        if exc is None:
            return
        if self._report is not None:
            self._report(exc)
        if not isinstance(exc, Exception):
            raise EscapedBaseException(repr(exc)) from exc


class ChildActor(LeanMailbox, pykka.ThreadingActor):
    """A supervised actor. Subclasses implement ``setup``, ``handle`` and ``cleanup``.

    The base answers ``Ping``, carries out drills, reports every error and failure to
    the supervisor, hands undelivered messages back to the directory when it dies, and
    confines a BaseException to this actor.
    """

    # A hung actor must not keep the process from exiting once the tree has stopped.
    use_daemon_thread = True

    subscriptions: ClassVar[tuple[type[Event], ...]] = ()
    """Event types the directory delivers to this child when they are published."""

    def __init__(self, context: ActorContext, settings: Any = None) -> None:
        super().__init__()
        self.context = context
        self.settings = settings
        """This child's part of the configuration, handed by the tree (ChildSpec kwargs);
        a subclass declares its type."""
        self.name = context.name
        self._handling: str | None = None
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._releases: list[tuple[str, Callable[[], object]]] = []
        self._alarms: dict[str, Alarm] = {}

    # --- hooks ------------------------------------------------------------------------

    def setup(self) -> None:
        """Build state (from the store when there is one). Runs in the actor's thread."""

    def handle(self, message: Any) -> Any:
        """Handle one message; return ``NOT_HANDLED`` for one you do not know."""
        return NOT_HANDLED

    def cleanup(self) -> None:
        """Release what ``setup`` took and the base does not own. Runs on stop and on
        failure, before the base stops its tickers and pools, which may still take work
        here (a last write)."""

    # --- for subclasses ---------------------------------------------------------------

    def worker_pool(
        self, purpose: str, workers: int = 1, *, finish_queued: bool = False
    ) -> ThreadPoolExecutor:
        """Threads for blocking work (network, database) off the actor's own thread,
        named ``<actor>-<purpose>`` and logging as this incarnation. One worker keeps
        the work in order. Shut down with the incarnation: work still queued then is
        dropped, or run first when ``finish_queued`` (writes that must not be lost)."""
        if purpose in self._pools:
            raise ValueError(f"{self.name} already has a worker pool {purpose!r}")
        pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=f"{self.name}-{purpose}",
            initializer=set_actor_name,
            initargs=(f"{self.name}#{self.context.incarnation}",),
        )
        self._pools[purpose] = pool
        self.on_cleanup(
            lambda: pool.shutdown(wait=False, cancel_futures=not finish_queued),
            what=f"worker pool {purpose}",
        )
        return pool

    def ticker(
        self, interval: float, tick: Callable[[], Any], *, immediately: bool = False
    ) -> Ticker:
        """Tells this actor ``tick()`` every ``interval`` seconds until it ends."""
        # On the injected clock: a test that advances it fires the ticks that fall due.
        ticker = Ticker(
            interval,
            lambda: self.actor_ref.tell(tick()),
            name=f"{self.name}-ticker",
            clock=self.context.clock,
        )
        self.on_cleanup(ticker.stop, what="ticker")
        ticker.start(immediately=immediately)
        return ticker

    def alarm(self, key: str, delay: float, message: Any) -> None:
        """Tell this actor ``message`` once, ``delay`` seconds from now on its clock. An
        alarm set again under the same ``key`` replaces the earlier one; all are
        cancelled when this incarnation ends."""
        earlier = self._alarms.pop(key, None)
        if earlier is not None:
            earlier.cancel()
        self._alarms[key] = Alarm(
            delay,
            lambda: self.tell_self(message),
            name=f"{self.name}-{key}",
            clock=self.context.clock,
        ).start()

    def on_cleanup(self, release: Callable[[], object], *, what: str = "") -> None:
        """Call ``release`` when this incarnation ends, after ``cleanup``: what was
        registered last is released first."""
        self._releases.append((what or getattr(release, "__qualname__", "release"), release))

    def tell_self(self, message: Any) -> None:
        """Tell this incarnation ``message`` from another thread; once it has ended, the
        message is dropped (it must not reach the next incarnation)."""
        if not tell_unless_ended(self.actor_ref, message):
            logger.debug("%s after the end of this incarnation dropped", type(message).__name__)

    def run_then_tell(
        self,
        work: Callable[[], T],
        to_message: Callable[[T], Any] | None = None,
        *,
        pool: str,
        on_error: Callable[[Exception], Any] | None = None,
        errors: tuple[type[Exception], ...] = (Exception,),
    ) -> Future[None]:
        """Run ``work`` on the worker pool named ``pool``, then tell this actor
        ``to_message(result)`` (the result itself without ``to_message``), or
        ``on_error(exception)`` when it raised one of ``errors`` (without ``on_error``,
        the exception stays in the returned future). A message of ``None`` is not told."""

        def run() -> None:
            try:
                result = work()
            except errors as exc:
                if on_error is None:
                    raise
                message = on_error(exc)
            else:
                message = result if to_message is None else to_message(result)
            if message is not None:
                self.tell_self(message)

        return self._pools[pool].submit(run)

    # --- pykka's hooks: final ---------------------------------------------------------

    def on_start(self) -> None:
        thread = threading.current_thread()
        thread.name = f"{self.name}#{self.context.incarnation}"
        set_actor_name(thread.name)
        self.context.thread = thread
        with ContainBaseExceptions(self._start_failed):
            if self.context.drills.take_start_failure(self.name):
                raise DrillStartFailure(f"drill: {self.name} fails this start")
            self.setup()
            if self.context.retired.is_set() or not self.context.directory.install(
                self.name, self.actor_ref, self.context.incarnation
            ):
                raise RuntimeError("replaced while starting")

    def on_receive(self, message: Any) -> Any:
        if self.context.retired.is_set():
            # Replaced while it hung: what reaches this old incarnation goes to the new.
            self._forward(message)
            self.stop()
            return None
        self._handling = type(message).__name__
        self.context.progress += 1
        with ContainBaseExceptions(self._report_error):
            try:
                return self._receive(message)
            finally:
                self.after_turn()

    def after_turn(self) -> None:
        """Called when a turn ends (one message, or the messages of a batch), also
        when it raised: what the actor kept to tell at the end of it goes now."""

    def _receive(self, message: Any) -> Any:
        match message:
            case Ping():
                return Pong(name=self.name, incarnation=self.context.incarnation)
            case DrillCrash():
                raise DrillCrashError(f"drill: {self.name} crashes on this message")
            case DrillHang(seconds=seconds):
                logger.warning("drill: blocking for %.1f s", seconds)
                threading.Event().wait(seconds)
                return None
        if isinstance(message, EventBatch):
            return self._handle_batch(message.events)
        if isinstance(message, CommandBatch):
            return self._handle_batch(message.commands)
        result = self.handle(message)
        if result is NOT_HANDLED:
            logger.error("unexpected message %r ignored", message)
            self._report_error(TypeError(f"unexpected message {type(message).__name__}"))
            return None
        return result

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end(
            ChildFailed(
                name=self.name,
                incarnation=self.context.incarnation,
                failure=self._failure_info(exception_value, "message"),
                message_type=self._handling,
            )
        )

    def on_stop(self) -> None:
        self._end(ChildExited(name=self.name, incarnation=self.context.incarnation))

    # --- helpers ----------------------------------------------------------------------

    def _start_failed(self, exc: BaseException) -> None:
        logger.error("start failed: %s: %s", type(exc).__name__, exc)
        self._end(
            ChildFailed(
                name=self.name,
                incarnation=self.context.incarnation,
                failure=self._failure_info(exc, "start"),
            )
        )

    def take_leading(self, accept: Callable[[Any], bool], limit: int) -> list[Any]:
        """The told messages at the head of the inbox that ``accept`` takes (at most
        ``limit``), taken out to be handled with the one being handled. The class sets
        ``takes_leading``; each is begun with ``begin_next``, so that those not handled
        yet go to the next incarnation first if this one crashes or is replaced."""
        inbox = self.actor_inbox
        if not isinstance(inbox, DeferringInbox):
            raise TypeError(f"{type(self).__name__} does not set takes_leading")
        return inbox.take_leading(accept, limit)

    def begin_next(self, message: Any, rest: tuple[Any, ...]) -> bool:
        """Before handling ``message``, one of several handled in one turn (None: before
        a step for several): ``rest``, the ones not begun yet, become the next
        incarnation's first messages if this one crashes or is replaced meanwhile. False
        when it was replaced already: the supervisor took the rest, and this incarnation
        stops."""
        context = self.context
        if not context.begin(rest):
            self.stop()
            return False
        if message is not None:
            self._handling = type(message).__name__
            context.progress += 1
        return True

    def end_of_batch(self) -> None:
        """Every message of the turn begun: none left to hand over."""
        self.context.end_batch()

    def _handle_batch(self, events: tuple[Event, ...] | tuple[Command, ...]) -> None:
        """Each event (or command) as if it had come alone: a crash on one, or a
        replacement while it hung, loses only that one; the rest go to the next
        incarnation first."""
        for at, event in enumerate(events):
            if not self.begin_next(event, events[at + 1 :]):
                return  # the supervisor took the rest when it retired us
            if self.handle(event) is NOT_HANDLED:
                logger.error("unexpected message %r ignored", event)
                self._report_error(TypeError(f"unexpected message {type(event).__name__}"))
        self.end_of_batch()

    def _end(self, report: Event) -> None:
        """The last acts of an incarnation: release what it holds, hand back the
        messages it will never handle, and tell the supervisor why it ended."""
        self._cleanup_quietly()
        self.context.directory.withdraw(
            self.name,
            self.context.incarnation,
            drain=True,
            first=self.context.hand_over_unhandled(),
        )
        self.context.report(report)

    def _report_error(self, exc: BaseException) -> None:
        self.context.report(
            ChildErrored(
                name=self.name,
                incarnation=self.context.incarnation,
                failure=self._failure_info(exc, "message"),
            )
        )

    def _failure_info(self, exc: BaseException | None, phase: str) -> FailureInfo:
        if isinstance(exc, EscapedBaseException) and exc.__cause__ is not None:
            exc = exc.__cause__
        return FailureInfo(
            at=self.context.clock.time(),
            error_type=type(exc).__name__ if exc is not None else "Unknown",
            error=str(exc) if exc is not None else "",
            phase=phase,
        )

    def _cleanup_quietly(self) -> None:
        try:
            self.cleanup()
        except Exception:
            logger.exception("cleanup failed")
        alarms, self._alarms = self._alarms, {}
        for alarm in alarms.values():
            alarm.cancel()
        releases, self._releases = self._releases, []
        for what, release in reversed(releases):
            try:
                release()
            except Exception:
                logger.exception("releasing %s failed", what)

    def _forward(self, message: Any) -> None:
        try:
            self.context.directory.tell(self.name, message)
        except ChildUnavailable as exc:
            logger.error("message %s lost after replacement: %s", type(message).__name__, exc)
