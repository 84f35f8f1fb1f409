"""What the StoreWriter hands the intake to rebuild its duplicate window from: the
digests of the ids seen within the window, a generation at a time, oldest first."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from coordinator.compact_ids import id_digest, pack_sorted_digests
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import DigestGeneration, GetUndecided

__all__ = ["dedup_generations"]

logger = logging.getLogger(__name__)


def dedup_generations(
    store: PipelineStore,
    ask: GetUndecided,
    *,
    now: float,
    since: float,
    unwritten_ids: Iterable[str],
    decided_here: Iterable[int],
) -> tuple[DigestGeneration, ...]:
    """The ids received since ``since``, read from the store at each ask rather than
    kept for an intake restart that may never come (an hour of ids is millions; and the
    store's are every one, other instances' included), then those received and not
    written yet (``unwritten_ids``) as the newest generation. With the store down, the
    digests of this incarnation's decisions (``decided_here``) stand in for the store's."""
    recent: list[DigestGeneration] = []
    digests = {id_digest(signal_id) for signal_id in unwritten_ids}
    try:
        store.recent_signal_digests(
            since,
            ask.recent_limit,
            ask.generation,
            lambda newest, packed: recent.append(DigestGeneration(newest=newest, packed=packed)),
        )
    except StoreError as exc:
        recent = []
        digests.update(decided_here)
        logger.error(
            "could not read the ids seen within the dedup window (%s): the intake knows"
            " only this incarnation's %d newest decisions; an older copy of a signal may be"
            " decided again (its order's intent still stops a second order)",
            exc,
            len(digests),
        )
    if digests:
        recent.append(DigestGeneration(newest=now, packed=pack_sorted_digests(digests)))
    return tuple(recent)
