"""Portfolio protection: the loss limits that stop new BUYs through the trading state.

Today's loss (realised exits of the UTC day plus the open positions' unrealised losses)
and the drawdown of equity from its peak are checked after every Portfolio answer and
every fill of ours. A limit reached becomes a reason of the trading state (DEGRADED: no
BUY, exits go on) until it no longer holds.
"""

from __future__ import annotations

from coordinator.trading.trading_state import StateReason

__all__ = ["portfolio_guards"]


def portfolio_guards(
    *,
    equity: float,
    peak_equity: float,
    loss_today: float,
    daily_loss_limit_percent: float,
    max_drawdown_percent: float,
) -> tuple[StateReason, ...]:
    """The limits reached, as trading-state reasons (empty when none is)."""
    if equity <= 0:
        return ()
    reasons = []
    loss_percent = loss_today / equity * 100
    if loss_percent >= daily_loss_limit_percent:
        reasons.append(
            StateReason(
                "daily_loss_limit",
                f"loss today {loss_today:.2f} is {loss_percent:.2f} % of equity "
                f"(limit {daily_loss_limit_percent:g} %): no BUY until tomorrow (UTC), "
                "exits go on",
            )
        )
    peak = max(peak_equity, equity)
    drawdown = (peak - equity) / peak * 100
    if drawdown >= max_drawdown_percent:
        reasons.append(
            StateReason(
                "drawdown_guard",
                f"equity {equity:.2f} is {drawdown:.2f} % below its peak {peak:.2f} "
                f"(limit {max_drawdown_percent:g} %): no BUY, exits go on",
            )
        )
    return tuple(reasons)
