"""The Ledger's book kept by base asset (``ledger_groups``) against the plain fold of
every order over the fetched view: the model of tests/test_ledger_book_model.py driven
again, with the view the book keeps, a snapshot taken now and then, and the counts of
what is in flight checked after every step against what the whole book says."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from coordinator.trading.ledger_book import BookOrder, LedgerBook, OrderState
from coordinator.trading.ledger_groups import Group
from coordinator.trading.signals import Side
from coordinator.trading.validation import Balance, OrderPlan, PortfolioView, PositionView
from tests.test_ledger_book_model import LedgerBookMachine


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


class GroupedBookMachine(LedgerBookMachine):
    @rule()
    def snapshot_taken(self) -> None:
        """The Ledger keeps a snapshot after every change and a new incarnation goes on
        from one: the groups both share are copied by whichever changes one first."""
        kept = self.book.snapshot()
        before = self.book.view
        self.book = kept.snapshot()
        assert self.book.view == before

    @invariant()
    def the_view_is_the_fold_of_every_fill_over_the_fetched_view(self) -> None:
        book = self.book
        whole = book._merged()
        view = book.view
        assert set(view.balances) == set(whole.balances)
        assert set(view.positions) == set(whole.positions)
        for asset, balance in whole.balances.items():
            mine = view.balances[asset]
            assert _close(mine.free, balance.free), (asset, mine, balance)
            assert _close(mine.total, balance.total), (asset, mine, balance)
            assert _close(mine.value, balance.value), (asset, mine, balance)
        for symbol, position in whole.positions.items():
            assert view.positions[symbol] == position

    @invariant()
    def what_is_in_flight_is_counted_from_the_orders(self) -> None:
        orders = list(self.book.orders.values())
        reserved = [o for o in orders if o.state is OrderState.RESERVED]
        assert self.book.reservation_count() == len(reserved)
        assert self.book.buying() == frozenset(
            o.plan.symbol
            for o in orders
            if (o.plan.side is Side.BUY and o.state is OrderState.RESERVED)
            or (o.state is OrderState.FILLED and o.unknown and not o.positions_shown)
        )
        assert self.book.selling() == frozenset(
            o.plan.symbol for o in reserved if o.plan.side is Side.SELL
        )
        for symbol in {c.symbol for c in self.book.closed}:
            assert self.book.closed_for(symbol) == tuple(
                c for c in self.book.closed if c.symbol == symbol
            )


TestGroupedBook = GroupedBookMachine.TestCase
TestGroupedBook.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


SYMBOLS = ("AAAUSDC", "BBBUSDC", "AAABTC", "USDCBTC")
"""Two pairs of one base (one group), and a pair whose base is the quote asset."""


class BookFuzz(RuleBasedStateMachine):
    """Any order of the book's operations, with views that need not be true: the view
    the book keeps is the fold of every fill over the fetched view, whatever happened."""

    @initialize(fee_in_base=st.sampled_from([None, False]))
    def start(self, fee_in_base: bool | None) -> None:
        self.now = 1_800_000_000.0
        self.book = LedgerBook(
            quote="USDC", fee_rate=0.001, lifetime=20.0, settle_window=30.0, fee_in_base=fee_in_base
        )
        self.ids: list[tuple[str, str, Side, str]] = []

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(list(Side)),
        quantity=st.sampled_from([1.0, 2.5, 10.0]),
        adopt=st.booleans(),
        unknown=st.booleans(),
        past=st.sampled_from([0.0, 5.0, 25.0]),
    )
    def order(
        self, symbol: str, side: Side, quantity: float, adopt: bool, unknown: bool, past: float
    ) -> None:
        plan = OrderPlan(symbol, side, quantity, 3.0, quantity * 3.0, None)
        signal_id = f"s{len(self.ids)}"
        if adopt:
            made = self.book.adopt(plan, at=self.now - past, unknown=unknown, signal_id=signal_id)
        else:
            made = self.book.reserve(plan, owner="v", now=self.now, signal_id=signal_id)
        self.ids.append((made.reservation_id, symbol, side, signal_id))

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data(), filled=st.sampled_from([True, False, None]))
    def settle(self, data: st.DataObject, filled: bool | None) -> None:
        key, symbol, side, _ = data.draw(st.sampled_from(self.ids))
        self.book.settle(key, filled, symbol=symbol, side=side, now=self.now)

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data())
    def not_executed(self, data: st.DataObject) -> None:
        _, symbol, side, signal_id = data.draw(st.sampled_from(self.ids))
        self.book.not_executed(signal_id, symbol=symbol, side=side, now=self.now)

    @rule(
        amounts=st.dictionaries(
            st.sampled_from(["USDC", "AAA", "BBB"]), st.sampled_from([0.0, 1.0, 2.5, 100.0])
        ),
        held=st.dictionaries(st.sampled_from(SYMBOLS), st.sampled_from([1.0, 2.5, 10.0])),
        late=st.booleans(),
    )
    def fetched(self, amounts: dict[str, float], held: dict[str, float], late: bool) -> None:
        view = PortfolioView(
            balances={a: Balance(q, q, None if a == "BBB" else q) for a, q in amounts.items()},
            positions={s: PositionView(s, q, 3.0, 3.0 * q, 0.0) for s, q in held.items()},
            fetched_at=self.now,
        )
        self.book.fetched_view(view, self.now - (10.0 if late else 0.0))

    @rule(seconds=st.sampled_from([0.5, 7.0, 15.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.book.expire(self.now)

    @rule()
    def snapshot_taken(self) -> None:
        kept = self.book.snapshot()
        self.book = kept.snapshot() if len(self.ids) % 2 else kept

    @invariant()
    def the_view_is_the_fold_of_every_fill(self) -> None:
        GroupedBookMachine.the_view_is_the_fold_of_every_fill_over_the_fetched_view(self)  # type: ignore[arg-type]

    @invariant()
    def in_flight(self) -> None:
        GroupedBookMachine.what_is_in_flight_is_counted_from_the_orders(self)  # type: ignore[arg-type]


TestBookFuzz = BookFuzz.TestCase
TestBookFuzz.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


_SYMBOLS = ("APTUSDC", "APTBTC")
_fills = st.lists(
    st.builds(
        lambda n, symbol, side, quantity, price, unknown, shown: BookOrder(
            reservation_id=f"r-{n}",
            plan=OrderPlan(symbol, side, quantity, price, quantity * price, None),
            owner="o",
            reserved_at=float(n),
            expires_at=float(n) + 180.0,
            state=OrderState.FILLED,
            base_before=0.0,
            base_after=0.0,
            held_before=0.0,
            held_after=0.0,
            positions_shown=shown[0],
            balances_shown=shown[1],
            number=n,
            unknown=unknown,
        ),
        st.integers(1, 10**6),
        st.sampled_from(_SYMBOLS),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.floats(0.001, 1e6),
        st.floats(0.0001, 1e5),
        st.booleans(),
        st.tuples(st.booleans(), st.booleans()),
    ),
    max_size=30,
    unique_by=lambda o: o.number,
)
_balances = st.none() | st.builds(
    Balance, st.floats(0.0, 1e6), st.floats(0.0, 1e6), st.none() | st.floats(0.0, 1e9)
)


@settings(max_examples=300, deadline=None)
@given(
    fills=_fills,
    balance=_balances,
    held=st.dictionaries(st.sampled_from(_SYMBOLS), st.floats(0.0, 1e6), max_size=2),
    fee_rate=st.sampled_from([0.0, 0.001, 0.00075]),
    fee_in_base=st.sampled_from([None, False, True]),
)
def test_a_group_folded_at_once_is_the_same_as_fill_by_fill(
    fills: list[BookOrder],
    balance: Balance | None,
    held: dict[str, float],
    fee_rate: float,
    fee_in_base: bool | None,
) -> None:
    """Taking a view folds each group on local numbers (``Group._fold_fills``): the
    very same floats as one ``step`` per fill, which the book's other changes take."""
    positions = {s: PositionView(s, q, 3.0, q * 3.0, 0.0) for s, q in held.items()}
    fetched = PortfolioView(
        balances={} if balance is None else {"APT": balance},
        positions=positions,
        fetched_at=1.0,
    )
    at_once = Group("APT", object(), 180.0)
    by_step = Group("APT", object(), 180.0)
    for order in fills:
        at_once.put(order)
    at_once.fold(fetched, fee_rate=fee_rate, fee_in_base=fee_in_base)
    by_step.symbols.update(at_once.symbols)
    by_step.balance = fetched.balances.get("APT")
    by_step.positions = {s: p for s, p in positions.items() if s in by_step.symbols}
    for order in sorted(fills, key=lambda o: (o.reserved_at, o.number)):
        by_step.step(order, fee_rate=fee_rate, fee_in_base=fee_in_base)
    assert at_once.balance == by_step.balance
    assert at_once.positions == by_step.positions
    assert (at_once.moved, at_once.laid_quote) == (by_step.moved, by_step.laid_quote)
    assert at_once.last_key == by_step.last_key
    assert at_once.fills == len(fills)
