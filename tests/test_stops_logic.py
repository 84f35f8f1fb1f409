"""The stop rules as plain functions: each rule's level, the ratchet, the trigger, the
ATR, keys and backoff; properties checked over generated price paths."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.trading.stops import (
    RULES,
    AtrTracker,
    StopParams,
    exit_id,
    exit_signal,
    open_stop,
    position_key,
    raise_stop,
    stop_level,
    update_stop,
)

PARAMS = StopParams(
    stop_loss_percent=5.0,
    trail_percent=2.0,
    trail_offset_percent=1.0,
    atr_multiple=3.0,
    ladder=((2.0, 0.5), (4.0, 2.0), (8.0, 5.0)),
    breakeven_after_percent=1.5,
    breakeven_offset_percent=0.2,
)
RULE_SETS = [
    ("stoploss",),
    ("stoploss", "percent"),
    ("stoploss", "atr"),
    ("stoploss", "ladder"),
    ("stoploss", "breakeven"),
    ("stoploss", "breakeven", "percent"),
    tuple(RULES),
]

prices = st.floats(min_value=1.0, max_value=200.0, allow_nan=False, allow_infinity=False)
paths = st.lists(prices, min_size=1, max_size=200)
atrs = st.one_of(st.none(), st.floats(min_value=0.01, max_value=20.0))
rule_sets = st.sampled_from(RULE_SETS)


# --- each rule ------------------------------------------------------------------------


def test_the_hard_stop_is_a_fixed_percent_under_the_entry():
    assert stop_level(("stoploss",), PARAMS, 100.0, 150.0, None) == (95.0, "stoploss")


def test_the_percent_trail_starts_only_past_its_offset():
    # Peak 100.9: below the 1 % offset, the hard stop holds.
    assert stop_level(("stoploss", "percent"), PARAMS, 100.0, 100.9, None) == (95.0, "stoploss")
    level, rule = stop_level(("stoploss", "percent"), PARAMS, 100.0, 101.0, None)
    assert rule == "percent" and level == pytest.approx(101.0 * 0.98)
    level, rule = stop_level(("stoploss", "percent"), PARAMS, 100.0, 120.0, None)
    assert level == pytest.approx(117.6)


def test_the_atr_trail_is_in_price_units_and_waits_for_an_atr():
    assert stop_level(("stoploss", "atr"), PARAMS, 100.0, 110.0, None) == (95.0, "stoploss")
    # 110 - 3 x 2.5 = 102.5: ATR is a price distance, not a fraction or a percent.
    assert stop_level(("stoploss", "atr"), PARAMS, 100.0, 110.0, 2.5) == (102.5, "atr")
    # A wide ATR leaves the hard stop in charge.
    assert stop_level(("stoploss", "atr"), PARAMS, 100.0, 110.0, 10.0) == (95.0, "stoploss")


@pytest.mark.parametrize(
    ("peak", "locked"),
    [
        (101.9, None),
        (102.0, 100.5),
        (103.9, 100.5),
        (104.0, 102.0),
        (107.0, 102.0),
        (108.0, 105.0),
        (150.0, 105.0),
    ],
)
def test_the_ladder_locks_the_step_reached(peak, locked):
    level, rule = stop_level(("stoploss", "ladder"), PARAMS, 100.0, peak, None)
    if locked is None:
        assert (level, rule) == (95.0, "stoploss")
    else:
        assert rule == "ladder" and level == pytest.approx(locked)


def test_breakeven_after_a_gain():
    assert stop_level(("stoploss", "breakeven"), PARAMS, 100.0, 101.4, None)[1] == "stoploss"
    level, rule = stop_level(("stoploss", "breakeven"), PARAMS, 100.0, 101.5, None)
    assert rule == "breakeven" and level == pytest.approx(100.2)


def test_a_rule_set_without_a_level_is_refused():
    with pytest.raises(ValueError, match="needs stoploss"):
        stop_level(("percent",), PARAMS, 100.0, 100.0, None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stop_loss_percent": 0.0}, "stop_loss_percent must be above 0"),
        ({"trail_percent": 100.0}, "trail_percent must be above 0 and below 100"),
        ({"atr_multiple": 0.0}, "atr_multiple must be above 0"),
        ({"breakeven_offset_percent": 2.0}, "must be below breakeven_after_percent"),
        ({"ladder": ((2.0, 2.0),)}, "lock 2.0 % must be >= 0 and below its gain"),
        ({"ladder": ((4.0, 1.0), (2.0, 1.0))}, "ladder gains must increase"),
        ({"trail_offset_percent": math.nan}, "trail_offset_percent must be a finite number"),
    ],
)
def test_parameters_check_themselves(changes, message):
    values = {
        "stop_loss_percent": 5.0,
        "trail_percent": 2.0,
        "trail_offset_percent": 1.0,
        "atr_multiple": 3.0,
        "ladder": ((2.0, 0.5),),
        "breakeven_after_percent": 1.5,
        "breakeven_offset_percent": 0.2,
        **changes,
    }
    with pytest.raises(ValueError, match=message):
        StopParams(**values)


def test_parameters_describe_themselves():
    text = PARAMS.describe(("stoploss", "breakeven", "percent"))
    assert text == (
        "stop-loss 5 % under entry; breakeven +0.2 % once 1.5 % up; "
        "trail 2 % under the peak once 1 % up"
    )


# --- a position's stop over time -------------------------------------------------------


def test_a_walk_up_and_down_triggers_where_the_trail_says():
    rules = ("stoploss", "breakeven", "percent")
    state = open_stop(rules, PARAMS, 100.0)
    assert (state.peak, state.stop, state.rule) == (100.0, 95.0, "stoploss")
    for price in (100.5, 101.6, 105.0, 110.0):
        state, hit = update_stop(state, price, rules, PARAMS, None)
        assert not hit
    assert state.peak == 110.0 and state.stop == pytest.approx(107.8) and state.rule == "percent"
    state, hit = update_stop(state, 107.81, rules, PARAMS, None)
    assert not hit
    state, hit = update_stop(state, 107.8, rules, PARAMS, None)
    assert hit, "a price at the stop triggers"


def test_an_atr_change_raises_the_stop_but_never_lowers_it():
    rules = ("stoploss", "atr")
    state = open_stop(rules, PARAMS, 100.0, peak=110.0, atr=3.0)
    assert state.stop == pytest.approx(101.0)
    tighter = raise_stop(state, rules, PARAMS, 2.0)
    assert tighter.stop == pytest.approx(104.0)
    assert raise_stop(tighter, rules, PARAMS, 5.0) is tighter


def test_unusable_prices_raise_instead_of_deciding():
    state = open_stop(("stoploss",), PARAMS, 100.0)
    for bad in (math.nan, math.inf, 0.0, -1.0):
        with pytest.raises(ValueError, match="price must be a finite number > 0"):
            update_stop(state, bad, ("stoploss",), PARAMS, None)
    with pytest.raises(ValueError, match="entry price"):
        open_stop(("stoploss",), PARAMS, 0.0)


@settings(max_examples=300, deadline=None)
@given(entry=prices, path=paths, rules=rule_sets, atr=atrs)
def test_the_stop_never_goes_down_and_never_triggers_above_it(entry, path, rules, atr):
    state = open_stop(rules, PARAMS, entry, atr=atr)
    for price in path:
        before = state
        state, hit = update_stop(state, price, rules, PARAMS, atr)
        assert state.stop >= before.stop
        assert state.peak == max(before.peak, price)
        assert state.stop < state.peak or state.stop < entry, "every level is below the peak"
        assert hit == (price <= state.stop)
        if price > state.stop:
            assert not hit


@settings(max_examples=300, deadline=None)
@given(entry=prices, path=paths, rules=rule_sets, atr=atrs)
def test_the_stop_is_at_least_every_rule_at_every_peak_seen(entry, path, rules, atr):
    state = open_stop(rules, PARAMS, entry, atr=atr)
    for price in path:
        state, _ = update_stop(state, price, rules, PARAMS, atr)
        for name in rules:
            level = RULES[name](entry, state.peak, atr, PARAMS)
            if level is not None:
                assert state.stop >= level - 1e-9


@settings(max_examples=300, deadline=None)
@given(entry=prices, path=paths)
def test_the_ladder_locks_what_it_promises(entry, path):
    rules = ("stoploss", "ladder")
    state = open_stop(rules, PARAMS, entry)
    for price in path:
        state, _ = update_stop(state, price, rules, PARAMS, None)
        gain = (state.peak / entry - 1) * 100
        for step_gain, lock in PARAMS.ladder:
            if gain >= step_gain:
                assert state.stop >= entry * (1 + lock / 100) - 1e-9
        # Whatever follows, an exit at the stop keeps the lock of the highest step.
        reached = [lock for g, lock in PARAMS.ladder if gain >= g]
        if reached:
            assert (state.stop / entry - 1) * 100 >= max(reached) - 1e-7


@settings(max_examples=200, deadline=None)
@given(entry=prices, path=paths)
def test_breakeven_never_loses_once_armed(entry, path):
    rules = ("stoploss", "breakeven")
    state = open_stop(rules, PARAMS, entry)
    for price in path:
        state, _ = update_stop(state, price, rules, PARAMS, None)
        if state.peak >= entry * 1.015:
            assert state.stop >= entry, "armed: an exit at the stop is not a loss"


# --- ATR ------------------------------------------------------------------------------


def test_wilder_atr_on_a_known_series():
    tracker = AtrTracker(3)
    candles = [(10, 9, 9.5), (11, 9.5, 10.5), (12, 10, 11), (11.5, 10.5, 11), (13, 11, 12.5)]
    values = [tracker.add(i * 60_000, h, lo, c) for i, (h, lo, c) in enumerate(candles)]
    # TRs: 1, max(1.5, 1.5, 0) = 1.5, max(2, 1.5, 0.5) = 2, 1, max(2, 2, 0) = 2
    assert values[:2] == [None, None]
    assert values[2] == pytest.approx(1.5)
    assert values[3] == pytest.approx((1.5 * 2 + 1) / 3)
    assert values[4] == pytest.approx(((1.5 * 2 + 1) / 3 * 2 + 2) / 3)
    # The same candle again (or an older one) is counted once.
    assert tracker.add(4 * 60_000, 50, 1, 2) == values[4]


def test_a_broken_candle_is_refused_by_the_atr():
    with pytest.raises(ValueError, match="unusable candle"):
        AtrTracker(3).add(0, 1.0, 2.0, 1.5)


# --- keys, exits, backoff -------------------------------------------------------------


def test_a_position_key_is_never_the_symbol_alone():
    assert position_key("BTCUSDC", cycle_id="c-42", opened_at=1.0, entry_price=2.0) == "cycle:c-42"
    first = position_key("BTCUSDC", cycle_id=None, opened_at=1_700_000_000.5, entry_price=65000.0)
    again = position_key("BTCUSDC", cycle_id=None, opened_at=1_700_000_000.5, entry_price=65000.0)
    later = position_key("BTCUSDC", cycle_id=None, opened_at=1_700_000_900.0, entry_price=65000.0)
    assert first == again == "BTCUSDC@1700000000.500@65000"
    assert later != first
    assert (
        position_key("BTCUSDC", cycle_id=None, opened_at=None, entry_price=1.5) == "BTCUSDC@-@1.5"
    )


def test_an_exit_is_a_sell_signal_with_its_own_id():
    signal = exit_signal(
        exit_id=exit_id("cycle:7", 2),
        position_key="cycle:7",
        symbol="BTCUSDC",
        price=64000.0,
        stop=64100.0,
        rule="percent",
        strategy="stoploss+percent",
        triggered_at=1_700_000_000.0,
    )
    assert signal.signal_id == "exit:cycle:7:2"
    assert signal.side.value == "SELL" and signal.strategy == "trailing_stop:percent"
    assert signal.stop_price == 64100.0 and signal.timestamp == 1_700_000_000.0
