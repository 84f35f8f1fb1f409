"""RootTrading's market-data candles: parsed, named when unusable, and seen once.

The gateway publishes closed klines on ``roottrading:market:data:{symbol}:{timeframe}``
in two shapes: websocket klines (``time`` in epoch milliseconds, a ``timestamp``) and
gap-fill or historical klines (``time`` an ISO string with its offset, no
``timestamp``). The dispatcher publishes each of them again with a ``_routing`` object:
on the same channel for 1m, 3m, 5m and 15m (so each arrives twice), and on
``roottrading:market:data:{symbol}`` (no timeframe in the channel) for 1h, 1d and the
symbols it is not configured for. A candle is the same candle whichever way it came:
its symbol, its timeframe and its open time say which.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from coordinator.trading import json_text
from coordinator.trading.freshness import open_time_ms, timeframe_seconds

__all__ = [
    "Candle",
    "CandleKey",
    "CandleProblem",
    "MalformedCandle",
    "SeenCandles",
    "candle_timeframe",
    "parse_candle",
    "read_candle",
]

# The spans RootTrading's gateway publishes, to name a candle's timeframe from its
# open and close times when neither the payload nor the channel says it.
_SPANS_MS = {
    int(seconds * 1000): name
    for name in ("1m", "3m", "5m", "15m", "1h", "1d")
    if (seconds := timeframe_seconds(name)) is not None
}
_CHANNEL_PARTS_WITH_TIMEFRAME = 5  # roottrading:market:data:{symbol}:{timeframe}


@dataclass(frozen=True, slots=True)
class Candle:
    symbol: str
    timeframe: str | None
    """From the payload, else the channel, else the span from ``time`` to
    ``close_time``; None when none of them says it."""
    time_ms: int
    """Open time, epoch milliseconds."""
    close: float
    quote_volume: float
    high: float
    low: float
    closed: bool
    """``is_closed``: the candle is final."""
    close_time_ms: int | None = None
    """``close_time`` when given (epoch ms, the last millisecond of the candle)."""


class CandleProblem(StrEnum):
    NOT_JSON = "not_json"
    """The payload is not JSON text."""
    NOT_OBJECT = "not_object"
    """JSON, but not an object."""
    MISSING_FIELD = "missing_field"
    """``symbol``, ``close`` or ``time`` is absent."""
    BAD_SYMBOL = "bad_symbol"
    """``symbol`` is not a non-empty string."""
    BAD_TIME = "bad_time"
    """``time`` or ``close_time`` is neither epoch milliseconds nor ISO-8601 with an offset."""
    BAD_PRICE = "bad_price"
    """``close`` is not a finite positive number."""
    BAD_VOLUME = "bad_volume"
    """``volume`` or the quote volume is not a finite number."""
    BAD_TIMEFRAME = "bad_timeframe"
    """``timeframe`` is given but is not one such as ``1m`` or ``4h``."""


@dataclass(frozen=True, slots=True)
class MalformedCandle:
    problem: CandleProblem
    detail: str
    """What was wrong, for a person."""


@dataclass(frozen=True, slots=True)
class CandleKey:
    symbol: str
    timeframe: str | None
    time_ms: int
    """Open time, epoch milliseconds."""

    @classmethod
    def of(cls, candle: Candle) -> CandleKey:
        return cls(candle.symbol, candle.timeframe, candle.time_ms)


def candle_timeframe(
    given: object, channel: str, open_ms: int, close_time_ms: int | None
) -> str | None:
    """The payload's ``timeframe``, else the channel's last part, else the one whose
    span is ``close_time`` + 1 ms - ``time``. ValueError for a given one that is none."""
    if given is not None and given != "":
        text = str(given).strip()
        if timeframe_seconds(text) is None:
            raise ValueError(f"timeframe {given!r} is not one such as 1m, 15m or 1h")
        return text
    parts = channel.split(":")
    if len(parts) == _CHANNEL_PARTS_WITH_TIMEFRAME and timeframe_seconds(parts[-1]) is not None:
        return parts[-1]
    if close_time_ms is not None:
        return _SPANS_MS.get(close_time_ms + 1 - open_ms)
    return None


def read_candle(payload: bytes | str, channel: str = "") -> Candle | MalformedCandle:
    """One market-data message as a candle, or what makes it none."""
    try:
        body = json_text.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return MalformedCandle(CandleProblem.NOT_JSON, f"not JSON ({_short(exc)})")
    if not isinstance(body, dict):
        return MalformedCandle(CandleProblem.NOT_OBJECT, f"a JSON {type(body).__name__}")
    missing = [name for name in ("symbol", "close", "time") if body.get(name) is None]
    if missing:
        return MalformedCandle(CandleProblem.MISSING_FIELD, f"no {', '.join(missing)}")
    symbol = body["symbol"]
    if not isinstance(symbol, str) or not symbol.strip():
        return MalformedCandle(CandleProblem.BAD_SYMBOL, f"symbol {_clip(symbol)!r}")
    try:
        opened = open_time_ms(body["time"])
        close_time = body.get("close_time")
        close_time_ms = open_time_ms(close_time) if close_time is not None else None
    except (ValueError, TypeError, OverflowError) as exc:
        return MalformedCandle(CandleProblem.BAD_TIME, _short(exc))
    close = _number(body["close"])
    if close is None or close <= 0:
        return MalformedCandle(CandleProblem.BAD_PRICE, f"close {_clip(body['close'])!r}")
    volume = _number(body.get("volume") or 0.0)
    quote = body.get("quote_volume", body.get("quote_asset_volume"))
    quote_volume = (
        _number(quote) if quote is not None else (None if volume is None else volume * close)
    )
    if quote_volume is None or not math.isfinite(quote_volume):
        return MalformedCandle(CandleProblem.BAD_VOLUME, f"volume {_clip(body.get('volume'))!r}")
    high = _number(body.get("high", close))
    low = _number(body.get("low", close))
    if high is None or low is None or not 0 < low <= high:
        high = low = close
    try:
        timeframe = candle_timeframe(body.get("timeframe"), channel, opened, close_time_ms)
    except ValueError as exc:
        return MalformedCandle(CandleProblem.BAD_TIMEFRAME, str(exc))
    return Candle(
        symbol.strip().upper(),
        timeframe,
        opened,
        close,
        quote_volume,
        high,
        low,
        body.get("is_closed") is True,
        close_time_ms,
    )


def parse_candle(payload: bytes | str, channel: str = "") -> Candle | None:
    """A candle, or None for a message that is not one."""
    candle = read_candle(payload, channel)
    return candle if isinstance(candle, Candle) else None


@dataclass
class SeenCandles:
    """Which closed candles have been taken, so that one arriving again (directly and
    through the dispatcher) is taken once. Per symbol and timeframe it remembers the
    ``keep`` newest open times; a candle older than all of them is taken as new: it is
    history (no price: too old), and the statistics replace a candle of the same open
    time rather than add it."""

    keep: int = 512
    _times: dict[tuple[str, str | None], set[int]] = field(default_factory=dict)
    _order: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1, got {self.keep}")

    def first_time(self, key: CandleKey) -> bool:
        """True the first time ``key`` is offered (and it is remembered), False after."""
        series = (key.symbol, key.timeframe)
        times = self._times.setdefault(series, set())
        if key.time_ms in times:
            return False
        order = self._order.setdefault(series, [])
        heapq.heappush(order, key.time_ms)
        times.add(key.time_ms)
        if len(order) > self.keep:
            times.discard(heapq.heappop(order))
        return True

    def __len__(self) -> int:
        return sum(len(times) for times in self._times.values())


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _clip(value: object, limit: int = 40) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
