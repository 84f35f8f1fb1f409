"""The Ledger's book and the sizing of its orders, by example (the model-based test is
tests/test_ledger_book_model.py)."""

from __future__ import annotations

import dataclasses

import pytest

from coordinator.trading.ledger_book import LedgerBook, OrderState, SettleResult
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.signals import Side
from coordinator.trading.validation import (
    Balance,
    ClosedHolding,
    ExitTarget,
    LedgerState,
    OrderPlan,
    PortfolioView,
    PositionView,
    Reason,
    floor_quantity,
)
from tests.test_validation import CONFIG, NOW, QUOTE, make_signal

APT = "APTUSDC"


def view(
    quote: float, apt: float = 0.0, position: float | None = None, entry: float = 10.0
) -> PortfolioView:
    balances = {"USDC": Balance(quote, quote, quote)}
    if apt:
        balances["APT"] = Balance(apt, apt, apt * entry)
    positions = {}
    if position is not None:
        positions[APT] = PositionView(APT, position, entry, position * entry, 0.0)
    return PortfolioView(balances=balances, positions=positions, fetched_at=NOW)


def book(**changes: object) -> LedgerBook:
    values: dict[str, object] = {
        "quote": "USDC",
        "fee_rate": 0.0,
        "lifetime": 60.0,
        "settle_window": 180.0,
        "fee_in_base": False,
    }
    values.update(changes)
    ledger = LedgerBook(**values)  # type: ignore[arg-type]
    ledger.fetched_view(view(100_000.0), NOW - 5)
    return ledger


def buy(quantity: float = 1_665.227) -> OrderPlan:
    return OrderPlan(APT, Side.BUY, quantity, 10.0, quantity * 10.0, "STRONG")


def sell(quantity: float) -> OrderPlan:
    return OrderPlan(APT, Side.SELL, quantity, 10.0, quantity * 10.0, None)


# --- item 12: each fill counts once whatever the order of answers ----------------------


@pytest.mark.parametrize("requested", ["before the order", "after the order"])
def test_a_fetch_showing_our_fill_before_its_settlement_counts_it_once(requested):
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    # The Trader filled; the Portfolio shows it before the Validator's Settle arrives.
    requested_at = NOW - 1 if requested == "before the order" else NOW + 0.5
    ledger.fetched_view(view(100_000.0 - 16_652.27, 1_665.227, 1_665.227), requested_at)
    assert ledger.held_quote() == 0.0, "the view shows the money spent: not held again"
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    assert ledger.view.balances["USDC"].free == pytest.approx(100_000.0 - 16_652.27)
    assert ledger.view.positions[APT].quantity == pytest.approx(1_665.227)
    assert ledger.view.balances["APT"].free == pytest.approx(1_665.227)
    # The next SELL sells what is held, not twice that (33,304.54 USDC in the report).
    evaluation = evaluate_order(
        make_signal("SELL", APT, price=10.0),
        view=dataclasses.replace(ledger.view, fetched_at=NOW),
        ledger=LedgerState(),
        market=None,
        config=CONFIG,
        now=NOW + 1,
    )
    assert evaluation.plan is not None
    assert evaluation.plan.quantity == pytest.approx(1_665.227)


def test_a_late_answer_to_an_older_fetch_changes_nothing():
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    ledger.fetched_view(view(100_000.0 - 16_652.27, 1_665.227, 1_665.227), NOW + 2)
    merged = ledger.view
    assert not ledger.fetched_view(view(100_000.0), NOW + 1.5)
    assert ledger.view == merged


# --- item 9: a BUY stays laid over until both its position and its balances show ------


def test_a_buy_stays_over_the_view_while_the_balances_lag_the_positions():
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    # Positions are fresh; /balances still shows the quote unspent (a minute stale).
    ledger.fetched_view(view(100_000.0, 0.0, 1_665.227), NOW + 2)
    assert ledger.view.balances["USDC"].free == pytest.approx(100_000.0 - 16_652.27)
    assert ledger.view.positions[APT].quantity == pytest.approx(1_665.227), "once"
    assert [o.state for o in ledger.orders.values()] == [OrderState.FILLED]
    # Then the balances show it too: the fill is the Portfolio's.
    ledger.fetched_view(view(100_000.0 - 16_652.27, 1_665.227, 1_665.227), NOW + 3)
    assert ledger.orders == {}
    assert ledger.view.balances["USDC"].free == pytest.approx(100_000.0 - 16_652.27)


def test_a_buy_and_its_sell_unseen_by_the_portfolio_are_both_laid_over():
    ledger = book(fee_rate=0.001)
    first = ledger.reserve(buy(100.0), owner="v#1", now=NOW)
    ledger.settle(first.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    second = ledger.reserve(sell(100.0), owner="v#1", now=NOW + 2)
    ledger.settle(second.reservation_id, True, symbol=APT, side=Side.SELL, now=NOW + 3)
    expected = 100_000.0 - 1_000.0 * 1.001 + 1_000.0 * 0.999
    assert ledger.view.balances["USDC"].free == pytest.approx(expected)
    assert APT not in ledger.view.positions
    # The Portfolio shows neither yet (the base amount is the same either way): both
    # stay laid over, told by the quote.
    ledger.fetched_view(view(100_000.0), NOW + 4)
    assert ledger.view.balances["USDC"].free == pytest.approx(expected)
    assert not any(o.balances_shown for o in ledger.orders.values())
    # Then both at once.
    ledger.fetched_view(view(expected), NOW + 5)
    assert ledger.view.balances["USDC"].free == pytest.approx(expected)
    assert all(o.balances_shown for o in ledger.orders.values())
    assert APT not in ledger.view.positions


# --- items 1, 2: reservations: ids, settlements, lifetime ------------------------------


def test_reservation_ids_are_unique_across_books_and_name_their_plan():
    first, second = book(), book()
    old = first.reserve(buy(), owner="validator-0#1", now=NOW)
    new = second.reserve(sell(1.0), owner="validator-0#2", now=NOW)
    assert old.reservation_id != new.reservation_id
    # A settlement from before a restart does not release the new book's reservation.
    result, _ = second.settle(old.reservation_id, False, symbol=APT, side=Side.BUY, now=NOW)
    assert result is SettleResult.UNKNOWN_ID
    # Nor does one naming another plan.
    result, _ = second.settle(new.reservation_id, False, symbol=APT, side=Side.BUY, now=NOW)
    assert result is SettleResult.WRONG_PLAN
    assert second.selling() == {APT}
    result, _ = second.settle(new.reservation_id, False, symbol=APT, side=Side.SELL, now=NOW)
    assert result is SettleResult.SETTLED and second.selling() == frozenset()
    result, _ = second.settle(new.reservation_id, False, symbol=APT, side=Side.SELL, now=NOW)
    assert result is SettleResult.UNKNOWN_ID, "settled twice: the second is ignored"


def test_a_reservation_is_released_when_its_lifetime_ends():
    ledger = book(lifetime=30.0)
    order = ledger.reserve(sell(1.0), owner="validator-3#1", now=NOW)
    assert ledger.expire(NOW + 29.9) == ([], [])
    released, trusted = ledger.expire(NOW + 30.0)
    assert [o.reservation_id for o in released] == [order.reservation_id] and not trusted
    assert released[0].owner == "validator-3#1"
    assert ledger.selling() == frozenset()


def test_a_fill_is_trusted_only_to_a_view_fetched_after_it():
    # The Portfolio unreachable since just before our SELL: once the settle window is
    # up, a view fetched before the sell is no reason to count the sold holding again
    # (a second SELL sized on it would be refused: nothing is held).
    ledger = book()
    ledger.fetched_view(view(100_000.0, 10.0, 10.0), NOW - 1)
    order = ledger.reserve(sell(10.0), owner="validator-0#1", now=NOW)
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.SELL, now=NOW + 1)
    assert APT not in ledger.view.positions
    released, trusted = ledger.expire(NOW + 1 + 180.0 + 1)
    assert (released, trusted) == ([], [])
    assert APT not in ledger.view.positions, "the sold holding is not back"
    # A view fetched after the sell that still does not show it: the Portfolio is the
    # truth once the window is up, as before.
    ledger.fetched_view(view(100_000.0, 10.0, 10.0), NOW + 200.0)
    assert APT not in ledger.view.positions, "still laid over the lagging view"
    released, trusted = ledger.expire(NOW + 205.0)
    assert [o.reservation_id for o in trusted] == [order.reservation_id] and not released
    assert ledger.view.positions[APT].quantity == 10.0


# --- item 5: sell quantity -------------------------------------------------------------


def sell_of(position: float, free: float, **config: object) -> object:
    holding = PortfolioView(
        balances={"USDC": Balance(1_000.0, 1_000.0, 1_000.0), "BTC": Balance(free, free, None)},
        positions={"BTCUSDC": PositionView("BTCUSDC", position, 65_000.0, 0.0, 0.0)},
        fetched_at=NOW - 1,
    )
    return evaluate_order(
        make_signal("SELL"),
        view=holding,
        ledger=LedgerState(),
        market=QUOTE,
        config=dataclasses.replace(CONFIG, **config),  # type: ignore[arg-type]
        now=NOW,
    )


def test_a_sell_sells_the_smaller_of_position_and_free_balance_floored():
    evaluation = sell_of(0.0123, 0.0122877)  # the buy fee was taken in BTC
    assert evaluation.plan.quantity == 0.0122877
    evaluation = sell_of(0.0123, 0.0122877, quantity_decimals_by_symbol={"BTCUSDC": 5})
    assert evaluation.plan.quantity == 0.01228, "floored, never rounded up"
    assert sell_of(0.0123, 0.05).plan.quantity == 0.0123


def test_a_remainder_too_small_to_sell_is_dust_not_retried():
    evaluation = sell_of(0.0123, 0.00000009, quantity_decimals_by_symbol={"BTCUSDC": 5})
    assert evaluation.failure.reason is Reason.DUST_REMAINDER
    assert "dust" in evaluation.failure.detail and "0 at 5 decimals" in evaluation.failure.detail
    evaluation = sell_of(0.0123, 0.0002)  # 13 USDC, under the 15 minimum
    assert evaluation.failure.reason is Reason.DUST_REMAINDER
    # No free balance at all is not dust: the balances may lag, it is tried again.
    assert sell_of(0.0123, 0.0).failure.reason is Reason.INSUFFICIENT_BALANCE


@pytest.mark.parametrize(
    ("quantity", "decimals", "floored"),
    [(0.3, 8, 0.3), (0.123456789, 8, 0.12345678), (1.99999999999, 8, 1.99999999), (7.9, 0, 7.0)],
)
def test_quantities_are_floored_never_rounded_up(quantity, decimals, floored):
    assert floor_quantity(quantity, decimals) == floored


# --- item 4: an exit sells its own holding only -----------------------------------------


def exit_for(entry: float, quantity: float = 0.01) -> ExitTarget:
    return ExitTarget(
        position_key=f"BTCUSDC@1@{entry}",
        entry_price=entry,
        quantity=quantity,
        stop=entry * 0.95,
        price=entry * 0.94,
        price_at=NOW,
    )


def held(entry: float, quantity: float = 0.01) -> PortfolioView:
    return PortfolioView(
        balances={"USDC": Balance(0.0, 0.0, 0.0), "BTC": Balance(quantity, quantity, None)},
        positions={"BTCUSDC": PositionView("BTCUSDC", quantity, entry, 0.0, 0.0)},
        fetched_at=NOW - 1,
    )


NO_LEDGER = LedgerState()


def test_an_exit_for_another_holding_is_refused_position_changed():
    evaluate = lambda target, view, ledger=NO_LEDGER: evaluate_order(  # noqa: E731
        make_signal("SELL"), view=view, ledger=ledger, market=QUOTE, config=CONFIG, now=NOW,
        exit=target,
    )  # fmt: skip
    assert evaluate(exit_for(60_000.0), held(60_000.0)).plan is not None
    changed = evaluate(exit_for(60_000.0), held(66_000.0)).failure
    assert changed.reason is Reason.POSITION_CHANGED
    assert "60000" in changed.detail and "66000" in changed.detail
    other_size = evaluate(exit_for(60_000.0, 0.01), held(60_000.0, 0.02)).failure
    assert other_size.reason is Reason.POSITION_CHANGED
    # The holding our SELL closed, when another one like it is held now.
    closed = (ClosedHolding("BTCUSDC", 60_000.0, 0.01, NOW - 5),)
    gone = evaluate(exit_for(60_000.0), held(60_000.0), LedgerState(closed=closed)).failure
    assert gone.reason is Reason.POSITION_CHANGED and "closed by our SELL" in gone.detail
    # A SELL signal (no holding named) sells the symbol's holding.
    assert evaluate(None, held(66_000.0), LedgerState(closed=closed)).plan is not None


# --- item 13: numbers -------------------------------------------------------------------


def buy_with(balances: dict[str, Balance], **config: object) -> object:
    return evaluate_order(
        make_signal("BUY"),
        view=PortfolioView(balances=balances, positions={}, fetched_at=NOW - 1),
        ledger=LedgerState(),
        market=QUOTE,
        config=dataclasses.replace(CONFIG, **config),  # type: ignore[arg-type]
        now=NOW,
    )


@pytest.mark.parametrize(
    "balances",
    [{}, {"USDC": Balance(0.0, 0.0, 0.0)}, {"USDC": Balance(500.0, 500.0, -600.0)}],
    ids=["unknown", "zero", "negative"],
)
def test_no_buy_without_a_positive_equity(balances):
    failure = buy_with(balances).failure
    assert failure is not None and failure.step == "risk"
    assert failure.reason is Reason.PORTFOLIO_UNAVAILABLE and "equity" in failure.detail


def test_the_quote_asset_without_a_value_counts_at_face_value():
    # value_usdc null on the quote asset (see the rt-contract fixture): 11,000 of equity,
    # not the 1,000 of ETH (the BUY of 2,200 would be 220 % of it: max_exposure).
    evaluation = buy_with(
        {"USDC": Balance(10_000.0, 10_000.0, None), "ETH": Balance(0.3, 0.3, 1_000.0)}
    )
    assert evaluation.plan is not None, evaluation.failure
    assert evaluation.plan.notional == pytest.approx(2_200.0, rel=1e-3)


def test_buy_quantities_are_floored_to_the_symbols_decimals():
    balances = {"USDC": Balance(10_000.0, 10_000.0, 10_000.0)}
    plan = buy_with(balances, quantity_decimals_by_symbol={"BTCUSDC": 5}).plan
    assert plan.quantity == floor_quantity(plan.quantity, 5) and plan.quantity != 0
    assert round(plan.quantity, 5) == plan.quantity
    eight = buy_with(balances).plan
    assert eight.quantity > plan.quantity and round(eight.quantity, 5) != eight.quantity


# --- the fee asset: never taken to be the quote from what the balances show -------------


@pytest.mark.parametrize("grew", [100.0, 99.9])
def test_a_buy_laid_over_the_view_counts_the_base_less_the_fee_whatever_one_showed(grew):
    """A base that grew by the whole quantity is also what a fee taken in the base
    asset looks like next to a little base the book did not count (dust, a credit): it
    taught "fee in the quote", the next BUY laid over counted its whole quantity, and
    a SELL of it was refused for insufficient balance (found by the soak)."""
    ledger = book(fee_rate=0.001, fee_in_base=None)
    order = ledger.reserve(buy(100.0), owner="v#1", now=NOW)
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    assert ledger.view.balances["APT"].free == pytest.approx(99.9)
    ledger.fetched_view(view(100_000.0 - 1_001.0, grew, 100.0), NOW + 2)
    assert ledger.fee_in_base is None
    more = ledger.reserve(buy(50.0), owner="v#1", now=NOW + 3)
    ledger.settle(more.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 4)
    assert ledger.view.balances["APT"].free == pytest.approx(grew + 49.95)


# --- an unknown BUY spends its cash, but sells nothing until the Portfolio shows it ----


def test_an_unknown_buy_spends_its_cash_but_adds_no_sellable_position():
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    ledger.settle(order.reservation_id, None, symbol=APT, side=Side.BUY, now=NOW + 1)
    # Cautious on the money: the cash counts as spent.
    assert ledger.view.balances["USDC"].free == pytest.approx(100_000.0 - 16_652.27)
    # But the BUY may not have filled: no position, no base to sell.
    assert APT not in ledger.view.positions
    assert ledger.view.balances.get("APT", Balance(0.0, 0.0, 0.0)).free == 0.0
    evaluation = evaluate_order(
        make_signal("SELL", APT, price=10.0),
        view=ledger.view,
        ledger=LedgerState(),
        market=None,
        config=CONFIG,
        now=NOW + 2,
    )
    assert evaluation.plan is None
    assert evaluation.failure is not None and evaluation.failure.reason is Reason.NO_POSITION


def test_an_unknown_buy_the_portfolio_shows_is_sellable_and_counted_once():
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    ledger.settle(order.reservation_id, None, symbol=APT, side=Side.BUY, now=NOW + 1)
    ledger.fetched_view(view(100_000.0 - 16_652.27, 1_665.227, 1_665.227), NOW + 2)
    assert not ledger.orders, "shown by both parts: gone from the book"
    assert ledger.view.positions[APT].quantity == pytest.approx(1_665.227)
    assert ledger.view.balances["USDC"].free == pytest.approx(100_000.0 - 16_652.27)
    assert ledger.view.balances["APT"].free == pytest.approx(1_665.227)


def test_a_snapshot_shares_nothing_a_later_change_alters():
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    kept = ledger.snapshot()
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    ledger.reserve(sell(1_665.227), owner="validator-0#1", now=NOW + 2)
    assert kept.orders[order.reservation_id].state is OrderState.RESERVED
    assert len(kept.orders) == 1 and APT not in kept.view.positions
    # The next incarnation settles the reservation it took over, and numbers on.
    result, _ = kept.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 3)
    assert result is SettleResult.SETTLED
    assert kept.view.positions[APT].quantity == pytest.approx(1_665.227)
    fresh = kept.reserve(sell(1_665.227), owner="validator-0#2", now=NOW + 4)
    assert fresh.reservation_id not in (order.reservation_id,)
    assert fresh.reservation_id == f"{ledger.prefix}-2"


# --- balances and positions lagging each other over a round trip -----------------------


def _round_trip_book() -> tuple[LedgerBook, float]:
    """A BUY and the SELL of it, both filled at 10 with a 1 % fee in the quote; the
    Portfolio's positions show the BUY while its balances still show none of it."""
    ledger = LedgerBook(
        quote="USDC", fee_rate=0.01, lifetime=60.0, settle_window=180.0, fee_in_base=False
    )
    ledger.fetched_view(view(100.0), NOW)
    for plan in (buy(2.2), sell(2.2)):
        order = ledger.reserve(plan, owner="v#1", now=NOW)
        ledger.settle(order.reservation_id, True, symbol=APT, side=plan.side, now=NOW)
        if plan.side is Side.BUY:
            ledger.fetched_view(view(100.0, position=2.2), NOW)
    return ledger, 100.0 - 22.0 * 1.01 + 22.0 * 0.99


def test_a_round_trip_the_positions_show_is_not_taken_as_shown_by_lagging_balances():
    """The positions show the holding closed, the balances still the cash before the
    BUY: the balances match "neither shown" and "both shown" alike, and the quote tells
    which (neither). Taken for shown by the positions, the round trip's cost was counted
    as spendable again (100 instead of 99.56)."""
    ledger, cash = _round_trip_book()
    ledger.fetched_view(view(100.0), NOW)
    assert ledger.view.balances["USDC"].free == pytest.approx(cash)


def test_balances_ahead_of_the_positions_show_the_whole_round_trip_and_the_next_buy():
    """The balances show the BUY, its SELL and a BUY after them while the positions
    still show the first holding: the positions tell nothing of the balances' prefix,
    the quote does (all three shown). Marked as far as the positions, the SELL and the
    second BUY were laid again (77.102 instead of 77.441)."""
    ledger, cash = _round_trip_book()
    order = ledger.reserve(buy(2.19), owner="v#1", now=NOW)
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW)
    cash -= 21.9 * 1.01
    ledger.fetched_view(view(cash, 2.19, position=2.2), NOW)
    assert ledger.view.balances["USDC"].free == pytest.approx(cash)
    assert ledger.view.balances["APT"].free == pytest.approx(2.19)


@pytest.mark.parametrize(
    ("sell_price", "buy_fill", "shown"),
    [
        (3_000.0, 2_979.0, "both"),  # the soak's: filled at the price sized at
        (3_000.0, 2_979.0 * 0.999, "both"),  # the BUY filled 0.1 % below it
        (3_000.0 * 1.002, 2_979.0, "both"),  # the SELL 0.2 % above
        (3_000.0, 2_979.0, "neither"),  # the balances lag the positions
    ],
)
def test_a_sell_after_a_round_trip_is_never_sized_on_more_base_than_is_held(
    sell_price, buy_fill, shown
):
    """A holding sold whole and bought again for about the same cash, the BUY's fee
    taken in the base. A view showing both shows a base (the BUY less its fee) that
    "neither shown" expects too (the holding sold), and the quote barely moved: a BUY
    whose fee is in the base spends its notional alone, not the fee the book counted,
    so "neither" matched the quote better. Both orders were laid again, the base
    counted as 0.1778 while 0.17688766 were held, and the next SELL (0.17706472) was
    refused by the exchange (found by the soak). A fill's price off the one sized at
    misleads the quote the same way. What the quote cannot tell, the least base is
    kept: whichever the balances show, a SELL is sized on no more than is held."""
    ledger = LedgerBook(
        quote="USDC", fee_rate=0.001, lifetime=60.0, settle_window=180.0, fee_in_base=None
    )
    sold, bought, buy_price = 0.175975, 0.17706472, 2_979.0
    ledger.fetched_view(view(1_000.0, sold, position=sold, entry=3_000.0), NOW)
    plans = (
        OrderPlan(APT, Side.SELL, sold, 3_000.0, sold * 3_000.0, None),
        OrderPlan(APT, Side.BUY, bought, buy_price, bought * buy_price, "STRONG"),
    )
    for at, plan in enumerate(plans, start=1):
        order = ledger.reserve(plan, owner="v#1", now=NOW + at)
        ledger.settle(order.reservation_id, True, symbol=APT, side=plan.side, now=NOW + at)
    held = bought * (1 - 0.001)
    if shown == "both":
        cash = 1_000.0 + sold * sell_price * (1 - 0.001) - bought * buy_fill
        ledger.fetched_view(view(cash, held, position=bought, entry=buy_price), NOW + 5)
        assert ledger.view.balances["APT"].free == pytest.approx(held)
    else:
        ledger.fetched_view(view(1_000.0, sold, position=bought, entry=buy_price), NOW + 5)
    evaluation = evaluate_order(
        make_signal("SELL", symbol=APT, price=buy_price),
        view=ledger.view,
        ledger=LedgerState(),
        market=None,
        config=CONFIG,
        now=NOW + 6,
    )
    assert evaluation.plan is not None
    assert evaluation.plan.quantity <= held


@pytest.mark.parametrize("settled", [True, False])
def test_a_view_taken_as_the_truth_holds_back_what_our_orders_it_may_lack_would_spend(
    settled: bool,
) -> None:
    """A view whose base matches none of our prefixes (a trade made elsewhere) is taken
    as it is, every order of ours marked shown: a BUY filled after its snapshot (or
    still in flight) was spent and not counted, its room given back, and the next BUYs
    were sized on that cash (the sustained benchmark: BUYs refused for insufficient
    USDC, the book counting ten times the exchange's cash). What the orders it may
    lack would spend is held back until the next view."""
    ledger = book()
    order = ledger.reserve(buy(1_000.0), owner="v#1", now=NOW + 1)
    if settled:
        ledger.settle(order.reservation_id, True, symbol=APT, side=Side.BUY, now=NOW + 1)
    # 400 APT came from elsewhere; the view was read before our BUY filled.
    ledger.fetched_view(view(100_000.0, 400.0), NOW + 2)
    assert ledger.view.balances["APT"].free == pytest.approx(400.0), "taken as it is"
    spendable = ledger.view.balances["USDC"].free - ledger.held_quote()
    assert spendable <= 100_000.0 - 10_000.0 + 1e-6
