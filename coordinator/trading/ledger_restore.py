"""Our recent orders from the store, laid over a new process's first view.

A new process starts with an empty Ledger book: without this, a SELL that filled (or is
held after a 5xx answer) while the Portfolio still shows the position would be sold
again, and a BUY's cash spent again. Each stored order newer than the fill settle window
that filled or may have (accepted, unknown, held, never answered) is laid over the view
exactly as a fill of this process is, until the Portfolio shows it or the window ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.trading.ledger_book import LedgerBook
from coordinator.trading.signals import Side
from coordinator.trading.validation import OrderPlan

__all__ = ["StoredOrder", "restore"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredOrder:
    """One order of ours as the store has it."""

    client_order_id: str
    """The id the Trader was (or may have been) sent."""
    signal_id: str
    """The signal (or stop exit) it was made for."""
    symbol: str
    """The pair, e.g. ``BTCUSDC``."""
    side: Side
    """BUY or SELL."""
    quantity: float
    """Base quantity ordered."""
    reference_price: float | None
    """The price it was sized at; None when the store has none."""
    created_at: float
    """Epoch seconds of the intent."""
    accepted: bool
    """True: the Trader accepted it; False: unknown, held or never answered."""


def restore(book: LedgerBook, orders: Iterable[StoredOrder], *, now: float) -> int:
    """Lay ``orders`` over ``book``'s view (taken from a first fetch); the number laid.

    An order the view shows already (a SELL of a symbol it holds no position of, a BUY
    of one it holds) is not laid again.
    """
    laid = 0
    for order in sorted(orders, key=lambda o: o.created_at):
        if now - order.created_at >= book.settle_window:
            continue
        if order.quantity <= 0:
            continue
        price = order.reference_price
        if (order.side is Side.SELL) is (order.symbol not in book.view.positions):
            # Shown already: a SELL's position gone, a BUY's there. (A BUY whose
            # balances the Portfolio has not caught up with is not told from this view.)
            continue
        if price is None or price <= 0:
            if order.side is Side.BUY:
                logger.error(
                    "stored BUY %s of %s has no reference price: its cash cannot be counted",
                    order.client_order_id,
                    order.symbol,
                )
                continue
            position = book.view.positions[order.symbol]
            price = position.entry_price or 0.0
        plan = OrderPlan(
            order.symbol,
            order.side,
            order.quantity,
            price,
            order.quantity * price,
            None,
        )
        book.adopt(plan, at=order.created_at, unknown=not order.accepted, signal_id=order.signal_id)
        laid += 1
    return laid
