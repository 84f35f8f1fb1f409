"""Signals that wait in a Validator: for the Trader, for PostgreSQL or for the Ledger
(until ``signal_timeout`` after their timestamp), and signals held after a 5xx (until
the reconciliation finds their order or not). A symbol's signals wait in order: one
behind another never overtakes it. No I/O: what is done with a signal is given."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from coordinator.trading.signals import Signal
from coordinator.trading.validation import CheckResult, OrderPlan, Reason

__all__ = ["Held", "SignalQueue", "Waiting", "expired"]

M = TypeVar("M")
"""The waiting message (the Validator's ``SubmitSignal``)."""


@dataclass
class Held:
    """What a held signal needs to be decided once its order is found, or sent again."""

    client_order_id: str
    plan: OrderPlan
    checks: tuple[CheckResult, ...]
    reservation_id: str | None
    """None when held again after a restart (the Ledger still holds the first room)."""
    error: str
    since: float
    """Wall-clock time it was held."""
    order_ms: float | None


@dataclass
class Waiting(Generic[M]):
    message: M
    signal: Signal
    why: Reason
    detail: str
    held: Held | None = None
    """Held after a 5xx: waits for the reconciliation, not for the Trader."""


def expired(signal: Signal, now: float, timeout: float) -> bool:
    """Past ``signal_timeout`` after the signal's own timestamp."""
    return now > signal.timestamp + timeout


class SignalQueue(Generic[M]):
    def __init__(self) -> None:
        self._entries: deque[Waiting[M]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Waiting[M]]:
        return iter(self._entries)

    def add(self, entry: Waiting[M]) -> None:
        self._entries.append(entry)

    def remove(self, entry: Waiting[M]) -> None:
        self._entries.remove(entry)

    def has_signal(self, signal_id: str) -> bool:
        return any(w.signal.signal_id == signal_id for w in self._entries)

    def has_symbol(self, symbol: str) -> bool:
        return any(w.signal.symbol == symbol for w in self._entries)

    def held(self, client_order_id: str) -> Waiting[M] | None:
        return next(
            (
                w
                for w in self._entries
                if w.held is not None and w.held.client_order_id == client_order_id
            ),
            None,
        )

    def holds(self, reservation_id: str) -> bool:
        """Whether a held signal keeps this reservation (settled once it is decided)."""
        return any(
            w.held is not None and w.held.reservation_id == reservation_id for w in self._entries
        )

    def expire(
        self,
        now: float,
        timeout: float,
        *,
        timed_out: Callable[[Waiting[M]], None],
        held_too_long: Callable[[Waiting[M]], bool],
    ) -> None:
        """Each waiting signal past its timeout is handed to ``timed_out`` and leaves; a
        held one leaves when ``held_too_long`` says it did (and decided it)."""
        kept: deque[Waiting[M]] = deque()
        for waiting in self._entries:
            if waiting.held is not None:
                if not held_too_long(waiting):
                    kept.append(waiting)
                continue
            if expired(waiting.signal, now, timeout):
                timed_out(waiting)
            else:
                kept.append(waiting)
        self._entries = kept

    def retry(self, process: Callable[[Waiting[M]], None]) -> None:
        """Each signal not held, in order, is handed to ``process`` (which may make it
        wait again); one behind a signal of its symbol that waits again stays behind."""
        pending, self._entries = self._entries, deque()
        for waiting in pending:
            if waiting.held is not None or self.has_symbol(waiting.signal.symbol):
                self._entries.append(waiting)
                continue
            process(waiting)
