"""The supervisor actor: starts children in order, watches them, restarts them.

pykka has no supervision, so this builds it: every child is watched three ways (its
own failure report, its ``actor_stopped`` event seen by a watcher thread, and a
periodic ``Ping``), restarted per its restart type and the strategy after a jittered
exponential backoff, and when restarts come too often the whole tree is stopped
cleanly and the process told to exit non-zero, so that the container restarts it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import pykka
from pykka import ActorRef, Future

from coordinator.clock import Clock
from coordinator.config import SupervisorConfig
from coordinator.logs import set_actor_name
from coordinator.messages.base import Command, Event
from coordinator.messages.supervision import (
    ChildErrored,
    ChildExited,
    ChildFailed,
    ChildReady,
    ChildRestarted,
    ChildStopped,
    FailureInfo,
    GetSupervisorSnapshot,
    LivenessTick,
    Ping,
    RestartDue,
    StopTree,
    SupervisorSnapshot,
)
from coordinator.supervisor._liveness import _Liveness
from coordinator.supervisor._tree import (
    _SETTLED,
    ChildState,
    TreeOutcome,
    TreeState,
    _Child,
    _describe,
    _stack_of,
    snapshot_of,
)
from coordinator.supervisor.child import (
    ActorContext,
    ContainBaseExceptions,
    DrillBoard,
    tell_unless_ended,
)
from coordinator.supervisor.directory import Directory
from coordinator.supervisor.mailbox import LeanMailbox
from coordinator.supervisor.policy import BackoffPolicy, RestartIntensity, wants_restart
from coordinator.supervisor.spec import ChildSpec, Strategy
from coordinator.supervisor.thread_labels import ThreadLabels
from coordinator.supervisor.ticker import Alarm, Ticker

__all__ = ["ChildState", "Supervisor", "TreeOutcome", "TreeState"]

logger = logging.getLogger(__name__)


class Supervisor(_Liveness, LeanMailbox, pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        config: SupervisorConfig,
        *,
        directory: Directory,
        clock: Clock,
        outcome: TreeOutcome,
        drills: DrillBoard | None = None,
        services: Any = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__()
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")
        self._children = [_Child(spec, index) for index, spec in enumerate(specs)]
        self._by_name = {child.spec.name: child for child in self._children}
        self._config = config
        self._strategy = Strategy(config.strategy)
        self._backoff = BackoffPolicy(
            config.backoff_base, config.backoff_max, config.backoff_jitter
        )
        self._intensity = RestartIntensity(config.max_restarts, config.restart_window)
        self._directory = directory
        self._clock = clock
        self._outcome = outcome
        self._drills = drills or DrillBoard()
        self._services = services
        self._rand = rand
        self._state = TreeState.STARTING
        self._ticker: Ticker | None = None
        self._thread_labels = ThreadLabels()
        for child in self._children:
            directory.register(child.spec.name, child.spec.actor_class.subscriptions)

    # --- pykka hooks ------------------------------------------------------------------

    def on_start(self) -> None:
        threading.current_thread().name = "supervisor"
        set_actor_name("supervisor")
        logger.info(
            "starting %d children in order: %s",
            len(self._children),
            ", ".join(child.spec.name for child in self._children),
        )
        self._ticker = Ticker(
            self._config.liveness_interval,
            lambda: self.actor_ref.tell(LivenessTick()),
            name="supervisor-liveness",
            clock=self._clock,
        ).start()
        self._advance()

    def on_receive(self, message: Any) -> Any:
        # An Exception is an ordinary failure: on_failure stops the tree cleanly.
        with ContainBaseExceptions():
            return self._dispatch(message)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A bug here leaves the tree without a supervisor: stop it and let the process
        # exit non-zero rather than run unsupervised.
        logger.critical("supervisor failed: %r; stopping the tree", exception_value)
        self._outcome.failure = f"supervisor failed: {exception_value!r}"
        self._stop_all()
        self._state = TreeState.FAILED
        self._outcome.finished.set()

    def on_stop(self) -> None:
        if self._state not in (TreeState.STOPPED, TreeState.FAILED):
            self._stop_all()
            self._outcome.finished.set()

    # --- messages ---------------------------------------------------------------------

    def _dispatch(self, message: Any) -> Any:
        match message:
            case GetSupervisorSnapshot():
                return self._snapshot()
            case ChildReady(name=name, incarnation=incarnation):
                child = self._current(name, incarnation)
                if child is not None and child.state is ChildState.STARTING:
                    self._on_ready(child)
            case ChildFailed(name=name, incarnation=incarnation, failure=failure):
                child = self._current(name, incarnation)
                if child is not None:
                    if message.message_type:
                        logger.error(
                            "%s#%d failed on %s: %s: %s",
                            name,
                            incarnation,
                            message.message_type,
                            failure.error_type,
                            failure.error,
                        )
                    self._down(child, incarnation, failed=True, failure=failure)
            case ChildErrored(name=name):
                if name in self._by_name:
                    self._by_name[name].errors += 1
            case ChildExited(name=name, incarnation=incarnation):
                self._down_by_name(name, incarnation, failed=False, failure=None)
            case ChildStopped(name=name, incarnation=incarnation):
                self._down_by_name(
                    name,
                    incarnation,
                    failed=True,
                    failure=FailureInfo(
                        at=self._clock.time(),
                        error_type="Vanished",
                        error="stopped without a report",
                        phase="exit",
                    ),
                )
            case RestartDue(name=name, incarnation=incarnation):
                child = self._current(name, incarnation)
                if child is not None and child.state is ChildState.BACKOFF:
                    child.state = ChildState.PENDING
                    child.timer = None
                    self._advance()
            case LivenessTick():
                self._check_liveness()
                self._thread_labels.label()
            case StopTree(reason=reason):
                if self._state in (TreeState.STARTING, TreeState.RUNNING):
                    logger.info("stopping the tree: %s", reason)
                    self._stop_all()
                    self._outcome.finished.set()
                return self._state.value
            case _:
                logger.error("supervisor ignored unexpected message %r", message)
        return None

    # --- lifecycle of a child ---------------------------------------------------------

    def _current(self, name: str, incarnation: int) -> _Child | None:
        child = self._by_name.get(name)
        if child is None or child.incarnation != incarnation:
            return None
        return child

    def _advance(self) -> None:
        """Start every pending child whose turn it is."""
        if self._state not in (TreeState.STARTING, TreeState.RUNNING):
            return
        ordered = self._state is TreeState.STARTING or self._strategy is Strategy.REST_FOR_ONE
        for child in self._children:
            if child.state is ChildState.PENDING:
                self._start(child)
                if self._state not in (TreeState.STARTING, TreeState.RUNNING):
                    return
            if ordered and child.state not in _SETTLED:
                break
        if self._state is TreeState.STARTING and all(c.state in _SETTLED for c in self._children):
            self._state = TreeState.RUNNING
            logger.info("tree running")
            # Named now, not at the first liveness tick (seconds away): a run measured
            # from the start sees each actor's CPU under its name.
            self._thread_labels.label()
            self._outcome.ready.set()

    def _start(self, child: _Child) -> None:
        child.incarnation += 1
        name, incarnation = child.spec.name, child.incarnation
        context = ActorContext(
            name=name,
            incarnation=incarnation,
            directory=self._directory,
            clock=self._clock,
            drills=self._drills,
            report=self._report,
            services=self._services,
        )
        child.context = context
        child.started_at = self._clock.monotonic()
        child.ready_at = None
        child.ping = None
        child.progress, child.progress_at = 0, child.started_at
        child.state = ChildState.STARTING
        self._directory.expect(name, incarnation)
        try:
            ref = child.spec.actor_class.start(context, **child.spec.kwargs)
        except Exception as exc:
            logger.exception("%s#%d could not be constructed", name, incarnation)
            self._down(
                child,
                incarnation,
                failed=True,
                failure=FailureInfo(
                    at=self._clock.time(),
                    error_type=type(exc).__name__,
                    error=str(exc),
                    phase="start",
                ),
            )
            return
        child.ref = ref
        ready = ref.ask(Ping(), block=False)
        threading.Thread(
            target=self._watch,
            args=(name, incarnation, ref, context, ready),
            name=f"watch-{name}#{incarnation}",
            daemon=True,
        ).start()
        logger.info("started %s#%d", name, incarnation)

    def _watch(
        self,
        name: str,
        incarnation: int,
        ref: ActorRef[Any],
        context: ActorContext,
        ready: Future[Any],
    ) -> None:
        """Runs on its own thread: reports readiness, then the end of the incarnation."""
        try:
            ready.get(timeout=self._config.start_timeout)
            self._report(ChildReady(name=name, incarnation=incarnation))
        except Exception:
            pass  # a failed start is reported by the child; a slow one by the liveness tick
        ref.actor_stopped.wait()
        if context.thread is not None and context.thread is not threading.current_thread():
            # Let on_failure / on_stop send their report first.
            context.thread.join(timeout=2.0)
        self._report(ChildStopped(name=name, incarnation=incarnation))

    def _on_ready(self, child: _Child) -> None:
        child.state = ChildState.RUNNING
        child.ready_at = self._clock.monotonic()
        child.start_failures = 0
        logger.info("%s#%d ready", child.spec.name, child.incarnation)
        if child.incarnation > 1:
            # Whoever handed work to the old incarnation may need to hand it again.
            self._directory.publish(
                ChildRestarted(name=child.spec.name, incarnation=child.incarnation)
            )
        self._advance()

    def _down_by_name(
        self, name: str, incarnation: int, *, failed: bool, failure: FailureInfo | None
    ) -> None:
        child = self._by_name.get(name)
        if child is not None:
            self._down(child, incarnation, failed=failed, failure=failure)

    def _down(
        self,
        child: _Child,
        incarnation: int,
        *,
        failed: bool,
        failure: FailureInfo | None,
    ) -> None:
        """The given incarnation of ``child`` has stopped or must be replaced."""
        if incarnation != child.incarnation or incarnation in child.expected_stop:
            return
        if child.state not in (ChildState.STARTING, ChildState.RUNNING):
            return
        name = child.spec.name
        was_starting = child.state is ChildState.STARTING
        child.expected_stop.add(incarnation)
        child.ref = None
        child.ping = None
        if failure is not None:
            child.last_failure = failure
        if self._state not in (TreeState.STARTING, TreeState.RUNNING):
            child.state = ChildState.STOPPED
            return
        if not wants_restart(child.spec.restart, failed=failed):
            child.state = ChildState.FAILED if failed else ChildState.STOPPED
            logger.warning("%s#%d is %s and is not restarted", name, incarnation, child.state)
            self._advance()
            return
        now = self._clock.monotonic()
        if was_starting:
            child.start_failures += 1
            if child.start_failures > self._config.max_start_failures:
                self._escalate(
                    f"{name} failed to start {child.start_failures} times in a row"
                    f" (last: {_describe(failure)})"
                )
                return
        if not self._intensity.record(now):
            self._escalate(
                f"restart intensity exceeded: more than {self._config.max_restarts} restarts"
                f" within {self._config.restart_window:g} s (last: {name}, {_describe(failure)})"
            )
            return
        if child.ready_at is not None and now - child.ready_at >= self._config.backoff_reset:
            child.backoff_attempt = 0
        delay = self._backoff.delay(child.backoff_attempt, self._rand)
        child.backoff_attempt += 1
        child.restarts += 1
        if self._strategy is Strategy.REST_FOR_ONE:
            for later in reversed(self._children[child.index + 1 :]):
                self._hold_for_restart(later)
        child.state = ChildState.BACKOFF
        child.restart_at = now + delay
        logger.warning(
            "%s#%d %s (%s); restart %d in %.2f s",
            name,
            incarnation,
            "failed" if failed else "stopped",
            _describe(failure),
            child.restarts,
            delay,
        )
        due = RestartDue(name=name, incarnation=incarnation)
        # On the tree's clock, as ``restart_at`` is: a test clock rings it when advanced.
        child.timer = Alarm(
            delay, lambda: self._report(due), name=f"restart-{name}", clock=self._clock
        ).start()

    def _hold_for_restart(self, child: _Child) -> None:
        """rest_for_one: stop a later sibling so it starts again after the failed one."""
        if child.state in (ChildState.STARTING, ChildState.RUNNING):
            self._stop_child(child)
            child.restarts += 1
            child.state = ChildState.PENDING
        elif child.state is ChildState.BACKOFF:
            self._cancel_timer(child)
            child.state = ChildState.PENDING

    def _stop_child(self, child: _Child) -> None:
        """Orderly stop, waiting at most ``stop_timeout``; a child that hangs is retired."""
        name, incarnation = child.spec.name, child.incarnation
        child.expected_stop.add(incarnation)
        ref = child.ref
        child.ping = None
        if ref is None:
            return
        self._directory.withdraw(name, incarnation, drain=False)
        try:
            ref.stop(block=True, timeout=self._config.stop_timeout)
            logger.info("stopped %s#%d", name, incarnation)
        except pykka.Timeout:
            logger.error(
                "%s#%d did not stop within %.1f s; abandoned. Its stack:\n%s",
                name,
                incarnation,
                self._config.stop_timeout,
                _stack_of(child.context.thread if child.context else None),
            )
            self._retire(child)
        child.ref = None

    def _stop_all(self) -> None:
        self._state = TreeState.STOPPING
        if self._ticker is not None:
            self._ticker.stop()
        for child in reversed(self._children):
            self._cancel_timer(child)
            if child.state in (ChildState.STARTING, ChildState.RUNNING):
                self._stop_child(child)
            if child.state is not ChildState.FAILED:
                child.state = ChildState.STOPPED
        self._state = TreeState.STOPPED
        logger.info("tree stopped")

    def _escalate(self, reason: str) -> None:
        logger.critical("escalating: %s; stopping the tree", reason)
        self._outcome.failure = reason
        self._stop_all()
        self._state = TreeState.FAILED
        self._outcome.finished.set()

    def _cancel_timer(self, child: _Child) -> None:
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        child.restart_at = None

    def _report(self, message: Event | Command) -> None:
        if not tell_unless_ended(self.actor_ref, message):
            logger.debug("supervisor gone; %s dropped", type(message).__name__)

    def _snapshot(self) -> SupervisorSnapshot:
        return snapshot_of(
            self._children,
            state=self._state,
            strategy=self._strategy,
            directory=self._directory,
            clock=self._clock,
            intensity=self._intensity,
            config=self._config,
            outcome=self._outcome,
        )
