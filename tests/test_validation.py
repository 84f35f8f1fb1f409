"""Every check of DESIGN section 4, with an accepting and a rejecting case each."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.signals import Side, Signal, parse_signal
from coordinator.trading.sizing import SizingTable, signal_force
from coordinator.trading.sizing_roottrading import SizingMode
from coordinator.trading.trading_state import (
    Dependency,
    DependencyStatus,
    ExitPolicy,
    HaltState,
    StateReason,
    TradingState,
    TradingStatus,
    derive_trading_status,
)
from coordinator.trading.validation import (
    Balance,
    LedgerState,
    MarketQuote,
    PortfolioView,
    PositionView,
    Reason,
    RiskConfig,
    check_freshness,
    check_trading_state,
    check_universe,
    evaluate_order,
    floor_quantity,
    waiting_for_trader,
)
from tests.pipeline import signal_payload

NOW = 1_800_000_000.0
CONFIG = RiskConfig(
    quote_asset="USDC",
    max_concurrent_trades=3,
    min_notional=15.0,
    max_exposure_percent=35.0,
    max_orders_per_minute=5,
    daily_loss_limit_percent=5.0,
    max_drawdown_percent=15.0,
    stop_loss_cooldown=1800.0,
    require_market_data=True,
    max_price_deviation_percent=1.0,
    market_data_max_age=180.0,
    portfolio_max_age=30.0,
    portfolio_max_age_exit=600.0,
    sizing=SizingTable((1.0, 1.5, 2.2), (12.0, 18.0, 22.0, 28.0)),
    sizing_mode=SizingMode.TABLE,
)
VIEW = PortfolioView(
    balances={"USDC": Balance(10_000.0, 10_000.0, 10_000.0)}, positions={}, fetched_at=NOW - 1
)
QUOTE = MarketQuote(price=65_000.0, at=NOW - 5)


def make_signal(side: str = "BUY", symbol: str = "BTCUSDC", **changes: object) -> Signal:
    payload = signal_payload(symbol, side, price=65_000.0, timestamp_ms=int(NOW * 1000))
    parsed = parse_signal(payload)
    assert isinstance(parsed, Signal)
    return dataclasses.replace(parsed, **changes)


def holding(symbol: str = "BTCUSDC", quantity: float = 0.01, pnl: float = 0.0) -> PortfolioView:
    return PortfolioView(
        balances={
            "USDC": Balance(9_350.0, 9_350.0, 9_350.0),
            symbol[:-4]: Balance(quantity, quantity, quantity * 65_000.0),
        },
        positions={symbol: PositionView(symbol, quantity, 65_000.0, quantity * 65_000.0, pnl)},
        fetched_at=NOW - 1,
    )


def evaluate(signal: Signal | None = None, **kwargs: object):
    arguments = {
        "view": VIEW,
        "ledger": LedgerState(),
        "market": QUOTE,
        "config": CONFIG,
        "now": NOW,
    }
    arguments.update(kwargs)
    return evaluate_order(signal or make_signal(), **arguments)  # type: ignore[arg-type]


def reason_of(evaluation) -> Reason | None:
    failure = evaluation.failure
    return None if failure is None else failure.reason


# --- steps 2, 4, 5 ----------------------------------------------------------------------


def test_freshness():
    signal = make_signal()
    assert check_freshness(signal, now=NOW + 10, signal_timeout=30).passed
    stale = check_freshness(signal, now=NOW + 31, signal_timeout=30)
    assert (stale.passed, stale.reason) == (False, Reason.STALE_SIGNAL)
    future = check_freshness(signal, now=NOW - 6, signal_timeout=30)
    assert future.reason is Reason.STALE_SIGNAL and "future" in future.detail


ACTIVE = TradingStatus(TradingState.ACTIVE, ())
DEGRADED = TradingStatus(
    TradingState.DEGRADED, (StateReason("portfolio_down", "portfolio is down"),)
)
TRADER_DOWN = TradingStatus(TradingState.HALTED, (StateReason("trader_down", "trader is down"),))
MANUAL = TradingStatus(TradingState.HALTED, (StateReason("manual_halt", "halted by ops"),))


@pytest.mark.parametrize(
    ("status", "side", "reason"),
    [
        (ACTIVE, "BUY", None),
        (ACTIVE, "SELL", None),
        (DEGRADED, "SELL", None),
        (DEGRADED, "BUY", Reason.TRADING_DEGRADED),
        (TRADER_DOWN, "SELL", Reason.TRADING_HALTED),
        (MANUAL, "BUY", Reason.TRADING_HALTED),
    ],
)
def test_trading_state(status, side, reason):
    result = check_trading_state(make_signal(side), status)
    assert result.reason is reason
    assert result.passed is (reason is None)


def test_a_halt_that_allows_exits_passes_sells_and_refuses_buys():
    all_up = dict.fromkeys(Dependency, DependencyStatus.UP)
    for halt in (HaltState(active=None), HaltState(active=True, reason="news")):
        status = derive_trading_status(all_up, halt)
        assert check_trading_state(make_signal("SELL"), status).passed
        assert check_trading_state(make_signal("BUY"), status).reason is Reason.TRADING_HALTED
    blocked = derive_trading_status(
        all_up, HaltState(active=True, reason="news", exits=ExitPolicy.BLOCK)
    )
    assert check_trading_state(make_signal("SELL"), blocked).reason is Reason.TRADING_HALTED


def test_a_sell_waits_for_the_trader_under_a_halt_that_allows_exits():
    trader_down = {
        **dict.fromkeys(Dependency, DependencyStatus.UP),
        Dependency.TRADER: DependencyStatus.DOWN,
    }
    allowing = derive_trading_status(trader_down, HaltState(active=True, reason="news"))
    assert check_trading_state(make_signal("SELL"), allowing).reason is Reason.TRADING_HALTED
    assert waiting_for_trader(allowing, Side.SELL)
    assert not waiting_for_trader(allowing, Side.BUY)
    blocking = derive_trading_status(
        trader_down, HaltState(active=True, reason="news", exits=ExitPolicy.BLOCK)
    )
    assert not waiting_for_trader(blocking, Side.SELL)
    unreadable = derive_trading_status(trader_down, HaltState(active=None))
    assert waiting_for_trader(unreadable, Side.SELL)
    assert not waiting_for_trader(unreadable, Side.BUY)


def test_only_a_trader_outage_makes_signals_wait():
    assert waiting_for_trader(TRADER_DOWN)
    both = TradingStatus(TradingState.HALTED, (*TRADER_DOWN.reasons, *DEGRADED.reasons))
    assert waiting_for_trader(both)
    assert not waiting_for_trader(MANUAL)
    assert not waiting_for_trader(
        TradingStatus(TradingState.HALTED, (*MANUAL.reasons, *TRADER_DOWN.reasons))
    )
    assert not waiting_for_trader(DEGRADED)
    assert not waiting_for_trader(ACTIVE)


def test_universe_and_blacklist_hold_back_buys_only():
    universe = frozenset({"BTCUSDC"})
    assert check_universe(make_signal(), universe, {}).passed
    outside = check_universe(make_signal(symbol="ETHUSDC"), universe, {})
    assert outside.reason is Reason.NOT_IN_UNIVERSE
    banned = check_universe(make_signal(), universe, {"BTCUSDC": "delisting"})
    assert banned.reason is Reason.BLACKLISTED and "delisting" in banned.detail
    assert check_universe(make_signal("SELL", symbol="ETHUSDC"), universe, {"ETHUSDC": "x"}).passed


# --- step 6: risk limits ------------------------------------------------------------------


def test_a_good_buy_passes_every_step_with_its_size():
    evaluation = evaluate()
    assert evaluation.failure is None
    assert [c.step for c in evaluation.checks] == ["risk", "portfolio", "market", "sizing"]
    plan = evaluation.plan
    assert plan is not None
    # force 0.91 * sqrt(5) * 0.82 = 1.669 -> STRONG -> 22 % of 10,000 at the market price
    assert plan.category == "STRONG"
    assert plan.quantity == floor_quantity(2_200.0 / 65_000.0)
    assert plan.reference_price == 65_000.0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"view": holding()}, Reason.POSITION_ALREADY_OPEN),
        ({"ledger": LedgerState(buying=frozenset({"BTCUSDC"}))}, Reason.POSITION_ALREADY_OPEN),
        (
            {"ledger": LedgerState(buying=frozenset({"AUSDC", "BUSDC", "CUSDC"}))},
            Reason.MAX_CONCURRENT_TRADES,
        ),
        ({"ledger": LedgerState(orders_last_minute=5)}, Reason.ORDER_RATE_LIMIT),
        ({"ledger": LedgerState(stop_losses={"BTCUSDC": NOW - 60})}, Reason.STOP_LOSS_COOLDOWN),
        ({"ledger": LedgerState(realized_loss_today=600.0)}, Reason.DAILY_LOSS_LIMIT),
        ({"ledger": LedgerState(peak_equity=12_500.0)}, Reason.DRAWDOWN_GUARD),
    ],
)
def test_each_risk_limit_rejects_with_its_reason(kwargs, reason):
    evaluation = evaluate(**kwargs)
    assert reason_of(evaluation) is reason
    assert evaluation.plan is None
    assert evaluation.checks[-1].step == "risk"


def test_risk_limits_that_pass_just_inside():
    assert reason_of(evaluate(ledger=LedgerState(orders_last_minute=4))) is None
    assert reason_of(evaluate(ledger=LedgerState(stop_losses={"BTCUSDC": NOW - 1801}))) is None
    assert reason_of(evaluate(ledger=LedgerState(realized_loss_today=400.0))) is None
    assert reason_of(evaluate(ledger=LedgerState(peak_equity=11_000.0))) is None


def test_exposure_and_minimum_notional():
    heavy = PortfolioView(
        balances={
            "USDC": Balance(10_000.0, 10_000.0, 10_000.0),
            "BTC": Balance(0.08, 0.08, 5_200.0),
        },
        positions={},
        fetched_at=NOW - 1,
    )
    assert reason_of(evaluate(view=heavy)) is Reason.MAX_EXPOSURE
    poor = PortfolioView(
        balances={"USDC": Balance(50.0, 50.0, 50.0)}, positions={}, fetched_at=NOW - 1
    )
    assert reason_of(evaluate(view=poor)) is Reason.BELOW_MIN_NOTIONAL


def test_exits_are_never_held_back_by_risk_limits():
    ledger = LedgerState(orders_last_minute=50, realized_loss_today=9_000.0, peak_equity=1e9)
    evaluation = evaluate(make_signal("SELL"), view=holding(), ledger=ledger)
    assert evaluation.failure is None


# --- step 7: portfolio ------------------------------------------------------------------


def test_portfolio_view_must_be_fresh_for_a_buy_and_may_be_older_for_an_exit():
    old = dataclasses.replace(VIEW, fetched_at=NOW - 31, error="GET /balances answered 500")
    evaluation = evaluate(view=old)
    assert reason_of(evaluation) is Reason.PORTFOLIO_UNAVAILABLE
    assert "answered 500" in evaluation.failure.detail
    never = dataclasses.replace(VIEW, fetched_at=None)
    assert reason_of(evaluate(view=never)) is Reason.PORTFOLIO_UNAVAILABLE
    older_holding = dataclasses.replace(holding(), fetched_at=NOW - 500)
    assert evaluate(make_signal("SELL"), view=older_holding).failure is None
    too_old = dataclasses.replace(holding(), fetched_at=NOW - 601)
    assert reason_of(evaluate(make_signal("SELL"), view=too_old)) is Reason.PORTFOLIO_UNAVAILABLE


def test_free_balance_counts_what_orders_in_flight_hold():
    assert (
        reason_of(evaluate(ledger=LedgerState(reserved_quote=9_990.0))) is Reason.BELOW_MIN_NOTIONAL
    )
    big = SizingTable((1.0, 1.5, 2.2), (100.0, 100.0, 100.0, 100.0))
    # Sized at 100 %, the fee no longer fits.
    evaluation = evaluate(config=dataclasses.replace(CONFIG, sizing=big, max_exposure_percent=100))
    assert reason_of(evaluation) is Reason.INSUFFICIENT_BALANCE


def test_a_buy_refused_for_want_of_cash_names_what_holds_it():
    # 4,000 of the 10,000 held: 3,000 by BUYs in flight, 1,000 held back for a lagging
    # view. Sized at 100 % of the 6,000 left, the fee no longer fits.
    ledger = LedgerState(reserved_quote=4_000.0, held_back_quote=1_000.0)
    big = SizingTable((1.0, 1.5, 2.2), (100.0, 100.0, 100.0, 100.0))
    config = dataclasses.replace(CONFIG, sizing=big, max_exposure_percent=100)
    evaluation = evaluate(ledger=ledger, config=config)
    assert reason_of(evaluation) is Reason.INSUFFICIENT_BALANCE
    assert "6000.00 free (4000.00 USDC held: 3000.00 by BUYs in flight, 1000.00 held back" in (
        evaluation.failure.detail
    )
    # RootTrading's sizing refuses before it: the same parts named.
    rootish = dataclasses.replace(CONFIG, sizing_mode=SizingMode.ROOTTRADING)
    everything = LedgerState(reserved_quote=10_000.0, held_back_quote=4_000.0)
    refused = evaluate(ledger=everything, config=rootish)
    assert reason_of(refused) is Reason.INSUFFICIENT_BALANCE
    assert "(10000.00 USDC held: 6000.00 by BUYs in flight, 4000.00 held back" in (
        refused.failure.detail
    )


def test_sell_sells_the_position_quantity_or_is_rejected():
    evaluation = evaluate(make_signal("SELL"), view=holding(quantity=0.0123))
    assert evaluation.plan is not None
    assert evaluation.plan.quantity == 0.0123
    assert reason_of(evaluate(make_signal("SELL"))) is Reason.NO_POSITION
    busy = LedgerState(selling=frozenset({"BTCUSDC"}))
    assert (
        reason_of(evaluate(make_signal("SELL"), view=holding(), ledger=busy))
        is Reason.EXIT_IN_PROGRESS
    )


# --- step 8: market conditions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "config", "reason"),
    [
        (None, CONFIG, Reason.MARKET_DATA_UNAVAILABLE),
        (None, dataclasses.replace(CONFIG, require_market_data=False), None),
        (MarketQuote(65_000.0, NOW - 181), CONFIG, Reason.MARKET_DATA_STALE),
        (MarketQuote(66_000.0, NOW - 1), CONFIG, Reason.PRICE_DEVIATION),
        (MarketQuote(65_600.0, NOW - 1), CONFIG, None),
    ],
)
def test_market_conditions(market, config, reason):
    assert reason_of(evaluate(market=market, config=config)) is reason


def test_an_exit_does_not_wait_for_market_data():
    assert evaluate(make_signal("SELL"), view=holding(), market=None).failure is None


# --- step 9: sizing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "category"),
    [
        ({"consensus_strength": 0.5, "strategies_count": 1, "confidence": 0.5}, "WEAK"),
        ({"consensus_strength": 0.8, "strategies_count": 3, "confidence": 0.9}, "MODERATE"),
        ({"consensus_strength": 0.9, "strategies_count": 5, "confidence": 0.82}, "STRONG"),
        ({"consensus_strength": 1.0, "strategies_count": 9, "confidence": 0.9}, "VERY_STRONG"),
    ],
)
def test_sizing_categories(changes, category):
    signal = make_signal(**changes)
    plan = evaluate(signal).plan
    assert plan is not None and plan.category == category
    percent = CONFIG.sizing.percent(category)
    assert plan.quantity == floor_quantity(10_000 * percent / 100 / 65_000)


def test_force_fallbacks():
    bare = make_signal(
        consensus_strength=None,
        strategies_count=None,
        confidence=None,
        avg_confidence=None,
        strength=None,
    )
    assert signal_force(bare) == pytest.approx(0.25)
    worded = make_signal(
        consensus_strength=None,
        strategies_count=4,
        confidence=None,
        avg_confidence=0.5,
        strength="very_strong",
    )
    assert signal_force(worded) == pytest.approx(1.0 * 2 * 0.5)


def test_sizing_table_checks_itself():
    with pytest.raises(ValueError, match="increasing"):
        SizingTable((1.5, 1.0, 2.0), (1, 2, 3, 4))
    with pytest.raises(ValueError, match="percents"):
        SizingTable((1.0, 1.5, 2.0), (0, 2, 3, 4))


@given(
    st.floats(0, 1_000_000),
    st.floats(0.0001, 100_000),
    st.floats(0, 1),
    st.integers(0, 20),
)
def test_a_planned_buy_never_spends_more_than_is_free(free, price, strength, count):
    view = PortfolioView(balances={"USDC": Balance(free, free, free)}, positions={}, fetched_at=NOW)
    signal = make_signal(price=price, consensus_strength=strength, strategies_count=count)
    config = dataclasses.replace(CONFIG, max_exposure_percent=100, require_market_data=False)
    evaluation = evaluate(signal, view=view, market=None, config=config)
    if evaluation.plan is not None:
        spent = evaluation.plan.quantity * evaluation.plan.reference_price * (1 + CONFIG.fee_rate)
        assert spent <= free + 1e-6
        assert evaluation.plan.notional >= CONFIG.min_notional
        assert math.isfinite(evaluation.plan.quantity) and evaluation.plan.quantity > 0


def test_floor_quantity_never_rounds_up():
    assert floor_quantity(0.123456789) == 0.12345678
    assert floor_quantity(1.0) == 1.0
    assert floor_quantity(time.time() % 1) <= time.time() % 1 + 1e-8
