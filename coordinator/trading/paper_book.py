"""The books of the paper exchange: balances, positions and fills, with no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol

__all__ = ["BookRejection", "Fill", "PaperBook"]

_DUST = 1e-12


def _floor8(amount: float) -> float:
    return math.floor(amount * 1e8 + 1e-6) / 1e8


class BookRejection(CoordinatorError):
    """The order cannot be filled (no balance, no position, no price)."""


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    """In the quote asset, or for a BUY with ``fee_in_base`` in the base asset."""
    at: float


@dataclass
class _Position:
    symbol: str
    quantity: float
    entry_price: float
    opened_at: float
    strategy: str


@dataclass
class PaperBook:
    quote_asset: str = "USDC"
    starting_balance: float = 10_000.0
    fee_rate: float = 0.001
    fee_in_base: bool = False
    """A BUY's fee is taken from the base bought (as Binance does when not paid in BNB):
    the position keeps the gross quantity, the balance gets quantity x (1 - fee)."""
    balances: dict[str, float] = field(default_factory=dict)
    positions: dict[str, _Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.starting_balance < 0 or not 0 <= self.fee_rate < 1:
            raise ValueError("starting balance must be >= 0 and fee rate in [0, 1)")
        self.balances.setdefault(self.quote_asset, self.starting_balance)

    def fill(
        self,
        *,
        order_id: str,
        symbol: str,
        side: Side,
        quantity: float,
        price: float,
        strategy: str,
        now: float,
    ) -> Fill:
        if quantity <= 0 or price <= 0:
            raise BookRejection(f"quantity and price must be > 0, got {quantity} at {price}")
        base, quote = split_symbol(symbol)
        notional = quantity * price
        fee = notional * self.fee_rate
        if side is Side.BUY:
            free = self.balances.get(quote, 0.0)
            quote_fee = 0.0 if self.fee_in_base else fee
            if notional + quote_fee > free + _DUST:
                raise BookRejection(
                    f"insufficient {quote}: {notional + quote_fee:.8f} needed, {free:.8f} free"
                )
            self.balances[quote] = free - notional - quote_fee
            got = quantity * (1 - self.fee_rate) if self.fee_in_base else quantity
            self.balances[base] = self.balances.get(base, 0.0) + got
            if self.fee_in_base:
                fee = quantity * self.fee_rate
            held = self.positions.get(symbol)
            if held is None:
                self.positions[symbol] = _Position(symbol, quantity, price, now, strategy)
            else:
                total = held.quantity + quantity
                held.entry_price = (held.entry_price * held.quantity + price * quantity) / total
                held.quantity = total
        else:
            held_base = self.balances.get(base, 0.0)
            if quantity > held_base * (1 + 1e-9) + _DUST:
                raise BookRejection(
                    f"insufficient {base}: selling {quantity:.8f}, {held_base:.8f} held"
                )
            quantity = min(quantity, held_base)
            self.balances[base] = held_base - quantity
            self.balances[quote] = self.balances.get(quote, 0.0) + quantity * price - fee
            held = self.positions.get(symbol)
            if held is not None:
                held.quantity -= quantity
                # A sale of all but a fee's worth closes the position, the rest is
                # dust in the balance: the buy fee taken in the base asset leaves the
                # balance under the position, and a seller who does not know in which
                # asset it was taken sells the smaller amount.
                fee_part = quantity * self.fee_rate * 1.01
                if held.quantity <= fee_part + _DUST or self.balances[base] <= _DUST:
                    del self.positions[symbol]
        fill = Fill(order_id, symbol, side, quantity, price, fee, now)
        self.fills.append(fill)
        return fill

    def seed(self, *, symbol: str, quantity: float, entry_price: float, opened_at: float) -> None:
        """An open position bought elsewhere (tests, drills and benchmarks start from it)."""
        if not (math.isfinite(quantity) and quantity > 0 and math.isfinite(entry_price)):
            raise BookRejection(f"position of {symbol}: quantity and entry price must be > 0")
        if entry_price <= 0:
            raise BookRejection(f"position of {symbol}: entry price must be > 0")
        if symbol in self.positions:
            raise BookRejection(f"a position of {symbol} is open already")
        base, _ = split_symbol(symbol)
        self.balances[base] = self.balances.get(base, 0.0) + quantity
        self.positions[symbol] = _Position(symbol, quantity, entry_price, opened_at, "seeded")

    def balances_view(self, prices: dict[str, float]) -> list[dict[str, Any]]:
        """The Portfolio service's ``GET /balances`` rows."""
        rows = []
        for asset, amount in sorted(self.balances.items()):
            if amount <= _DUST:
                continue
            if asset == self.quote_asset:
                value: float | None = amount
            else:
                price = prices.get(asset + self.quote_asset)
                value = amount * price if price is not None else None
            rows.append(
                {
                    "asset": asset,
                    # Binance's balances have 8 decimals; rounded up, the amount shown
                    # would be more than is held, and a sale of it refused.
                    "free": _floor8(amount),
                    "locked": 0.0,
                    "total": _floor8(amount),
                    "value_usdc": None if value is None else round(value, 8),
                }
            )
        return rows

    def positions_view(self, prices: dict[str, float]) -> list[dict[str, Any]]:
        """The Portfolio service's ``GET /positions/active`` rows."""
        rows = []
        for position in self.positions.values():
            current = prices.get(position.symbol, position.entry_price)
            pnl = (current - position.entry_price) * position.quantity
            rows.append(
                {
                    "symbol": position.symbol,
                    "side": "LONG",
                    "quantity": round(position.quantity, 8),
                    "entry_price": position.entry_price,
                    "current_price": current,
                    "pnl": round(pnl, 8),
                    "pnl_percentage": round(
                        (current / position.entry_price - 1) * 100 if position.entry_price else 0,
                        6,
                    ),
                    "value": round(current * position.quantity, 8),
                    "timestamp": position.opened_at,
                    "status": "OPEN",
                    "strategy": position.strategy,
                }
            )
        return rows
