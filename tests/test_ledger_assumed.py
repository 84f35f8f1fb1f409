"""Orders a fetched view is only assumed to show: what they may count beyond the
exchange's holdings stays held back until a view proves them shown, and a guess is
matched again by the next view. The cases the wide model of the book found
(tests/test_ledger_book_wide_model.py), as examples."""

from __future__ import annotations

import math

import pytest

from coordinator.trading.ledger_book import LedgerBook
from coordinator.trading.signals import Side
from coordinator.trading.validation import OrderPlan
from tests.test_ledger_round_trips import FEE, NOW, World, shown_view, spendable

AAA, BBB, CCC, DDD = "AAAUSDC", "BBBUSDC", "CCCUSDC", "DDDUSDC"


def book_of(world: World, *, fee_in_base: bool | None = None) -> LedgerBook:
    book = LedgerBook(
        quote="USDC", fee_rate=FEE, lifetime=60.0, settle_window=180.0, fee_in_base=fee_in_base
    )
    book.fetched_view(shown_view(world, world, NOW), NOW)
    return book


def fill(book: LedgerBook, plan: OrderPlan, at: float) -> None:
    order = book.reserve(plan, owner="v#1", now=at)
    book.settle(order.reservation_id, True, symbol=plan.symbol, side=plan.side, now=at)


def sellable(book: LedgerBook, base: str) -> float:
    """What a SELL may be sized on, as ``_evaluate_exit`` reads it."""
    return book.view.balances[base].free - book.base_margin.get(base, 0.0)


def test_a_buy_in_flight_keeps_its_room_over_views_taken_as_the_truth_again() -> None:
    """Base bought elsewhere makes every view match none of our prefixes: each is taken
    as the truth and our BUY in flight marked shown. The first such view held its room
    back; the same view answered again (RootTrading caches its balances) released it,
    and a next BUY could be sized on that money."""
    world = World(100.0, {"AAA": 0.0}, {AAA: 0.0})
    book = book_of(world)
    book.reserve(OrderPlan(AAA, Side.BUY, 2.2, 10.0, 22.0, None), owner="v#1", now=NOW + 1)
    room = 22.0 * (1 + FEE)
    elsewhere = World(100.0, {"AAA": 4.0}, {AAA: 0.0})
    for at in (NOW + 2, NOW + 3, NOW + 4):
        book.fetched_view(shown_view(elsewhere, elsewhere, at), at)
        assert spendable(book) <= 100.0 - room + 1e-9, at - NOW


def test_a_sell_a_view_taken_as_the_truth_may_lack_is_held_back_from_the_next_sell() -> None:
    """Our BUY filled (its answer not back yet), base bought elsewhere, a stop's SELL
    on the position the Portfolio shows, filled while its balances lag: the view (our
    BUY and the base from elsewhere, not the SELL) matches none of our prefixes and is
    taken as the truth, the SELL marked shown. Its coins were counted as held: a SELL
    sized on them is refused by the exchange."""
    world = World(100.0, {"AAA": 0.0}, {AAA: 0.0})
    book = book_of(world, fee_in_base=False)
    book.reserve(OrderPlan(AAA, Side.BUY, 2.2, 10.0, 22.0, None), owner="v#1", now=NOW + 1)
    world = world.after(AAA, Side.BUY, 2.2, 10.0, False)
    lagging = World(world.cash, {"AAA": world.bases["AAA"] + 4.0}, world.positions)
    book.fetched_view(shown_view(lagging, lagging, NOW + 2), NOW + 2)
    fill(book, OrderPlan(AAA, Side.SELL, 2.2, 10.0, 22.0, None), NOW + 3)
    sold = lagging.after(AAA, Side.SELL, 2.2, 10.0, False)
    for at in (NOW + 4, NOW + 5):
        book.fetched_view(shown_view(lagging, lagging, at), at)
        assert sellable(book, "AAA") <= sold.bases["AAA"] + 1e-9, at - NOW


@pytest.mark.parametrize("bought_again", [False, True], ids=["", "a BUY reserved since"])
def test_a_view_showing_less_than_a_guess_is_matched_from_before_the_guess(
    bought_again: bool,
) -> None:
    """A BUY and its SELL filled, a view showing neither: "both shown" has the least
    base and is kept, a guess. The next view shows the BUY alone. It was matched from
    after the guess, found no prefix and was taken as the truth: the SELL's coins
    counted as held. A BUY reserved since (its room held, its coins not yet counted)
    must not make "all shown" the least base either."""
    world = World(100.0, {"CCC": 0.0}, {CCC: 0.0})
    book = book_of(world)
    fill(book, OrderPlan(CCC, Side.BUY, 1.33, 10.0, 13.3, None), NOW + 1)
    bought = world.after(CCC, Side.BUY, 1.33, 10.0, True)
    held = math.floor(book.view.balances["CCC"].free * 1000) / 1000
    fill(book, OrderPlan(CCC, Side.SELL, held, 10.0, held * 10.0, None), NOW + 2)
    sold = bought.after(CCC, Side.SELL, held, 10.0, True)
    book.fetched_view(shown_view(world, world, NOW + 3), NOW + 3)
    assert sellable(book, "CCC") <= sold.bases["CCC"] + 1e-9
    if bought_again:
        book.reserve(OrderPlan(CCC, Side.BUY, 1.643, 8.0, 13.144, None), owner="v#1", now=NOW + 4)
    book.fetched_view(shown_view(bought, bought, NOW + 5), NOW + 5)
    assert sellable(book, "CCC") <= sold.bases["CCC"] + 1e-9


def test_a_quote_moved_by_an_order_taken_as_shown_earlier_misleads_no_other_match() -> None:
    """Base bought elsewhere: a view taken as the truth marks our AAA BUY shown before
    it is. The next view shows it, and the quote moves by its cost, unexplained by any
    order newly matched. That move made "both shown" the quote's only explanation of
    another symbol's round trip (sold at a loss) that the view does not show, and the
    SELL's coins were counted as held again."""
    world = World(100.0, {"AAA": 0.0, "CCC": 0.01}, {AAA: 0.0, CCC: 0.0})
    book = book_of(world)
    elsewhere = World(world.cash, {"AAA": 100.0, "CCC": 0.01}, world.positions)
    fill(book, OrderPlan(AAA, Side.BUY, 2.2, 10.0, 22.0, None), NOW + 1)
    with_aaa = elsewhere.after(AAA, Side.BUY, 2.2, 10.0, True)
    book.fetched_view(shown_view(elsewhere, elsewhere, NOW + 2), NOW + 2)
    fill(book, OrderPlan(CCC, Side.BUY, 1.33, 10.0, 13.3, None), NOW + 3)
    held = math.floor(min(1.33, book.view.balances["CCC"].free) * 1000) / 1000
    fill(book, OrderPlan(CCC, Side.SELL, held, 8.0, held * 8.0, None), NOW + 4)
    truth = with_aaa.after(CCC, Side.BUY, 1.33, 10.0, True).after(CCC, Side.SELL, held, 8.0, True)
    book.fetched_view(shown_view(with_aaa, with_aaa, NOW + 5), NOW + 5)
    assert sellable(book, "CCC") <= truth.bases["CCC"] + 1e-9


def test_a_sell_reserved_while_the_buy_was_in_flight_expects_the_buys_coins_first() -> None:
    """Base held from elsewhere; our BUY fills but its answer is slow, the Portfolio
    shows its position, and a stop's SELL of it fills. The SELL was reserved on a view
    without the BUY's coins (a BUY in flight is not laid), so it expected the base
    from before the BUY: a view showing both (the base back where it was) matched
    "the SELL not shown", and its proceeds were counted a second time."""
    world = World(100.0, {"AAA": 3.0}, {AAA: 0.0})
    book = book_of(world, fee_in_base=False)
    buy = book.reserve(OrderPlan(AAA, Side.BUY, 1.711, 10.0, 17.11, None), owner="v#1", now=NOW + 1)
    bought = world.after(AAA, Side.BUY, 1.711, 10.0, False)
    book.fetched_view(shown_view(world, bought, NOW + 2), NOW + 2)
    fill(book, OrderPlan(AAA, Side.SELL, 1.711, 10.0, 17.11, None), NOW + 3)
    sold = bought.after(AAA, Side.SELL, 1.711, 10.0, False)
    book.settle(buy.reservation_id, True, symbol=AAA, side=Side.BUY, now=NOW + 4)
    book.fetched_view(shown_view(bought, bought, NOW + 5), NOW + 5)
    assert spendable(book) <= sold.cash + 1e-9
    book.fetched_view(shown_view(sold, sold, NOW + 6), NOW + 6)
    assert spendable(book) <= sold.cash + 1e-9
    assert sellable(book, "AAA") <= sold.bases["AAA"] + 1e-9


def test_a_view_taken_as_the_truth_is_what_the_next_views_are_matched_from() -> None:
    """Our BUY filled, base bought elsewhere: the view is taken as the truth. Then our
    SELL of the position fills and a BUY of the symbol is reserved, which brings the
    base back within a quarter of an order of that view's. The same view answered
    again passed for one showing the SELL and the new BUY (the BUY's expectation, the
    base after it, was the view's less the SELL plus the BUY), and the new BUY's room
    was released. The prefix a view taken as the truth marks now expects its base."""
    world = World(100.0, {"CCC": 0.0}, {CCC: 0.0})
    book = book_of(world, fee_in_base=False)
    fill(book, OrderPlan(CCC, Side.BUY, 1.711, 10.0, 17.11, None), NOW + 1)
    bought = world.after(CCC, Side.BUY, 1.711, 10.0, False)
    lagging = World(bought.cash, {"CCC": bought.bases["CCC"] + 100.0}, bought.positions)
    book.fetched_view(shown_view(lagging, lagging, NOW + 2), NOW + 2)
    fill(book, OrderPlan(CCC, Side.SELL, 1.711, 10.0, 17.11, None), NOW + 3)
    sold = lagging.after(CCC, Side.SELL, 1.711, 10.0, False)
    book.reserve(OrderPlan(CCC, Side.BUY, 1.802, 10.0, 18.02, None), owner="v#1", now=NOW + 4)
    room = 18.02 * (1 + FEE)
    book.fetched_view(shown_view(lagging, lagging, NOW + 5), NOW + 5)
    assert spendable(book) <= sold.cash - room + 1e-9


def test_a_match_against_a_view_taken_as_the_truth_proves_nothing() -> None:
    """A view lagging our orders and showing base bought elsewhere is taken as the
    truth: our last order is then expected at that view's base, though the view may
    not show it. A later round trip's SELL expected just under it, and a view still
    showing only our first SELL matched that expectation: the round trip was marked
    shown, every assumption counted proved, and its cost no longer held back."""
    world = World(100.0, {"CCC": 0.0}, {CCC: 0.0})
    book = book_of(world, fee_in_base=False)
    fill(book, OrderPlan(CCC, Side.BUY, 2.2, 10.0, 22.0, None), NOW + 1)
    bought = world.after(CCC, Side.BUY, 2.2, 10.0, False)
    lagging = World(bought.cash, {"CCC": bought.bases["CCC"] + 100.0}, bought.positions)
    fill(book, OrderPlan(CCC, Side.SELL, 2.2, 10.0, 22.0, None), NOW + 2)
    sold = lagging.after(CCC, Side.SELL, 2.2, 10.0, False)
    fill(book, OrderPlan(CCC, Side.BUY, 1.81, 10.0, 18.1, None), NOW + 3)
    book.fetched_view(shown_view(lagging, lagging, NOW + 4), NOW + 4)
    fill(book, OrderPlan(CCC, Side.SELL, 1.81, 10.0, 18.1, None), NOW + 5)
    truth = sold.after(CCC, Side.BUY, 1.81, 10.0, False).after(CCC, Side.SELL, 1.81, 10.0, False)
    book.fetched_view(shown_view(sold, sold, NOW + 6), NOW + 6)
    assert spendable(book) <= truth.cash + 1e-9


def test_a_view_taken_as_the_truth_may_have_lacked_the_orders_it_marks() -> None:
    """Base bought elsewhere; our CCC BUY fills, and a view lacking it (the base from
    elsewhere alone) is taken as the truth: later views are matched from that view's
    base, as if it showed the BUY. Our AAA BUY and our CCC SELL fill; a view showing
    all three has the CCC base back at that view's: it passed for one lacking the SELL
    (the AAA BUY proving the CCC BUY shown), and the SELL's proceeds were counted on
    top of the cash that holds them. The same view answered again too."""
    world = World(100.0, {"AAA": 0.0, "CCC": 0.0}, {AAA: 0.0, CCC: 0.0})
    book = book_of(world, fee_in_base=False)
    elsewhere = World(world.cash, {"AAA": 0.0, "CCC": 100.0}, world.positions)
    fill(book, OrderPlan(CCC, Side.BUY, 2.2, 10.0, 22.0, None), NOW + 1)
    book.fetched_view(shown_view(elsewhere, world, NOW + 2), NOW + 2)
    fill(book, OrderPlan(AAA, Side.BUY, 1.711, 10.0, 17.11, None), NOW + 3)
    fill(book, OrderPlan(CCC, Side.SELL, 2.2, 10.0, 22.0, None), NOW + 4)
    truth = (
        elsewhere.after(CCC, Side.BUY, 2.2, 10.0, False)
        .after(AAA, Side.BUY, 1.711, 10.0, False)
        .after(CCC, Side.SELL, 2.2, 10.0, False)
    )
    for at in (NOW + 5, NOW + 6):
        book.fetched_view(shown_view(truth, world, at), at)
        assert spendable(book) <= truth.cash + 1e-9, at - NOW


def test_an_order_shown_whole_between_two_kept_ones_leaves_its_successor_expecting_it() -> None:
    """Our CCC BUY, its answer lost, is taken as shown by a view with base bought
    elsewhere, and stays in the book (unknown, never proved). Its SELL, a second BUY
    and that BUY's SELL follow. A view proves the second BUY shown and it leaves the
    book: the last SELL then came right after the first BUY, and its position and base
    were matched against what the first BUY expected. A view still showing the second
    BUY's position matched neither, was taken as the truth and the SELL marked shown:
    the position it closed was counted as held, and another SELL sized on it."""
    world = World(100.0, {"AAA": 0.0, "CCC": 0.0}, {AAA: 0.0, CCC: 0.0})
    book = book_of(world)
    elsewhere = World(world.cash, {"AAA": 0.0, "CCC": 100.0}, world.positions)
    first = book.reserve(OrderPlan(CCC, Side.BUY, 2.2, 10.0, 22.0, None), owner="v#1", now=NOW + 1)
    s2 = elsewhere.after(CCC, Side.BUY, 2.2, 10.0, False)
    book.fetched_view(shown_view(elsewhere, s2, NOW + 2), NOW + 2)
    book.settle(first.reservation_id, None, symbol=CCC, side=Side.BUY, now=NOW + 3)
    fill(book, OrderPlan(CCC, Side.SELL, 2.2, 10.0, 22.0, None), NOW + 3)
    s3 = s2.after(CCC, Side.SELL, 2.2, 10.0, False)
    aaa = book.reserve(OrderPlan(AAA, Side.BUY, 2.19, 10.0, 21.9, None), owner="v#1", now=NOW + 4)
    ccc = book.reserve(OrderPlan(CCC, Side.BUY, 1.703, 10.0, 17.03, None), owner="v#1", now=NOW + 4)
    book.settle(aaa.reservation_id, True, symbol=AAA, side=Side.BUY, now=NOW + 5)
    book.settle(ccc.reservation_id, True, symbol=CCC, side=Side.BUY, now=NOW + 5)
    s5 = s3.after(AAA, Side.BUY, 2.19, 10.0, False).after(CCC, Side.BUY, 1.703, 10.0, False)
    book.fetched_view(shown_view(s2, s5, NOW + 6), NOW + 6)
    last = book.reserve(
        OrderPlan(CCC, Side.SELL, 1.703, 10.0, 17.03, None), owner="v#1", now=NOW + 7
    )
    fill(book, OrderPlan(AAA, Side.SELL, 2.168, 10.0, 21.68, None), NOW + 7)
    s6 = s5.after(AAA, Side.SELL, 2.168, 10.0, False)
    book.fetched_view(shown_view(s5, s5, NOW + 8), NOW + 8)
    book.settle(last.reservation_id, True, symbol=CCC, side=Side.SELL, now=NOW + 9)
    for at in (NOW + 10, NOW + 11):
        book.fetched_view(shown_view(s6, s5, at), at)
        assert CCC not in book.view.positions, at - NOW


def test_the_snapshot_taken_as_the_truth_answered_again_proves_nothing_of_it() -> None:
    """Base bought elsewhere; our CCC BUY is reserved, and a view lacking it is taken
    as the truth. That snapshot answered again (with our AAA BUY since) matched the
    prefix shown already, which settled the view's anchor as if it had shown the BUY.
    The BUY fills, then a BBB BUY and the CCC SELL: a view showing all has the CCC
    base back at that snapshot's, matched as lacking the SELL, its proceeds counted
    on top of the cash holding them."""
    world = World(100.0, {"AAA": 0.0, "BBB": 0.0, "CCC": 0.0}, {AAA: 0.0, BBB: 0.0, CCC: 0.0})
    book = book_of(world)
    elsewhere = World(world.cash, {**world.bases, "CCC": 100.0}, world.positions)
    buy = OrderPlan(CCC, Side.BUY, 2.2, 10.0, 22.0, None)
    ccc = book.reserve(buy, owner="v#1", now=NOW + 1)
    book.fetched_view(shown_view(elsewhere, world, NOW + 2), NOW + 2)
    fill(book, OrderPlan(AAA, Side.BUY, 1.711, 10.0, 17.11, None), NOW + 3)
    with_aaa = elsewhere.after(AAA, Side.BUY, 1.711, 10.0, False)
    book.fetched_view(shown_view(with_aaa, world, NOW + 4), NOW + 4)
    book.settle(ccc.reservation_id, True, symbol=CCC, side=Side.BUY, now=NOW + 5)
    fill(book, OrderPlan(BBB, Side.BUY, 1.33, 10.0, 13.3, None), NOW + 6)
    fill(book, OrderPlan(CCC, Side.SELL, 2.2, 10.0, 22.0, None), NOW + 7)
    truth = (
        with_aaa.after(CCC, Side.BUY, 2.2, 10.0, False)
        .after(BBB, Side.BUY, 1.33, 10.0, False)
        .after(CCC, Side.SELL, 2.2, 10.0, False)
    )
    book.fetched_view(shown_view(truth, world, NOW + 8), NOW + 8)
    assert spendable(book) <= truth.cash + 1e-9


@pytest.mark.parametrize("fee_in_base", [False, True], ids=["fee in the quote", "in the base"])
def test_round_trips_between_two_views_are_matched_whichever_asset_the_fee_is_taken_in(
    fee_in_base: bool,
) -> None:
    """Not told where the exchange takes a BUY's fee, the book lays a BUY's coins less
    the fee, and a SELL sells what it counts: with the fee in the quote, each round
    trip leaves that fee's coins on the exchange. An order's expected base started
    from the laid view, so these coins, unexpected, added up from one order to the
    next, and a view showing every order matched none: taken as the truth, its orders
    only assumed shown and their cash held back (the sustained benchmark's refusals
    by our own book)."""
    world = World(10_000.0, {"CCC": 0.0}, {CCC: 0.0})
    book = book_of(world)
    at = NOW
    for quantity in (1_000.0, 1_000.0, 1_000.0):
        at += 1
        fill(book, OrderPlan(CCC, Side.BUY, quantity, 1.0, quantity, None), at)
        world = world.after(CCC, Side.BUY, quantity, 1.0, fee_in_base)
        held = book.view.balances["CCC"].free
        at += 1
        fill(book, OrderPlan(CCC, Side.SELL, held, 1.0, held, None), at)
        world = world.after(CCC, Side.SELL, held, 1.0, fee_in_base)
    fill(book, OrderPlan(CCC, Side.BUY, 0.5, 1.0, 0.5, None), at + 1)
    world = world.after(CCC, Side.BUY, 0.5, 1.0, fee_in_base)
    book.fetched_view(shown_view(world, world, at + 2), at + 2)
    assert [o.assumed for o in book.orders.values() if o.assumed] == []
    assert spendable(book) == pytest.approx(world.cash)


def test_a_view_showing_what_a_view_taken_as_the_truth_lacked_settles_its_anchor() -> None:
    """Base bought elsewhere; our AAA BUY fills and a view lacking it is taken as the
    truth. The next view shows the BUY: its base is that view's plus the BUY, which
    only the offset fits, at the prefix shown already; it settled nothing. The stop's
    SELL, reserved on that view, then expected the base the anchor did: a view showing
    the SELL matched "not shown" too, the SELL was kept unshown while still reserved
    (it counts no cash then), and once it settled filled its proceeds were laid over
    a view that holds them."""
    world = World(100.0, {"AAA": 0.0, "BBB": 0.0}, {AAA: 0.0, BBB: 0.0})
    book = book_of(world)
    elsewhere = World(world.cash, {"AAA": 100.0, "BBB": 0.0}, world.positions)
    fill(book, OrderPlan(AAA, Side.BUY, 2.2, 10.0, 22.0, None), NOW + 1)
    bought = elsewhere.after(AAA, Side.BUY, 2.2, 10.0, False)
    book.fetched_view(shown_view(elsewhere, elsewhere, NOW + 2), NOW + 2)
    book.fetched_view(shown_view(bought, bought, NOW + 3), NOW + 3)
    sell = OrderPlan(AAA, Side.SELL, 2.2, 10.0, 22.0, None)
    exit = book.reserve(sell, owner="v#1", now=NOW + 4)
    sold = bought.after(AAA, Side.SELL, 2.2, 10.0, False)
    book.reserve(OrderPlan(BBB, Side.BUY, 1.222, 10.0, 12.22, None), owner="v#1", now=NOW + 5)
    truth = sold.after(BBB, Side.BUY, 1.222, 10.0, False)
    book.fetched_view(shown_view(sold, bought, NOW + 6), NOW + 6)
    book.fetched_view(shown_view(truth, bought, NOW + 7), NOW + 7)
    book.settle(exit.reservation_id, True, symbol=AAA, side=Side.SELL, now=NOW + 8)
    assert spendable(book) <= truth.cash + 1e-9


def test_a_buy_reserved_while_the_sell_is_in_flight_expects_the_sells_coins_gone_first() -> None:
    """Our CCC holding shown; its SELL is reserved, and a BUY of the symbol is reserved
    on a view that still shows the coins (a SELL in flight is not laid). Both fill.
    The BUY expected the base with the sold coins: a view showing both, the base
    within a quarter of an order of the one before, matched "neither shown", and the
    SELL's proceeds were counted on top of the cash holding them."""
    world = World(100.0, {"CCC": 0.0}, {CCC: 0.0})
    book = book_of(world, fee_in_base=False)
    fill(book, OrderPlan(CCC, Side.BUY, 1.711, 10.0, 17.11, None), NOW + 1)
    held = world.after(CCC, Side.BUY, 1.711, 10.0, False)
    book.fetched_view(shown_view(held, held, NOW + 2), NOW + 2)
    sell = book.reserve(
        OrderPlan(CCC, Side.SELL, 1.711, 10.0, 17.11, None), owner="v#1", now=NOW + 3
    )
    sold = held.after(CCC, Side.SELL, 1.711, 10.0, False)
    book.fetched_view(shown_view(held, sold, NOW + 4), NOW + 4)
    buy = OrderPlan(CCC, Side.BUY, 1.468, 8.0, 11.744, None)
    again = book.reserve(buy, owner="v#1", now=NOW + 5)
    truth = sold.after(CCC, Side.BUY, 1.468, 8.0, False)
    book.settle(sell.reservation_id, True, symbol=CCC, side=Side.SELL, now=NOW + 6)
    book.settle(again.reservation_id, True, symbol=CCC, side=Side.BUY, now=NOW + 6)
    book.fetched_view(shown_view(truth, sold, NOW + 7), NOW + 7)
    assert spendable(book) <= truth.cash + 1e-9


def test_a_sell_reserved_behind_an_ambiguous_match_has_its_proceeds_held_back() -> None:
    """A DDD round trip between two views leaves a least-base guess, so the next view's
    ambiguous matches are not told apart by the quote. Our CCC SELL is in flight and a
    CCC BUY of as many coins fills; a view showing both has the base of one showing
    neither, and the shorter prefix is kept: the SELL is not marked shown. It counted
    no cash while reserved, so nothing was held back for it; once it settled filled,
    its proceeds were laid over a view holding them (3.37 USDC more than held)."""
    world = World(100.0, {"CCC": 0.0, "DDD": 0.0}, {CCC: 0.0, DDD: 0.0})
    book = book_of(world, fee_in_base=False)
    fill(book, OrderPlan(CCC, Side.BUY, 1.711, 10.0, 17.11, None), NOW + 1)
    held = world.after(CCC, Side.BUY, 1.711, 10.0, False)
    book.fetched_view(shown_view(held, held, NOW + 2), NOW + 2)
    fill(book, OrderPlan(DDD, Side.BUY, 1.0, 10.0, 10.0, None), NOW + 3)
    fill(book, OrderPlan(DDD, Side.SELL, 1.0, 10.0, 10.0, None), NOW + 4)
    traded = held.after(DDD, Side.BUY, 1.0, 10.0, False).after(DDD, Side.SELL, 1.0, 10.0, False)
    book.fetched_view(shown_view(traded, traded, NOW + 5), NOW + 5)
    sell = OrderPlan(CCC, Side.SELL, 1.711, 10.0, 17.11, None)
    exit = book.reserve(sell, owner="v#1", now=NOW + 6)
    fill(book, OrderPlan(CCC, Side.BUY, 1.711, 8.0, 13.688, None), NOW + 7)
    truth = traded.after(CCC, Side.SELL, 1.711, 10.0, False).after(CCC, Side.BUY, 1.711, 8.0, False)
    book.fetched_view(shown_view(truth, truth, NOW + 8), NOW + 8)
    assert spendable(book) <= truth.cash + 1e-9
    book.settle(exit.reservation_id, True, symbol=CCC, side=Side.SELL, now=NOW + 9)
    assert spendable(book) <= truth.cash + 1e-9
