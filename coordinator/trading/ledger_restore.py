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
from coordinator.trading.ledger_overlay import bases_by_prefix
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol
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

    Per symbol our orders form a sequence (a BUY opens the position, a SELL closes it)
    and the view shows a prefix of it: the orders after the last one whose position the
    view shows are laid, the others not. Judging each order alone would lay a SELL of an
    earlier holding over the holding bought after it, hiding a held position for the
    whole settle window (its exits refused ``no_position``).
    """
    recent = sorted(
        (
            o
            for o in orders
            if now - o.created_at < book.settle_window
            and o.quantity > 0
            and o.signal_id not in book.never_executed  # found so since the store was read
        ),
        key=lambda o: o.created_at,
    )
    laying: list[tuple[StoredOrder, bool]] = []  # (order, whether its position shows)
    for symbol in sorted({o.symbol for o in recent}):
        sequence = [o for o in recent if o.symbol == symbol]
        position = book.view.positions.get(symbol)
        held = position.quantity if position is not None else 0.0
        shown = _shown_prefix(sequence, held)
        base = book.view.balances.get(split_symbol(symbol)[0])
        balances = _sellable_prefix(
            sequence[:shown],
            base.free if base is not None else 0.0,
            held,
            got=1.0 if book.fee_in_base is False else 1.0 - book.fee_rate,
        )
        laying.extend((o, True) for o in sequence[balances:shown])
        laying.extend((o, False) for o in sequence[shown:])
    laid = 0
    for order, positions_shown in sorted(laying, key=lambda item: item[0].created_at):
        price = order.reference_price
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
        book.adopt(
            plan,
            at=order.created_at,
            unknown=not order.accepted,
            signal_id=order.signal_id,
            positions_shown=positions_shown,
        )
        laid += 1
    return laid


def _shown_prefix(sequence: list[StoredOrder], held: float) -> int:
    """How many of a symbol's orders the view's position ``held`` shows: the longest
    prefix whose expected position matches it (none: only the position from before
    them, which no order tells). The position expected after a BUY is its quantity
    (plus a BUY's just before it), within 5 % of it: the Trader truncates a quantity
    to the exchange's step, and the position is what it executed."""
    expected = 0.0
    shown = 0
    for index, order in enumerate(sequence, start=1):
        if order.side is Side.SELL:
            expected = 0.0
        else:
            expected += order.quantity
        tolerance = 0.05 * order.quantity if order.side is Side.BUY else 0.0
        if abs(expected - held) <= tolerance:
            shown = index
    return shown


def _sellable_prefix(shown: list[StoredOrder], free: float, held: float, *, got: float) -> int:
    """How many of the orders a view's position shows (``shown``) its base balance
    (``free``) is taken to show, so that a SELL of the position (``held``) is never sized
    on more base than is held; the orders after are laid for their balances part.

    The balances are fetched apart from the positions and may lag them, and no amount
    tells which of our orders they show: the base before the first is not known. Each
    prefix the balances may show means a base held now (the orders after it applied:
    a SELL takes its quantity, a BUY brings it less a fee that may be in the base). A
    SELL sells min(position, free base): when one of those is less than the position,
    the least is taken (the longest such prefix), else the base as it is. A position
    sold and bought again with balances still showing the holding sold was sized on
    its old base (refused by the exchange: the fee of the BUY came out of the base).
    The cash stays on the cautious side too: a SELL laid so counts no cash (its cash
    may be shown), a BUY spends its own.
    """
    if held <= 0 or not shown:
        return len(shown)
    means = bases_by_prefix(
        [(o.side, o.quantity * (got if o.side is Side.BUY else 1.0)) for o in shown], free
    )
    least = min(means)
    if least >= held:
        return len(shown)
    return max(i for i, amount in enumerate(means) if amount <= least + 1e-9 * held)
