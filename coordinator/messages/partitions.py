"""PartitionKeeper: the partitions of the symbols taken, renewed, given up; which ones
this instance holds."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.cluster.lease import Answer
from coordinator.messages.base import Command, Event, Query

__all__ = [
    "GetBusyPartitions",
    "GetPartitions",
    "PartitionLeasesAnswered",
    "PartitionTick",
    "PartitionsSnapshot",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionTick(Command):
    """Time to look at the leases' deadlines and make the requests that are due."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionLeasesAnswered(Event):
    """The store answered a tick's requests (or failed to); sent by the keeper's worker
    to the keeper."""

    answers: tuple[tuple[int, Answer], ...]
    """Each partition asked for, with the answer to its request."""
    live: tuple[str, ...] | None = None
    """The live cluster instances, when they were read with this tick's requests."""
    error: str | None = None
    """Why a call failed, when one did."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetBusyPartitions(Query):
    """Which partitions have signals in flight at the intake (answered with a
    frozenset of partition numbers): one is given up only once none is left."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPartitions(Query):
    """Which partitions this instance holds and should hold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionsSnapshot:
    """The keeper's view of the partitions."""

    partitions: int
    """How many partitions the symbols fall into (SYMBOL_PARTITIONS)."""
    held: tuple[int, ...]
    """Held now: their signals are decided here."""
    leaving: tuple[int, ...]
    """Held, being given up to another instance once their signals in flight are
    decided: their streams are no longer read."""
    wanted: tuple[int, ...]
    """What this instance should hold among the live instances."""
    live: tuple[str, ...]
    """The live cluster instances, as last read."""
    taken: int
    """Partition leases taken by this incarnation."""
    last_error: str | None
    """The last failure to reach the store, if the last answer was one."""
