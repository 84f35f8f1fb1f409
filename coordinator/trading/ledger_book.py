"""The Ledger's book: the Portfolio's view, our orders in flight and our fills, merged.

No I/O and no clock of its own: the actor passes the time in. Each order of ours goes
through ``OrderState``: RESERVED (its room is held, its outcome unknown: it may even
have filled already) -> FILLED (settled filled, or unknown and counted as filled: laid
over the view) -> gone, once the Portfolio shows it or once its time is up.

How a fetched view is merged with our orders, so that each counts exactly once
whatever the order of answers:

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
  or lead them, by any time.
  Prefixes nothing tells apart make the same view: the shortest is kept, as for the
  positions (a BUY and its SELL both unshown: none held either way).
- A FILLED order's unshown parts are laid over the view; a RESERVED order's room is
  held (its quote for a BUY, its symbol for a SELL) until its balances part is shown.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum

from coordinator.trading.ledger_overlay import lay_over, quote_delta
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol
from coordinator.trading.validation import (
    Balance,
    ClosedHolding,
    OrderPlan,
    PortfolioView,
)

__all__ = [
    "BookOrder",
    "LedgerBook",
    "OrderState",
    "SettleResult",
]

logger = logging.getLogger(__name__)

_ZERO = Balance(0.0, 0.0, 0.0)
_MAX_COMBINATIONS = 4096
"""Ambiguous prefixes resolved together at most; past it, each keeps its shortest."""


class OrderState(StrEnum):
    RESERVED = "reserved"
    """Room held; the order may be on its way, or even filled, but nobody said so."""
    FILLED = "filled"
    """Filled (or unknown, counted as filled) and laid over the view until shown."""


class SettleResult(StrEnum):
    SETTLED = "settled"
    UNKNOWN_ID = "unknown_id"
    """No reservation of that id: settled already, expired, or from an earlier book."""
    WRONG_PLAN = "wrong_plan"
    """The id names another symbol or side than the settlement says."""


@dataclass(slots=True)
class BookOrder:
    reservation_id: str
    plan: OrderPlan
    owner: str
    """Who reserved it (``validator-3#2``)."""
    reserved_at: float
    expires_at: float
    """A RESERVED order is released at this time; a FILLED one trusted to the view."""
    state: OrderState
    base_before: float
    """The base amount (total) in the book's view when it was reserved."""
    base_after: float
    """The base amount (total) expected once it fills."""
    held_before: float
    """The position quantity in the book's view when it was reserved."""
    held_after: float
    """The position quantity expected once it fills (0: none)."""
    entry_before: float | None = None
    """Entry price of the holding a SELL closes."""
    positions_shown: bool = False
    balances_shown: bool = False
    signal_id: str = ""
    number: int = 0
    """Its place among the book's reservations (1, 2, ...)."""
    filled_before: int | None = None
    """Settled filled when the book had made this many reservations: it filled before
    any reserved after. None: not known filled, or adopted (no order known)."""
    unknown: bool = False
    """Settled unknown: a BUY spends its cash but adds no position or base until shown
    (it may not have filled: a SELL sized on it would sell coins of no position)."""


@dataclass
class LedgerBook:
    quote: str
    fee_rate: float
    lifetime: float
    """Seconds a reservation may stay unsettled."""
    settle_window: float
    """Seconds a fill the Portfolio does not show is laid over its view."""
    fee_in_base: bool | None = None
    """False: the exchange is known to take a BUY's fee in the quote asset. Otherwise a
    BUY laid over the view counts its quantity less the fee (a sell above the balance is
    refused). Never concluded from the balances: a base grown by the whole quantity is
    also a fee taken in the base next to base the book did not count."""
    prefix: str = field(default_factory=lambda: secrets.token_hex(4))
    """Makes reservation ids unique across books (Ledger incarnations)."""
    fetched: PortfolioView = field(
        default_factory=lambda: PortfolioView(balances={}, positions={}, fetched_at=None)
    )
    fetched_requested_at: float | None = None
    orders: dict[str, BookOrder] = field(default_factory=dict)
    closed: list[ClosedHolding] = field(default_factory=list)
    view: PortfolioView = field(init=False)
    last_id: int = 0
    never_executed: dict[str, float] = field(default_factory=dict)
    """Signal ids of orders found never executed that the book did not count (yet): a
    new process's restore, reading the store before that, must not lay them. When each
    was told."""

    def __post_init__(self) -> None:
        self.view = self.fetched

    # --- reservations -----------------------------------------------------------------

    def held_quote(self) -> float:
        """Quote held by BUYs in flight that no view shows yet."""
        return sum(
            o.plan.notional * (1 + self.fee_rate)
            for o in self.orders.values()
            if o.state is OrderState.RESERVED and o.plan.side is Side.BUY and not o.balances_shown
        )

    def buying(self) -> frozenset[str]:
        """Symbols with a BUY in flight, or unknown and not shown yet: it lays no
        position over the view, but may have opened one (no second BUY on it)."""
        return frozenset(
            o.plan.symbol
            for o in self.orders.values()
            if o.plan.side is Side.BUY
            and (o.state is OrderState.RESERVED or (o.unknown and not o.positions_shown))
        )

    def selling(self) -> frozenset[str]:
        return frozenset(
            o.plan.symbol
            for o in self.orders.values()
            if o.state is OrderState.RESERVED and o.plan.side is Side.SELL
        )

    def reserve(self, plan: OrderPlan, *, owner: str, now: float, signal_id: str = "") -> BookOrder:
        base, _ = split_symbol(plan.symbol)
        base_now = self.view.balances.get(base, _ZERO).total
        position = self.view.positions.get(plan.symbol)
        held_now = position.quantity if position is not None else 0.0
        if plan.side is Side.BUY:
            base_after = base_now + plan.quantity
            held_after = held_now + plan.quantity
        else:
            base_after = max(0.0, base_now - plan.quantity)
            held_after = 0.0  # a SELL closes the symbol's position
        order = BookOrder(
            reservation_id=f"{self.prefix}-{self.last_id + 1}",
            plan=plan,
            owner=owner,
            reserved_at=now,
            expires_at=now + self.lifetime,
            state=OrderState.RESERVED,
            base_before=base_now,
            base_after=base_after,
            held_before=held_now,
            held_after=held_after,
            entry_before=None if position is None else position.entry_price,
            signal_id=signal_id,
            number=self.last_id + 1,
        )
        self.last_id += 1
        self.orders[order.reservation_id] = order
        return order

    def snapshot(self) -> LedgerBook:
        """A copy sharing nothing mutable with this book: what a Ledger keeps for its
        next incarnation after each complete change (a crash in the middle of one
        leaves the copy of the change before). Views are never changed in place."""
        copy = replace(self, orders={k: replace(o) for k, o in self.orders.items()})
        copy.closed = list(self.closed)
        copy.view = self.view
        return copy

    def adopt(self, plan: OrderPlan, *, at: float, unknown: bool, signal_id: str) -> BookOrder:
        """An order of ours made before this book (by an earlier process), laid over the
        view as a fill of this book until the view shows it; a BUY spends its cash only
        (the view may show it already: spent twice for a while is the cautious side)."""
        order = self.reserve(plan, owner="store", now=at, signal_id=signal_id)
        order.state = OrderState.FILLED
        order.unknown = unknown or plan.side is Side.BUY
        order.expires_at = at + self.settle_window
        self._record_closed(order, at)
        self.view = self._merged()
        return order

    def settle(
        self,
        reservation_id: str,
        filled: bool | None,
        *,
        symbol: str,
        side: Side,
        now: float,
    ) -> tuple[SettleResult, BookOrder | None]:
        """Filled or unknown (None): counted as filled, the cautious side; False: released."""
        order = self.orders.get(reservation_id)
        if order is None or order.state is not OrderState.RESERVED:
            return SettleResult.UNKNOWN_ID, None
        if order.plan.symbol != symbol or order.plan.side is not side:
            return SettleResult.WRONG_PLAN, order
        if filled is False:
            del self.orders[reservation_id]
        else:
            order.state = OrderState.FILLED
            order.unknown = filled is None
            if filled:
                order.filled_before = self.last_id
            order.expires_at = now + self.settle_window
            self._record_closed(order, now)
            self._drop_shown()
        self.view = self._merged()
        return SettleResult.SETTLED, order

    def not_executed(
        self, signal_id: str, *, symbol: str, side: Side, now: float
    ) -> BookOrder | None:
        """A SELL counted as filled (its answer unknown, or restored from the store)
        that the exchange never executed, as reconciliation or an operator found: no
        longer laid over the view. Laid on, a SELL would hide a held position (its
        exits refused) for the whole settle window. A reserved one is its Validator's
        to settle (a held order sent again keeps its signal id). None counted: it is
        remembered, so that a restore reading the store before this does not lay it."""
        if side is not Side.SELL:
            # A BUY's cash stays spent until the Portfolio shows it or its window ends:
            # the cautious side, if the verdict was wrong or its re-send filled.
            return None
        for key, order in list(self.orders.items()):
            if (
                order.state is OrderState.FILLED
                and order.signal_id == signal_id
                and order.plan.symbol == symbol
                and order.plan.side is side
            ):
                del self.orders[key]
                self.closed = [c for c in self.closed if c.reservation_id != key]
                self.view = self._merged()
                return order
        if not any(o.signal_id == signal_id for o in self.orders.values()):
            self.never_executed[signal_id] = now
        return None

    def expire(self, now: float) -> tuple[list[BookOrder], list[BookOrder]]:
        """(reservations released, fills trusted to the view) whose time is up."""
        released: list[BookOrder] = []
        trusted: list[BookOrder] = []
        for key, order in list(self.orders.items()):
            if now < order.expires_at:
                continue
            del self.orders[key]
            (released if order.state is OrderState.RESERVED else trusted).append(order)
        self.closed = [c for c in self.closed if now - c.at < self.settle_window]
        for signal_id, at in list(self.never_executed.items()):
            if now - at >= self.settle_window:
                del self.never_executed[signal_id]
        if released or trusted:
            self.view = self._merged()
        return released, trusted

    # --- views ------------------------------------------------------------------------

    def fetched_view(self, view: PortfolioView, requested_at: float) -> bool:
        """Take a fetched view; False when an answer to an older request came late."""
        if self.fetched_requested_at is not None and requested_at < self.fetched_requested_at:
            return False
        previous = self.fetched
        self.fetched = view
        self.fetched_requested_at = requested_at
        quote_now = view.balances.get(self.quote, _ZERO).total
        # The quote moves by the balances parts newly shown: what tells apart the
        # prefixes that the base amount alone cannot.
        moved = 0.0
        ambiguous: list[tuple[list[BookOrder], list[int], int]] = []
        positions: list[tuple[list[BookOrder], list[int]]] = []
        # The newest reservation the balances show by a match of its own symbol's base.
        newest_shown = 0
        for symbol in sorted({o.plan.symbol for o in self.orders.values()}):
            visible = self._sequence(symbol)
            held, options, matched = self._evidence(symbol, visible, view)
            positions.append((visible, held))
            before = sum(1 for o in visible if o.balances_shown)
            if len(options) == 1:
                moved += self._moved(visible, before, options[0])
                _mark(visible, "balances_shown", options[0])
                if matched:
                    newest_shown = max([newest_shown, *(o.number for o in visible[: options[0]])])
            else:
                ambiguous.append((visible, options, before))
        for index, (visible, options, before) in enumerate(ambiguous):
            # A round trip leaves the base where it was; the quote tells the prefixes
            # apart only as well as the fees are known (a BUY's fee taken in the base
            # asset moves it by less than counted). Filled before an order the balances
            # show was reserved, an order is shown too.
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
            moved += self._moved(visible, before, options[0])
            _mark(visible, "balances_shown", options[0])
        ambiguous = [a for a in ambiguous if len(a[1]) > 1]
        if ambiguous:
            if previous.fetched_at is None:
                choice = tuple(min(options) for _, options, _ in ambiguous)
            else:
                expected = previous.balances.get(self.quote, _ZERO).total + moved
                choice = self._resolve(ambiguous, quote_now - expected)
            for (visible, _, _), chosen in zip(ambiguous, choice, strict=True):
                _mark(visible, "balances_shown", chosen)
        for visible, held in positions:
            # Positions the quantities cannot tell apart (a BUY and its SELL: none held)
            # make the same view while our orders are filled; for one still reserved
            # the shortest is the cautious side (a SELL in flight keeps its position).
            _mark(visible, "positions_shown", min(held))
        for order in self.orders.values():
            if order.positions_shown:
                self._record_closed(order, view.fetched_at or requested_at)
        self._drop_shown()
        self.view = self._merged()
        return True

    def _record_closed(self, order: BookOrder, now: float) -> None:
        """A SELL of ours filled, or shown by the Portfolio: its holding is closed, and
        no exit for that holding may sell another one."""
        if order.plan.side is not Side.SELL or order.entry_before is None:
            return
        if any(c.reservation_id == order.reservation_id for c in self.closed):
            return
        self.closed.append(
            ClosedHolding(
                order.plan.symbol, order.entry_before, order.held_before, now, order.reservation_id
            )
        )

    def _resolve(
        self, ambiguous: list[tuple[list[BookOrder], list[int], int]], shift: float
    ) -> tuple[int, ...]:
        """The prefixes of the ambiguous symbols, together, whose quote moves add up
        nearest to ``shift`` (what the quote moved that the rest does not explain);
        among equals the shortest."""
        combinations = math.prod(len(options) for _, options, _ in ambiguous)
        if combinations > _MAX_COMBINATIONS:
            return tuple(min(options) for _, options, _ in ambiguous)

        def score(choice: tuple[int, ...]) -> tuple[float, int]:
            total = sum(
                self._moved(visible, before, prefix)
                for (visible, _, before), prefix in zip(ambiguous, choice, strict=True)
            )
            return (round(abs(shift - total), 9), sum(choice))

        return min(itertools.product(*(options for _, options, _ in ambiguous)), key=score)

    def _moved(self, visible: list[BookOrder], before: int, after: int) -> float:
        return sum(self._quote_delta(o) for o in visible[before:after])

    def _sequence(self, symbol: str) -> list[BookOrder]:
        return sorted(
            (o for o in self.orders.values() if o.plan.symbol == symbol),
            key=lambda o: o.reserved_at,
        )

    def _evidence(
        self, symbol: str, visible: list[BookOrder], view: PortfolioView
    ) -> tuple[list[int], list[int], bool]:
        """(the prefixes of ``visible`` the view's positions may show, those its
        balances may show, whether the balances matched one at all)."""
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
        positions = [
            i for i in range(shown_p, len(visible) + 1) if abs(_held(visible, i) - held) <= exact
        ]
        balances = [
            i
            for i in range(shown_b, len(visible) + 1)
            if abs(_base(visible, i) - amount) <= tolerance
        ]
        # Prefixes the amounts cannot tell apart (a BUY and its SELL at one price) give
        # the same view: the shortest is kept, so that a later view showing the BUY
        # alone is not taken for one that shows both. Matching none of our expectations
        # (a trade made elsewhere, a manual sell): the Portfolio is the truth.
        return (positions or [len(visible)]), (balances or [len(visible)]), bool(balances)

    def _quote_delta(self, order: BookOrder) -> float:
        return quote_delta(order.plan, self.fee_rate)

    def _drop_shown(self) -> None:
        for key, order in list(self.orders.items()):
            if order.state is OrderState.FILLED and order.positions_shown and order.balances_shown:
                del self.orders[key]

    def _merged(self) -> PortfolioView:
        """The fetched view with each FILLED order's unshown parts laid over it."""
        view = self.fetched
        fills = sorted(
            (o for o in self.orders.values() if o.state is OrderState.FILLED),
            key=lambda o: o.reserved_at,
        )
        if not fills:
            return view
        return lay_over(
            view, fills, quote=self.quote, fee_rate=self.fee_rate, fee_in_base=self.fee_in_base
        )

    def reservation_count(self) -> int:
        return sum(1 for o in self.orders.values() if o.state is OrderState.RESERVED)

    def reserved_notional(self) -> float:
        return sum(
            o.plan.notional
            for o in self.orders.values()
            if o.state is OrderState.RESERVED and o.plan.side is Side.BUY
        )


def _held(orders: list[BookOrder], prefix: int) -> float:
    """The position expected once ``orders[:prefix]`` filled."""
    return orders[prefix - 1].held_after if prefix else orders[0].held_before


def _base(orders: list[BookOrder], prefix: int) -> float:
    return orders[prefix - 1].base_after if prefix else orders[0].base_before


def _mark(orders: list[BookOrder], flag: str, prefix: int) -> None:
    for order in orders[:prefix]:
        setattr(order, flag, True)
