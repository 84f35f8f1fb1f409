"""Market statistics per symbol from candles: 24 h quote volume, volatility, returns.

Candles are kept per symbol for one timeframe (``UNIVERSE_TIMEFRAME``), bounded in
number. Statistics are computed for all symbols at once with numpy:

- quote volume 24 h: the sum of ``volume x close`` (or the candle's quote volume when it
  has one) over candles opened within the 24 hours before the newest candle time;
- volatility: the standard deviation of the log returns of the last ``window`` candles,
  scaled to one day by the square root of candles per day (``VOLATILITY_RANGE`` is in
  these daily units: 0.02-0.15 means 2 % to 15 % a day);
- returns for correlation: log returns on a common timeline of ``window`` slots, NaN
  where a symbol has no candle, so that two symbols are compared on the slots both have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TIMEFRAMES_MS", "CandleBook", "MarketStats", "ReturnsMatrix", "SymbolStats"]

TIMEFRAMES_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class SymbolStats:
    symbol: str
    last_price: float
    quote_volume_24h: float
    volatility: float | None
    """Daily volatility; None with fewer than half a window of returns."""
    change_24h: float | None
    """Relative price change over 24 h; None without a candle 24 h back."""
    candles: int
    last_time_ms: int


@dataclass(frozen=True, slots=True)
class ReturnsMatrix:
    symbols: tuple[str, ...]
    index: dict[str, int]
    returns: np.ndarray
    """Shape (symbols, window): log returns, NaN where missing."""

    def row(self, symbol: str) -> np.ndarray | None:
        position = self.index.get(symbol)
        return None if position is None else self.returns[position]


@dataclass(frozen=True, slots=True)
class MarketStats:
    stats: dict[str, SymbolStats]
    returns: ReturnsMatrix
    timeframe_ms: int
    window: int


class CandleBook:
    """Candles per symbol, the newest ``keep`` of each; a candle of the same open time
    replaces the earlier one (an in-progress candle updated, then closed)."""

    def __init__(self, timeframe: str, keep: int) -> None:
        if timeframe not in TIMEFRAMES_MS:
            raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES_MS)}")
        if keep < 2:
            raise ValueError(f"keep must be >= 2, got {keep}")
        self.timeframe = timeframe
        self.timeframe_ms = TIMEFRAMES_MS[timeframe]
        self.keep = keep
        self._times: dict[str, list[int]] = {}
        self._closes: dict[str, list[float]] = {}
        self._quote: dict[str, list[float]] = {}

    def symbols(self) -> list[str]:
        return list(self._times)

    def __len__(self) -> int:
        return len(self._times)

    def add(self, symbol: str, time_ms: int, close: float, quote_volume: float) -> bool:
        """Add or replace one candle; False (and nothing kept) for an unusable one."""
        if (
            not math.isfinite(close)
            or close <= 0
            or not math.isfinite(quote_volume)
            or quote_volume < 0
            or time_ms % self.timeframe_ms
        ):
            return False
        times = self._times.setdefault(symbol, [])
        closes = self._closes.setdefault(symbol, [])
        quotes = self._quote.setdefault(symbol, [])
        if times and time_ms <= times[-1]:
            if time_ms == times[-1]:
                closes[-1], quotes[-1] = close, quote_volume
                return True
            position = int(np.searchsorted(np.asarray(times), time_ms))
            if position < len(times) and times[position] == time_ms:
                closes[position], quotes[position] = close, quote_volume
            else:
                times.insert(position, time_ms)
                closes.insert(position, close)
                quotes.insert(position, quote_volume)
        else:
            times.append(time_ms)
            closes.append(close)
            quotes.append(quote_volume)
        if len(times) > self.keep:
            excess = len(times) - self.keep
            del times[:excess], closes[:excess], quotes[:excess]
        return True

    def compute(self, window: int) -> MarketStats:
        """Statistics of every symbol, and the returns matrix of the last ``window`` slots."""
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        tf = self.timeframe_ms
        symbols = [s for s in self._times if self._times[s]]
        newest = max((self._times[s][-1] for s in symbols), default=0)
        first_slot = newest - window * tf  # slot of the close before the first return
        returns = np.full((len(symbols), window), np.nan)
        per_day = _DAY_MS / tf
        stats: dict[str, SymbolStats] = {}
        for row, symbol in enumerate(symbols):
            times = np.asarray(self._times[symbol], dtype=np.int64)
            closes = np.asarray(self._closes[symbol], dtype=np.float64)
            quotes = np.asarray(self._quote[symbol], dtype=np.float64)
            recent = times > newest - _DAY_MS
            volume = float(quotes[recent].sum())
            # Log returns between consecutive slots only (a gap breaks a return).
            logs = np.log(closes)
            steps = np.diff(times) == tf
            diffs = np.diff(logs)[steps]
            ends = times[1:][steps]
            tail = diffs[ends > first_slot]
            volatility = (
                float(np.std(tail, ddof=1) * math.sqrt(per_day))
                if len(tail) >= max(2, window // 2)
                else None
            )
            slots = (ends - first_slot) // tf - 1
            inside = (slots >= 0) & (slots < window)
            returns[row, slots[inside]] = diffs[inside]
            day_ago = newest - _DAY_MS
            back = np.searchsorted(times, day_ago)
            change = None
            if back < len(times) and times[back] == day_ago:
                change = float(closes[-1] / closes[back] - 1.0)
            stats[symbol] = SymbolStats(
                symbol=symbol,
                last_price=float(closes[-1]),
                quote_volume_24h=volume,
                volatility=volatility,
                change_24h=change,
                candles=len(times),
                last_time_ms=int(times[-1]),
            )
        matrix = ReturnsMatrix(
            symbols=tuple(symbols),
            index={s: i for i, s in enumerate(symbols)},
            returns=returns,
        )
        return MarketStats(stats=stats, returns=matrix, timeframe_ms=tf, window=window)


def correlations(a: np.ndarray, others: np.ndarray, min_overlap: int) -> np.ndarray:
    """Pearson correlation of ``a`` with each row of ``others`` on the slots both have;
    NaN where they share fewer than ``min_overlap`` slots or one of them is flat."""
    mask = np.isfinite(a)[None, :] & np.isfinite(others)
    count = mask.sum(axis=1)
    x = np.where(mask, a[None, :], 0.0)
    y = np.where(mask, others, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = x.sum(axis=1) / count
        mean_y = y.sum(axis=1) / count
        dx = np.where(mask, x - mean_x[:, None], 0.0)
        dy = np.where(mask, y - mean_y[:, None], 0.0)
        result: np.ndarray = (dx * dy).sum(axis=1) / np.sqrt(
            (dx * dx).sum(axis=1) * (dy * dy).sum(axis=1)
        )
    result[count < min_overlap] = np.nan
    return result
