"""The Ledger's running numbers beside its book: BUY orders per minute, today's
realized loss, the peak equity and the last stop-loss of each symbol; what the risk
checks and the protection limits read from them. No I/O: time is given."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

from coordinator.trading.guards import portfolio_guards
from coordinator.trading.ledger_book import BookOrder, LedgerBook
from coordinator.trading.signals import Side
from coordinator.trading.trading_state import StateReason
from coordinator.trading.validation import (
    ClosedHolding,
    LedgerState,
    OrderPlan,
    PortfolioView,
    RiskConfig,
)

__all__ = ["PortfolioNumbers", "loss_of", "unrealized_loss"]

_RATE_WINDOW = 60.0
"""Seconds over which ``max_orders_per_minute`` counts BUY orders."""


def loss_of(order: BookOrder) -> float:
    """The loss an order realized (0 if none): a SELL under the entry of the holding it
    closed. Filled, or unknown: an unknown order is counted as filled until the
    Portfolio says otherwise - the cautious side."""
    plan = order.plan
    entry = order.entry_before
    if plan.side is Side.SELL and entry is not None and plan.reference_price < entry:
        return (entry - plan.reference_price) * plan.quantity
    return 0.0


def unrealized_loss(view: PortfolioView) -> float:
    """The open positions' losses, positive (gains do not offset them)."""
    return view.unrealized_loss()


def _utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


class PortfolioNumbers:
    """Kept by one Ledger incarnation (not carried over a restart, as before)."""

    def __init__(self) -> None:
        self._order_times: deque[float] = deque()
        self._loss_day = ""
        self.realized_loss = 0.0
        """Today's (UTC day) estimated realized loss, positive."""
        self.peak_equity = 0.0
        self.stop_losses: dict[str, float] = {}
        """Symbol -> wall-clock time of its last stop-loss exit."""

    def roll_day(self, now: float) -> None:
        """A new UTC day starts with no realized loss."""
        day = _utc_day(now)
        if day != self._loss_day:
            self._loss_day, self.realized_loss = day, 0.0

    def orders_last_minute(self, now: float) -> int:
        while self._order_times and now - self._order_times[0] >= _RATE_WINDOW:
            self._order_times.popleft()
        return len(self._order_times)

    def reserved(self, plan: OrderPlan, now: float) -> None:
        """An order reserved: only BUYs count against the order rate."""
        if plan.side is Side.BUY:
            self._order_times.append(now)

    def filled(self, order: BookOrder) -> None:
        self.realized_loss += loss_of(order)

    def stop_loss(self, symbol: str, at: float) -> None:
        self.stop_losses[symbol] = at

    def equity_seen(self, equity: float) -> None:
        self.peak_equity = max(self.peak_equity, equity)

    def ledger_state(
        self, book: LedgerBook, now: float, symbol: str | None = None, *, exit: bool = True
    ) -> LedgerState:
        """What the risk checks read, at ``now``; for a signal of ``symbol``, only its
        closed holdings (the only ones its checks read, and the book may hold many).
        ``exit=False``: none at all. Only a stop's exit reads them, and the book keeps
        a settle window of them (at 500 orders a second, 900 per symbol): going through
        them for every other signal was most of the Ledger's work on a Reserve."""
        orders = self.orders_last_minute(now)
        self.roll_day(now)
        closed: tuple[ClosedHolding, ...] = ()
        if exit:
            closed = tuple(book.closed) if symbol is None else book.closed_for(symbol)
        return LedgerState(
            reserved_quote=book.held_quote(),
            held_back_quote=book.cash_margin,
            held_base=book.base_margin,
            buying=book.buying(),
            selling=book.selling(),
            orders_last_minute=orders,
            realized_loss_today=self.realized_loss,
            peak_equity=self.peak_equity,
            stop_losses=dict(self.stop_losses),
            closed=closed,
        )

    def guards(
        self, view: PortfolioView, config: RiskConfig, now: float
    ) -> tuple[StateReason, ...]:
        """The protection limits the view reaches at ``now``."""
        self.roll_day(now)
        return portfolio_guards(
            equity=view.equity(config.quote_asset),
            peak_equity=self.peak_equity,
            loss_today=self.realized_loss + unrealized_loss(view),
            daily_loss_limit_percent=config.daily_loss_limit_percent,
            max_drawdown_percent=config.max_drawdown_percent,
        )
