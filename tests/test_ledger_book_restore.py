"""The Ledger's book in a new process: our recent orders from the store laid over its first
view of the Portfolio."""

from __future__ import annotations

import dataclasses

import pytest

from coordinator.trading.ledger_book import LedgerBook
from coordinator.trading.ledger_restore import StoredOrder, restore
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.signals import Side
from coordinator.trading.validation import (
    Balance,
    LedgerState,
    MarketQuote,
    OrderPlan,
    PortfolioView,
    PositionView,
)
from tests.test_ledger_book import APT, book, buy, sell, view
from tests.test_validation import CONFIG, NOW, QUOTE, make_signal

# --- a new process: our recent orders from the store over its first view ---------------


def stored(side: Side, quantity: float, *, at: float, accepted: bool = True) -> StoredOrder:
    return StoredOrder(
        client_order_id=f"c-{side}-{at}",
        signal_id=f"s-{side}-{at}",
        symbol=APT,
        side=side,
        quantity=quantity,
        reference_price=10.0,
        created_at=at,
        accepted=accepted,
    )


@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "unknown or held"])
def test_a_stored_sell_the_view_still_holds_is_laid_over_it(accepted):
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    laid = restore(ledger, [stored(Side.SELL, 1_000.0, at=NOW - 30, accepted=accepted)], now=NOW)
    assert laid == 1
    assert APT not in ledger.view.positions, "not sold a second time"
    assert ledger.view.balances["APT"].free == 0.0
    assert [c.symbol for c in ledger.closed] == [APT]
    # Once the Portfolio shows it sold, it is gone from the book.
    ledger.fetched_view(view(100_000.0), NOW + 1)
    assert not ledger.orders and APT not in ledger.view.positions


def test_stored_orders_the_view_shows_or_too_old_are_not_laid():
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    orders = [
        stored(Side.BUY, 1_000.0, at=NOW - 60),  # its position shows
        stored(Side.SELL, 500.0, at=NOW - 181),  # older than the settle window
    ]
    assert restore(ledger, orders, now=NOW) == 0
    assert ledger.view.positions[APT].quantity == 1_000.0
    assert ledger.view.balances["USDC"].free == 90_000.0


def test_a_stored_buy_the_view_lacks_spends_its_cash_and_sells_nothing():
    ledger = book()
    assert restore(ledger, [stored(Side.BUY, 1_000.0, at=NOW - 10)], now=NOW) == 1
    assert ledger.view.balances["USDC"].free == pytest.approx(90_000.0)
    assert APT not in ledger.view.positions
    assert ledger.view.balances.get("APT", Balance(0.0, 0.0, 0.0)).free == 0.0


def test_an_unknown_buy_not_shown_yet_refuses_a_second_buy_of_its_symbol():
    ledger = book()
    order = ledger.reserve(buy(), owner="validator-0#1", now=NOW)
    ledger.settle(order.reservation_id, None, symbol=APT, side=Side.BUY, now=NOW + 1)
    assert APT in ledger.buying(), "it may have opened a position: no BUY on top of it"
    ledger.fetched_view(view(100_000.0 - 16_652.27, 1_665.227, 1_665.227), NOW + 2)
    assert APT not in ledger.buying()


def test_a_stored_sell_of_an_earlier_holding_does_not_hide_the_next_one():
    """Sold, bought again, then the process restarted: the view shows the new holding.
    Laying the old SELL over it would hide a held position (its exits refused
    ``no_position``) for the whole settle window."""
    ledger = book()
    ledger.fetched_view(view(91_000.0, 800.0, 800.0, entry=12.0), NOW)
    orders = [
        stored(Side.BUY, 1_000.0, at=NOW - 150),
        stored(Side.SELL, 1_000.0, at=NOW - 100),
        stored(Side.BUY, 800.0, at=NOW - 50),
    ]
    assert restore(ledger, orders, now=NOW) == 0
    assert ledger.view.positions[APT].quantity == 800.0
    assert ledger.view.balances["APT"].free == 800.0
    assert ledger.view.balances["USDC"].free == 91_000.0
    evaluation = evaluate_order(
        make_signal("SELL", APT, price=12.0),
        view=ledger.view,
        ledger=LedgerState(),
        market=None,
        config=CONFIG,
        now=NOW,
    )
    assert evaluation.plan is not None, evaluation.checks


def test_stored_orders_after_the_last_one_the_view_shows_are_laid():
    """The view still shows the old holding: the SELL and the BUY after it are not shown
    yet (a lagging Portfolio), so the SELL is laid and the BUY spends its cash."""
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    orders = [stored(Side.SELL, 1_000.0, at=NOW - 100), stored(Side.BUY, 800.0, at=NOW - 50)]
    assert restore(ledger, orders, now=NOW) == 2
    assert APT not in ledger.view.positions
    assert ledger.view.balances["USDC"].free == pytest.approx(90_000.0 + 10_000.0 - 8_000.0)


def test_an_unknown_sell_found_never_executed_shows_its_holding_again():
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    order = ledger.reserve(sell(1_000.0), owner="validator-0#1", now=NOW, signal_id="exit:k:1")
    ledger.settle(order.reservation_id, None, symbol=APT, side=Side.SELL, now=NOW + 1)
    assert APT not in ledger.view.positions and ledger.closed
    assert ledger.not_executed("exit:k:2", symbol=APT, side=Side.SELL, now=NOW) is None
    assert ledger.not_executed("exit:k:1", symbol=APT, side=Side.BUY, now=NOW) is None
    found = ledger.not_executed("exit:k:1", symbol=APT, side=Side.SELL, now=NOW)
    assert found is not None and found.reservation_id == order.reservation_id
    assert ledger.view.positions[APT].quantity == 1_000.0
    assert ledger.view.balances["APT"].free == 1_000.0
    assert not ledger.closed and not ledger.orders


def test_an_order_found_never_executed_before_the_restore_is_not_laid():
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    sold = stored(Side.SELL, 1_000.0, at=NOW - 30, accepted=False)
    assert ledger.not_executed(sold.signal_id, symbol=APT, side=Side.SELL, now=NOW) is None
    assert restore(ledger, [sold], now=NOW) == 0
    assert ledger.view.positions[APT].quantity == 1_000.0


def test_a_buy_found_never_executed_keeps_its_cash_spent():
    """The cautious side for money: if the verdict was wrong (or a re-send of it
    filled), dropping it would spend the cash twice."""
    ledger = book()
    order = ledger.reserve(buy(100.0), owner="validator-0#1", now=NOW, signal_id="s-1")
    ledger.settle(order.reservation_id, None, symbol=APT, side=Side.BUY, now=NOW + 1)
    assert ledger.not_executed("s-1", symbol=APT, side=Side.BUY, now=NOW + 2) is None
    assert ledger.view.balances["USDC"].free == pytest.approx(100_000.0 - 1_000.0)


def test_a_round_trip_shown_by_the_positions_is_not_laid_again_over_the_balances():
    """Sold a holding and bought about as much again: the base amount is back near where
    it was, so the balances alone match both "neither shown" and "both shown", and the
    quote, which tells them apart, is off by the fees of other BUYs taken in their base
    asset. The positions show both: laying both again over the balances counted the
    base as if no fee had been taken from it (a SELL of it refused for insufficient
    balance, found by the soak)."""
    fee = 0.001
    ledger = LedgerBook(quote="USDC", fee_rate=fee, lifetime=60.0, settle_window=180.0)
    old_base = 100.0 * (1 - fee) + 0.0024
    ledger.fetched_view(
        PortfolioView(
            balances={
                "USDC": Balance(5_000.0, 5_000.0, 5_000.0),
                "APT": Balance(old_base, old_base, None),
            },
            positions={APT: PositionView(APT, 100.0, 10.0, 1_000.0, 0.0)},
            fetched_at=NOW,
        ),
        NOW,
    )
    plans = [
        OrderPlan(APT, Side.SELL, 100.0, 10.0, 1_000.0, None),
        OrderPlan(APT, Side.BUY, 100.1, 10.0, 1_001.0, None),
        OrderPlan("XRPUSDC", Side.BUY, 400.0, 2.5, 1_000.0, None),
        OrderPlan("ADAUSDC", Side.BUY, 2_000.0, 0.5, 1_000.0, None),
    ]
    for at, plan in enumerate(plans, start=1):
        order = ledger.reserve(plan, owner="v#1", now=NOW + at)
        ledger.settle(order.reservation_id, True, symbol=plan.symbol, side=plan.side, now=NOW + at)
    # Every BUY's fee taken in its base asset: each cost its notional in the quote.
    base = old_base - 100.0 + 100.1 * (1 - fee)
    cash = 5_000.0 + 1_000.0 * (1 - fee) - 1_001.0 - 2 * 1_000.0
    ledger.fetched_view(
        PortfolioView(
            balances={
                "USDC": Balance(cash, cash, cash),
                "APT": Balance(base, base, None),
                "XRP": Balance(400.0 * (1 - fee), 400.0 * (1 - fee), None),
                "ADA": Balance(2_000.0 * (1 - fee), 2_000.0 * (1 - fee), None),
            },
            positions={
                APT: PositionView(APT, 100.1, 10.0, 1_001.0, 0.0),
                "XRPUSDC": PositionView("XRPUSDC", 400.0, 2.5, 1_000.0, 0.0),
                "ADAUSDC": PositionView("ADAUSDC", 2_000.0, 0.5, 1_000.0, 0.0),
            },
            fetched_at=NOW + 10,
        ),
        NOW + 10,
    )
    assert ledger.view.balances["APT"].free == pytest.approx(base), ledger.orders
    assert ledger.view.balances["USDC"].free == pytest.approx(cash)


def test_a_held_buy_laid_after_a_restart_keeps_its_cash_from_a_new_buy_until_its_window():
    """After a restart the only room of a BUY held after a 5xx is the copy laid from the
    store (its Validator may send it again without a reservation of its own): its cash
    is spent in the view and its symbol counted as buying, so no new BUY is sized on
    that money, until the Portfolio shows it or its settle window ends (longer than its
    signal may wait to be sent again)."""

    def new_buy(ledger: LedgerBook) -> OrderPlan | None:
        return evaluate_order(
            make_signal("BUY"),
            view=ledger.view,
            ledger=LedgerState(
                reserved_quote=ledger.held_quote(),
                buying=ledger.buying(),
                selling=ledger.selling(),
                closed=tuple(ledger.closed),
            ),
            market=QUOTE,
            config=CONFIG,
            now=NOW,
        ).plan

    fresh = book()
    fresh.fetched_view(view(10_000.0), NOW)
    alone = new_buy(fresh)
    assert alone is not None and alone.notional > 100.0
    ledger = book()
    ledger.fetched_view(view(10_000.0), NOW)
    held = stored(Side.BUY, 990.0, at=NOW - 20, accepted=False)
    assert restore(ledger, [held], now=NOW) == 1
    assert ledger.view.balances["USDC"].free == pytest.approx(100.0)
    assert APT in ledger.buying()
    beside = new_buy(ledger)
    assert beside is None or beside.notional <= 100.0 + 1e-9
    ledger.expire(NOW - 20 + 179)
    assert ledger.view.balances["USDC"].free == pytest.approx(100.0)
    ledger.expire(NOW - 20 + 180)
    assert ledger.view.balances["USDC"].free == pytest.approx(10_000.0)


def _sold_and_bought_again(base: float, cash: float) -> tuple[LedgerBook, list[StoredOrder]]:
    """A holding of 3.996 APT sold, 3.723 bought again at 9.4525 (the fee, 0.1 %, maybe
    taken in the base asset), then a restart on a view whose position shows both."""
    ledger = LedgerBook(quote="USDC", fee_rate=0.001, lifetime=60.0, settle_window=180.0)
    ledger.fetched_view(
        PortfolioView(
            balances={"USDC": Balance(cash, cash, cash), "APT": Balance(base, base, None)},
            positions={APT: PositionView(APT, 3.723, 9.4525, 35.19, 0.0)},
            fetched_at=NOW,
        ),
        NOW,
    )
    orders = [
        dataclasses.replace(stored(Side.SELL, 3.996, at=NOW - 60), reference_price=9.4525),
        dataclasses.replace(stored(Side.BUY, 3.723, at=NOW - 30), reference_price=9.4525),
    ]
    return ledger, orders


def _sell_quantity(ledger: LedgerBook) -> float:
    evaluation = evaluate_order(
        make_signal("SELL", APT, price=9.4525),
        view=ledger.view,
        ledger=LedgerState(closed=tuple(ledger.closed)),
        market=None,
        config=dataclasses.replace(CONFIG, min_notional=1.0),
        now=NOW,
    )
    assert evaluation.plan is not None, evaluation.checks
    return evaluation.plan.quantity


@pytest.mark.parametrize(
    ("balances", "base"),
    [
        ("show neither", 3.996),  # the old holding: they lag the positions
        ("show both, fee in the base", 3.723 * 0.999 + 0.0004),
        ("show both, fee in the quote", 3.723 + 0.0004),
    ],
)
def test_a_restored_sell_is_sized_on_no_more_base_than_held_whatever_the_balances_show(
    balances: str, base: float
) -> None:
    """The positions show the sale and the BUY after it; the balances, fetched apart,
    may show neither. Judged by the position alone, balances still showing the holding
    sold sized the next SELL on its base, above the new holding less its fee (found by
    the money model). The base counted is the least the balances may mean; the cash,
    never more than they show plus what may be spent."""
    cash = 1_000.0
    ledger, orders = _sold_and_bought_again(base, cash)
    restore(ledger, orders, now=NOW)
    true_base = base if balances != "show neither" else 3.723 * 0.999
    true_cash = cash if balances != "show neither" else cash + 3.996 * 9.4525 * 0.999 - 35.19
    assert _sell_quantity(ledger) <= true_base
    assert _sell_quantity(ledger) >= 3.719, "sized on the least base it may be, no less"
    assert ledger.view.balances["USDC"].free <= min(cash, true_cash)
    assert ledger.view.positions[APT].quantity == 3.723
    assert not ledger.closed, "the holding sold is not the one the view shows"


def test_a_restored_buy_and_sell_shown_whole_are_dropped_once_the_balances_show_them() -> None:
    """The balances catch up: the quote moved by the sale and the BUY; the book lays
    nothing any more."""
    ledger, orders = _sold_and_bought_again(3.996, 1_000.0)
    restore(ledger, orders, now=NOW)
    cash = 1_000.0 + 3.996 * 9.4525 * 0.999 - 35.19
    base = 3.723 * 0.999
    ledger.fetched_view(
        PortfolioView(
            balances={"USDC": Balance(cash, cash, cash), "APT": Balance(base, base, None)},
            positions={APT: PositionView(APT, 3.723, 9.4525, 35.19, 0.0)},
            fetched_at=NOW + 5,
        ),
        NOW + 5,
    )
    assert not ledger.orders
    assert ledger.view.balances["APT"].free == pytest.approx(base)
    assert ledger.view.balances["USDC"].free == pytest.approx(cash)


def test_a_sell_after_the_restore_stays_laid_until_the_position_shows_it() -> None:
    """The orders a restore lays for their balances part expect the view's position
    after them: a SELL of this process on top is matched against it, and a view that
    still shows the position does not show the SELL (the holding, counted back, would
    be sold twice)."""
    ledger, orders = _sold_and_bought_again(3.996, 1_000.0)
    restore(ledger, orders, now=NOW)
    plan = OrderPlan(APT, Side.SELL, 3.719, 9.4525, 3.719 * 9.4525, None)
    order = ledger.reserve(plan, owner="validator-0#1", now=NOW + 1)
    ledger.settle(order.reservation_id, True, symbol=APT, side=Side.SELL, now=NOW + 2)
    assert APT not in ledger.view.positions
    ledger.fetched_view(
        PortfolioView(
            balances={
                "USDC": Balance(1_000.0, 1_000.0, 1_000.0),
                "APT": Balance(3.996, 3.996, None),
            },
            positions={APT: PositionView(APT, 3.723, 9.4525, 35.19, 0.0)},
            fetched_at=NOW + 3,
        ),
        NOW + 3,
    )
    assert APT not in ledger.view.positions, "sold: not counted back"


def _new_buy(ledger: LedgerBook) -> object:
    return evaluate_order(
        make_signal("BUY", APT, price=10.0),
        view=ledger.view,
        ledger=LedgerState(buying=ledger.buying(), closed=tuple(ledger.closed)),
        market=MarketQuote(10.0, NOW - 5),
        config=CONFIG,
        now=NOW,
    )


@pytest.mark.parametrize("how", ["restored held after a 5xx", "settled unknown"])
def test_no_buy_on_a_holding_hidden_by_an_unknown_sell(how: str) -> None:
    """An unknown SELL laid over the view hides its holding, which may still be held
    (found by the soak: after a restart, a SELL held after a 5xx was laid; re-delivered
    signals bought and sold on top of the holding before the reconciler found the SELL
    never executed, and the book's expectations, built on a view without the holding,
    then refused its stop's exits "no free" base for the whole settle window). Like an
    unknown BUY, it refuses a BUY of its symbol until it is shown or found."""
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    if how == "settled unknown":
        order = ledger.reserve(sell(1_000.0), owner="validator-0#1", now=NOW, signal_id="s-1")
        ledger.settle(order.reservation_id, None, symbol=APT, side=Side.SELL, now=NOW)
    else:
        held = dataclasses.replace(
            stored(Side.SELL, 1_000.0, at=NOW - 10, accepted=False), signal_id="s-1"
        )
        assert restore(ledger, [held], now=NOW) == 1
    assert APT not in ledger.view.positions
    refused = _new_buy(ledger)
    assert refused.plan is None and refused.failure.reason == "position_already_open"  # type: ignore[attr-defined]
    ledger.not_executed("s-1", symbol=APT, side=Side.SELL, now=NOW + 1)
    assert APT not in ledger.buying()
    assert ledger.view.positions[APT].quantity == 1_000.0


def test_a_buy_goes_again_once_the_view_shows_the_unknown_sell() -> None:
    ledger = book()
    ledger.fetched_view(view(90_000.0, 1_000.0, 1_000.0), NOW)
    order = ledger.reserve(sell(1_000.0), owner="validator-0#1", now=NOW, signal_id="s-1")
    ledger.settle(order.reservation_id, None, symbol=APT, side=Side.SELL, now=NOW)
    assert APT in ledger.buying()
    ledger.fetched_view(view(100_000.0), NOW + 2)
    assert APT not in ledger.buying() and not ledger.orders
    assert _new_buy(ledger).plan is not None  # type: ignore[attr-defined]
