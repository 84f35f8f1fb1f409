"""The kill switch as ServiceHealth knows it, kept outside the actor for its next
incarnation: a restart during a PostgreSQL outage then keeps the operator's halt (and
its exit policy), and an action not stored yet, instead of starting unreadable."""

from __future__ import annotations

import logging

from coordinator.runtime import KeptRecords
from coordinator.trading.trading_state import ExitPolicy, HaltState

__all__ = ["exit_policy", "keep_halt", "kept_halt"]

logger = logging.getLogger(__name__)


def exit_policy(stored: str) -> ExitPolicy:
    """A stored exit policy; one this version does not know blocks (never fails open)."""
    try:
        return ExitPolicy(stored)
    except ValueError:
        logger.error("kill switch exit policy %r unknown: exits blocked", stored)
        return ExitPolicy.BLOCK


def keep_halt(kept: KeptRecords, halt: HaltState, *, persisted: bool) -> None:
    """Keep the kill switch as known now (an unknown one keeps what was known)."""
    if halt.active is None:
        return
    kept.put(
        "halt",
        {
            "active": halt.active,
            "reason": halt.reason,
            "by": halt.by,
            "at": halt.at,
            "exits": halt.exits.value,
            "persisted": persisted,
        },
    )


def kept_halt(kept: KeptRecords) -> tuple[HaltState, bool]:
    """(the kill switch, whether it is stored) as the last incarnation knew it; unknown
    (and nothing to store) in a new process."""
    record = kept.copy().get("halt")
    if record is None:
        return HaltState(active=None), True
    halt = HaltState(
        active=bool(record["active"]),
        reason=record["reason"],
        by=record["by"],
        at=record["at"],
        exits=exit_policy(record["exits"]),
    )
    return halt, bool(record["persisted"])
