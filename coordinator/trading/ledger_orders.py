"""The Ledger book's records of our orders: their states and what a settlement did.

Immutable: a change is a new record, so that a book and its snapshots share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from coordinator.trading.validation import OrderPlan

__all__ = ["Assumption", "BookOrder", "OrderState", "SettleResult"]


class OrderState(StrEnum):
    RESERVED = "reserved"
    """Room held; the order may be on its way, or even filled, but nobody said so."""
    FILLED = "filled"
    """Filled (or unknown, counted as filled) and laid over the view until shown."""


class Assumption(StrEnum):
    """Why an order's balances part is marked shown without the view proving it."""

    TAKEN_AS_TRUTH = "taken_as_truth"
    """The view's base matched none of our prefixes (a trade made elsewhere): the view
    was taken as it is, every order of the symbol marked shown."""
    LEAST_BASE = "least_base"
    """Among the prefixes neither the base nor the quote could tell apart, the one
    kept (the least base) shows it; a shorter one may be the truth."""


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
    assumed: Assumption | None = None
    """Its balances part marked shown without proof: the view may not show it yet. Kept
    in the book, what it may count held back, until a view shows an order reserved
    after it filled (see ``ledger_matching``) or its time is up."""
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
    fee_share_before: float = 0.0
    """How much less than ``base_before`` the base is expected to be if every BUY's fee
    is taken in the base (``base_before`` expects it in the quote): 0 when the fee is
    known to be taken in the quote."""
    fee_share: float = 0.0
    """The same for ``base_after``."""
    base_offsets: tuple[float, ...] = ()
    """What else than none the symbol's base may be off ``base_before`` and
    ``base_after`` by: a view taken as the truth (its base the expectations' anchor)
    may have lacked orders it was taken to show, each offset what a suffix of them
    moves the base by. The same for every order of the symbol from that view on, and
    cleared once a view's base fits one offset only (see ``ledger_matching``)."""

    @property
    def coins_laid(self) -> bool:
        """Filled, and known to be: a BUY's coins are laid over the view until shown
        (a reserved or unknown one's are not sure)."""
        return self.state is OrderState.FILLED and not self.unknown

    @property
    def shown_whole(self) -> bool:
        """Both parts shown by the view, neither only assumed: nothing left to lay or
        to hold back."""
        return self.positions_shown and self.balances_shown and self.assumed is None
