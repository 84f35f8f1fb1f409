"""What a fetched view's amounts say of one symbol's orders: the prefixes of them its
position and its base may show, each order carrying what it expects (``BookOrder``:
the base and position after it, the base two ways, a BUY's fee taken in the quote or
in the base, and the offsets a view taken as the truth leaves). Pure; see
``ledger_matching`` for how the book marks what they show.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict

from coordinator.trading.ledger_orders import Assumption, BookOrder
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol
from coordinator.trading.validation import Balance, OrderPlan, PortfolioView

__all__ = [
    "ExpectedAmounts",
    "evidence",
    "expected_amounts",
    "first_taken_as_truth",
    "lacking",
    "settle_anchor",
]

_ZERO = Balance(0.0, 0.0, 0.0)


class ExpectedAmounts(TypedDict):
    """What an order expects: the ``BookOrder`` fields of these names."""

    base_before: float
    base_after: float
    fee_share_before: float
    fee_share: float
    held_before: float
    held_after: float


def expected_amounts(
    plan: OrderPlan,
    *,
    laid: float,
    unlaid: float,
    laid_buys: float,
    selling: float,
    held: float,
    fee: float,
) -> ExpectedAmounts:
    """What an order of ``plan`` expects (``BookOrder``'s base_before, base_after,
    fee_share_before, fee_share, held_before, held_after), reserved on a view whose base
    is ``laid`` and position ``held``; ``unlaid``, ``laid_buys``: the quantities of the
    symbol's BUYs not shown whose coins are not laid, and laid (less ``fee``, the fee
    rate unless the fee is known to be taken in the quote); ``selling``, of its SELLs
    still reserved (not laid).

    What the balances show once they show every order of the symbol before this one: a
    BUY still reserved, or unknown, is not laid (its coins are not sure), nor a SELL
    still reserved, but a view showing this order shows them too. Expected two ways,
    each BUY's fee taken in the quote and each taken in the base: a fee in the quote
    leaves the coins the view's BUYs were laid without (a SELL sized on the laid ones
    leaves them), which would add up, order after order, to a base none of our
    prefixes expects."""
    base_before = max(0.0, laid + fee * laid_buys + unlaid - selling)
    net_before = max(0.0, laid + unlaid * (1.0 - fee) - selling)
    if plan.side is Side.BUY:
        base_after = base_before + plan.quantity
        net_after = net_before + plan.quantity * (1.0 - fee)
        held_after = held + plan.quantity
    else:
        base_after = max(0.0, base_before - plan.quantity)
        net_after = max(0.0, net_before - plan.quantity)
        held_after = 0.0  # a SELL closes the symbol's position
    return ExpectedAmounts(
        base_before=base_before,
        base_after=base_after,
        fee_share_before=base_before - net_before,
        fee_share=base_after - net_after,
        held_before=held,
        held_after=held_after,
    )


def evidence(
    symbol: str, visible: list[BookOrder], view: PortfolioView
) -> tuple[list[int], list[int], bool, float | None]:
    """(the prefixes of ``visible`` the view's positions may show, those its
    balances may show, whether the balances matched one at all, the offset of the
    symbol's anchor (``BookOrder.base_offsets``) the balances prove, if they do)."""
    base, _ = split_symbol(symbol)
    tolerance = 0.25 * min(o.plan.quantity for o in visible)
    position = view.positions.get(symbol)
    held = position.quantity if position is not None else 0.0
    amount = view.balances.get(base, _ZERO).total
    shown_p = sum(1 for o in visible if o.positions_shown)
    shown_b = sum(1 for o in visible if o.balances_shown)
    # A position's quantity is the one ordered (a fee in the base asset is taken from
    # the balance, not the position): only rounding differs.
    exact = 1e-4 * max(held, 1e-4)
    # The position and the base amount each prefix expects (the empty one: what the
    # first order was reserved on).
    first = visible[0]
    held_at = [first.held_before, *(o.held_after for o in visible)]
    base_at = [first.base_before, *(o.base_after for o in visible)]
    # Or each BUY's fee taken in the base (the same when it is known in the quote).
    net_at = [
        first.base_before - first.fee_share_before,
        *(o.base_after - o.fee_share for o in visible),
    ]
    positions = [i for i in range(shown_p, len(held_at)) if abs(held_at[i] - held) <= exact]
    # The prefix shown already may end with orders gone from the book (shown whole)
    # while an earlier one stays (assumed, or unknown): what the next order was
    # reserved on is what that prefix expects, not what the earlier one did.
    if shown_p not in positions and _after_shown(visible, shown_p, held, exact):
        positions.insert(0, shown_p)
    balances: set[int] = set()
    fits: set[float] = set()
    # A view showing nothing new at the anchor's own base (``shown_b``, no offset) may
    # be the very snapshot the anchor was taken from, lagging or not: it proves no
    # offset. At an offset's, it shows what the anchor lacked.
    again = False
    for offset in (0.0, *visible[-1].base_offsets):
        found = [
            i
            for i in range(shown_b, len(base_at))
            if min(abs(base_at[i] + offset - amount), abs(net_at[i] + offset - amount)) <= tolerance
        ]
        if found:
            fits.add(offset)
            again = again or (offset == 0.0 and found[0] == shown_b)
            balances.update(found)
    anchor = fits.pop() if len(fits) == 1 and not again and visible[-1].base_offsets else None
    # Prefixes the amounts cannot tell apart (a BUY and its SELL at one price) give
    # the same view: the shortest is kept, so that a later view showing the BUY
    # alone is not taken for one that shows both. Matching none of our expectations
    # (a trade made elsewhere, a manual sell): the Portfolio is the truth.
    options = sorted(balances) or [len(visible)]
    return (positions or [len(visible)]), options, bool(balances), anchor


def _after_shown(visible: list[BookOrder], shown: int, held: float, exact: float) -> bool:
    """Whether ``held`` is, to ``exact``, the position the first order after the prefix
    of ``shown`` orders was reserved on."""
    return 0 < shown < len(visible) and abs(visible[shown].held_before - held) <= exact


def first_taken_as_truth(visible: list[BookOrder], before: int) -> int:
    """The index of the first of ``visible[:before]`` taken as shown by a view taken as
    the truth and not proved since (``before``: none)."""
    return next(
        (i for i, o in enumerate(visible[:before]) if o.assumed is Assumption.TAKEN_AS_TRUTH),
        before,
    )


def lacking(
    visible: list[BookOrder], before: int, fee_rate: float, fee_in_base: bool | None
) -> tuple[float, ...]:
    """What the base may be off a view taken as the truth by, had it lacked some of
    the orders it is taken to show (those from ``before``, and the ones taken as shown
    by an earlier such view and not proved since): what each suffix of them moves the
    base by. A BUY not laid counts its coins too: it may have filled."""
    start = first_taken_as_truth(visible, before)
    kept = 1.0 if fee_in_base is False else 1.0 - fee_rate
    offsets: set[float] = set()
    moved = 0.0
    for order in reversed(visible[start:]):
        quantity = order.plan.quantity
        moved += quantity * kept if order.plan.side is Side.BUY else -quantity
        offsets.add(moved)
    return tuple(sorted(offsets - {0.0}))


def settle_anchor(visible: list[BookOrder], offset: float) -> None:
    """The symbol's anchor is off by ``offset``: every expectation moved by it, the
    other offsets forgotten."""
    for index, order in enumerate(visible):
        visible[index] = replace(
            order,
            base_before=order.base_before + offset,
            base_after=order.base_after + offset,
            base_offsets=(),
        )
