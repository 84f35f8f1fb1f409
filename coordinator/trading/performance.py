"""Per-symbol results: signals accepted and rejected, orders, realised result of the
positions we opened and closed (estimated at the reference prices, before fees)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from coordinator.trading.execution import OrderStatus
from coordinator.trading.signals import Side
from coordinator.trading.validation import Outcome

__all__ = ["PerformanceBook", "SymbolPerformance"]


@dataclass
class SymbolPerformance:
    accepted: int = 0
    rejected: int = 0
    orders: int = 0
    closed: int = 0
    realised: float = 0.0
    """Sum of (exit - entry) x quantity over closed positions, quote asset."""
    entry_price: float | None = None
    entry_quantity: float = 0.0


class PerformanceBook:
    def __init__(self, data: dict[str, dict[str, Any]] | None = None) -> None:
        self._symbols: dict[str, SymbolPerformance] = {
            symbol: SymbolPerformance(**values) for symbol, values in (data or {}).items()
        }

    def _of(self, symbol: str) -> SymbolPerformance:
        return self._symbols.setdefault(symbol, SymbolPerformance())

    def decision(self, symbol: str | None, outcome: str) -> None:
        if symbol is None:
            return
        record = self._of(symbol)
        if outcome in (Outcome.ACCEPTED, Outcome.SHADOW):
            record.accepted += 1
        elif outcome == Outcome.REJECTED:
            record.rejected += 1

    def order(self, symbol: str, side: str, state: str, quantity: float, price: float) -> None:
        if state not in (OrderStatus.ACCEPTED, OrderStatus.UNKNOWN):
            return
        record = self._of(symbol)
        record.orders += 1
        if state != OrderStatus.ACCEPTED:
            return
        if side == Side.BUY:
            record.entry_price, record.entry_quantity = price, quantity
        elif record.entry_price is not None:
            record.realised += (price - record.entry_price) * min(quantity, record.entry_quantity)
            record.closed += 1
            record.entry_price, record.entry_quantity = None, 0.0

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {symbol: asdict(record) for symbol, record in sorted(self._symbols.items())}
