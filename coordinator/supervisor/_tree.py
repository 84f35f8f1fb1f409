"""The supervisor's records of its tree and children, and the snapshot built from them."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pykka import ActorRef, Future

from coordinator.clock import Clock
from coordinator.config import SupervisorConfig
from coordinator.messages.supervision import ChildSnapshot, FailureInfo, SupervisorSnapshot
from coordinator.supervisor.child import ActorContext
from coordinator.supervisor.directory import Directory
from coordinator.supervisor.policy import RestartIntensity
from coordinator.supervisor.spec import ChildSpec, Strategy
from coordinator.supervisor.ticker import Alarm


class TreeState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class ChildState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"


_SETTLED = (ChildState.RUNNING, ChildState.STOPPED, ChildState.FAILED)


class TreeOutcome:
    """How the main thread learns that the tree is up, or is over and why."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.failure: str | None = None


@dataclass
class _Child:
    spec: ChildSpec
    index: int
    state: ChildState = ChildState.PENDING
    incarnation: int = 0
    ref: ActorRef[Any] | None = None
    context: ActorContext | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    restarts: int = 0
    errors: int = 0
    last_failure: FailureInfo | None = None
    backoff_attempt: int = 0
    start_failures: int = 0
    restart_at: float | None = None
    timer: Alarm | None = None
    ping: tuple[Future[Any], float] | None = None
    progress: int = 0
    """The incarnation's progress count (ActorContext.progress) as last seen..."""
    progress_at: float = 0.0
    """...and when it was first seen at that value."""
    expected_stop: set[int] = field(default_factory=set)


def snapshot_of(
    children: Sequence[_Child],
    *,
    state: TreeState,
    strategy: Strategy,
    directory: Directory,
    clock: Clock,
    intensity: RestartIntensity,
    config: SupervisorConfig,
    outcome: TreeOutcome,
) -> SupervisorSnapshot:
    now = clock.monotonic()
    rows = []
    for child in children:
        name = child.spec.name
        rows.append(
            ChildSnapshot(
                name=name,
                actor=child.spec.actor_class.__name__,
                restart=child.spec.restart.value,
                state=child.state.value,
                incarnation=child.incarnation,
                restarts=child.restarts,
                errors=child.errors,
                last_failure=child.last_failure,
                mailbox_depth=directory.depth(name),
                uptime=(
                    now - child.ready_at
                    if child.state is ChildState.RUNNING and child.ready_at is not None
                    else None
                ),
                restart_in=(
                    max(0.0, child.restart_at - now)
                    if child.state is ChildState.BACKOFF and child.restart_at is not None
                    else None
                ),
            )
        )
    return SupervisorSnapshot(
        state=state.value,
        strategy=strategy.value,
        children=tuple(rows),
        restarts_in_window=intensity.count(now),
        max_restarts=config.max_restarts,
        restart_window=config.restart_window,
        failure=outcome.failure,
    )


def _describe(failure: FailureInfo | None) -> str:
    if failure is None:
        return "normal stop"
    return f"{failure.error_type}: {failure.error}" if failure.error else failure.error_type


def _stack_of(thread: threading.Thread | None) -> str:
    if thread is None or thread.ident is None:
        return "(thread unknown)"
    frame = sys._current_frames().get(thread.ident)
    if frame is None:
        return "(thread ended)"
    return "".join(traceback.format_stack(frame))
