"""Order intents claimed ahead of their send, shared by every Validator incarnation.

A Validator claims the intents of the signals it reserved together in one durable
commit, before it sends the first order. If it crashes (or is replaced) before it sends
them all, the next incarnation meets those signals again and finds their intents in
PostgreSQL: without this record, it could not tell them from orders that may have left,
and would decide them unknown instead of sending them.

An id is taken once, by whoever sends its order or closes it unsent, so two
incarnations never both send it. The record lives as long as the process: after a
restart, such an intent is one whose order may have left, as any other.
"""

from __future__ import annotations

import threading

__all__ = ["ClaimedAhead"]

_KEPT = 10_000
"""Ids kept at most: far more than the Validators' batches hold at once. The oldest
beyond it are forgotten (their signals are then decided as orders that may have left:
never sent twice)."""


class ClaimedAhead:
    """Client order ids whose intent this process stored and whose order has not left."""

    def __init__(self, limit: int = _KEPT) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, None] = {}
        self._limit = limit

    def add(self, client_order_id: str) -> None:
        with self._lock:
            self._ids[client_order_id] = None
            while len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]

    def take(self, client_order_id: str) -> bool:
        """Whether the id was here: its taker alone may send the order (or close it)."""
        with self._lock:
            return self._ids.pop(client_order_id, 0) is None

    def __contains__(self, client_order_id: object) -> bool:
        with self._lock:
            return client_order_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)
