"""Trailing stops as plain functions: where a position's stop is, and when it triggers.

A position's stop is the highest level any of its rules gives, and it only ratchets up.
Each rule looks at the entry price, the peak since entry and, for one of them, the ATR
(in price units, never a fraction), and gives a level or nothing:

    stoploss   entry x (1 - STOP_LOSS_PERCENT)                 always: every rule set has it
    percent    peak x (1 - TRAILING_STOP_PERCENT), once the peak is
               TRAILING_STOP_OFFSET_PERCENT over the entry     (freqtrade's trailing_stop_positive
                                                                and its offset)
    atr        peak - ATR_MULTIPLIER x ATR                     once the ATR is known
    ladder     entry x (1 + lock) for the highest step whose gain the peak reached
               (PROFIT_LADDER "2:0.5,4:2": at +2 % lock +0.5 %, at +4 % lock +2 %)
    breakeven  entry x (1 + BREAKEVEN_OFFSET_PERCENT), once the peak is
               BREAKEVEN_AFTER_PERCENT over the entry

Every level is below the peak (the parameters are checked for it), so a stop set on a
new peak never triggers on that same price. A price at or below the stop triggers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.trading.signals import Side, Signal, SignalSource

__all__ = [
    "EXIT_ID_PREFIX",
    "EXIT_SOURCE",
    "RULES",
    "AtrTracker",
    "StopParams",
    "StopState",
    "exit_id",
    "exit_signal",
    "open_stop",
    "position_key",
    "raise_stop",
    "stop_level",
    "update_stop",
]


@dataclass(frozen=True, slots=True)
class StopParams:
    stop_loss_percent: float = 5.0
    trail_percent: float = 2.0
    trail_offset_percent: float = 1.0
    atr_multiple: float = 3.0
    ladder: tuple[tuple[float, float], ...] = ((2.0, 0.5), (4.0, 2.0), (8.0, 5.0))
    """(gain %, lock %) steps, gains increasing, each lock below its gain."""
    breakeven_after_percent: float = 1.5
    breakeven_offset_percent: float = 0.2

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        out = []
        numbers = {
            "stop_loss_percent": self.stop_loss_percent,
            "trail_percent": self.trail_percent,
            "trail_offset_percent": self.trail_offset_percent,
            "atr_multiple": self.atr_multiple,
            "breakeven_after_percent": self.breakeven_after_percent,
            "breakeven_offset_percent": self.breakeven_offset_percent,
        }
        for name, value in numbers.items():
            if not math.isfinite(value) or value < 0:
                out.append(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 < self.stop_loss_percent < 100:
            out.append(
                f"stop_loss_percent must be above 0 and below 100, got {self.stop_loss_percent}"
            )
        if not 0 < self.trail_percent < 100:
            out.append(f"trail_percent must be above 0 and below 100, got {self.trail_percent}")
        if self.atr_multiple <= 0:
            out.append(f"atr_multiple must be above 0, got {self.atr_multiple}")
        if self.breakeven_offset_percent >= self.breakeven_after_percent:
            out.append(
                "breakeven_offset_percent must be below breakeven_after_percent "
                f"({self.breakeven_offset_percent} >= {self.breakeven_after_percent}): "
                "the stop would sit above the price that moved it"
            )
        previous = 0.0
        for gain, lock in self.ladder:
            if not (math.isfinite(gain) and math.isfinite(lock)) or gain <= previous:
                out.append(f"ladder gains must increase from above 0, got {gain} after {previous}")
            if not 0 <= lock < gain:
                out.append(f"ladder lock {lock} % must be >= 0 and below its gain {gain} %")
            previous = gain
        return out

    def describe(self, rules: Sequence[str]) -> str:
        parts = {
            "stoploss": f"stop-loss {self.stop_loss_percent:g} % under entry",
            "percent": f"trail {self.trail_percent:g} % under the peak once "
            f"{self.trail_offset_percent:g} % up",
            "atr": f"trail {self.atr_multiple:g} x ATR under the peak",
            "ladder": "lock "
            + ", ".join(f"+{lock:g} % at +{gain:g} %" for gain, lock in self.ladder),
            "breakeven": f"breakeven +{self.breakeven_offset_percent:g} % once "
            f"{self.breakeven_after_percent:g} % up",
        }
        return "; ".join(parts[rule] for rule in rules)


# --- the rules ------------------------------------------------------------------------

Rule = Callable[[float, float, float | None, StopParams], float | None]


def _stoploss(entry: float, peak: float, atr: float | None, p: StopParams) -> float | None:
    return entry * (1 - p.stop_loss_percent / 100)


def _percent(entry: float, peak: float, atr: float | None, p: StopParams) -> float | None:
    if peak < entry * (1 + p.trail_offset_percent / 100):
        return None
    return peak * (1 - p.trail_percent / 100)


def _atr(entry: float, peak: float, atr: float | None, p: StopParams) -> float | None:
    if atr is None or not math.isfinite(atr) or atr <= 0:
        return None
    return peak - p.atr_multiple * atr


def _ladder(entry: float, peak: float, atr: float | None, p: StopParams) -> float | None:
    gain = (peak / entry - 1) * 100
    locked = None
    for step_gain, lock in p.ladder:
        if gain + 1e-9 >= step_gain:
            locked = lock
    return None if locked is None else entry * (1 + locked / 100)


def _breakeven(entry: float, peak: float, atr: float | None, p: StopParams) -> float | None:
    if peak < entry * (1 + p.breakeven_after_percent / 100):
        return None
    return entry * (1 + p.breakeven_offset_percent / 100)


RULES: Mapping[str, Rule] = {
    "stoploss": _stoploss,
    "percent": _percent,
    "atr": _atr,
    "ladder": _ladder,
    "breakeven": _breakeven,
}


def stop_level(
    rules: Sequence[str], params: StopParams, entry: float, peak: float, atr: float | None
) -> tuple[float, str]:
    """The highest level the rules give, and the rule that gives it."""
    best, by = -math.inf, ""
    for name in rules:
        level = RULES[name](entry, peak, atr, params)
        if level is not None and level > best:
            best, by = level, name
    if by == "":
        raise ValueError(f"no rule among {list(rules)} gives a stop: a rule set needs stoploss")
    return best, by


# --- a position's stop ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopState:
    entry: float
    """Entry price."""
    peak: float
    """Highest price seen since entry (the entry at first)."""
    stop: float
    """The stop level: only ever raised."""
    rule: str
    """The rule that set the current level."""


def open_stop(
    rules: Sequence[str],
    params: StopParams,
    entry: float,
    *,
    peak: float | None = None,
    atr: float | None = None,
) -> StopState:
    if not math.isfinite(entry) or entry <= 0:
        raise ValueError(f"entry price must be a finite number > 0, got {entry!r}")
    top = entry if peak is None or not math.isfinite(peak) else max(entry, peak)
    level, by = stop_level(rules, params, entry, top, atr)
    return StopState(entry, top, level, by)


def raise_stop(
    state: StopState, rules: Sequence[str], params: StopParams, atr: float | None
) -> StopState:
    """The stop recomputed at the current peak (after the ATR changed); never lowered."""
    level, by = stop_level(rules, params, state.entry, state.peak, atr)
    if level <= state.stop:
        return state
    return StopState(state.entry, state.peak, level, by)


def update_stop(
    state: StopState,
    price: float,
    rules: Sequence[str],
    params: StopParams,
    atr: float | None,
) -> tuple[StopState, bool]:
    """The state after ``price``, and whether the price triggers the stop.

    The fast path (no new peak) allocates nothing: most ticks are that.
    """
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"price must be a finite number > 0, got {price!r}")
    if price > state.peak:
        level, by = stop_level(rules, params, state.entry, price, atr)
        if level > state.stop:
            state = StopState(state.entry, price, level, by)
        else:
            state = StopState(state.entry, price, state.stop, state.rule)
    return state, price <= state.stop


# --- ATR ------------------------------------------------------------------------------


class AtrTracker:
    """Wilder's average true range over ``period`` closed candles, in price units.

    The first value is the mean of the first ``period`` true ranges; after it,
    ``atr = (atr x (period - 1) + tr) / period``. Candles older than the last one seen
    are ignored, so a candle sent twice is counted once.
    """

    __slots__ = ("_last_close", "_last_time", "_period", "_ranges", "value")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"ATR period must be at least 1, got {period}")
        self._period = period
        self._last_close: float | None = None
        self._last_time: int | None = None
        self._ranges: list[float] = []
        self.value: float | None = None

    def add(self, time_ms: int, high: float, low: float, close: float) -> float | None:
        if self._last_time is not None and time_ms <= self._last_time:
            return self.value
        if not all(math.isfinite(x) for x in (high, low, close)) or high < low:
            raise ValueError(f"unusable candle high={high} low={low} close={close}")
        previous = self._last_close
        true_range = (
            high - low
            if previous is None
            else max(high - low, abs(high - previous), abs(low - previous))
        )
        self._last_close, self._last_time = close, time_ms
        if self.value is None:
            self._ranges.append(true_range)
            if len(self._ranges) == self._period:
                self.value = sum(self._ranges) / self._period
                self._ranges = []
        else:
            self.value = (self.value * (self._period - 1) + true_range) / self._period
        return self.value


# --- keys and retries -----------------------------------------------------------------


def position_key(
    symbol: str, *, cycle_id: str | None, opened_at: float | None, entry_price: float
) -> str:
    """The cycle id where known, else symbol + entry time + entry price: never the symbol
    alone, so a new position of a symbol never inherits the last one's peak."""
    if cycle_id:
        return f"cycle:{cycle_id}"
    opened = "-" if opened_at is None else f"{opened_at:.3f}"
    return f"{symbol}@{opened}@{entry_price:.10g}"


EXIT_SOURCE = SignalSource.TRAILING_STOP
"""The source of the exits' signals, in storage and events."""


EXIT_ID_PREFIX = "exit:"


def exit_id(key: str, attempt: int) -> str:
    """The signal id of one exit attempt: one order at most per attempt."""
    return f"{EXIT_ID_PREFIX}{key}:{attempt}"


def exit_signal(
    *,
    exit_id: str,
    position_key: str,
    symbol: str,
    price: float,
    stop: float,
    rule: str,
    strategy: str,
    triggered_at: float,
    tick_mono: float | None = None,
) -> Signal:
    """An exit as the SELL signal the execution path takes. ``tick_mono`` (the host's
    monotonic clock when the tick was read from Redis) is kept in the stored payload, so
    the tick-to-order latency can be followed from outside the process."""
    body = {
        "exit_id": exit_id,
        "position_key": position_key,
        "symbol": symbol,
        "side": "SELL",
        "price": price,
        "stop": stop,
        "rule": rule,
        "strategy": strategy,
        "timestamp": triggered_at,
    }
    if tick_mono:
        body["tick_mono"] = tick_mono
    return Signal(
        signal_id=exit_id,
        strategy=f"{EXIT_SOURCE}:{rule}",
        symbol=symbol,
        side=Side.SELL,
        timestamp=triggered_at,
        price=price,
        confidence=None,
        strength=None,
        consensus_strength=None,
        strategies_count=None,
        avg_confidence=None,
        signal_type="exit",
        db_id=None,
        consensus_id=None,
        stop_price=stop,
        trailing_delta=None,
        payload=json.dumps(body, sort_keys=True),
    )
