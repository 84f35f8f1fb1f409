"""Replayed candles: read from the shared CSV files, converted to the quote asset, and
re-stamped so that the coordinator takes them as today's market.

The files hold pairs quoted in BTC (``ETHBTC-5m.csv``: ``time_ms,open,high,low,close,
volume``). They are shown in the coordinator's quote asset at a fixed rate (one BTC is
``rate`` of it): prices times the rate, ``ETHBTC`` becomes ``ETHUSDC``.

The replay runs faster than the market did (``speed``: replayed seconds per wall second),
yet every price must be current: the coordinator refuses an old one. So the candles are
re-stamped to the wall clock as 1m candles: each wall minute is one candle per symbol,
made of the source candles replayed during that minute (open of the first, high and low
of all, close of the latest, volumes summed), published in progress after each source
candle and closed when the minute is over, as an exchange publishes them. Before the
live replay, a history (``backlog``) gives the universe its statistics at once: one
source candle per 1m candle, closed, stamped in the minutes before the current one.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BUCKET_MS",
    "DemoDataError",
    "MarketData",
    "MinuteCandles",
    "SourceCandle",
    "backlog_messages",
    "candle_message",
    "convert_symbol",
    "load_market",
    "market_channel",
    "step_candles",
]

BUCKET_MS = 60_000
"""The re-stamped candles' timeframe: 1m."""
_BUCKET_TIMEFRAME = "1m"
_FILE = re.compile(r"(?P<pair>[A-Z0-9]+)-(?P<timeframe>\d+[mhd])\.csv")
_TIMEFRAME_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
SOURCE_QUOTE = "BTC"


class DemoDataError(ValueError):
    """The candle folder cannot be replayed; the message names the folder or file."""


@dataclass(frozen=True, slots=True)
class SourceCandle:
    """One row of a candle file, prices already in the quote asset."""

    time_ms: int
    """Open time in the source market, epoch milliseconds."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    """In the base asset."""


@dataclass(frozen=True, slots=True)
class MarketData:
    """The pairs to replay, on one timeline."""

    timeframe_ms: int
    """Of the source candles (5m for the shared files)."""
    steps: tuple[int, ...]
    """Every open time of the timeline, oldest first."""
    series: dict[str, dict[int, SourceCandle]]
    """Per converted symbol: its candles by open time (a pair may miss some)."""
    skipped: tuple[str, ...]
    """Files not replayed, each with why."""


def convert_symbol(pair: str, quote_asset: str) -> str | None:
    """``ETHBTC`` -> ``ETHUSDC``; None for a pair not quoted in BTC."""
    if not pair.endswith(SOURCE_QUOTE) or len(pair) <= len(SOURCE_QUOTE):
        return None
    return pair[: -len(SOURCE_QUOTE)] + quote_asset


def market_channel(symbol: str, timeframe: str = _BUCKET_TIMEFRAME) -> str:
    """RootTrading's market-data channel of a symbol and timeframe."""
    return f"roottrading:market:data:{symbol.lower()}:{timeframe}"


def read_candles(path: Path, rate: float) -> dict[int, SourceCandle]:
    """A candle file's rows by open time, prices times ``rate``. DemoDataError names the
    file and line of a row that is not ``time_ms,open,high,low,close,volume``."""
    rows: dict[int, SourceCandle] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["time_ms", "open", "high", "low", "close", "volume"]:
            raise DemoDataError(f"{path}: the header is not time_ms,open,high,low,close,volume")
        for line, row in enumerate(reader, start=2):
            try:
                time_ms = int(row[0])
                o, h, low, c, v = (float(x) for x in row[1:6])
            except (ValueError, IndexError) as exc:
                raise DemoDataError(f"{path}, line {line}: {exc}") from exc
            if not all(math.isfinite(x) and x >= 0 for x in (o, h, low, c, v)) or c <= 0:
                raise DemoDataError(f"{path}, line {line}: a price is not a positive number")
            rows[time_ms] = SourceCandle(time_ms, o * rate, h * rate, low * rate, c * rate, v)
    return rows


def load_market(folder: Path, *, quote_asset: str, rate: float) -> MarketData:
    """The BTC-quoted pairs of ``folder`` of the timeframe most of them share.
    DemoDataError naming the folder when it is absent or holds none."""
    if not folder.is_dir():
        raise DemoDataError(
            f"no candle folder at {folder} (the shared candles are expected at "
            "../shared/data/candles from the project root; give another with --candles DIR)"
        )
    found: dict[int, dict[str, Path]] = {}
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        match = _FILE.fullmatch(path.name)
        if match is None:
            continue
        symbol = convert_symbol(match["pair"], quote_asset)
        if symbol is None:
            skipped.append(f"{path.name}: not quoted in {SOURCE_QUOTE}")
            continue
        timeframe = match["timeframe"]
        span = int(timeframe[:-1]) * _TIMEFRAME_MS[timeframe[-1]]
        found.setdefault(span, {})[symbol] = path
    if not found:
        raise DemoDataError(
            f"no candle file of a BTC-quoted pair (such as ETHBTC-5m.csv) in {folder}"
        )
    span = max(found, key=lambda s: (len(found[s]), -s))
    for other, paths in sorted(found.items()):
        if other != span:
            skipped.extend(f"{p.name}: another timeframe" for p in paths.values())
    series = {symbol: read_candles(path, rate) for symbol, path in sorted(found[span].items())}
    times = {t for rows in series.values() for t in rows}
    if not times:
        raise DemoDataError(f"the candle files of {folder} hold no row")
    first, last = min(times), max(times)
    return MarketData(
        timeframe_ms=span,
        steps=tuple(range(first, last + span, span)),
        series=series,
        skipped=tuple(skipped),
    )


def candle_message(
    symbol: str, candle: SourceCandle, *, time_ms: int, closed: bool
) -> dict[str, object]:
    """A RootTrading websocket kline of the 1m candle opened at ``time_ms``."""
    return {
        "symbol": symbol,
        "timeframe": _BUCKET_TIMEFRAME,
        "time": time_ms,
        "close_time": time_ms + BUCKET_MS - 1,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
        "quote_asset_volume": candle.volume * candle.close,
        "is_closed": closed,
        "source": "demo_replay",
    }


def _payload(symbol: str, message: dict[str, object]) -> tuple[str, str]:
    return market_channel(symbol), json.dumps(message)


def backlog_messages(market: MarketData, steps: int, now_ms: int) -> Iterator[tuple[str, str]]:
    """(channel, payload) of the first ``steps`` source steps, each a closed 1m candle
    in the minutes before the one of ``now_ms``, the oldest first."""
    current = now_ms - now_ms % BUCKET_MS
    for index, step in enumerate(market.steps[:steps]):
        time_ms = current - (steps - index) * BUCKET_MS
        for symbol, rows in market.series.items():
            candle = rows.get(step)
            if candle is not None:
                yield _payload(symbol, candle_message(symbol, candle, time_ms=time_ms, closed=True))


@dataclass
class _Minute:
    time_ms: int
    candle: SourceCandle


@dataclass
class MinuteCandles:
    """The live candles: per symbol, the 1m candle of the current wall minute, made of
    the source candles replayed in it."""

    _open: dict[str, _Minute] = field(default_factory=dict)

    def add(self, symbol: str, candle: SourceCandle, now_ms: int) -> list[tuple[str, str]]:
        """The messages for one replayed source candle at ``now_ms``: the symbol's
        previous minute closed when that minute is over, then the current minute in
        progress with this candle in it."""
        bucket = now_ms - now_ms % BUCKET_MS
        messages = []
        current = self._open.get(symbol)
        if current is not None and current.time_ms != bucket:
            messages.append(self._closed(symbol, current))
            current = None
        if current is None:
            current = _Minute(bucket, candle)
        else:
            held = current.candle
            current.candle = SourceCandle(
                time_ms=held.time_ms,
                open=held.open,
                high=max(held.high, candle.high),
                low=min(held.low, candle.low),
                close=candle.close,
                volume=held.volume + candle.volume,
            )
        self._open[symbol] = current
        messages.append(
            _payload(symbol, candle_message(symbol, current.candle, time_ms=bucket, closed=False))
        )
        return messages

    def close_finished(self, now_ms: int) -> list[tuple[str, str]]:
        """The closed candles of the minutes over at ``now_ms`` (once the replay has
        ended, so that the last minute is final too)."""
        bucket = now_ms - now_ms % BUCKET_MS
        finished = [s for s, m in self._open.items() if m.time_ms != bucket]
        return [self._closed(s, self._open.pop(s)) for s in finished]

    def __len__(self) -> int:
        """Minutes still open."""
        return len(self._open)

    @staticmethod
    def _closed(symbol: str, minute: _Minute) -> tuple[str, str]:
        return _payload(
            symbol, candle_message(symbol, minute.candle, time_ms=minute.time_ms, closed=True)
        )


def step_candles(market: MarketData, step: int) -> Iterable[tuple[str, SourceCandle]]:
    """The candles of one source step, per symbol that has one."""
    for symbol, rows in market.series.items():
        candle = rows.get(step)
        if candle is not None:
            yield symbol, candle
