"""Supervision: liveness, failure reports, the supervisor's own timers and snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.messages.base import Command, Event, Query

__all__ = [
    "ChildErrored",
    "ChildExited",
    "ChildFailed",
    "ChildReady",
    "ChildRestarted",
    "ChildSnapshot",
    "ChildStopped",
    "DrillCrash",
    "DrillHang",
    "FailureInfo",
    "GetSupervisorSnapshot",
    "LivenessTick",
    "Ping",
    "Pong",
    "RestartDue",
    "StopTree",
    "SupervisorSnapshot",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Query):
    """Readiness and liveness probe; every supervised actor answers it with ``Pong``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    name: str
    """The child's name in the tree."""
    incarnation: int
    """Which start of the child answered; grows by one on each restart."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureInfo:
    at: float
    """Wall-clock time of the failure, epoch seconds."""
    error_type: str
    """Exception class name, or ``Hung`` / ``StartTimeout`` / ``Vanished``."""
    error: str
    """The exception's message."""
    phase: str
    """``start``, ``message``, ``stop``, ``liveness`` or ``exit``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFailed(Event):
    """A child reports, from its own thread, that it is dying of an exception."""

    name: str
    """The child's name."""
    incarnation: int
    """The incarnation that failed."""
    failure: FailureInfo
    """What went wrong."""
    message_type: str | None = None
    """Class name of the message being handled, when the failure was in a handler."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildErrored(Event):
    """A handler raised; for an ``ask`` the caller got the error and the child lives on."""

    name: str
    """The child's name."""
    incarnation: int
    """The incarnation that raised."""
    failure: FailureInfo
    """The error."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildExited(Event):
    """A child stopped without an error (its own ``stop()`` or the supervisor's)."""

    name: str
    """The child's name."""
    incarnation: int
    """The incarnation that stopped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStopped(Event):
    """The watcher saw the child's ``actor_stopped`` event set and its thread end."""

    name: str
    """The child's name."""
    incarnation: int
    """The incarnation that stopped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRestarted(Event):
    """The supervisor started a new incarnation of a child after a failure
    or a stop; whoever handed work to the old one may need to hand it again."""

    name: str
    """The child."""
    incarnation: int
    """The new incarnation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildReady(Event):
    """The child answered its readiness ``Ping``: its ``on_start`` is done."""

    name: str
    """The child's name."""
    incarnation: int
    """The incarnation that is ready."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartDue(Command):
    """The backoff delay of a failed child has elapsed."""

    name: str
    """The child to start again."""
    incarnation: int
    """The incarnation that failed; a stale timer is ignored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LivenessTick(Command):
    """Time to check readiness deadlines and to Ping every running child."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopTree(Command):
    """Stop every child in reverse start order; answered when all are stopped."""

    reason: str
    """Why, for the log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSupervisorSnapshot(Query):
    """Ask the supervisor for a ``SupervisorSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSnapshot:
    name: str
    """The child's name."""
    actor: str
    """The actor class."""
    restart: str
    """``permanent``, ``transient`` or ``temporary``."""
    state: str
    """``pending``, ``starting``, ``running``, ``backoff``, ``stopped`` or ``failed``."""
    incarnation: int
    """Starts so far (1 on the first start)."""
    restarts: int
    """Restarts so far."""
    errors: int
    """Exceptions raised by handlers, asks included."""
    last_failure: FailureInfo | None
    """The latest failure, if any."""
    mailbox_depth: int
    """Messages waiting in the inbox (buffered ones included while it is down)."""
    uptime: float | None
    """Seconds since the current incarnation became ready; None when not running."""
    restart_in: float | None
    """Seconds until the next start attempt, while in backoff."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorSnapshot:
    state: str
    """``starting``, ``running``, ``stopping``, ``stopped`` or ``failed``."""
    strategy: str
    """``one_for_one`` or ``rest_for_one``."""
    children: tuple[ChildSnapshot, ...]
    """In start order."""
    restarts_in_window: int
    """Restarts within the intensity window."""
    max_restarts: int
    """Allowed restarts within the window."""
    restart_window: float
    """The window, seconds."""
    failure: str | None
    """Why the tree escalated, when it did."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillCrash(Command):
    """Fault injection: the receiving actor raises on this message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillHang(Command):
    """Fault injection: the receiving actor blocks on this message."""

    seconds: float
    """How long it blocks."""
