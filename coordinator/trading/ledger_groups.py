"""The Ledger's book by base asset: each group holds the orders of its symbols, the
holdings our SELLs closed, and what its fills lay over the fetched view, so that a
message costs the work of one group, not of the whole book.

A group's amounts (its base balance, its symbols' positions, what it moves the quote
by) are the fold of ``ledger_overlay``'s steps over its FILLED orders in reservation
order, from the fetched view: a fill settled after every other of its group is one more
step; anything else folds the group again. Groups are shared between a book and its
snapshots, and copied by whichever changes one first (``Group.owner``); a group's
orders and closed holdings are in ``Parts``, so that a copy costs their containers'
parts, not their orders, which never change in place.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from coordinator.trading.ledger_matching import IN_TIME
from coordinator.trading.ledger_orders import BookOrder, OrderState
from coordinator.trading.ledger_overlay import lay_step
from coordinator.trading.signals import Side
from coordinator.trading.validation import Balance, ClosedHolding, PortfolioView, PositionView

__all__ = ["Group", "Overlay", "Parts", "merged"]

_NEVER = float("inf")
_ZERO = Balance(0.0, 0.0, 0.0)
_V = TypeVar("_V")


_PARTS = 64
_EMPTY: dict[str, Any] = {}


class Parts(Generic[_V]):
    """A mapping split in parts by the key's hash, each part copied only when changed
    after a copy of the whole: a copy costs the parts' count, a change one part's size.
    Each part keeps a time no earlier than its values' earliest (``due_of``), so that
    what is due is looked for in the parts that may hold some."""

    __slots__ = ("_due_of", "_mine", "_parts", "_size", "mins")

    def __init__(self, due_of: Callable[[_V], float]) -> None:
        self._due_of = due_of
        # One empty part shared by all until changed (never changed in place: not mine).
        self._parts: list[dict[str, _V]] = [_EMPTY] * _PARTS
        self._mine: set[int] = set()
        self._size = 0
        self.mins = [_NEVER] * _PARTS

    @staticmethod
    def of(due_of: Callable[[_V], float], items: list[tuple[str, _V]]) -> Parts[_V]:
        """A new mapping of ``items``, put in at once."""
        parts: Parts[_V] = Parts(due_of)
        all_parts, mins = parts._parts, parts.mins
        for key, value in items:
            index = hash(key) % _PARTS
            part = all_parts[index]
            if part is _EMPTY:
                part = all_parts[index] = {}
                parts._mine.add(index)
            part[key] = value
            due = due_of(value)
            if due < mins[index]:
                mins[index] = due
        parts._size = sum(map(len, all_parts))
        return parts

    def copy(self) -> Parts[_V]:
        copy: Parts[_V] = Parts.__new__(Parts)
        copy._due_of, copy._parts, copy._mine = self._due_of, list(self._parts), set()
        copy._size, copy.mins = self._size, list(self.mins)
        self._mine = set()  # every part is shared now
        return copy

    def _own(self, index: int) -> dict[str, _V]:
        if index not in self._mine:
            self._parts[index] = dict(self._parts[index])
            self._mine.add(index)
        return self._parts[index]

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: str) -> bool:
        return key in self._parts[hash(key) % _PARTS]

    def get(self, key: str) -> _V | None:
        return self._parts[hash(key) % _PARTS].get(key)

    def __setitem__(self, key: str, value: _V) -> None:
        index = hash(key) % _PARTS
        part = self._own(index)
        self._size += key not in part
        part[key] = value
        self.mins[index] = min(self.mins[index], self._due_of(value))

    def pop(self, key: str) -> _V | None:
        index = hash(key) % _PARTS
        if key not in self._parts[index]:
            return None
        self._size -= 1
        return self._own(index).pop(key)

    def values(self) -> Iterator[_V]:
        # Chained in C: taking a fetched view goes through every order of every group.
        return itertools.chain.from_iterable(map(dict.values, self._parts))

    def take_due(self, until: float, is_due: Callable[[_V], bool]) -> list[_V]:
        """Take out the values ``is_due`` from the parts that may hold one by ``until``."""
        taken: list[_V] = []
        for index in range(_PARTS):
            if self.mins[index] > until:
                continue
            part = self._own(index)
            for key in [k for k, v in part.items() if is_due(v)]:
                taken.append(part.pop(key))
            self.mins[index] = min(map(self._due_of, part.values()), default=_NEVER)
        self._size -= len(taken)
        return taken


def _expiry(order: BookOrder) -> float:
    return order.expires_at


@dataclass(slots=True, eq=False)
class Group:
    base: str
    owner: object
    """The book that may change it in place; any other copies it first."""
    settle_window: float
    orders: Parts[BookOrder] = field(default_factory=lambda: Parts(_expiry))
    """Every order of the group's symbols."""
    closed: Parts[tuple[int, ClosedHolding]] = field(init=False)
    """Reservation id -> (its place among the book's closings, the holding closed)."""
    symbols: set[str] = field(default_factory=set)
    """Every symbol it laid a position of (their positions are its to set)."""
    fills: int = 0
    """FILLED orders (the fold's length)."""
    last_key: tuple[float, int] = (-_NEVER, 0)
    """(reserved_at, number) of the last order folded: a fill after it is one step."""
    balance: Balance | None = None
    """The base balance after the fold (None: none)."""
    positions: dict[str, PositionView] = field(default_factory=dict)
    """The positions of ``symbols`` after the fold (absent: none)."""
    moved: float = 0.0
    """What the fold moves the quote by."""
    laid_quote: bool = False
    """Whether any fill's balances part is laid (the quote is then the view's own)."""
    unlaid: dict[str, float] = field(default_factory=dict)
    """Symbol -> the quantity of its BUYs whose coins are not laid (still reserved, or
    unknown) and that no view's balances show: an order reserved after them expects
    them shown first (``LedgerBook.reserve``)."""
    unlaid_sells: dict[str, float] = field(default_factory=dict)
    """Symbol -> the quantity of its SELLs still reserved (not laid) that no view's
    balances show: an order reserved after them expects their coins gone first."""
    laid_buys: dict[str, float] = field(default_factory=dict)
    """Symbol -> the quantity of its BUYs whose coins are laid and that no view's
    balances show: laid less the fee unless the fee is known to be in the quote, so an
    order reserved after them expects the fee's coins too when it is
    (``LedgerBook.reserve``)."""
    offsets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Symbol -> its newest order's ``base_offsets`` (none: absent), which an order
    reserved next inherits: its expectations have the same anchor."""

    def __post_init__(self) -> None:
        window = self.settle_window
        self.closed = Parts(lambda entry: entry[1].at + window)

    def copy(self, owner: object) -> Group:
        copy = Group(self.base, owner, self.settle_window, orders=self.orders.copy())
        copy.closed = self.closed.copy()
        copy.symbols, copy.positions = set(self.symbols), dict(self.positions)
        copy.fills, copy.last_key, copy.balance = self.fills, self.last_key, self.balance
        copy.moved, copy.laid_quote = self.moved, self.laid_quote
        copy.unlaid, copy.offsets = dict(self.unlaid), dict(self.offsets)
        copy.laid_buys, copy.unlaid_sells = dict(self.laid_buys), dict(self.unlaid_sells)
        return copy

    def empty(self) -> bool:
        return not self.orders and not self.closed

    def next_due(self) -> float:
        """When something of the group's may expire (an order, a closed holding)."""
        return min(min(self.orders.mins), min(self.closed.mins))

    def lay_orders(self, orders: list[BookOrder]) -> None:
        """Its orders, all of them at once (a fetched view lays every order again)."""
        self.orders = Parts.of(_expiry, [(o.reservation_id, o) for o in orders])
        self.unlaid, self.laid_buys, self.unlaid_sells = {}, {}, {}
        offsets: dict[str, tuple[float, ...]] = {}
        for order in orders:  # in reservation order: the newest order's offsets are kept
            self._count_unshown(order, 1.0)
            offsets[order.plan.symbol] = order.base_offsets
        self.offsets = {symbol: kept for symbol, kept in offsets.items() if kept}

    def put(self, order: BookOrder) -> None:
        """Add or replace ``order``."""
        before = self.orders.get(order.reservation_id)
        if before is not None:
            self._count_unshown(before, -1.0)
        self.orders[order.reservation_id] = order
        self._count_unshown(order, 1.0)
        if order.base_offsets:
            self.offsets[order.plan.symbol] = order.base_offsets

    def remove(self, reservation_id: str) -> BookOrder | None:
        order = self.orders.pop(reservation_id)
        if order is not None:
            self._count_unshown(order, -1.0)
        return order

    def _count_unshown(self, order: BookOrder, sign: float) -> None:
        """Count ``order`` in ``unlaid`` or in ``laid_buys`` (a BUY its balances do not
        show), or in ``unlaid_sells``; or take it out (``sign`` -1)."""
        if order.balances_shown:
            return
        if order.plan.side is Side.SELL:
            if order.state is not OrderState.RESERVED:
                return
            counts = self.unlaid_sells
        else:
            counts = self.laid_buys if order.coins_laid else self.unlaid
        symbol = order.plan.symbol
        left = counts.get(symbol, 0.0) + sign * order.plan.quantity
        if left > 1e-12:
            counts[symbol] = left
        else:
            counts.pop(symbol, None)

    def close(self, seq: int, holding: ClosedHolding) -> None:
        self.closed[holding.reservation_id] = (seq, holding)

    def due_orders(self, now: float) -> list[BookOrder]:
        """Take out the orders whose time is up at ``now``."""
        taken = self.orders.take_due(now, lambda order: now >= order.expires_at)
        for order in taken:
            self._count_unshown(order, -1.0)
        return taken

    def forget_closed(self, now: float) -> None:
        """Forget the holdings closed ``settle_window`` ago or more."""
        window = self.settle_window
        # at + window may round past now when now - at >= window
        self.closed.take_due(now + _slack(now), lambda entry: now - entry[1].at >= window)

    def admit(self, symbol: str, fetched: PortfolioView) -> None:
        """A symbol whose orders join the group: its position starts as fetched."""
        if symbol in self.symbols:
            return
        self.symbols.add(symbol)
        position = fetched.positions.get(symbol)
        if position is not None:
            self.positions[symbol] = position

    # --- the fold -----------------------------------------------------------------------

    def fold(self, fetched: PortfolioView, *, fee_rate: float, fee_in_base: bool | None) -> None:
        """The group's amounts from ``fetched`` and all its fills, again."""
        self.balance = fetched.balances.get(self.base)
        self.symbols.update(o.plan.symbol for o in self.orders.values())
        self.positions = {s: fetched.positions[s] for s in self.symbols if s in fetched.positions}
        self.moved, self.laid_quote = 0.0, False
        self.last_key = (-_NEVER, 0)
        fills = sorted(
            (o for o in self.orders.values() if o.state is OrderState.FILLED),
            key=IN_TIME,
        )
        self.fills = len(fills)
        if fills:
            self._fold_fills(fills, fee_rate, fee_in_base)

    def _fold_fills(
        self, fills: list[BookOrder], fee_rate: float, fee_in_base: bool | None
    ) -> None:
        """``step`` for each of ``fills`` in turn, the same arithmetic in the same order
        (so the same floats), on local numbers: taking a fetched view folds every group
        again, and building a balance per fill was a third of it."""
        balance = self.balance
        laid = balance is not None
        free, total = (balance.free, balance.total) if balance is not None else (0.0, 0.0)
        value = balance.value if balance is not None else 0.0
        moved, laid_quote = self.moved, self.laid_quote
        positions = self.positions
        buy, sell = Side.BUY, Side.SELL
        got_all = fee_in_base is False
        for order in fills:
            plan = order.plan
            side = plan.side
            if not order.balances_shown:
                laid = laid_quote = True
                if side is buy:
                    moved += -plan.notional * (1 + fee_rate)
                    if order.unknown:
                        value = (value or 0.0) + plan.notional
                    else:
                        got = plan.quantity if got_all else plan.quantity * (1 - fee_rate)
                        free, total = free + got, total + got
                        value = (value or 0.0) + got * plan.reference_price
                else:
                    if order.proceeds_counted:
                        moved += plan.notional * (1 - fee_rate)
                    free = max(0.0, free - plan.quantity)
                    total = max(0.0, total - plan.quantity)
                    value = total * plan.reference_price
            if not order.positions_shown and not (side is buy and order.unknown):
                symbol = plan.symbol
                if side is sell:
                    positions.pop(symbol, None)
                else:
                    old = positions.get(symbol)
                    quantity = plan.quantity + (old.quantity if old else 0.0)
                    price = plan.reference_price
                    positions[symbol] = PositionView(symbol, quantity, price, quantity * price, 0.0)
        if laid:
            self.balance = Balance(free, total, value)
        self.moved, self.laid_quote = moved, laid_quote
        last = fills[-1]
        self.last_key = (last.reserved_at, last.number)

    def step(self, order: BookOrder, *, fee_rate: float, fee_in_base: bool | None) -> None:
        """One more fill, after every one folded (its symbol admitted)."""
        balance, moved, laid = lay_step(
            order,
            self.balance,
            self.positions,
            fee_rate=fee_rate,
            fee_in_base=fee_in_base,
        )
        self.balance = balance
        if laid:
            self.moved += moved
            self.laid_quote = True
        self.last_key = (order.reserved_at, order.number)


class Overlay:
    """Beside the groups, what the book keeps of each: what it moves the quote by, and
    when it has something to expire next. Shared with a copy until changed."""

    __slots__ = ("_shared", "due_at", "due_heap", "moved")

    def __init__(self) -> None:
        self.moved: dict[str, float] = {}
        """Base -> what its group's laid balances parts move the quote by."""
        self.due_at: dict[str, float] = {}
        """Base -> when something of its group may expire."""
        self.due_heap: list[tuple[float, str]] = []
        """(due_at, base), stale entries included."""
        self._shared = False

    def copy(self) -> Overlay:
        copy = Overlay()
        copy.moved, copy.due_at, copy.due_heap = self.moved, self.due_at, self.due_heap
        copy._shared = self._shared = True
        return copy

    def _own(self) -> None:
        if self._shared:
            self.moved, self.due_at = dict(self.moved), dict(self.due_at)
            self.due_heap, self._shared = list(self.due_heap), False

    def apply(self, group: Group) -> None:
        """Take ``group``'s quote move and next expiry (none, once it is empty)."""
        base = group.base
        moved = group.moved if group.laid_quote and not group.empty() else None
        due = None if group.empty() else group.next_due()
        if self.moved.get(base) != moved or (base in self.moved and moved is None):
            self._own()
            _put(self.moved, base, moved)
        if self.due_at.get(base) != due:
            self._own()
            _put(self.due_at, base, due)
            if due is not None:
                heapq.heappush(self.due_heap, (due, base))
            if len(self.due_heap) > 4 * len(self.due_at) + 64:
                self.due_heap = [(at, b) for b, at in self.due_at.items()]
                heapq.heapify(self.due_heap)

    def due(self, now: float) -> list[str]:
        """The bases whose groups may have something to expire at ``now`` (taken out
        of line: ``apply`` puts each back)."""
        bases = []
        slack = _slack(now)  # a closed holding's at + window may round up
        if self.due_heap and self.due_heap[0][0] <= now + slack:
            self._own()
        while self.due_heap and self.due_heap[0][0] <= now + slack:
            at, base = heapq.heappop(self.due_heap)
            if self.due_at.get(base) == at:
                del self.due_at[base]
                bases.append(base)
        return bases

    def quote(self, fetched: PortfolioView, quote: str) -> Balance | None:
        """The quote balance of the merged view."""
        cash = fetched.balances.get(quote)
        if not self.moved:
            return cash
        moved = sum(self.moved.values())
        cash = cash or _ZERO
        return Balance(cash.free + moved, cash.total + moved, (cash.value or 0.0) + moved)


def merged(
    view: PortfolioView,
    fetched: PortfolioView,
    groups: tuple[Group, ...],
    quote: str,
    cash: Balance | None,
) -> PortfolioView:
    """``view`` (the fetched view with every group put in) with ``groups`` put in again
    (the fetched amounts back for an empty one) and ``cash`` as the ``quote`` balance."""
    balances, positions = dict(view.balances), dict(view.positions)
    for group in groups:
        if group.empty():
            _put(balances, group.base, fetched.balances.get(group.base))
            for symbol in group.symbols:
                _put(positions, symbol, fetched.positions.get(symbol))
        else:
            _put(balances, group.base, group.balance)
            for symbol in group.symbols:
                _put(positions, symbol, group.positions.get(symbol))
    _put(balances, quote, cash)
    return replace(fetched, balances=balances, positions=positions)


def _put(mapping: dict[str, _V], key: str, value: _V | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def _slack(now: float) -> float:
    """How far ``at + window`` may round past ``now`` when ``now - at >= window``."""
    return 4 * math.ulp(max(1.0, abs(now)))
