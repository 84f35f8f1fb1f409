"""A stop's exit for a holding our own SELL closed, when the book knew that holding only
from our BUY: the closed holding is recorded at the BUY's sizing price, the stop knows
it at its fill price. Found by a busier variant of the wide model of the book (many
orders of a symbol between two views). What tells the two holdings apart is when the
Portfolio showed each opened (``trade_cycles.created_at``), which the stop and the
Ledger's view both read."""

from __future__ import annotations

import pytest

from coordinator.trading.ledger_book import LedgerBook
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.signals import Side
from coordinator.trading.validation import (
    Evaluation,
    ExitTarget,
    LedgerState,
    MarketQuote,
    OrderPlan,
    PositionView,
    Reason,
)
from tests.test_ledger_book_model import CONFIG, make_signal
from tests.test_ledger_round_trips import NOW, World, shown_view

AAA = "AAAUSDC"
FIRST_OPENED = NOW + 1.2
"""When the Portfolio showed the first holding opened, as the stop knows it."""
NEW_OPENED = NOW + 3.5
"""When the Portfolio shows the new holding opened."""


@pytest.mark.parametrize(
    "opened",
    [
        pytest.param(NEW_OPENED, id="shown opened"),
        pytest.param(
            None,
            id="opening unknown",
            marks=pytest.mark.xfail(
                strict=True, reason="left open: a Portfolio without timestamps tells nothing"
            ),
        ),
    ],
)
def test_an_exit_for_a_holding_our_sell_closed_never_sells_the_next_one(
    opened: float | None,
) -> None:
    """Our BUY (sized at 10, filled at 9.99) and its SELL fill before any view shows
    them, then a BUY of about the same size fills at 9.99 too. The Portfolio shows the
    new holding. A stop that knew the first holding at its fill price, and did not
    hear of our SELL, asks to exit it: the closed holding, recorded at 10.0, is not
    recognised (entries within 0.05 % are one holding), and the new holding (its
    quantity within 1 %) was taken for the stop's own and sold. The Portfolio shows it
    opened at another time than the stop's holding (the view may also not know when)."""
    book = _round_trip_then_a_new_holding(opened)
    evaluation = _exit(book, entry=9.99, quantity=2.2, opened_at=FIRST_OPENED)
    assert evaluation.plan is None
    assert evaluation.failure is not None
    assert evaluation.failure.reason is Reason.POSITION_CHANGED
    assert "opened at" in evaluation.failure.detail


@pytest.mark.parametrize("opened_at", [NEW_OPENED + 0.0004, None], ids=["same", "unknown"])
def test_the_new_holdings_own_exit_is_sold(opened_at: float | None) -> None:
    """The check by opening time refuses no exit of the holding the Portfolio shows,
    nor one whose stop does not know when it was opened."""
    book = _round_trip_then_a_new_holding(NEW_OPENED)
    evaluation = _exit(book, entry=9.99, quantity=2.185, opened_at=opened_at)
    assert evaluation.failure is None
    assert evaluation.plan is not None
    assert evaluation.plan.quantity == pytest.approx(2.185, rel=1e-3)


def _round_trip_then_a_new_holding(opened: float | None) -> LedgerBook:
    """The book after our BUY, its SELL and a new BUY, and a view showing the new
    holding (opened at ``opened``; None: the Portfolio gives no time)."""
    world = World(100.0, {"AAA": 0.0}, {AAA: 0.0})
    book = LedgerBook(
        quote="USDC", fee_rate=0.01, lifetime=20.0, settle_window=1e6, fee_in_base=False
    )
    book.fetched_view(shown_view(world, world, NOW), NOW)
    for side, quantity, at in ((Side.BUY, 2.2, 1), (Side.SELL, 2.2, 2), (Side.BUY, 2.185, 3)):
        plan = OrderPlan(AAA, side, quantity, 10.0, quantity * 10.0, None)
        order = book.reserve(plan, owner="v#1", now=NOW + at)
        book.settle(order.reservation_id, True, symbol=AAA, side=side, now=NOW + at)
    held = World(100.0 - 2.2 * 0.0999 - 2.185 * 10.09, {"AAA": 2.185}, {AAA: 2.185})
    view = shown_view(held, held, NOW + 4)
    view.positions[AAA] = PositionView(
        AAA, 2.185, 9.99, 2.185 * 9.99, 0.0, opened_at=() if opened is None else (opened,)
    )
    book.fetched_view(view, NOW + 4)
    return book


def _exit(
    book: LedgerBook, *, entry: float, quantity: float, opened_at: float | None
) -> Evaluation:
    target = ExitTarget(
        position_key="H",
        entry_price=entry,
        quantity=quantity,
        stop=9.49,
        price=9.4,
        price_at=NOW + 5,
        opened_at=opened_at,
    )
    return evaluate_order(
        make_signal(AAA, "SELL", 9.4, 1),
        view=book.view,
        ledger=LedgerState(held_base=book.base_margin, closed=tuple(book.closed)),
        market=MarketQuote(9.4, NOW + 5),
        config=CONFIG,
        now=NOW + 5,
        exit=target,
    )
