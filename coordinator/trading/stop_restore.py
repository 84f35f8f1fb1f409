"""A stop's lifecycle from its stored record, for a new incarnation or a new process."""

from __future__ import annotations

from dataclasses import replace

from coordinator.trading.stop_events import Action, LookUpDecision, ReadOrders
from coordinator.trading.stop_lifecycle import Lifecycle, Phase

__all__ = ["restore"]


def restore(
    phase: str, attempt: int, failures: int, now: float
) -> tuple[Lifecycle, tuple[Action, ...]]:
    """A lifecycle from a stored record (a new incarnation or a new process). It sends
    nothing until the Portfolio confirms the holding, and reads the stored orders before
    any new attempt."""
    try:
        # Records written before the AWAITING_ORDER phase existed.
        stored = Phase.AWAITING_ORDER if phase == "exit_unknown" else Phase(phase)
    except ValueError as exc:
        raise ValueError(f"unknown stop state {phase!r}") from exc
    if attempt < 0 or failures < 0:
        raise ValueError(f"attempt {attempt} and failures {failures} must be >= 0")
    base = Lifecycle(
        phase=stored,
        attempt=attempt,
        failures=failures,
        sent_at=now,
        retry_at=now,
        confirmed=False,
        clean=False,
        sold_attempt=attempt if stored is Phase.SOLD else 0,
    )
    if stored is Phase.EXITING:
        return replace(base, lookup_pending=True), (LookUpDecision(attempt=attempt),)
    if stored is Phase.CHECKING:
        return replace(base, phase=Phase.RETRY), ()
    if stored is Phase.AWAITING_ORDER:
        return base, (ReadOrders(),)
    return base, ()
