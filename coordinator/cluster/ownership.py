"""The partitions this process holds, shared by the threads that route and decide.

The PartitionKeeper writes it (each time a lease is taken, renewed, given up or lost);
the partition stream reader reads which streams to read, the intake which token to
hand a signal with, the Validator nothing directly (the token travels with the
signal). A partition being given up is still held, so that the signals already read
from its stream are decided under its lease, but its stream is no longer read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.cluster.fencing import LeaseToken
from coordinator.cluster.partitions import partition_of

__all__ = ["PartitionOwnership", "partition_stream"]


def partition_stream(prefix: str, partition: int) -> str:
    return f"{prefix}{partition}"


@dataclass(frozen=True, slots=True)
class _Held:
    tokens: dict[int, LeaseToken]
    deadlines: dict[int, float]
    leaving: frozenset[int]


class PartitionOwnership:
    """``monotonic``: the clock the keeper's deadlines are read on (the tree's)."""

    def __init__(self, partitions: int, stream_prefix: str, monotonic: Callable[[], float]) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {partitions}")
        self.partitions = partitions
        self.stream_prefix = stream_prefix
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held = _Held({}, {}, frozenset())
        self.changed = threading.Event()
        """Set at each change: the stream reader waits on it between reads."""

    def partition_of(self, key: str) -> int:
        return partition_of(key, self.partitions)

    def stream(self, partition: int) -> str:
        return partition_stream(self.stream_prefix, partition)

    def streams(self) -> dict[str, int]:
        """Every partition stream by name (to tell an entry's partition from its stream)."""
        return {self.stream(k): k for k in range(self.partitions)}

    def update(
        self,
        tokens: dict[int, LeaseToken],
        deadlines: dict[int, float],
        leaving: frozenset[int],
    ) -> None:
        """What is held now: each lease's token and the deadline on the keeper's clock
        past which it is no longer taken as held, even if the keeper says nothing more
        (paused, hung): a stale token would only be refused by the fence."""
        with self._lock:
            self._held = _Held(dict(tokens), dict(deadlines), frozenset(leaving) & set(tokens))
        self.changed.set()

    def _current(self) -> dict[int, LeaseToken]:
        now = self._monotonic()
        held = self._held
        return {k: t for k, t in held.tokens.items() if now < held.deadlines.get(k, now)}

    def token(self, partition: int) -> LeaseToken | None:
        """The lease under which a signal of ``partition`` is decided here; None when this
        process does not hold it (the signal is left to the owner)."""
        with self._lock:
            return self._current().get(partition)

    def held(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._current())

    def reading(self) -> frozenset[int]:
        """The partitions whose streams are read: held and not being given up."""
        with self._lock:
            return frozenset(self._current()) - self._held.leaving

    def leaving(self) -> frozenset[int]:
        with self._lock:
            return self._held.leaving
