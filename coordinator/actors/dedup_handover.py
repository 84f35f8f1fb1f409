"""The intake's duplicate window, and what rebuilds it at a start: the digests of the ids
seen within it, read from the store a generation at a time, oldest first, then those
the StoreWriter holds and has not written yet."""

from __future__ import annotations

import logging

from coordinator.compact_ids import DIGEST_BYTES, CompactIdWindow, pack_sorted_digests
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.store import StoreError
from coordinator.runtime import Services

__all__ = ["duplicate_window", "rebuild_window"]

logger = logging.getLogger(__name__)

_KEPT = 2_000_000
"""Ids kept at most, whatever the window's length: past this many, the oldest are
forgotten first. Two million is an hour's window at 555 signals a second; past the
newest, an id costs about 18 bytes as a digest."""
_GENERATION = 65_536
"""Digests sealed (and read from the store) together."""


def duplicate_window(horizon: float) -> CompactIdWindow:
    """The intake's window of ids seen within ``horizon`` seconds."""
    return CompactIdWindow(_KEPT, horizon=horizon, generation=_GENERATION)


def rebuild_window(
    window: CompactIdWindow, services: Services, unwritten: bytes, *, now: float, horizon: float
) -> None:
    """Fill an empty ``window`` with the ids seen within ``horizon`` seconds: the newest read
    from the store when a start asks for them, rather than kept for an intake restart
    that may never come (an hour of ids is millions, and the store has every one, other
    instances' included), then ``unwritten`` (digests packed in ascending order). With
    the store down, the decisions this process knows stand in for the store's. An hour
    of ids takes seconds, in PostgreSQL mostly; the supervisor waits 30."""
    store = PipelineStore(services.endpoints.database_dsn, timeout=5.0)
    try:
        store.recent_signal_digests(
            now - horizon,
            _KEPT,
            _GENERATION,
            lambda newest, packed: window.add_generation(packed, newest),
        )
    except StoreError as exc:
        known = pack_sorted_digests(services.decided.digests())
        logger.error(
            "could not read the ids seen within the dedup window (%s): the intake knows"
            " only the %d newest decisions of this process; an older copy of a signal may"
            " be decided again (its order's intent still stops a second order)",
            exc,
            len(known) // DIGEST_BYTES,
        )
        window.add_generation(known, now)
    finally:
        store.close()
    window.add_generation(unwritten, now)
