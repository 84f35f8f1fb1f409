"""The cyclic garbage collector run less often in the daemon.

Python collects its youngest objects once 700 more containers were allocated than
freed, and the whole heap after ten collections of the middle generation (when the
objects that outlived them are a quarter of the old ones or more). An order leaves
containers that live on a while (records waiting for their batch, the Ledger's book,
the windows of ids), so that count climbs with every signal: the collector ran every
few signals, and found little. In ``bench/pipeline.py sustained`` (10,000 orders) it
took 280 - 300 ms of the coordinator's 3.6 - 4 s of CPU, most of it in five full
collections of 40 ms each, which stop every thread. After 10,000 instead, the same run
spends 20 - 35 ms in it, and no full collection. What cycles the code leaves wait a
little longer to be freed: at most the containers of 10,000 allocations.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["DAEMON_THRESHOLDS", "space_out_collections"]

logger = logging.getLogger(__name__)

DAEMON_THRESHOLDS = (10_000, 10, 10)
"""``gc.set_threshold``'s: containers allocated before a collection of the youngest
generation, then collections of each generation before one of the next."""


def space_out_collections(
    thresholds: tuple[int, int, int] = DAEMON_THRESHOLDS,
) -> tuple[int, int, int]:
    """Set the collector's thresholds for this process; return the ones it had. Only
    for the daemon's own process: a library has no business with its host's."""
    if thresholds[0] < 1 or any(t < 1 for t in thresholds[1:]):
        raise ValueError(f"thresholds must be at least 1 each, not {thresholds}")
    before: tuple[int, int, int] = gc.get_threshold()
    gc.set_threshold(*thresholds)
    logger.info("garbage collector thresholds %s (were %s)", thresholds, before)
    return before
