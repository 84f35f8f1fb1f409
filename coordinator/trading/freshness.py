"""How old a price is: candles from the market-data channels, and an exit's price.

A price's age starts when the Redis reader received it, not when an actor got round to
it: a backlog (after a hang or a restart) is as old as it is. A candle says when its
price was true as well. A closed candle's close was the price at its close (open time
plus its timeframe): one that closed longer ago than the maximum age is stale whenever
it arrives (a gap-fill or a replay), and is not a current price. A candle in progress
may have opened up to its timeframe earlier: its close is the price when it was read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from coordinator.trading.validation import CheckResult, ExitTarget, MarketQuote, Reason

__all__ = [
    "PriceBook",
    "PriceVerdict",
    "candle_close",
    "candle_staleness",
    "exit_price_check",
    "newest_stored_close",
    "open_time_ms",
    "price_moment",
    "timeframe_seconds",
]

_TIMEFRAME = re.compile(r"(\d+)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


# Each candle asks three times, thousands of times a second, about a handful of names;
# bounded, since the names come from outside.
_SECONDS_OF: dict[str, float | None] = {}


def timeframe_seconds(timeframe: str | None) -> float | None:
    """``1m`` -> 60, ``4h`` -> 14400; None for an unknown or missing timeframe."""
    if not timeframe:
        return None
    try:
        return _SECONDS_OF[timeframe]
    except (KeyError, TypeError):
        pass
    match = _TIMEFRAME.fullmatch(timeframe.strip().lower())
    seconds = (
        None if match is None or int(match[1]) <= 0 else float(int(match[1]) * _UNIT[match[2]])
    )
    if isinstance(timeframe, str) and len(_SECONDS_OF) < 64:
        _SECONDS_OF[timeframe] = seconds
    return seconds


def open_time_ms(value: object) -> int:
    """A candle's ``time``: epoch milliseconds (websocket klines) or an ISO string
    with its offset (RootTrading's gap-fill klines). ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"time {value!r} is not an epoch in milliseconds")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return open_time_ms(int(text))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(f"time {value!r} has no UTC offset")
        return int(moment.timestamp() * 1000)
    raise ValueError(f"time {value!r} is neither epoch milliseconds nor ISO-8601")


def candle_close(
    open_ms: int, timeframe: str | None, close_time_ms: int | None
) -> tuple[float, float]:
    """(close time in epoch seconds, span in seconds) of a candle: its open time plus
    its timeframe; without a timeframe its ``close_time`` field; without either, the
    open time alone (a span of zero)."""
    opened = open_ms / 1000.0
    span = timeframe_seconds(timeframe)
    if span is not None:
        return opened + span, span
    if close_time_ms is not None and close_time_ms / 1000.0 >= opened:
        closed = (close_time_ms + 1) / 1000.0
        return closed, closed - opened
    return opened, 0.0


def candle_staleness(
    *,
    open_ms: int,
    timeframe: str | None,
    close_time_ms: int | None,
    received_at: float,
    max_age: float,
    final: bool = False,
) -> str | None:
    """Why a candle received at ``received_at`` is stale, or None when its close may be
    taken as a current price. ``final``: the candle is closed (``is_closed``), so its
    price is as old as its close; else it may still be in progress."""
    closed, span = candle_close(open_ms, timeframe, close_time_ms)
    age = received_at - closed
    if final and age > max_age:
        return (
            f"closed {age:.0f} s before it was received, more than the maximum age ({max_age:g} s)"
        )
    if age > span + max_age:
        return (
            f"closed {age:.0f} s before it was received, more than its timeframe "
            f"({span:g} s) plus the maximum age ({max_age:g} s)"
        )
    return None


class PriceVerdict(StrEnum):
    TAKEN = "taken"
    """The candle's close is the symbol's current price now."""
    STALE = "stale"
    """Closed too long before it was received: no price."""
    OLDER = "older"
    """Fresh enough, but older than the price held: that one stays."""


@dataclass
class PriceBook:
    """Which candles give a symbol's current price. A candle's price was true at its
    close, or when it was received if that is earlier (a candle in progress): a candle
    whose moment is older than the held price's does not replace it."""

    max_age: float
    """Seconds a candle's close may lie back beyond its timeframe."""
    observed: dict[str, float] = field(default_factory=dict)
    """Per symbol: the moment of the price held."""

    def offer(
        self,
        symbol: str,
        *,
        open_ms: int,
        timeframe: str | None,
        close_time_ms: int | None,
        received_at: float,
        final: bool = False,
    ) -> tuple[PriceVerdict, str]:
        """The verdict on a candle, and why. ``final``: a closed candle."""
        why = candle_staleness(
            open_ms=open_ms,
            timeframe=timeframe,
            close_time_ms=close_time_ms,
            received_at=received_at,
            max_age=self.max_age,
            final=final,
        )
        if why is not None:
            return PriceVerdict.STALE, why
        closed, _span = candle_close(open_ms, timeframe, close_time_ms)
        moment = min(closed, received_at)
        held = self.observed.get(symbol)
        if held is not None and moment < held:
            return PriceVerdict.OLDER, f"its price is {held - moment:.1f} s older than the held one"
        self.observed[symbol] = moment
        return PriceVerdict.TAKEN, ""


def price_moment(
    *, open_ms: int, timeframe: str | None, close_time_ms: int | None, received_at: float
) -> float:
    """When a candle's close was the price: its close, or its reading if earlier (a
    candle in progress, or a closed one read a moment before its nominal close)."""
    closed, _span = candle_close(open_ms, timeframe, close_time_ms)
    return min(closed, received_at)


def newest_stored_close(
    candles: Iterable[tuple[str | None, int, float]], *, now: float, max_age: float
) -> tuple[float, float] | None:
    """The current price among candles read from a table, (timeframe, open time ms,
    close): the newest close, and the moment it was true (the candle's close), or None
    when none closed in the last ``max_age`` seconds. A stored row says nothing of when
    it was written, so one whose close is still to come (a candle in progress) or whose
    timeframe is unknown is no price; one without a timeframe is taken at its open time,
    never fresher than it is."""
    best: tuple[float, float] | None = None
    for timeframe, open_ms, close in candles:
        if timeframe is None:
            closed = open_ms / 1000.0
        else:
            span = timeframe_seconds(timeframe)
            if span is None:
                continue
            closed = open_ms / 1000.0 + span
        if closed > now or now - closed > max_age:
            continue
        if not math.isfinite(close) or close <= 0:
            continue
        if best is None or closed > best[1]:
            best = (close, closed)
    return best


def exit_price_check(
    exit: ExitTarget, latest: MarketQuote | None, *, now: float, max_age: float
) -> CheckResult:
    """An exit right before it is sent: the price that decides (the Validator's latest
    if newer than the one that hit the stop) must be fresh and still at or under the
    stop. Otherwise it is not sent; the TrailingStop tries again on a fresh price."""
    price, at, which = exit.price, exit.price_at, "the price that hit the stop"
    # Read at the same instant (one batch from Redis), the Validator's is the later one.
    if latest is not None and latest.at >= at:
        price, at, which = latest.price, latest.at, "the latest price"
    age = now - at
    if age > max_age:
        return CheckResult(
            "exit_price",
            False,
            Reason.MARKET_DATA_STALE,
            f"{which} {price:.8g} is {age:.1f} s old (STOP_PRICE_MAX_AGE {max_age:g} s): "
            "not sent on it",
        )
    if price > exit.stop:
        return CheckResult(
            "exit_price",
            False,
            Reason.STOP_NOT_HIT,
            f"{which} {price:.8g} is above the stop {exit.stop:.8g}: not sent",
        )
    return CheckResult(
        "exit_price",
        True,
        None,
        f"{which} {price:.8g} at or under the stop {exit.stop:.8g}, {max(age, 0.0):.1f} s old",
    )
