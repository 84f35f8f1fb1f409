"""A window of recently seen signal ids: membership in O(1), oldest forgotten first.

Each signal crosses several registries of ids (the intake's duplicate window, the
decided signals); at hundreds of signals a second, an hour of them is millions of ids.
An ``OrderedDict`` costs about 100 bytes per id besides the id itself (its linked list
and a float per entry), so this keeps the ids in arrival order in a deque (8 bytes
each) beside a set for membership (about 30), and the arrival times once per second
rather than once per id.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["IdWindow"]


class IdWindow:
    """Ids in arrival order, forgotten when older than ``horizon`` seconds (if given) or
    beyond the ``limit`` most recent.

    Times are the caller's (``seen`` at each add); they are kept per whole second, so an
    id is forgotten between ``horizon`` and ``horizon + 1`` seconds after it was seen.
    Not thread-safe: the owner locks if it shares it.
    """

    def __init__(
        self,
        limit: int,
        horizon: float | None = None,
        *,
        on_evict: Callable[[str, int], None] | None = None,
    ) -> None:
        """``on_evict`` is handed each id pushed out by the limit, with its second (not
        those forgotten by age or discarded): a longer window behind this one keeps it."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._limit = limit
        self._horizon = horizon
        self._on_evict = on_evict
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        # (second, how many ids of ``_order`` arrived in it), oldest first.
        self._seconds: deque[list[int]] = deque()
        # Ids discarded while their place is still in ``_order``: that many places are
        # passed over when they reach the front (the id may have been added again since).
        self._stale: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, signal_id: object) -> bool:
        return signal_id in self._ids

    def add(self, signal_id: str, seen: float = 0.0) -> bool:
        """Remember ``signal_id`` as seen at ``seen``; False (and nothing changes: its
        age counts from its first sighting) if it is here already."""
        if signal_id in self._ids:
            return False
        self._ids.add(signal_id)
        self._order.append(signal_id)
        second = math.floor(seen)
        # A time earlier than the newest kept (a clock stepped back, a batch restored at
        # one instant) joins the newest second: kept a little longer, never less.
        if self._seconds and self._seconds[-1][0] >= second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])
        while len(self._ids) > self._limit:
            self._pop_one(evicted=True)
        return True

    def update(self, signal_ids: Iterable[str], seen: float = 0.0) -> None:
        for signal_id in signal_ids:
            self.add(signal_id, seen)

    def discard(self, signal_id: str) -> None:
        """Forget ``signal_id`` now (its place in the order is passed over later)."""
        if signal_id in self._ids:
            self._ids.discard(signal_id)
            self._stale[signal_id] = self._stale.get(signal_id, 0) + 1

    def forget_older_than(self, now: float) -> None:
        """Forget the ids seen more than ``horizon`` seconds before ``now``."""
        if self._horizon is None:
            return
        horizon = now - self._horizon
        while self._seconds and self._seconds[0][0] + 1 <= horizon:
            self._pop_oldest()

    def snapshot(self) -> frozenset[str]:
        return frozenset(self._ids)

    def _pop_oldest(self) -> None:
        """Forget every id of the oldest second."""
        _second, count = self._seconds[0]
        for _ in range(count):
            self._pop_one()

    def _pop_one(self, *, evicted: bool = False) -> None:
        signal_id = self._order.popleft()
        bucket = self._seconds[0]
        bucket[1] -= 1
        if bucket[1] == 0:
            self._seconds.popleft()
        copies = self._stale.get(signal_id)
        if copies is None:
            self._ids.discard(signal_id)
            if evicted and self._on_evict is not None:
                self._on_evict(signal_id, bucket[0])
        elif copies == 1:
            del self._stale[signal_id]
        else:
            self._stale[signal_id] = copies - 1
