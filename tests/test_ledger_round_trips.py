"""A round trip on one symbol (a holding sold and bought again, or bought more and sold
whole) and a view showing any prefix of it: the Ledger's book never counts more base
than the exchange holds, so that a SELL sized on it is never refused. Over any
quantities, prices, fee asset and fill prices off the ones sized at (the examples are
in tests/test_ledger_book.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.trading.ledger_book import LedgerBook
from coordinator.trading.signals import Side
from coordinator.trading.validation import Balance, OrderPlan, PortfolioView, PositionView

SYMBOL = "AAAUSDC"
FEE = 0.001
NOW = 1_800_000_000.0


@dataclass(frozen=True)
class Truth:
    """What the exchange holds after some of our fills."""

    cash: float
    base: float
    position: float
    entry: float

    def view(self, positions: Truth, at: float) -> PortfolioView:
        """The Portfolio's view: these balances, the positions of ``positions``."""
        held = {}
        if positions.position > 0:
            held[SYMBOL] = PositionView(
                SYMBOL,
                positions.position,
                positions.entry,
                positions.position * positions.entry,
                0.0,
            )
        return PortfolioView(
            balances={
                "USDC": Balance(self.cash, self.cash, self.cash),
                "AAA": Balance(self.base, self.base, self.base * self.entry),
            },
            positions=held,
            fetched_at=at,
        )


def fill(truth: Truth, plan: OrderPlan, price: float, fee_in_base: bool) -> Truth:
    if plan.side is Side.SELL:
        return Truth(
            truth.cash + plan.quantity * price * (1 - FEE),
            max(0.0, truth.base - plan.quantity),
            0.0,
            truth.entry,
        )
    got = plan.quantity * (1 - FEE) if fee_in_base else plan.quantity
    cost = plan.quantity * price * (1.0 if fee_in_base else 1 + FEE)
    return Truth(truth.cash - cost, truth.base + got, truth.position + plan.quantity, price)


prices = st.floats(90.0, 110.0)
slips = st.floats(-0.004, 0.004)


@settings(max_examples=400, deadline=None)
@given(
    sell_first=st.booleans(),
    held=st.floats(0.05, 2.0),
    dust=st.sampled_from([0.0, 1e-5, 0.003]),
    bought=st.floats(0.05, 2.0),
    for_the_cash=st.none() | st.floats(-0.004, 0.004),
    sized_at=st.tuples(prices, prices),
    slipped=st.tuples(slips, slips),
    fee_in_base=st.booleans(),
    book_knows_fee=st.booleans(),
    shown=st.tuples(st.integers(0, 2), st.integers(0, 2)),
)
def test_the_book_never_counts_more_base_than_is_held(
    sell_first: bool,
    held: float,
    dust: float,
    bought: float,
    for_the_cash: float | None,
    sized_at: tuple[float, float],
    slipped: tuple[float, float],
    fee_in_base: bool,
    book_knows_fee: bool,
    shown: tuple[int, int],
) -> None:
    """``for_the_cash``: a holding sold is bought back for the cash the SELL brought
    and this share more (the quote barely tells the prefixes apart), instead of
    ``bought``. ``shown``: how many of the two orders the view's balances show, and its
    positions (each at its own pace)."""
    if sell_first and for_the_cash is not None:
        bought = held * sized_at[0] * (1 - FEE) / sized_at[1] * (1 + for_the_cash)
    start = Truth(1_000.0, held + dust, held, 100.0)
    book = LedgerBook(
        quote="USDC",
        fee_rate=FEE,
        lifetime=60.0,
        settle_window=180.0,
        fee_in_base=False if book_knows_fee and not fee_in_base else None,
    )
    book.fetched_view(start.view(start, NOW), NOW)
    got = bought * (1 - FEE) if fee_in_base else bought
    sides = [(Side.SELL, held), (Side.BUY, bought)]
    if not sell_first:
        # Bought more, then sold whole: what a SELL sized on the truth sells.
        sides = [(Side.BUY, bought), (Side.SELL, held + dust + got)]
    truths = [start]
    for at, ((side, quantity), price, slip) in enumerate(
        zip(sides, sized_at, slipped, strict=True), start=1
    ):
        plan = OrderPlan(SYMBOL, side, quantity, price, quantity * price, None)
        order = book.reserve(plan, owner="v#1", now=NOW + at)
        book.settle(order.reservation_id, True, symbol=SYMBOL, side=side, now=NOW + at)
        truths.append(fill(truths[-1], plan, price * (1 + slip), fee_in_base))
    balances, positions = shown
    book.fetched_view(truths[balances].view(truths[positions], NOW + 5), NOW + 5)
    counted = book.view.balances.get("AAA", Balance(0.0, 0.0, 0.0)).free
    assert counted <= truths[-1].base + 1e-9, (counted, truths[-1].base)
