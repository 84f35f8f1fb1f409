"""The demo's signal rule and the signals' shape.

The rule is a moving-average cross on the closes of each pair: BUY when the fast
exponential average crosses above the slow one, SELL when it crosses below. The signal
is shaped as the Signal Aggregator publishes a consensus on its channel (strategy
``CONSENSUS``, the consensus metadata), from this one rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = ["EmaCross", "Side", "cross_signals", "signal_message"]

RULE_NAME = "EMA_Cross_Demo"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass
class EmaCross:
    """Fast and slow exponential averages of one series; ``update`` says when they
    cross. The first ``slow`` closes only warm the averages up."""

    fast: int = 9
    slow: int = 21
    _fast_ema: float | None = None
    _slow_ema: float | None = None
    _seen: int = 0
    _above: bool | None = field(default=None)
    """The last side the fast average was on (equal averages leave it as it was)."""
    _flat_start: bool = False
    """The averages were equal when the warm-up ended: leaving them is a cross."""

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={self.fast} slow={self.slow}")

    def update(self, close: float) -> Side | None:
        """The side of a cross at this close, or None."""
        self._fast_ema = _ema(self._fast_ema, close, self.fast)
        self._slow_ema = _ema(self._slow_ema, close, self.slow)
        self._seen += 1
        if self._seen < self.slow:
            return None
        if self._fast_ema == self._slow_ema:
            self._flat_start = self._flat_start or self._above is None
            return None
        above = self._fast_ema > self._slow_ema
        previous, self._above = self._above, above
        if previous == above or (previous is None and not self._flat_start):
            return None
        return Side.BUY if above else Side.SELL


def _ema(previous: float | None, value: float, period: int) -> float:
    if previous is None:
        return value
    alpha = 2.0 / (period + 1)
    return previous + alpha * (value - previous)


def cross_signals(closes: Iterable[float], fast: int = 9, slow: int = 21) -> list[tuple[int, Side]]:
    """(index, side) of every cross in a series of closes."""
    rule = EmaCross(fast, slow)
    return [(i, side) for i, close in enumerate(closes) if (side := rule.update(close))]


def signal_message(
    symbol: str, side: Side, price: float, *, now: float, timeframe: str = "5m"
) -> dict[str, Any]:
    """An aggregator-shaped consensus signal of the rule, stamped ``now`` (epoch s)."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat()
    consensus_id = f"demo_{uuid.uuid4().hex[:12]}"
    cross = "bullish_cross" if side is Side.BUY else "bearish_cross"
    constituent = {
        "symbol": symbol,
        "timeframe": timeframe,
        "strategy": RULE_NAME,
        "timestamp": stamp,
        "side": str(side),
        "confidence": 0.7,
        "strength": "moderate",
        "reason": f"EMA cross ({cross}) on replayed candles",
        "metadata": {
            "strategy": RULE_NAME,
            "symbol": symbol,
            "current_price": price,
            "cross_type": cross,
        },
        "source": "demo",
        "received_at": stamp,
    }
    return {
        "strategy": "CONSENSUS",
        "symbol": symbol,
        "side": str(side),
        "timestamp": stamp,
        "price": price,
        "confidence": 0.6,
        "strength": "moderate",
        "metadata": {
            "type": "CONSENSUS",
            "timeframe": timeframe,
            "strategies_count": 1,
            "strategy_names": [RULE_NAME],
            "avg_confidence": 0.7,
            "consensus_strength": 1.5,
            "consensus_id": consensus_id,
            "is_failsafe_trade": False,
            "processor": "coordinator demo",
            "original_signals": [constituent],
        },
    }
