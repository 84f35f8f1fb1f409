"""The Ledger book's records of our orders: their states and what a settlement did.

Immutable: a change is a new record, so that a book and its snapshots share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from coordinator.trading.validation import OrderPlan

__all__ = ["BookOrder", "OrderState", "SettleResult"]


class OrderState(StrEnum):
    RESERVED = "reserved"
    """Room held; the order may be on its way, or even filled, but nobody said so."""
    FILLED = "filled"
    """Filled (or unknown, counted as filled) and laid over the view until shown."""


class SettleResult(StrEnum):
    SETTLED = "settled"
    UNKNOWN_ID = "unknown_id"
    """No reservation of that id: settled already, expired, or from an earlier book."""
    WRONG_PLAN = "wrong_plan"
    """The id names another symbol or side than the settlement says."""


@dataclass(frozen=True, slots=True)
class BookOrder:
    """One order of ours; never changed in place (a change is a new record), so that a
    book and its snapshots share them."""

    reservation_id: str
    plan: OrderPlan
    owner: str
    """Who reserved it (``validator-3#2``)."""
    reserved_at: float
    expires_at: float
    """A RESERVED order is released at this time; a FILLED one trusted to the view."""
    state: OrderState
    base_before: float
    """The base amount (total) in the book's view when it was reserved."""
    base_after: float
    """The base amount (total) expected once it fills."""
    held_before: float
    """The position quantity in the book's view when it was reserved."""
    held_after: float
    """The position quantity expected once it fills (0: none)."""
    entry_before: float | None = None
    """Entry price of the holding a SELL closes."""
    positions_shown: bool = False
    balances_shown: bool = False
    signal_id: str = ""
    number: int = 0
    """Its place among the book's reservations (1, 2, ...)."""
    filled_before: int | None = None
    """Settled filled when the book had made this many reservations: it filled before
    any reserved after. None: not known filled, or adopted (no order known)."""
    unknown: bool = False
    """Settled unknown: a BUY spends its cash but adds no position or base until shown
    (it may not have filled: a SELL sized on it would sell coins of no position); a
    SELL hides its position, which may still be held. Either holds back BUYs of its
    symbol until its position part is shown."""
    filled_at: float | None = None
    """When the book learned it filled (settled, or adopted from the store)."""
    proceeds_counted: bool = True
    """False: a SELL laid without its cash (restored from a view that may show it)."""
