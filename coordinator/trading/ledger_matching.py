"""Which of our orders a fetched view shows: the Ledger's book marks, symbol by symbol,
the prefix of its orders whose positions part and whose balances part the view shows.
Pure; the lists of orders are changed in place (a marked order is replaced by its
marked record). So that each order counts exactly once whatever the order of answers:

- Time does not tell: a fetch requested before an order was sent may be read by the
  Portfolio after the order filled, and a Portfolio may lag any length of time. The
  amounts do.
- The Portfolio answers ``/positions/active`` and ``/balances`` separately, and either
  may lag the other (RootTrading caches balances for up to a minute), so each order has
  two parts, its position part and its balances part, each shown or not.
- Per symbol our orders form a sequence (one position per symbol: BUY opens, SELL
  closes), and a view shows a prefix of it, never shorter than one shown before (the
  Portfolio does not go back in time; an answer to an older request arriving after a
  newer one is not taken). Each order knows the base amount and the position expected
  after it; a view shows a prefix whose expectation it matches: the position's quantity
  to 0.01 %, the base amount within a quarter of the smallest order's quantity (a fee
  may be taken from it). A view matching none of them (a trade made elsewhere) is taken
  as it is: the Portfolio is the truth, our guesses are not.
- The balances parts of one symbol that two prefixes match equally (a BUY and its SELL
  both unshown, the base back where it was) are told apart by the order of our orders
  across symbols: the balances are one snapshot, so one showing an order of another
  symbol shows every order that had filled (settled filled) before that one was
  reserved. Else by the quote amount: the prefix whose quote moved from the previous
  view's by what it would have moved. Never by the positions: they lag the balances,
  or lead them, by any time. The quote is only as exact as what moved it: a BUY whose
  fee may be taken in the base moves it by its notional or by that and the fee, and a
  fill's price is not the price it was sized at. Prefixes whose moves the quote cannot
  tell apart within that keep the least base (the shortest among equals): a SELL sized
  on more base than is held is refused by the exchange, and a round trip (a holding
  sold and bought again for about the same cash) shows a base that both "neither
  shown" and "both shown" expect. What the orders left unshown count in the quote
  differs between such prefixes by their round trips' gains: the most the kept one
  counts beyond the least is held back from what BUYs may spend (a gain counted twice
  is cash the exchange does not hold). So is, for a view taken as the truth (its base
  matching none of our prefixes), the most our orders it may not show yet would spend.
  As for the positions, a BUY and its SELL both unshown make the same view: none held
  either way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter

from coordinator.trading.evolve import evolve
from coordinator.trading.ledger_evidence import (
    evidence,
    first_taken_as_truth,
    lacking,
    settle_anchor,
)
from coordinator.trading.ledger_orders import Assumption, BookOrder, OrderState
from coordinator.trading.ledger_overlay import bases_by_prefix, laid_quote_delta, quote_delta
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol
from coordinator.trading.validation import Balance, PortfolioView

__all__ = ["IN_TIME", "HeldBack", "by_symbol", "mark_shown"]

_ZERO = Balance(0.0, 0.0, 0.0)
IN_TIME = attrgetter("reserved_at", "number")
"""An order's place in time: when reserved, then its number (a sort key computed in C)."""
_MAX_COMBINATIONS = 4096
"""Ambiguous prefixes resolved together at most; past it, the quote is not looked at."""
_PRICE_NOISE = 0.005
"""How far a fill's price may be from the one it was sized at (a market order filled a
moment after its sizing), as a share of the notional: quote moves closer than this to
the best explanation are not told apart by the quote."""

Ambiguous = tuple[list["BookOrder"], list[int], int]


@dataclass(frozen=True, slots=True)
class HeldBack:
    """What a fetched view's matching may count beyond the exchange's holdings, held
    back until the next view."""

    quote: float = 0.0
    """From what BUYs may spend."""
    bases: dict[str, float] = field(default_factory=dict)
    """Base asset -> held back from what SELLs may sell (a SELL taken as shown by a
    view that may not show it yet)."""


def by_symbol(orders: Iterable[BookOrder]) -> dict[str, list[BookOrder]]:
    """Each symbol's orders in reservation order (by time, then by number)."""
    sequences: dict[str, list[BookOrder]] = {}
    for order in orders:
        sequences.setdefault(order.plan.symbol, []).append(order)
    for sequence in sequences.values():
        sequence.sort(key=IN_TIME)
    return sequences


def mark_shown(
    sequences: dict[str, list[BookOrder]],
    view: PortfolioView,
    previous: PortfolioView,
    *,
    quote: str,
    fee_rate: float,
    fee_in_base: bool | None,
) -> HeldBack:
    """Mark in ``sequences`` (each symbol's orders in reservation order) the parts that
    ``view`` shows, ``previous`` being the view fetched before it. ``fee_in_base``: as
    the book's (False: a BUY's fee is known to be taken in the quote). Returns what to
    hold back: the quote that the orders laid may count beyond the exchange's cash
    (see ``_cash_counted``), and the base that orders taken as shown may count beyond
    its holdings (``_confirm_assumed``)."""
    quote_now = view.balances.get(quote, _ZERO).total
    margin = 0.0
    # The quote moves by the balances parts newly shown: what tells apart the
    # prefixes that the base amount alone cannot.
    moved = _Move(0.0, 0.0, 0.0)
    ambiguous: list[Ambiguous] = []
    positions: list[tuple[list[BookOrder], list[int]]] = []
    # The newest reservation the balances show by a match of its own symbol's base.
    newest_shown = 0
    # A prefix kept as the least base by an earlier view is matched again: the
    # Portfolio never goes back, but a guess may have gone too far. The quote then
    # cannot tell what moved it since that view.
    guessed = False
    for symbol in sorted(sequences):
        visible = sequences[symbol]
        guessed = _unmark_guesses(visible) or guessed
        held, options, matched, anchor = evidence(symbol, visible, view)
        positions.append((visible, held))
        before = sum(1 for o in visible if o.balances_shown)
        if anchor is not None:
            # The view's base fits one anchor only: which of our orders the view taken
            # as the truth showed is known now.
            settle_anchor(visible, anchor)
        # Orders taken as shown by a view taken as the truth may show in this one
        # first (the quote moved by them since) or may have shown before.
        moved = moved + _anywhere(visible, before, fee_rate, fee_in_base)
        if len(options) == 1 and not matched:
            # Taken as the truth, the view may still lack our latest orders (a BUY
            # filled after its snapshot): what they would spend is held back, and the
            # quote may have moved by any prefix of them, not only by all.
            moves = _moves(visible, before, fee_rate, fee_in_base)
            moved = moved + _Move(
                min(m.low for m in moves), max(m.high for m in moves), moves[-1].size
            )
            _mark(visible, "balances_shown", options[0], assumed=Assumption.TAKEN_AS_TRUTH)
            # What the next views are matched from: this view's base, not what our
            # orders expected (a prefix later orders bring the base back to would
            # otherwise pass for one showing them), or that base had it lacked some of
            # the orders it is taken to show (``base_offsets``).
            offsets = lacking(visible, before, fee_rate, fee_in_base)
            for index, order in enumerate(visible[:-1]):
                visible[index] = evolve(order, base_offsets=offsets)
            visible[-1] = evolve(
                visible[-1],
                base_after=view.balances.get(split_symbol(symbol)[0], _ZERO).total,
                fee_share=0.0,
                base_offsets=offsets,
            )
        elif len(options) == 1:
            moved = moved + _moved(visible, before, options[0], fee_rate, fee_in_base)
            if _unproved(visible, before):
                # Matched against expectations a view taken as the truth set, which may
                # lag our orders: no proof either.
                _mark(visible, "balances_shown", options[0], assumed=Assumption.TAKEN_AS_TRUTH)
            else:
                _mark(visible, "balances_shown", options[0])
                newest_shown = max(
                    [newest_shown, *(o.number for o in visible[: options[0]] if o.assumed is None)]
                )
        else:
            ambiguous.append((visible, options, before))
    for index, (visible, options, before) in enumerate(ambiguous):
        # A round trip leaves the base where it was; the quote tells the prefixes
        # apart only as well as the fees and prices are known. Filled before an order
        # the balances show was reserved, an order is shown too.
        least = max(
            (
                i + 1
                for i, o in enumerate(visible)
                if o.filled_before is not None and o.filled_before < newest_shown
            ),
            default=0,
        )
        later = [i for i in options if i >= least]
        if later:
            ambiguous[index] = (visible, later, before)
    for visible, options, before in [a for a in ambiguous if len(a[1]) == 1]:
        moved = moved + _moved(visible, before, options[0], fee_rate, fee_in_base)
        _mark(visible, "balances_shown", options[0])
    ambiguous = [a for a in ambiguous if len(a[1]) > 1]
    if ambiguous:
        amount = [
            view.balances.get(split_symbol(visible[0].plan.symbol)[0], _ZERO).total
            for visible, _, _ in ambiguous
        ]
        plausible: list[dict[int, float]]
        # A symbol whose base fits more than one anchor: the previous view's match of
        # it may have been wrong, and so what the quote moved by since.
        anchored = any(visible[-1].base_offsets for visible, _, _ in ambiguous)
        if previous.fetched_at is None or guessed or anchored:
            plausible = [dict.fromkeys(options, 0.0) for _, options, _ in ambiguous]
        else:
            shift = quote_now - previous.balances.get(quote, _ZERO).total
            plausible = _plausible(ambiguous, shift, moved, fee_rate, fee_in_base)
        for (visible, _, before), distances, base in zip(ambiguous, plausible, amount, strict=True):
            first = min(distances)
            after = _bases_after(visible, first, base, fee_rate, fee_in_base)
            lowest = min(after[p - first] for p in distances)
            lightest = [
                p for p in distances if after[p - first] <= lowest + 1e-9 * max(1.0, lowest)
            ]
            # Among the least bases (to rounding), the quote's best, then the shortest.
            chosen = min(lightest, key=lambda p: (distances[p], p))
            # Every prefix left shows the first ones; the kept one's others, perhaps.
            unproved = Assumption.TAKEN_AS_TRUTH if _unproved(visible, before) else None
            _mark(visible, "balances_shown", first, assumed=unproved)
            _mark(visible, "balances_shown", chosen, assumed=unproved or Assumption.LEAST_BASE)
            # A longer prefix the view may show: the orders between are laid again, the
            # gain of a round trip among them counted twice. Held back, as a BUY's room
            # is. (A shorter one: the orders taken as shown may still spend, or sell;
            # held back while they are assumed, see ``_confirm_assumed``.)
            cash = _cash_counted(visible, first, fee_rate, laid=True)
            margin += cash[chosen - first] - min(cash[p - first] for p in distances if p >= chosen)
    bases: dict[str, float] = {}
    for visible in sequences.values():
        quote_held, base_held = _confirm_assumed(visible, newest_shown, fee_rate, fee_in_base)
        margin += quote_held
        if base_held > 0:
            asset = split_symbol(visible[0].plan.symbol)[0]
            bases[asset] = bases.get(asset, 0.0) + base_held
    for visible, held in positions:
        # Positions the quantities cannot tell apart (a BUY and its SELL: none held)
        # make the same view while our orders are filled; for one still reserved
        # the shortest is the cautious side (a SELL in flight keeps its position).
        _mark(visible, "positions_shown", min(held))
    return HeldBack(margin, bases)


@dataclass(frozen=True, slots=True)
class _Move:
    """What the quote may have moved by: between ``low`` and ``high``; ``size``, the
    notional that moved it (its prices' uncertainty scales with it)."""

    low: float
    high: float
    size: float

    def __add__(self, other: _Move) -> _Move:
        return _Move(self.low + other.low, self.high + other.high, self.size + other.size)


def _plausible(
    ambiguous: list[Ambiguous],
    shift: float,
    moved: _Move,
    fee_rate: float,
    fee_in_base: bool | None,
) -> list[dict[int, float]]:
    """Each ambiguous symbol's prefixes that some combination explaining the quote's
    ``shift`` (``moved`` by the rest) as well as any, within what the fills' prices
    may differ from the sizing's, includes; each with how far the best such
    combination is from ``shift``. Past ``_MAX_COMBINATIONS``: every one, alike."""
    if math.prod(len(options) for _, options, _ in ambiguous) > _MAX_COMBINATIONS:
        return [dict.fromkeys(options, 0.0) for _, options, _ in ambiguous]
    # Each symbol's move for each of its prefixes, once: (prefix, low, high).
    choices: list[list[tuple[int, float, float]]] = []
    size = moved.size
    for visible, options, before in ambiguous:
        moves = _moves(visible, before, fee_rate, fee_in_base)
        choices.append([(p, moves[p - before].low, moves[p - before].high) for p in options])
        # What the prices may have moved: every order any prefix might show counts.
        size += moves[max(options) - before].size
    scored: list[tuple[float, tuple[int, ...]]] = []
    for choice in itertools.product(*choices):
        low = moved.low + sum(c[1] for c in choice)
        high = moved.high + sum(c[2] for c in choice)
        distance = max(0.0, low - shift, shift - high)
        scored.append((distance, tuple(c[0] for c in choice)))
    best = min(distance for distance, _ in scored)
    within = best + _PRICE_NOISE * size + 1e-9
    kept: list[dict[int, float]] = [{} for _ in ambiguous]
    for distance, prefixes in scored:
        if distance <= within:
            for nearest, prefix in zip(kept, prefixes, strict=True):
                nearest[prefix] = min(distance, nearest.get(prefix, math.inf))
    return kept


def _moves(
    visible: list[BookOrder], before: int, fee_rate: float, fee_in_base: bool | None
) -> list[_Move]:
    """What the quote moves by when the balances show ``before``, ``before`` + 1, ...
    of ``visible`` instead of ``before``: one pass."""
    low = high = size = 0.0
    moves = [_Move(0.0, 0.0, 0.0)]
    for order in visible[before:]:
        delta = quote_delta(order.plan, fee_rate)
        size += order.plan.notional
        if order.plan.side is Side.BUY and fee_in_base is not False:
            # The fee may be taken in the base: the quote moves by the notional alone.
            low, high = low + delta, high - order.plan.notional
        else:
            low, high = low + delta, high + delta
        moves.append(_Move(low, high, size))
    return moves


def _anywhere(
    visible: list[BookOrder], before: int, fee_rate: float, fee_in_base: bool | None
) -> _Move:
    """What the quote may have moved by since the previous view by the orders of
    ``visible[:before]`` taken as the truth and not confirmed since: any run of them,
    so between the sum of their falls and the sum of their rises."""
    start = first_taken_as_truth(visible, before)
    if start == before:
        return _Move(0.0, 0.0, 0.0)
    low = high = size = 0.0
    steps = _moves(visible[:before], start, fee_rate, fee_in_base)
    for step, last in itertools.pairwise(steps):
        low += min(0.0, last.low - step.low)
        high += max(0.0, last.high - step.high)
        size += last.size - step.size
    return _Move(low, high, size)


def _moved(
    visible: list[BookOrder], before: int, after: int, fee_rate: float, fee_in_base: bool | None
) -> _Move:
    return _moves(visible[:after], before, fee_rate, fee_in_base)[-1]


def _bases_after(
    visible: list[BookOrder], first: int, amount: float, fee_rate: float, fee_in_base: bool | None
) -> list[float]:
    """For each prefix of ``visible`` from ``first`` orders on (index: its length less
    ``first``), the base held after every order when the balances (``amount``) show
    that prefix: the others applied as ``lay_over`` lays them (an unknown BUY brings
    nothing, nor one still reserved: only a filled one is laid)."""
    return bases_by_prefix(_base_steps(visible[first:], fee_rate, fee_in_base), amount)


def _base_steps(
    orders: list[BookOrder], fee_rate: float, fee_in_base: bool | None
) -> list[tuple[Side, float]]:
    """What each of ``orders`` moves the base by as ``lay_over`` lays it: a SELL its
    quantity, a BUY its coins if laid (``coins_laid``), less the fee unless the fee is
    known to be taken in the quote."""
    kept = 1.0 if fee_in_base is False else 1.0 - fee_rate
    return [
        (Side.BUY, o.plan.quantity * kept if o.coins_laid else 0.0)
        if o.plan.side is Side.BUY
        else (Side.SELL, o.plan.quantity)
        for o in orders
    ]


def _cash_counted(
    visible: list[BookOrder], first: int, fee_rate: float, *, laid: bool
) -> list[float]:
    """For each prefix of ``visible`` from ``first`` orders on (index: its length less
    ``first``), the quote the book counts for the orders after it, now or before the
    next view: a filled one's laid move, a reserved BUY's room held. A reserved SELL
    brings nothing yet; ``laid``: the orders are not marked shown, and it brings its
    proceeds once it settles filled (the match is not made again until the next view),
    so they are counted; else it is marked shown, and never laid."""
    total = 0.0
    counted = [0.0]
    for order in reversed(visible[first:]):
        if laid or order.state is not OrderState.RESERVED or order.plan.side is Side.BUY:
            total += laid_quote_delta(order, fee_rate)
        counted.append(total)
    counted.reverse()
    return counted


def _confirm_assumed(
    visible: list[BookOrder], newest_shown: int, fee_rate: float, fee_in_base: bool | None
) -> tuple[float, float]:
    """Confirm the orders of ``visible`` assumed shown (``Assumption``) that this view
    shows by evidence: filled before an order whose balances part it shows by its own
    base was reserved. Returns what the others may count that the exchange does not
    hold, the quote (what they may still spend) and the base (what those of a view
    taken as the truth may still sell; the others' base matched): the view may show
    any prefix of them, so the most any suffix of them moves each by. Held back while
    they are assumed, not for one view only: the Portfolio may answer the same
    snapshot again (RootTrading caches its balances up to a minute), and a BUY it
    lacks is cash the exchange no longer has, a SELL it lacks coins no longer held."""
    assumed: list[BookOrder] = []
    for index, order in enumerate(visible):
        if order.assumed is None:
            continue
        if order.filled_before is not None and order.filled_before < newest_shown:
            visible[index] = evolve(order, assumed=None)
        else:
            assumed.append(order)
    if not assumed:
        return 0.0, 0.0
    # Those of a least-base guess are left out of the base: it matched, and the least
    # base of the prefixes it matched is counted.
    truths = [o for o in assumed if o.assumed is Assumption.TAKEN_AS_TRUTH]
    base_moved = least_base = 0.0
    for side, amount in reversed(_base_steps(truths, fee_rate, fee_in_base)):
        base_moved += amount if side is Side.BUY else -amount
        least_base = min(least_base, base_moved)
    return -min(_cash_counted(assumed, 0, fee_rate, laid=False)), -least_base


def _unproved(visible: list[BookOrder], before: int) -> bool:
    """Whether any of the first ``before`` orders is taken as shown by a view taken as
    the truth and not proved since."""
    return first_taken_as_truth(visible, before) < before


def _unmark_guesses(visible: list[BookOrder]) -> bool:
    """Unmark the balances parts from the first one marked as the least base on: the
    prefix they make is matched again. Whether there were any."""
    start = next((i for i, o in enumerate(visible) if o.assumed is Assumption.LEAST_BASE), None)
    if start is None:
        return False
    for index in range(start, len(visible)):
        order = visible[index]
        if order.balances_shown:
            visible[index] = evolve(order, balances_shown=False, assumed=None)
    return True


def _mark(
    orders: list[BookOrder], flag: str, prefix: int, *, assumed: Assumption | None = None
) -> None:
    """Mark the first ``prefix`` orders (each replaced by its marked record);
    ``assumed``: the balances parts newly marked are only taken as shown."""
    for index, order in enumerate(orders[:prefix]):
        if flag == "balances_shown" and not order.balances_shown:
            orders[index] = evolve(order, balances_shown=True, assumed=assumed)
        elif flag == "positions_shown" and not order.positions_shown:
            orders[index] = evolve(order, positions_shown=True)
