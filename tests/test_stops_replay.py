"""Real 1m candles through a position's stop: the trigger (candle and price) the stop
functions find, and the one the whole coordinator acts on, equal what is computed here
independently, in plain Python from the rule definitions."""

from __future__ import annotations

import csv
import json
import time
from typing import Any

import pytest
import requests

from coordinator.trading.stops import AtrTracker, StopParams, open_stop, raise_stop, update_stop
from tests.pipeline import candle_json, market_channel, next_event
from tests.shared_data import CANDLES, needs_candles
from tests.waiting import wait_for

pytestmark = needs_candles

PARAMS = StopParams(
    stop_loss_percent=3.0,
    trail_percent=1.0,
    trail_offset_percent=0.5,
    atr_multiple=4.0,
    ladder=((1.0, 0.2), (2.0, 1.0), (4.0, 2.5)),
    breakeven_after_percent=0.8,
    breakeven_offset_percent=0.1,
)
ATR_PERIOD = 14


def load() -> list[tuple[int, float, float, float]]:
    with (CANDLES / "UNITTESTBTC-1m.csv").open() as handle:
        return [
            (int(r["time_ms"]), float(r["high"]), float(r["low"]), float(r["close"]))
            for r in csv.DictReader(handle)
        ]


@pytest.fixture(scope="module")
def candles() -> list[tuple[int, float, float, float]]:
    rows = load()
    assert len(rows) == 13_681
    return rows


def independent(
    candles: list[tuple[int, float, float, float]], start: int, rules: tuple[str, ...]
) -> tuple[int, float, float] | None:
    """(index, price, peak) of the first close at or under the stop, entering at the close
    of ``start``; the ATR (Wilder, 14) is known from the candles closed before each tick."""
    entry = candles[start][3]
    peak = entry
    stop = entry * 0.97
    ranges: list[float] = []
    atr = None
    previous_close = None
    for index in range(start + 1 - ATR_PERIOD * 2, start + 1):
        if index < 0:
            continue
        _, high, low, close = candles[index]
        tr = (
            high - low
            if previous_close is None
            else max(high - low, abs(high - previous_close), abs(low - previous_close))
        )
        previous_close = close
        if atr is None:
            ranges.append(tr)
            if len(ranges) == ATR_PERIOD:
                atr = sum(ranges) / ATR_PERIOD
        else:
            atr = (atr * 13 + tr) / 14

    def levels() -> list[float]:
        out = [entry * 0.97]
        gain = (peak - entry) / entry * 100
        if "percent" in rules and gain >= 0.5 - 1e-12:
            out.append(peak * 0.99)
        if "atr" in rules and atr is not None:
            out.append(peak - 4.0 * atr)
        if "ladder" in rules:
            for step, lock in ((1.0, 0.2), (2.0, 1.0), (4.0, 2.5)):
                if gain + 1e-9 >= step:
                    out.append(entry * (1 + lock / 100))
        if "breakeven" in rules and gain >= 0.8 - 1e-12:
            out.append(entry * 1.001)
        return out

    stop = max(levels())
    for index in range(start + 1, len(candles)):
        _, high, low, close = candles[index]
        if close > peak:
            peak = close
            stop = max(stop, *levels())
        if close <= stop:
            return index, close, peak
        tr = max(high - low, abs(high - previous_close), abs(low - previous_close))
        previous_close = close
        atr = (atr * 13 + tr) / 14 if atr is not None else atr
        stop = max(stop, *levels())
    return None


def replayed(
    candles: list[tuple[int, float, float, float]], start: int, rules: tuple[str, ...]
) -> tuple[int, float, float] | None:
    """The same through the coordinator's stop functions and ATR tracker."""
    tracker = AtrTracker(ATR_PERIOD)
    for time_ms, high, low, close in candles[max(0, start + 1 - ATR_PERIOD * 2) : start + 1]:
        tracker.add(time_ms, high, low, close)
    state = open_stop(rules, PARAMS, candles[start][3], atr=tracker.value)
    for index in range(start + 1, len(candles)):
        time_ms, high, low, close = candles[index]
        state, hit = update_stop(state, close, rules, PARAMS, tracker.value)
        if hit:
            return index, close, state.peak
        tracker.add(time_ms, high, low, close)
        state = raise_stop(state, rules, PARAMS, tracker.value)
    return None


RULE_SETS = [
    ("stoploss",),
    ("stoploss", "percent"),
    ("stoploss", "atr"),
    ("stoploss", "ladder"),
    ("stoploss", "breakeven"),
    ("stoploss", "breakeven", "percent"),
    ("stoploss", "percent", "atr", "ladder", "breakeven"),
]


@pytest.mark.parametrize("rules", RULE_SETS, ids=["+".join(r) for r in RULE_SETS])
def test_every_trigger_over_the_real_candles_equals_the_independent_one(candles, rules):
    triggers = 0
    for start in range(ATR_PERIOD * 2, len(candles) - 1, 211):
        expected = independent(candles, start, rules)
        found = replayed(candles, start, rules)
        if expected is None:
            assert found is None, f"entry at {start}: triggered where it should not"
            continue
        triggers += 1
        assert found is not None, f"entry at {start}: no trigger, expected {expected}"
        index, price, peak = found
        assert index == expected[0], f"entry at {start}: candle {index}, expected {expected[0]}"
        assert candles[index][0] == candles[expected[0]][0], "the trigger time"
        assert price == expected[1] and peak == pytest.approx(expected[2], rel=1e-12)
    assert triggers >= 20, "the replay must exercise real triggers"


def test_a_coordinator_replaying_the_candles_sells_at_the_same_candle(pipelines, candles):
    rules = ("stoploss", "breakeven", "percent")
    start = next(
        s
        for s in range(100, len(candles), 37)
        if (t := independent(candles, s, rules)) is not None and 30 <= t[0] - s <= 400
    )
    index, price, peak = independent(candles, start, rules)
    pipe = pipelines(
        {
            "POSITIONS_REFRESH_INTERVAL": "0.3",
            "STOP_RULES": ",".join(rules),
            "STOP_LOSS_PERCENT": "3",
            "TRAILING_STOP_PERCENT": "1",
            "TRAILING_STOP_OFFSET_PERCENT": "0.5",
            "BREAKEVEN_AFTER_PERCENT": "0.8",
            "BREAKEVEN_OFFSET_PERCENT": "0.1",
            "ATR_MULTIPLIER": "4",
            "PROFIT_LADDER": "1:0.2,2:1,4:2.5",
        }
    )
    symbol = "UNITUSDC"
    entry = candles[start][3]
    response = requests.post(
        pipe.paper.url + "/_paper/positions",
        json=[{"symbol": symbol, "quantity": 5000.0, "entry_price": entry}],
        timeout=5,
    )
    assert response.status_code == 200, response.text
    pipe.paper.set_price(symbol, entry)
    wait_for(lambda: _stop(pipe, symbol), message="the position watched")
    events = pipe.redis.pubsub()
    events.subscribe(pipe.events_channel)
    channel = market_channel(symbol)
    # Live candles: a candle of long ago is stale, never a price. Their order is kept.
    live = int(time.time() * 1000) // 60_000 * 60_000
    for step, (_time_ms, high, low, close) in enumerate(candles[start + 1 : index + 50]):
        candle = candle_json(symbol, close, time_ms=live + step, high=high, low=low, closed=True)
        wait_for(
            lambda c=candle: pipe.redis.publish(channel, c) > 0,
            message="the MarketFeed listening",
        )
        # A minute apart, as a market's candles are: each is taken, and a hit's reads
        # done, before the next. Back to back, a hit that must first read the earlier
        # exit orders (a holding adopted just now whose stored stop was not read yet)
        # would send on whichever close is newest once they are read.
        wait_for(lambda c=close: _taken(pipe, symbol, c), message=f"the close {close} taken")
    decided = wait_for(
        lambda: next(
            (d for d in pipe.decisions(symbol=symbol) if d["signal_id"].startswith("exit:")),
            None,
        ),
        message="the exit decided",
    )
    record = pipe.decision(decided["signal_id"])
    payload = record["signal"]["payload"]
    exit_body = payload if isinstance(payload, dict) else json.loads(payload)
    assert exit_body["price"] == price, "the close of the candle the test expects"
    assert exit_body["stop"] >= price
    assert record["signal"]["signal_id"].endswith(":1"), "one exit"
    triggered = next_event(events, "StopTriggered")
    events.close()
    assert triggered["price"] == price and triggered["peak"] == pytest.approx(peak)
    exits = [d for d in pipe.decisions(symbol=symbol) if d["signal_id"].startswith("exit:")]
    assert len(exits) == 1


def _taken(pipe: Any, symbol: str, close: float) -> bool:
    """The holding's last price is ``close`` and no read of its exit orders is under way
    (or it is no longer shown: sold and gone)."""
    row = _stop(pipe, symbol)
    return row is None or (row["last_price"] == close and row["state"] != "checking_orders")


def _stop(pipe: Any, symbol: str) -> dict[str, Any] | None:
    response = requests.get(pipe.url + "/trailing-stops", timeout=5)
    if response.status_code != 200:
        return None
    return next((p for p in response.json()["positions"] if p["symbol"] == symbol), None)
