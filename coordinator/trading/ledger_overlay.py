"""Our fills the Portfolio does not show yet, laid over its view (the Ledger's book
decides which parts of which orders are unshown; this lays them)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

from coordinator.trading.ledger_orders import BookOrder
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol
from coordinator.trading.validation import Balance, OrderPlan, PortfolioView, PositionView

__all__ = ["bases_by_prefix", "laid_quote_delta", "lay_over", "lay_step", "quote_delta"]

_ZERO = Balance(0.0, 0.0, 0.0)


def quote_delta(plan: OrderPlan, fee_rate: float) -> float:
    """What a fill of ``plan`` does to the quote balance, its fee included."""
    if plan.side is Side.BUY:
        return -plan.notional * (1 + fee_rate)
    return plan.notional * (1 - fee_rate)


def laid_quote_delta(order: BookOrder, fee_rate: float) -> float:
    """What laying ``order``'s balances part moves the quote by: its fill's move, but
    nothing for a SELL whose cash the view may show already (``proceeds_counted``)."""
    if order.plan.side is Side.SELL and not order.proceeds_counted:
        return 0.0
    return quote_delta(order.plan, fee_rate)


def lay_over(
    view: PortfolioView,
    fills: Iterable[BookOrder],
    *,
    quote: str,
    fee_rate: float,
    fee_in_base: bool | None,
) -> PortfolioView:
    """``view`` with each fill's unshown parts laid over it, in the order given."""
    balances = dict(view.balances)
    positions = dict(view.positions)
    for order in fills:
        plan = order.plan
        base, _ = split_symbol(plan.symbol)
        if not order.balances_shown:
            cash = balances.get(quote, _ZERO)
            held = balances.get(base, _ZERO)
            delta = laid_quote_delta(order, fee_rate)
            balances[quote] = Balance(
                cash.free + delta, cash.total + delta, (cash.value or 0.0) + delta
            )
            if plan.side is Side.BUY and order.unknown:
                # The cash only: the coins may never have come. Their value still
                # counts in the equity, so that the loss guards do not take a BUY
                # whose answer was lost for a loss.
                value = (held.value or 0.0) + plan.notional
                balances[base] = Balance(held.free, held.total, value)
            elif plan.side is Side.BUY:
                # Unless known to be in the quote, the fee may be taken in the base
                # asset: count the smaller amount (a sell above it is refused).
                got = plan.quantity * (1 - fee_rate)
                if fee_in_base is False:
                    got = plan.quantity
                balances[base] = Balance(
                    held.free + got,
                    held.total + got,
                    (held.value or 0.0) + got * plan.reference_price,
                )
            else:
                left_free = max(0.0, held.free - plan.quantity)
                left = max(0.0, held.total - plan.quantity)
                balances[base] = Balance(left_free, left, left * plan.reference_price)
        if not order.positions_shown and not (plan.side is Side.BUY and order.unknown):
            if plan.side is Side.BUY:
                old = positions.get(plan.symbol)
                quantity = plan.quantity + (old.quantity if old else 0.0)
                positions[plan.symbol] = PositionView(
                    plan.symbol,
                    quantity,
                    plan.reference_price,
                    quantity * plan.reference_price,
                    0.0,
                )
            else:
                positions.pop(plan.symbol, None)
    return replace(view, balances=balances, positions=positions)


def lay_step(
    order: BookOrder,
    balance: Balance | None,
    positions: dict[str, PositionView],
    *,
    fee_rate: float,
    fee_in_base: bool | None,
) -> tuple[Balance | None, float, bool]:
    """What ``lay_over`` does with one fill to its base balance (``balance``, None:
    none) and its symbol's position (``positions``, changed in place): (the base balance
    after it, what it moves the quote by, whether its balances part is laid at all).
    The same steps in the same order as ``lay_over``, for a base other than the quote."""
    plan = order.plan
    moved, laid = 0.0, False
    if not order.balances_shown:
        held = balance if balance is not None else _ZERO
        moved, laid = laid_quote_delta(order, fee_rate), True
        if plan.side is Side.BUY and order.unknown:
            balance = Balance(held.free, held.total, (held.value or 0.0) + plan.notional)
        elif plan.side is Side.BUY:
            got = plan.quantity * (1 - fee_rate)
            if fee_in_base is False:
                got = plan.quantity
            balance = Balance(
                held.free + got, held.total + got, (held.value or 0.0) + got * plan.reference_price
            )
        else:
            left_free = max(0.0, held.free - plan.quantity)
            left = max(0.0, held.total - plan.quantity)
            balance = Balance(left_free, left, left * plan.reference_price)
    if not order.positions_shown and not (plan.side is Side.BUY and order.unknown):
        if plan.side is Side.BUY:
            old = positions.get(plan.symbol)
            quantity = plan.quantity + (old.quantity if old else 0.0)
            positions[plan.symbol] = PositionView(
                plan.symbol, quantity, plan.reference_price, quantity * plan.reference_price, 0.0
            )
        else:
            positions.pop(plan.symbol, None)
    return balance, moved, laid


def bases_by_prefix(steps: Sequence[tuple[Side, float]], amount: float) -> list[float]:
    """For each prefix of a symbol's orders (index: its length), the base held after
    all of them when the balances (``amount``) show that prefix: each order after it
    applied, a SELL taking its ``quantity`` (never below 0), a BUY bringing it (the
    base it brings, its fee out). ``steps``: (side, quantity) of each order. Each
    maps a base x to max(floor, x + shift), and so does any run of them: folded from
    the last order back, once, not replayed per prefix."""
    floor, shift = -math.inf, 0.0
    bases = [amount]
    for side, quantity in reversed(steps):
        if side is Side.SELL:
            if shift > floor:
                floor = shift
            shift -= quantity
        else:
            shift += quantity
        base = amount + shift
        bases.append(base if base > floor else floor)
    bases.reverse()
    return bases
