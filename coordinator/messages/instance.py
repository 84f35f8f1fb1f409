"""The InstanceKeeper's messages: the heartbeat of this process's identity."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.messages.base import Command, Event

__all__ = ["HeartbeatFailed", "HeartbeatWritten", "IdentityTakenOver", "InstanceTick"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceTick(Command):
    """Time to beat this instance's row again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatWritten(Event):
    """The row was beaten: this process still holds its identity."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatFailed(Event):
    """PostgreSQL did not take the heartbeat; the next tick tries again."""

    error: str
    """Why, first line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityTakenOver(Event):
    """Another incarnation holds this process's identity now: it must stop acting."""

    reason: str
    """Who holds it (host, pid, incarnation, last heartbeat), as the log names it."""
