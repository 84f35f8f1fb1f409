"""SIZING_MODE=rootTrading (RootTrading's force, categories and amount), the universe
override, and a consensus SELL while a trailing stop watches the position: pure
functions by example and by property, then in a whole coordinator."""

from __future__ import annotations

import dataclasses
import logging
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.signals import Signal, parse_signal
from coordinator.trading.sizing_roottrading import (
    ROOTTRADING_TABLE,
    SAFETY_SHARE,
    ForceSource,
    SizingMode,
    roottrading_amount,
    roottrading_force,
    roottrading_quantity,
    universe_override,
)
from coordinator.trading.validation import (
    Balance,
    LedgerState,
    MarketQuote,
    PortfolioView,
    Reason,
    check_universe,
)
from tests.pipeline import PRICES, signal_payload
from tests.test_pipeline import signal_id
from tests.test_trailing_stops import ENV, fills, seed, stop_of, tick, ticks_seen, watched
from tests.test_validation import CONFIG, NOW, evaluate, make_signal, reason_of
from tests.waiting import wait_for

RT = dataclasses.replace(CONFIG, sizing_mode=SizingMode.ROOTTRADING, max_exposure_percent=100.0)


def consensus(
    strength: float | None = 1.5128205128205132,
    count: int | None = 6,
    avg: float | None = 0.7311166666666665,
    **extra: object,
) -> dict[str, object]:
    """A consensus BUY whose metadata carries ``extra`` and the three force inputs (a
    None leaves the key out); the defaults are rt-contract's buy_consensus.json."""
    payload = signal_payload("BTCUSDC", "BUY", price=65_000.0, timestamp_ms=int(NOW * 1000))
    metadata: dict[str, object] = {"type": "CONSENSUS", "consensus_id": "c1"}
    for key, value in (("consensus_strength", strength), ("strategies_count", count)):
        if value is not None:
            metadata[key] = value
    if avg is not None:
        metadata["avg_confidence"] = avg
    metadata.update(extra)
    payload["metadata"] = metadata
    payload["confidence"] = 0.6051282051282053
    payload["strength"] = None
    return payload


def parsed(payload: dict[str, object]) -> Signal:
    signal = parse_signal(payload)
    assert isinstance(signal, Signal), signal
    return signal


# --- the force ----------------------------------------------------------------------


def test_the_force_of_a_consensus_is_strength_times_root_count_times_avg_confidence():
    force = roottrading_force(parsed(consensus()))
    assert force.value == pytest.approx(1.5128205128205132 * math.sqrt(6) * 0.7311166666666665)
    assert force.value == pytest.approx(2.7092539, rel=1e-7)
    assert (force.strategies, force.source) == (6, ForceSource.CONSENSUS)
    # The top-level confidence (min(1, strength / 2.5)) is not the average: unused.
    other = dict(consensus(), confidence=1.0)
    assert roottrading_force(parsed(other)).value == force.value


@pytest.mark.parametrize(
    ("payload", "value", "source"),
    [
        # No avg_confidence: metadata.confidence, else 0.5 (never the top level).
        (consensus(avg=None, confidence=0.9), 1.5128205128205132 * math.sqrt(6) * 0.9, "consensus"),
        (consensus(avg=None), 1.5128205128205132 * math.sqrt(6) * 0.5, "consensus"),
        (
            consensus(avg=None, confidence="0.9"),
            1.5128205128205132 * math.sqrt(6) * 0.5,
            "consensus",
        ),
        # strategy_count stands in for strategies_count.
        (
            consensus(count=None, strategy_count=4),
            1.5128205128205132 * 2 * 0.7311166666666665,
            "consensus",
        ),
        # One strategy, or no consensus strength: the strength word, else 1.0.
        (dict(consensus(count=1), strength="very_strong"), 2.5, "strength"),
        (dict(consensus(strength=0.0), strength="strong"), 2.0, "strength"),
        (dict(consensus(strength=None), strength="moderate"), 1.5, "strength"),
        (dict(consensus(strength=None), strength="weak"), 1.0, "strength"),
        (dict(consensus(strength=None), strength="very_weak"), 1.0, "strength"),
        (consensus(strength=None), 1.0, "default"),
        (consensus(count=None), 1.0, "default"),
    ],
)
def test_the_force_falls_back_as_roottrading_did(payload, value, source):
    force = roottrading_force(parsed(payload))
    assert force.value == pytest.approx(value)
    assert force.source is ForceSource(source)
    if source != "consensus":
        assert force.strategies == 1


@pytest.mark.parametrize(
    ("force", "category", "percent"),
    [
        (0.0, "WEAK", 12.0),
        (3.999, "WEAK", 12.0),
        (4.0, "MODERATE", 18.0),
        (7.999, "MODERATE", 18.0),
        (8.0, "STRONG", 22.0),
        (11.999, "STRONG", 22.0),
        (12.0, "VERY_STRONG", 28.0),
        (41.99, "VERY_STRONG", 28.0),
    ],
)
def test_categories_and_percents(force, category, percent):
    assert ROOTTRADING_TABLE.category(force) == category
    assert ROOTTRADING_TABLE.percent(category) == percent


# --- the amount ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "percent", "amount"),
    [
        (1_000.0, 12.0, 120.0),
        (1_000.0, 28.0, 280.0),
        (100.0, 12.0, 15.0),  # 12.00 raised to the minimum
        (15.31, 28.0, 15.0),  # 98 % is 15.0038: the minimum fits
        (1_000.0, 100.0, 980.0),  # capped at 98 %
        (14.99, 28.0, None),  # under the minimum
        (0.0, 12.0, None),
        (15.2, 28.0, None),  # the minimum would take more than 98 %
        (math.nan, 12.0, None),
    ],
)
def test_the_amount(free, percent, amount):
    result = roottrading_amount(free, percent, minimum=15.0)
    if amount is None:
        assert result.amount is None and "minimum" in result.detail
    else:
        assert result.amount == pytest.approx(amount)


@given(
    free=st.floats(0, 1e9, allow_nan=False),
    percent=st.floats(0.01, 100),
    minimum=st.floats(0, 1_000),
)
def test_the_amount_is_within_the_cap_and_over_the_minimum_unless_refused(free, percent, minimum):
    result = roottrading_amount(free, percent, minimum=minimum)
    if result.amount is None:
        assert free < minimum or minimum > free * SAFETY_SHARE
        return
    assert minimum <= result.amount <= free * SAFETY_SHARE
    share = free * percent / 100
    if minimum <= share <= free * SAFETY_SHARE:
        assert result.amount == share


@given(
    amount_share=st.floats(0.001, 1.0),
    free=st.floats(1, 1e8),
    price=st.floats(1e-6, 1e6),
    decimals=st.integers(0, 8),
    minimum=st.floats(0, 100),
)
def test_a_quantity_is_at_least_the_minimum_and_never_over_the_cap(
    amount_share, free, price, decimals, minimum
):
    ceiling = free * SAFETY_SHARE
    amount = max(minimum, ceiling * amount_share)
    if amount > ceiling:
        return
    quantity = roottrading_quantity(
        amount, price, decimals=decimals, minimum=minimum, ceiling=ceiling
    )
    if quantity == 0:
        return
    assert quantity * price >= minimum
    assert quantity * price <= ceiling * (1 + 1e-12)
    exact = Decimal(repr(quantity))
    assert exact == exact.quantize(Decimal(1).scaleb(-decimals))


# --- the decision -------------------------------------------------------------------


def free(quote: float, reserved: float = 0.0) -> dict[str, object]:
    return {
        "view": PortfolioView(
            balances={"USDC": Balance(quote, quote, quote)}, positions={}, fetched_at=NOW - 1
        ),
        "ledger": LedgerState(reserved_quote=reserved),
    }


def test_a_buy_sized_the_roottrading_way():
    # tests.pipeline's metadata: 0.91 x sqrt(5) x 0.78 = 1.587 -> WEAK: 12 % of 10,000.
    evaluation = evaluate(config=RT)
    plan = evaluation.plan
    assert plan is not None, evaluation.failure
    assert plan.category == "WEAK"
    assert plan.quantity == pytest.approx(1_200 / 65_000, abs=1e-8)
    assert plan.quantity <= 1_200 / 65_000
    sizing = evaluation.checks[-1]
    assert sizing.step == "sizing"
    assert "rootTrading: force 1.587" in sizing.detail and "12 % of 10000.00" in sizing.detail


def test_the_same_signal_in_both_modes():
    table = evaluate(config=CONFIG).plan  # 0.91 x sqrt(5) x 0.82 = 1.669 -> STRONG 22 %
    ours = evaluate(config=RT).plan
    assert table is not None and ours is not None
    assert (table.category, ours.category) == ("STRONG", "WEAK")
    assert table.notional == pytest.approx(2_200, abs=0.01)
    assert ours.notional == pytest.approx(1_200, abs=0.01)


def test_a_very_strong_consensus_takes_28_percent():
    signal = parsed(consensus(strength=9.023809523809524, count=40, avg=0.7356775000000001))
    plan = evaluate(signal, config=RT).plan
    assert plan is not None and plan.category == "VERY_STRONG"
    assert plan.notional == pytest.approx(2_800, abs=0.01)


def test_orders_in_flight_are_not_free():
    plan = evaluate(config=RT, **free(10_000.0, reserved=5_000.0)).plan
    assert plan is not None and plan.notional == pytest.approx(600, abs=0.01)


@pytest.mark.parametrize(("quote", "reserved"), [(14.0, 0.0), (1.0, 0.0), (100.0, 90.0)])
def test_less_than_the_minimum_free_is_refused(quote, reserved):
    evaluation = evaluate(config=RT, **free(quote, reserved))
    assert evaluation.plan is None
    assert reason_of(evaluation) is Reason.INSUFFICIENT_BALANCE
    failure = evaluation.failure
    assert failure is not None and failure.step == "portfolio"
    assert "minimum order of 15" in failure.detail


def test_a_small_amount_is_raised_to_the_minimum_and_rounded_up_to_reach_it():
    # 12 % of 100 = 12, raised to 15: 15 / 65,000 floored is 14.9994, one step more.
    plan = evaluate(config=RT, **free(100.0)).plan
    assert plan is not None
    assert plan.quantity == 0.00023077
    assert 15.0 <= plan.notional <= 98.0
    coarse = dataclasses.replace(RT, quantity_decimals_by_symbol={"BTCUSDC": 5})
    plan = evaluate(config=coarse, **free(100.0)).plan
    assert plan is not None and plan.quantity == 0.00024


def test_a_minimum_order_that_would_pass_the_cap_is_refused():
    # 15.50 free: 98 % is 15.19; at 5 decimals 15 USDC of BTC is 14.95 or 15.60.
    coarse = dataclasses.replace(RT, quantity_decimals_by_symbol={"BTCUSDC": 5})
    evaluation = evaluate(config=coarse, **free(15.5))
    assert evaluation.plan is None
    assert reason_of(evaluation) is Reason.INSUFFICIENT_BALANCE
    assert evaluate(config=RT, **free(15.5)).plan is not None  # at 8 decimals it fits


def test_no_usable_price_sizes_nothing():
    evaluation = evaluate(config=RT, market=MarketQuote(price=0.0, at=NOW - 5))
    assert evaluation.plan is None
    assert reason_of(evaluation) is Reason.INSUFFICIENT_BALANCE
    failure = evaluation.failure
    assert failure is not None and "no usable price" in failure.detail


@given(
    quote=st.floats(1, 1e7),
    reserved=st.floats(0, 1e6),
    price=st.floats(0.0001, 1e5),
    decimals=st.integers(0, 8),
    strength=st.floats(0.01, 10),
    count=st.integers(2, 60),
    avg=st.floats(0.01, 1),
)
def test_a_planned_buy_is_never_under_the_minimum_nor_over_98_percent(
    quote, reserved, price, decimals, strength, count, avg
):
    signal = dataclasses.replace(
        parsed(consensus(strength=strength, count=count, avg=avg)), price=price
    )
    config = dataclasses.replace(RT, quantity_decimals=decimals, max_price_deviation_percent=100)
    market = MarketQuote(price=price, at=NOW - 5)
    evaluation = evaluate(signal, config=config, market=market, **free(quote, reserved))
    spendable = max(0.0, quote - reserved)
    plan = evaluation.plan
    if plan is None:
        if spendable < 15.0:
            assert reason_of(evaluation) is Reason.INSUFFICIENT_BALANCE
        return
    assert 15.0 <= plan.notional <= spendable * SAFETY_SHARE * (1 + 1e-12)


# --- the universe override ----------------------------------------------------------

UNIVERSE = frozenset({"ETHUSDC"})


def strong(count: int = 6, strength: float = 1.0, avg: float = 0.9) -> Signal:
    return parsed(consensus(strength=strength, count=count, avg=avg))


def test_a_strong_consensus_buy_enters_outside_the_universe():
    signal = strong()  # 1.0 x sqrt(6) x 0.9 = 2.20
    override = universe_override(signal, True)
    assert override is not None and override.strategies == 6
    result = check_universe(signal, UNIVERSE, {}, override)
    assert result.passed
    assert "override" in result.detail and "6 strategies" in result.detail
    assert "force 2.20" in result.detail


@pytest.mark.parametrize(
    ("signal", "enabled"),
    [
        (strong(), False),  # UNIVERSE_OVERRIDE=false
        (strong(count=4, strength=2.0), True),  # force 3.6 but 4 strategies
        (strong(count=5, avg=0.88), True),  # 1.0 x sqrt(5) x 0.88 = 1.97
    ],
)
def test_no_override_below_its_thresholds_or_when_off(signal, enabled):
    override = universe_override(signal, enabled)
    assert override is None
    result = check_universe(signal, UNIVERSE, {}, override)
    assert result.reason is Reason.NOT_IN_UNIVERSE


def test_the_override_passes_at_force_2_with_5_strategies():
    assert universe_override(strong(count=5, avg=0.9), True) is not None  # 2.012


def test_a_blacklist_or_an_unknown_universe_still_refuses_an_override():
    signal = strong()
    override = universe_override(signal, True)
    blocked = check_universe(signal, UNIVERSE, {"BTCUSDC": "delisting"}, override)
    assert blocked.reason is Reason.BLACKLISTED
    assert check_universe(signal, None, {}, override).reason is Reason.NOT_IN_UNIVERSE
    sell = dataclasses.replace(make_signal("SELL"))
    assert universe_override(sell, True) is None


# --- in a whole coordinator ---------------------------------------------------------


def test_roottrading_sizing_is_the_default_of_a_whole_coordinator(pipelines):
    pipe = pipelines({"SIZING_MODE": ""})  # unset: the default
    assert pipe.config.risk.sizing_mode == "roottrading"
    payload = signal_payload("ETHUSDC", "BUY")
    pipe.publish(payload)
    record = pipe.decision(signal_id(payload))
    decision = record["decision"]
    assert decision["outcome"] == "accepted", decision
    sizing = next(c for c in decision["checks"] if c["step"] == "sizing")
    assert "WEAK" in sizing["detail"], sizing
    # 0.91 x sqrt(5) x 0.78 = 1.587 -> WEAK: 12 % of the paper exchange's 10,000 USDC.
    # At the latest market price, which a candle on the worker's Redis may have moved by
    # a few hundredths of a percent (seen under load); another tier is another percentage.
    assert decision["quantity"] == pytest.approx(1_200 / PRICES["ETHUSDC"], rel=5e-3)


def test_a_strong_consensus_enters_outside_the_universe_with_an_info_line(pipelines, caplog):
    caplog.set_level(logging.INFO, logger="coordinator.actors.validator")
    pipe = pipelines({"TRADING_SYMBOLS": "BTCUSDC,ETHUSDC", "SIZING_MODE": ""})
    weak = signal_payload("SOLUSDC", "BUY")  # force 1.587
    pipe.publish(weak)
    assert pipe.decision(signal_id(weak))["decision"]["reason"] == "not_in_universe"

    forced = signal_payload("SOLUSDC", "BUY")
    forced["metadata"].update(consensus_strength=1.0, strategies_count=6, avg_confidence=0.9)
    pipe.publish(forced)
    decision = pipe.decision(signal_id(forced))["decision"]
    assert decision["outcome"] == "accepted", decision
    universe = next(c for c in decision["checks"] if c["step"] == "universe")
    assert universe["passed"] and universe["detail"].startswith("override:")
    lines = [r.getMessage() for r in caplog.records if "universe override" in r.getMessage()]
    assert len(lines) == 1 and "SOLUSDC" in lines[0] and "6 strategies" in lines[0]
    assert "force 2.20" in lines[0]


def test_the_override_off_refuses_a_strong_consensus_outside_the_universe(pipelines):
    pipe = pipelines({"TRADING_SYMBOLS": "BTCUSDC,ETHUSDC", "UNIVERSE_OVERRIDE": "false"})
    forced = signal_payload("SOLUSDC", "BUY")
    forced["metadata"].update(consensus_strength=1.0, strategies_count=6, avg_confidence=0.9)
    pipe.publish(forced)
    assert pipe.decision(signal_id(forced))["decision"]["reason"] == "not_in_universe"


# --- a consensus SELL while a trailing stop watches the position --------------------

FORCE_INPUTS = {"consensus_strength": 1.0, "strategies_count": 2, "avg_confidence": 0.693}


@pytest.mark.parametrize(
    ("symbol", "metadata", "price"),
    [
        # RootTrading's override case: 5 strategies, force 1.9975 x sqrt(5) x 0.693 = 3.10,
        # a loss of 1 % (beyond 0.6 x ATR% for any ATR under 1.67 %).
        (
            "SOLUSDC",
            {"consensus_strength": 1.9975, "strategies_count": 5, "avg_confidence": 0.693},
            148.5,
        ),
        # A SELL RootTrading's trailing manager would have held back: 2 strategies, a gain.
        (
            "LTCUSDC",
            {"consensus_strength": 0.6, "strategies_count": 2, "avg_confidence": 0.6},
            81.0,
        ),
    ],
)
def test_a_consensus_sell_sells_while_a_trailing_stop_watches(pipelines, symbol, metadata, price):
    pipe = pipelines({**ENV, "SIZING_MODE": ""})
    entry = PRICES[symbol]
    seed(pipe, symbol, 10.0, entry)
    watched(pipe, symbol)
    pipe.paper.set_price(symbol, price)
    tick(pipe, symbol, price)
    stop = ticks_seen(pipe, symbol, price)
    assert stop["stop"] < price, "the stop holds the position: not hit"

    sell = signal_payload(symbol, "SELL", price=price)
    sell["metadata"].update(metadata)
    pipe.publish(sell)
    record = pipe.decision(signal_id(sell))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    # min(position, free base): the paper exchange's fee may be in the base asset.
    assert 10.0 * (1 - 0.001) - 1e-8 <= record["order"]["quantity"] <= 10.0
    wait_for(lambda: stop_of(pipe, symbol) is None, message=f"the stop of {symbol} closed")
    assert len([f for f in fills(pipe, symbol) if f.side.value == "SELL"]) == 1
