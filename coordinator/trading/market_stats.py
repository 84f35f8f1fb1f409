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
    replaces the earlier one (an in-progress candle updated, then closed).

    Stored as one numpy matrix per field, a row per symbol, so that ``compute`` works on
    every symbol at once: a loop over the symbols made a rotation over 10,000 symbols of
    720 candles take 7 to 8 s, most of it numpy calls on small arrays. A row's candles
    are the columns ``start .. start + length``; a new candle goes after them, the oldest
    is let go by moving ``start``, and the row is moved back to column 0 once it reaches
    the last column (every ``keep // 4`` candles or so), not at every candle."""

    def __init__(self, timeframe: str, keep: int) -> None:
        if timeframe not in TIMEFRAMES_MS:
            raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES_MS)}")
        if keep < 2:
            raise ValueError(f"keep must be >= 2, got {keep}")
        self.timeframe = timeframe
        self.timeframe_ms = TIMEFRAMES_MS[timeframe]
        self.keep = keep
        self._capacity = keep + max(8, keep // 4)
        self._rows: dict[str, int] = {}
        # Per row, as Python lists: add() reads them for every candle.
        self._starts: list[int] = []
        self._lengths: list[int] = []
        self._last_times: list[int] = []
        self._times = np.zeros((0, 0), dtype=np.int64)
        self._closes = np.zeros((0, 0), dtype=np.float64)
        self._quotes = np.zeros((0, 0), dtype=np.float64)

    def symbols(self) -> list[str]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

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
        row = self._row(symbol)
        start, length = self._starts[row], self._lengths[row]
        end = start + length
        if length and time_ms <= self._last_times[row]:
            if time_ms == self._last_times[row]:
                self._closes[row, end - 1] = close
                self._quotes[row, end - 1] = quote_volume
                return True
            position = start + int(np.searchsorted(self._times[row, start:end], time_ms))
            if self._times[row, position] == time_ms:
                self._closes[row, position] = close
                self._quotes[row, position] = quote_volume
                return True
        else:
            position = end
            self._last_times[row] = time_ms
        if end == self._times.shape[1]:
            if start == 0:
                self._widen()
            else:
                for matrix in (self._times, self._closes, self._quotes):
                    matrix[row, :length] = matrix[row, start:end]
                position, start, end = position - start, 0, length
        for matrix, value in (
            (self._times, time_ms),
            (self._closes, close),
            (self._quotes, quote_volume),
        ):
            if position < end:
                matrix[row, position + 1 : end + 1] = matrix[row, position:end]
            matrix[row, position] = value
        length += 1
        if length > self.keep:
            start, length = start + 1, length - 1
        self._starts[row], self._lengths[row] = start, length
        return True

    def _row(self, symbol: str) -> int:
        row = self._rows.get(symbol)
        if row is None:
            row = len(self._rows)
            if row == self._times.shape[0]:
                more = max(16, row)
                self._times, self._closes, self._quotes = (
                    np.concatenate([m, np.zeros((more, m.shape[1]), dtype=m.dtype)])
                    for m in (self._times, self._closes, self._quotes)
                )
            self._rows[symbol] = row
            self._starts.append(0)
            self._lengths.append(0)
            self._last_times.append(0)
        return row

    def _widen(self) -> None:
        columns = min(self._capacity, max(16, 2 * self._times.shape[1]))
        self._times, self._closes, self._quotes = (
            np.concatenate([m, np.zeros((m.shape[0], columns - m.shape[1]), dtype=m.dtype)], 1)
            for m in (self._times, self._closes, self._quotes)
        )

    def compute(self, window: int) -> MarketStats:
        """Statistics of every symbol, and the returns matrix of the last ``window`` slots."""
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        tf = self.timeframe_ms
        symbols = list(self._rows)
        count = len(symbols)
        starts = np.array(self._starts, dtype=np.int64)
        lengths = np.array(self._lengths, dtype=np.int64)
        newest = max(self._last_times, default=0)
        returns = np.full((count, window), np.nan)
        volume: list[float] = []
        volatility: list[float | None] = []
        change: list[float | None] = []
        # In blocks of rows: the temporaries of 10,000 rows at once would take hundreds of
        # megabytes.
        for first in range(0, count, _BLOCK):
            block = slice(first, min(count, first + _BLOCK))
            stats = _block_stats(
                self._times[block],
                self._closes[block],
                self._quotes[block],
                starts[block],
                lengths[block],
                returns,
                first_row=first,
                newest=newest,
                timeframe_ms=tf,
                window=window,
            )
            volume.extend(stats.volume)
            volatility.extend(stats.volatility)
            change.extend(stats.change)
        rows = np.arange(count)
        lasts = starts + lengths - 1
        last_prices = self._closes[rows, lasts].tolist()
        return MarketStats(
            stats={
                symbol: SymbolStats(
                    symbol=symbol,
                    last_price=last_prices[row],
                    quote_volume_24h=volume[row],
                    volatility=volatility[row],
                    change_24h=change[row],
                    candles=self._lengths[row],
                    last_time_ms=self._last_times[row],
                )
                for row, symbol in enumerate(symbols)
            },
            returns=ReturnsMatrix(
                symbols=tuple(symbols),
                index={s: i for i, s in enumerate(symbols)},
                returns=returns,
            ),
            timeframe_ms=tf,
            window=window,
        )


_BLOCK = 1024


@dataclass(frozen=True, slots=True)
class _BlockStats:
    volume: list[float]
    volatility: list[float | None]
    change: list[float | None]


def _block_stats(
    times: np.ndarray,
    closes: np.ndarray,
    quotes: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    returns: np.ndarray,
    *,
    first_row: int,
    newest: int,
    timeframe_ms: int,
    window: int,
) -> _BlockStats:
    """Volume, volatility and 24 h change of a block of rows starting at ``first_row``;
    fills their rows of ``returns`` (the whole matrix, C-contiguous)."""
    tf = timeframe_ms
    first_slot = newest - window * tf  # slot of the close before the first return
    column = np.arange(times.shape[1])[None, :]
    valid = (column >= starts[:, None]) & (column < (starts + lengths)[:, None])
    volume = np.where(valid & (times > newest - _DAY_MS), quotes, 0.0).sum(axis=1)
    # Log returns between consecutive slots only (a gap breaks a return).
    diffs = np.diff(np.log(np.where(valid, closes, 1.0)), axis=1)
    ends = times[:, 1:]
    steps = valid[:, :-1] & valid[:, 1:] & (np.diff(times, axis=1) == tf)
    tail = steps & (ends > first_slot)
    tail_count = tail.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(tail, diffs, 0.0).sum(axis=1) / tail_count
        spread = np.where(tail, diffs - mean[:, None], 0.0)
        deviation = np.sqrt((spread * spread).sum(axis=1) / (tail_count - 1))
    volatility = deviation * math.sqrt(_DAY_MS / tf)
    enough = tail_count >= max(2, window // 2)
    slots = (ends - first_slot) // tf - 1
    inside = steps & (slots >= 0) & (slots < window)
    # Through flat indices: numpy scatters into one dimension several times faster.
    rows = np.arange(first_row, first_row + len(lengths))[:, None]
    returns.reshape(-1)[(rows * window + slots)[inside]] = diffs[inside]
    day_ago = valid & (times == newest - _DAY_MS)
    indices = np.arange(len(lengths))
    change = closes[indices, starts + lengths - 1] / closes[indices, day_ago.argmax(axis=1)] - 1.0
    return _BlockStats(
        volume=volume.tolist(),
        volatility=[
            v if ok else None for v, ok in zip(volatility.tolist(), enough.tolist(), strict=True)
        ],
        change=[
            c if ok else None
            for c, ok in zip(change.tolist(), day_ago.any(axis=1).tolist(), strict=True)
        ],
    )


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
