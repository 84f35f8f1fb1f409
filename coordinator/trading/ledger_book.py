"""The Ledger's book: the Portfolio's view, our orders in flight and our fills, merged.

No I/O and no clock of its own: the actor passes the time in. Each order of ours goes
through ``OrderState``: RESERVED (its room is held, its outcome unknown: it may even
have filled already) -> FILLED (settled filled, or unknown and counted as filled: laid
over the view) -> gone, once the Portfolio shows it or once its time is up.

How a fetched view is matched with our orders, so that each counts exactly once
whatever the order of answers: ``ledger_matching``. A FILLED order's unshown parts are
laid over the view; a RESERVED order's room is held (its quote for a BUY, its symbol for
a SELL) until its balances part is shown. What each message changes is kept by base
asset (``ledger_groups``), so that its cost does not grow with the book.
"""

from __future__ import annotations

import logging
import math
import secrets
from copy import copy as shallow_copy
from dataclasses import dataclass, field
from operator import attrgetter

from coordinator.trading.evolve import evolve
from coordinator.trading.ledger_evidence import expected_amounts
from coordinator.trading.ledger_groups import Group, Overlay, merged
from coordinator.trading.ledger_matching import by_symbol, mark_shown
from coordinator.trading.ledger_orders import BookOrder, OrderState, SettleResult
from coordinator.trading.ledger_overlay import lay_over
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
_NUMBER = attrgetter("number")
_TRUST_RECHECK = 1.0  # seconds until a fill kept past its window is looked at again


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
    cash_margin: float = 0.0
    """Quote held back until the next fetched view: what our orders, as that view was
    matched, may count beyond the exchange's cash (round trips it may show already,
    laid again; orders it may not show yet, taken as shown: ``mark_shown``)."""
    base_margin: dict[str, float] = field(default_factory=dict)
    """Base asset -> held back from what SELLs may sell until the next fetched view:
    what SELLs of ours taken as shown by a view that may not show them yet may count
    beyond the exchange's holdings. Replaced whole, never changed in place."""
    view: PortfolioView = field(init=False)
    last_id: int = 0
    never_executed: dict[str, float] = field(default_factory=dict)
    """Signal ids of orders found never executed that the book did not count (yet): a
    new process's restore, reading the store before that, must not lay them. When each
    was told."""
    _groups: dict[str, Group] = field(init=False, repr=False, default_factory=dict)
    _owner: object = field(init=False, repr=False, default_factory=object)
    _reserved: dict[str, BookOrder] = field(init=False, repr=False, default_factory=dict)
    """The RESERVED orders, in reservation order."""
    _buying: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    """Symbol -> its BUYs RESERVED, or unknown and not shown (positive counts only)."""
    _overlay: Overlay = field(init=False, repr=False)
    _filled: int = field(init=False, repr=False, default=0)
    _closings: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        self.view = self.fetched
        self._overlay = Overlay()

    @property
    def orders(self) -> dict[str, BookOrder]:
        """Every order of the book, in reservation order (a copy)."""
        every = sorted(
            (o for g in self._groups.values() for o in g.orders.values()), key=lambda o: o.number
        )
        return {o.reservation_id: o for o in every}

    @property
    def closed(self) -> list[ClosedHolding]:
        """The holdings our SELLs closed within the settle window, as closed."""
        entries = sorted(e for g in self._groups.values() for e in g.closed.values())
        return [holding for _, holding in entries]

    def closed_for(self, symbol: str) -> tuple[ClosedHolding, ...]:
        """``closed``, of ``symbol`` only."""
        group = self._groups.get(split_symbol(symbol)[0])
        if group is None or not group.closed:
            return ()
        entries = sorted(e for e in group.closed.values() if e[1].symbol == symbol)
        return tuple(holding for _, holding in entries)

    # --- reservations -----------------------------------------------------------------

    def held_quote(self) -> float:
        """Quote held by BUYs in flight that no view shows yet, and what the last
        fetched view's matching may count beyond the exchange's cash (``cash_margin``)."""
        return self.cash_margin + sum(
            o.plan.notional * (1 + self.fee_rate)
            for o in self._reserved.values()
            if o.plan.side is Side.BUY and not o.balances_shown
        )

    def buying(self) -> frozenset[str]:
        """Symbols with a BUY in flight, or an order unknown whose position is not shown
        yet: a BUY lays no position but may have opened one, a SELL hides its position
        but may have left it held. No BUY on it either way (see ``_unsure``)."""
        return frozenset(self._buying)

    def selling(self) -> frozenset[str]:
        return frozenset(o.plan.symbol for o in self._reserved.values() if o.plan.side is Side.SELL)

    def reserve(self, plan: OrderPlan, *, owner: str, now: float, signal_id: str = "") -> BookOrder:
        base, _ = split_symbol(plan.symbol)
        group = self._own(base)
        position = self.view.positions.get(plan.symbol)
        amounts = expected_amounts(
            plan,
            laid=self.view.balances.get(base, _ZERO).total,
            unlaid=group.unlaid.get(plan.symbol, 0.0),
            laid_buys=group.laid_buys.get(plan.symbol, 0.0),
            selling=group.unlaid_sells.get(plan.symbol, 0.0),
            held=position.quantity if position is not None else 0.0,
            fee=0.0 if self.fee_in_base is False else self.fee_rate,
        )
        order = BookOrder(
            reservation_id=f"{self.prefix}-{self.last_id + 1}",
            plan=plan,
            owner=owner,
            reserved_at=now,
            expires_at=now + self.lifetime,
            state=OrderState.RESERVED,
            **amounts,
            entry_before=None if position is None else position.entry_price,
            signal_id=signal_id,
            number=self.last_id + 1,
            base_offsets=group.offsets.get(plan.symbol, ()),
        )
        self.last_id += 1
        group.admit(plan.symbol, self.fetched)
        group.put(order)
        self._reserved[order.reservation_id] = order
        if plan.side is Side.BUY:
            self._count_buying(plan.symbol, 1)
        self._apply(group)
        return order

    def snapshot(self) -> LedgerBook:
        """A copy sharing nothing mutable with this book: what a Ledger keeps for its
        next incarnation after each complete change (a crash in the middle of one
        leaves the copy of the change before). Views and orders are never changed in
        place; groups are shared and copied by whichever book changes one first."""
        copy = shallow_copy(self)
        copy.never_executed = dict(self.never_executed)
        copy._groups, copy._owner = dict(self._groups), object()
        copy._reserved, copy._buying = dict(self._reserved), dict(self._buying)
        copy._overlay = self._overlay.copy()
        self._owner = object()  # every group is shared now
        return copy

    def adopt(
        self,
        plan: OrderPlan,
        *,
        at: float,
        unknown: bool,
        signal_id: str,
        positions_shown: bool = False,
    ) -> BookOrder:
        """An order of ours made before this book (by an earlier process), laid over the
        view as a fill of this book until the view shows it; a BUY spends its cash only
        (the view may show it already: spent twice for a while is the cautious side).
        ``positions_shown``: the view's position shows it, its balances part alone is
        laid (a BUY's coins too: it filled; a SELL's cash not: see ``ledger_restore``)."""
        reserved = self.reserve(plan, owner="store", now=at, signal_id=signal_id)
        del self._reserved[reserved.reservation_id]
        order = evolve(
            reserved,
            state=OrderState.FILLED,
            unknown=unknown or (plan.side is Side.BUY and not positions_shown),
            expires_at=at + self.settle_window,
            filled_at=at,
        )
        if positions_shown:
            # The position after it is the view's; the holding a SELL closed is not the
            # one the view shows (none recorded closed).
            order = evolve(
                order,
                positions_shown=True,
                proceeds_counted=False,
                held_after=reserved.held_before,
                entry_before=None,
            )
        if plan.side is Side.BUY:
            self._count_buying(plan.symbol, -1)  # counted again while unknown and unshown
        self._filled_one(order, at)
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
        order = self._reserved.get(reservation_id)
        if order is None:
            return SettleResult.UNKNOWN_ID, None
        if order.plan.symbol != symbol or order.plan.side is not side:
            return SettleResult.WRONG_PLAN, order
        del self._reserved[reservation_id]
        if order.plan.side is Side.BUY:
            self._count_buying(order.plan.symbol, -1)
        if filled is False:
            group = self._own(split_symbol(order.plan.symbol)[0])
            group.remove(reservation_id)
            self._apply(group)
            return SettleResult.SETTLED, order
        order = evolve(
            order,
            state=OrderState.FILLED,
            unknown=filled is None,
            filled_before=self.last_id if filled else order.filled_before,
            expires_at=now + self.settle_window,
            filled_at=now,
        )
        self._filled_one(order, now)
        return SettleResult.SETTLED, order

    def _filled_one(self, order: BookOrder, now: float) -> None:
        """``order`` became FILLED: recorded, laid over the view (dropped if shown)."""
        plan = order.plan
        group = self._own(split_symbol(plan.symbol)[0])
        if _unsure(order):
            self._count_buying(plan.symbol, 1)
        group.put(order)
        self._record_closed(order, now)
        if order.shown_whole:
            # Shown by both parts already (marked while reserved): nothing to lay.
            group.remove(order.reservation_id)
        else:
            self._filled += 1
            group.fills += 1
            if (order.reserved_at, order.number) > group.last_key:
                group.step(order, fee_rate=self.fee_rate, fee_in_base=self.fee_in_base)
            else:
                self._fold(group)
        self._apply(group)
        self._refresh_view(group)

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
        base = split_symbol(symbol)[0]
        found = self._groups.get(base)
        candidates = sorted(found.orders.values(), key=lambda o: o.number) if found else []
        for order in candidates:
            key = order.reservation_id
            if (
                order.state is OrderState.FILLED
                and order.signal_id == signal_id
                and order.plan.symbol == symbol
                and order.plan.side is side
            ):
                group = self._own(base)
                group.remove(key)
                group.closed.pop(key)
                self._filled -= 1
                if _unsure(order):
                    self._count_buying(symbol, -1)
                self._fold(group)
                self._apply(group)
                self._refresh_view(group)
                return order
        # Rare (a reconciliation's verdict): the whole book is looked through.
        if not any(
            o.signal_id == signal_id for g in self._groups.values() for o in g.orders.values()
        ):
            self.never_executed[signal_id] = now
        return None

    def expire(self, now: float) -> tuple[list[BookOrder], list[BookOrder]]:
        """(reservations released, fills trusted to the view) whose time is up."""
        released: list[BookOrder] = []
        trusted: list[BookOrder] = []
        changed: list[Group] = []
        seen = -math.inf if self.fetched_requested_at is None else self.fetched_requested_at
        for base in self._overlay.due(now):
            group = self._own(base)
            changed.append(group)
            refold = False
            for order in group.due_orders(now):
                if order.state is OrderState.RESERVED:
                    released.append(order)
                    del self._reserved[order.reservation_id]
                    if order.plan.side is Side.BUY:
                        self._count_buying(order.plan.symbol, -1)
                elif order.filled_at is not None and seen <= order.filled_at:
                    # No view fetched since it filled could show it (the Portfolio out
                    # of reach): trusting the older one would bring back what we sold
                    # (a second SELL, refused) or spent. Laid on until a newer one.
                    group.put(evolve(order, expires_at=now + _TRUST_RECHECK))
                else:
                    trusted.append(order)
                    refold = True
                    self._filled -= 1
                    plan = order.plan
                    if _unsure(order):
                        self._count_buying(plan.symbol, -1)
            group.forget_closed(now)
            if refold:
                self._fold(group)
            self._apply(group)
        for signal_id, at in list(self.never_executed.items()):
            if now - at >= self.settle_window:
                del self.never_executed[signal_id]
        if released or trusted:
            released.sort(key=lambda o: o.number)
            trusted.sort(key=lambda o: o.number)
            self._refresh_view(*changed)
        return released, trusted

    # --- views ------------------------------------------------------------------------

    def fetched_view(self, view: PortfolioView, requested_at: float) -> bool:
        """Take a fetched view; False when an answer to an older request came late.
        The one message whose work grows with the book: every order is matched again."""
        if self.fetched_requested_at is not None and requested_at < self.fetched_requested_at:
            return False
        previous = self.fetched
        self.fetched = view
        self.fetched_requested_at = requested_at
        sequences = by_symbol(o for g in self._groups.values() for o in g.orders.values())
        held = mark_shown(
            sequences,
            view,
            previous,
            quote=self.quote,
            fee_rate=self.fee_rate,
            fee_in_base=self.fee_in_base,
        )
        self.cash_margin, self.base_margin = held.quote, held.bases
        self._rebuild(sequences, view.fetched_at or requested_at)
        return True

    def _rebuild(self, sequences: dict[str, list[BookOrder]], at: float) -> None:
        """After a fetched view: every group from its marked orders, folded again."""
        every = sorted((o for s in sequences.values() for o in s), key=_NUMBER)
        groups = {base: g.copy(self._owner) for base, g in self._groups.items()}
        self._groups = groups
        kept: dict[str, list[BookOrder]] = {base: [] for base in groups}
        self._reserved, self._buying, self._filled = {}, {}, 0
        self._overlay = Overlay()
        for order in every:
            plan = order.plan
            if order.positions_shown:
                self._record_closed(order, at)
            if order.state is OrderState.RESERVED:
                self._reserved[order.reservation_id] = order
                if plan.side is Side.BUY:
                    self._count_buying(plan.symbol, 1)
            elif order.shown_whole:
                continue  # nothing left to lay
            elif _unsure(order):
                self._count_buying(plan.symbol, 1)
            kept[split_symbol(plan.symbol)[0]].append(order)
        for base, group in list(groups.items()):
            group.lay_orders(kept[base])
            self._fold(group)
            self._filled += group.fills
            self._apply(group)
        self.view = self.fetched
        self._refresh_view(*groups.values())

    def _record_closed(self, order: BookOrder, now: float) -> None:
        """A SELL of ours filled, or shown by the Portfolio: its holding is closed, and
        no exit for that holding may sell another one."""
        if order.plan.side is not Side.SELL or order.entry_before is None:
            return
        group = self._own(split_symbol(order.plan.symbol)[0])
        if order.reservation_id in group.closed:
            return
        holding = ClosedHolding(
            order.plan.symbol, order.entry_before, order.held_before, now, order.reservation_id
        )
        group.close(self._closings, holding)
        self._closings += 1

    # --- the merged view, group by group ------------------------------------------------

    def _own(self, base: str) -> Group:
        """``base``'s group, this book's to change (copied if shared, made if none)."""
        group = self._groups.get(base)
        if group is None:
            group = Group(base, self._owner, self.settle_window)
            self._fold(group)
            self._groups[base] = group
        elif group.owner is not self._owner:
            group = self._groups[base] = group.copy(self._owner)
        return group

    def _fold(self, group: Group) -> None:
        group.fold(self.fetched, fee_rate=self.fee_rate, fee_in_base=self.fee_in_base)

    def _count_buying(self, symbol: str, change: int) -> None:
        count = self._buying.get(symbol, 0) + change
        if count > 0:
            self._buying[symbol] = count
        else:
            self._buying.pop(symbol, None)

    def _apply(self, group: Group) -> None:
        """Take note of ``group``'s quote move and next expiry (gone once empty)."""
        if group.empty():
            del self._groups[group.base]
        self._overlay.apply(group)

    def _refresh_view(self, *changed: Group) -> None:
        """The view with ``changed`` groups' fills laid over the fetched view again (the
        other groups' are laid in it already)."""
        if not self._filled:
            self.view = self.fetched
        elif self.quote in self._groups:
            # Orders of a pair whose base is the quote asset (never in practice): their
            # steps interleave with the quote's, so the whole book is laid in order.
            self.view = self._merged()
        else:
            cash = self._overlay.quote(self.fetched, self.quote)
            self.view = merged(self.view, self.fetched, changed, self.quote, cash)

    def _merged(self) -> PortfolioView:
        """Every FILLED order's unshown parts laid over the fetched view, all at once."""
        ordered = sorted(self.orders.values(), key=lambda o: o.reserved_at)
        fills = [o for o in ordered if o.state is OrderState.FILLED]
        if not fills:
            return self.fetched
        quote, fee_rate, fee_in_base = self.quote, self.fee_rate, self.fee_in_base
        return lay_over(
            self.fetched, fills, quote=quote, fee_rate=fee_rate, fee_in_base=fee_in_base
        )

    def reservation_count(self) -> int:
        return len(self._reserved)

    def reserved_notional(self) -> float:
        return sum(o.plan.notional for o in self._reserved.values() if o.plan.side is Side.BUY)


def _unsure(order: BookOrder) -> bool:
    """A FILLED order whose outcome is unknown and whose position the view does not
    show: whether it left its symbol held is not known. A BUY on top of a holding an
    unknown SELL hides would be reserved on a view without it, and the book's
    expectations after it would not match the Portfolio (its stop's exits refused for
    a base that seems gone, for the whole settle window)."""
    return order.unknown and not order.positions_shown
