"""The CandleBook before its vectorised statistics (coordinator/trading/market_stats.py
up to issue 13): lists per symbol and a loop over symbols in ``compute``. A test
reference only: tests/test_universe_scale.py checks that today's CandleBook gives the same
statistics, returns and universe on the same candles."""

from __future__ import annotations

import math

import numpy as np

from coordinator.trading.market_stats import (
    _DAY_MS,
    TIMEFRAMES_MS,
    MarketStats,
    ReturnsMatrix,
    SymbolStats,
)


class ReferenceCandleBook:
    """The CandleBook as it was before its statistics were computed for every symbol at
    once: one symbol at a time, on lists. Kept as the definition the faster one must
    match."""

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
