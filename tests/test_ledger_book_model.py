"""Model-based test of the Ledger's book against an exchange and a lagging Portfolio.

The model keeps the exchange's truth (balances, positions, the log of its fills) and a
Portfolio that shows a prefix of that log, its positions and its balances each at their
own pace and never going back. Reserves (BUY, SELL signals, stop exits for current or
past holdings), executions, settlements (filled, refused, unknown, duplicated, late,
with ids of another book, naming another plan), fetches (answered late, out of order,
failing) and time passing come in any order; after every step the invariants hold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.trading.ledger_book import LedgerBook, OrderState, SettleResult
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.signals import Side, Signal, parse_signal
from coordinator.trading.sizing import SizingTable
from coordinator.trading.sizing_roottrading import SizingMode
from coordinator.trading.validation import (
    Balance,
    Evaluation,
    ExitTarget,
    LedgerState,
    MarketQuote,
    PortfolioView,
    PositionView,
    RiskConfig,
)
from tests.pipeline import signal_payload

QUOTE = "USDC"
SYMBOLS = ("AAAUSDC", "BBBUSDC")
PRICES = {"AAAUSDC": (10.0, 12.5, 8.0), "BBBUSDC": (2.0, 2.5, 1.6)}
LIFETIME = 20.0
FEE = 0.01
"""Taken in the quote asset, as the book knows."""
START = 1_800_000_000.0
CONFIG = RiskConfig(
    quote_asset=QUOTE,
    max_concurrent_trades=10,
    min_notional=1.0,
    max_exposure_percent=100.0,
    max_orders_per_minute=10_000,
    daily_loss_limit_percent=100.0,
    max_drawdown_percent=100.0,
    stop_loss_cooldown=0.0,
    require_market_data=False,
    max_price_deviation_percent=100.0,
    market_data_max_age=1e9,
    portfolio_max_age=1e9,
    portfolio_max_age_exit=1e9,
    sizing=SizingTable((1.0, 1.5, 2.2), (12.0, 18.0, 22.0, 28.0)),
    sizing_mode=SizingMode.TABLE,
    fee_rate=FEE,
    quantity_decimals=3,
)
EPS = 1e-6


@dataclass
class Holding:
    key: str
    quantity: float
    entry: float
    opened: float | None = None
    """When the Portfolio shows it opened (None: it shows no time)."""


def shown_position(
    symbol: str, quantity: float, entry: float, opened: float | None
) -> PositionView:
    """A position as the Portfolio shows it, opened at ``opened`` (None: no time)."""
    return PositionView(
        symbol,
        quantity,
        entry,
        quantity * entry,
        0.0,
        opened_at=() if opened is None else (opened,),
    )


@dataclass
class State:
    """The exchange's books after some prefix of its fills."""

    quote: float
    bases: dict[str, float]
    holdings: dict[str, Holding]

    def after(self, fill: Fill) -> State:
        base = fill.symbol[:3]
        bases = dict(self.bases)
        holdings = dict(self.holdings)
        if fill.side is Side.BUY:
            quote = self.quote - fill.quantity * fill.price * (1 + FEE)
            bases[base] = bases.get(base, 0.0) + fill.quantity
            holdings[fill.symbol] = Holding(fill.key, fill.quantity, fill.price)
        else:
            quote = self.quote + fill.quantity * fill.price * (1 - FEE)
            bases[base] = bases.get(base, 0.0) - fill.quantity
            holdings.pop(fill.symbol, None)
        return State(quote, bases, holdings)

    def view(self, positions: State, at: float) -> PortfolioView:
        """A Portfolio answer: balances from this state, positions from ``positions``."""
        balances = {QUOTE: Balance(self.quote, self.quote, self.quote)}
        for base, amount in self.bases.items():
            if amount > 1e-12:
                balances[base] = Balance(amount, amount, None)
        return PortfolioView(
            balances=balances,
            positions={
                symbol: shown_position(symbol, h.quantity, h.entry, h.opened)
                for symbol, h in positions.holdings.items()
            },
            fetched_at=at,
        )


@dataclass(frozen=True)
class Fill:
    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    key: str


@dataclass
class Order:
    reservation_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    reserved_at: float
    executed: bool = False
    settled: bool = False
    dead: bool = False
    """Refused at the exchange, or its reservation expired: never executes."""
    unknown: bool = False
    """Settled unknown."""


@dataclass
class Fetch:
    requested_at: float


@dataclass
class Model:
    states: list[State] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    positions_index: int = 0
    balances_index: int = 0
    shown_positions: int = 0
    """The prefix of the log the book's latest view shows (positions, balances)."""
    shown_balances: int = 0


def make_signal(symbol: str, side: str, price: float, n: int) -> Signal:
    payload = signal_payload(
        symbol, side, price=price, timestamp_ms=int(START * 1000), consensus_id=f"c{n}"
    )
    parsed = parse_signal(payload)
    assert isinstance(parsed, Signal)
    return parsed


def evaluate_on(
    book: LedgerBook,
    symbol: str,
    side: str,
    price: float,
    n: int,
    now: float,
    exit: ExitTarget | None,
) -> Evaluation:
    """A signal (or a stop's exit) evaluated on the book as the Ledger does it, the
    market at ``price``; its outcome recorded as a hypothesis event."""
    evaluation = evaluate_order(
        make_signal(symbol, side, price, n),
        view=book.view,
        ledger=LedgerState(
            reserved_quote=book.held_quote(),
            held_base=book.base_margin,
            buying=book.buying(),
            selling=book.selling(),
            closed=tuple(book.closed),
        ),
        market=MarketQuote(price, now),
        config=CONFIG,
        now=now,
        exit=exit,
    )
    failure = evaluation.failure
    event(f"{side}{' exit' if exit else ''}: {failure.reason if failure else 'accepted'}")
    return evaluation


class LedgerBookMachine(RuleBasedStateMachine):
    @initialize(cash=st.sampled_from([100.0, 1_000.0, 5_000.0]))
    def start(self, cash: float) -> None:
        self.now = START
        self.book = LedgerBook(
            quote=QUOTE, fee_rate=FEE, lifetime=LIFETIME, settle_window=1e6, fee_in_base=False
        )
        self.model = Model(states=[State(cash, {}, {})])
        self.orders: dict[str, Order] = {}
        self.fetches: list[Fetch] = []
        self.price = {s: PRICES[s][0] for s in SYMBOLS}
        self.keys = 0
        self.past_holdings: list[tuple[str, Holding]] = []
        self.signals = 0
        self._answer(Fetch(self.now), 0, 0)

    # --- helpers ----------------------------------------------------------------------

    @property
    def truth(self) -> State:
        return self.model.states[-1]

    def _answer(self, fetch: Fetch, positions: int, balances: int) -> None:
        model = self.model
        top = len(model.fills)
        model.positions_index = min(top, max(model.positions_index, positions))
        model.balances_index = min(top, max(model.balances_index, balances))
        view = model.states[model.balances_index].view(
            model.states[model.positions_index], self.now
        )
        if self.book.fetched_view(view, fetch.requested_at):
            model.shown_positions = model.positions_index
            model.shown_balances = model.balances_index

    def _in_flight(self) -> list[Order]:
        return [o for o in self.orders.values() if not o.settled and not o.dead]

    def _reserve(self, symbol: str, side: str, exit: ExitTarget | None) -> None:
        self.book.expire(self.now)
        self.signals += 1
        price = self.price[symbol]
        evaluation = evaluate_on(self.book, symbol, side, price, self.signals, self.now, exit)
        plan = evaluation.plan
        if plan is None:
            return
        truth = self.truth
        if plan.side is Side.BUY:
            # BUYs never spend money already spent or reserved.
            unexecuted = sum(
                o.quantity * o.price * (1 + FEE)
                for o in self._in_flight()
                if o.side is Side.BUY and not o.executed
            )
            needed = plan.notional * (1 + FEE)
            assert needed <= truth.quote - unexecuted + EPS, (plan, truth.quote, unexecuted)
        else:
            holding = truth.holdings.get(symbol)
            base = truth.bases.get(symbol[:3], 0.0)
            # A sell never exceeds what is held.
            assert holding is not None, f"SELL of {symbol} with nothing held"
            assert plan.quantity <= min(holding.quantity, base) + EPS
            if exit is not None:
                # A stop never sells a holding other than its own.
                assert exit.position_key == holding.key, (exit, holding)
        order = self.book.reserve(plan, owner="validator-0#1", now=self.now)
        self.orders[order.reservation_id] = Order(
            order.reservation_id, symbol, plan.side, plan.quantity, plan.reference_price, self.now
        )

    # --- rules ------------------------------------------------------------------------

    @rule(symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(["BUY", "SELL"]))
    def signal(self, symbol: str, side: str) -> None:
        self._reserve(symbol, side, None)

    @rule(symbol=st.sampled_from(SYMBOLS), past=st.booleans(), data=st.data())
    def stop_exit(self, symbol: str, past: bool, data: st.DataObject) -> None:
        """A stop's exit for the holding the latest view shows, or for an earlier one."""
        if past:
            earlier = [h for s, h in self.past_holdings if s == symbol]
            if not earlier:
                return
            holding = data.draw(st.sampled_from(earlier))
        else:
            shown = self.model.states[self.model.shown_positions].holdings.get(symbol)
            if shown is None:
                return
            holding = shown
        target = ExitTarget(
            position_key=holding.key,
            entry_price=holding.entry,
            quantity=holding.quantity,
            stop=holding.entry * 0.95,
            price=self.price[symbol],
            price_at=self.now,
        )
        self._reserve(symbol, "SELL", target)

    @precondition(lambda self: bool(self.past_holdings))
    @rule(data=st.data())
    def stale_stop_exit(self, data: st.DataObject) -> None:
        """A stop's exit for a holding our SELL closed (its stop did not hear of it)."""
        symbol, holding = data.draw(st.sampled_from(self.past_holdings))
        target = ExitTarget(
            position_key=holding.key,
            entry_price=holding.entry,
            quantity=holding.quantity,
            stop=holding.entry * 0.95,
            price=self.price[symbol],
            price_at=self.now,
        )
        self._reserve(symbol, "SELL", target)

    @rule(symbol=st.sampled_from(SYMBOLS), index=st.integers(0, 2))
    def move_price(self, symbol: str, index: int) -> None:
        self.price[symbol] = PRICES[symbol][index]

    @precondition(lambda self: any(not o.executed for o in self._in_flight()))
    @rule(data=st.data())
    def execute(self, data: st.DataObject) -> None:
        """The exchange fills an order on its way (its answer has not come yet)."""
        order = data.draw(st.sampled_from([o for o in self._in_flight() if not o.executed]))
        self._execute(order)

    def _execute(self, order: Order) -> None:
        order.executed = True
        truth = self.truth
        quantity = order.quantity
        key = ""
        if order.side is Side.BUY:
            self.keys += 1
            key = f"H{self.keys}"
        else:
            holding = truth.holdings[order.symbol]
            self.past_holdings.append((order.symbol, holding))
        fill = Fill(order.reservation_id, order.symbol, order.side, quantity, order.price, key)
        self.model.fills.append(fill)
        self.model.states.append(truth.after(fill))

    @precondition(lambda self: bool(self._in_flight()))
    @rule(data=st.data(), outcome=st.sampled_from(["filled", "refused", "unknown"]))
    def settle(self, data: st.DataObject, outcome: str) -> None:
        order = data.draw(st.sampled_from(self._in_flight()))
        if outcome == "filled" and not order.executed:
            self._execute(order)
        if outcome == "refused" and order.executed:
            outcome = "filled"  # what filled is not refused
        if outcome == "unknown" and not order.executed:
            self._execute(order)  # the order did go: its answer was lost
        filled = {"filled": True, "refused": False, "unknown": None}[outcome]
        result, _ = self.book.settle(
            order.reservation_id, filled, symbol=order.symbol, side=order.side, now=self.now
        )
        assert result is SettleResult.SETTLED
        order.settled = True
        order.unknown = filled is None
        if filled is False:
            order.dead = True

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data(), kind=st.sampled_from(["again", "other_book", "other_plan"]))
    def bad_settle(self, data: st.DataObject, kind: str) -> None:
        """Settlements that must change nothing: a duplicate, an id of an earlier book,
        an id naming another plan."""
        order = data.draw(st.sampled_from(list(self.orders.values())))
        before = dataclasses.replace(self.book.view)
        reservation_id = order.reservation_id
        side, symbol = order.side, order.symbol
        if kind == "again" and not order.settled:
            return
        if kind == "other_book":
            reservation_id = "0ther000-" + reservation_id.split("-")[1]
        if kind == "other_plan":
            side = Side.SELL if side is Side.BUY else Side.BUY
        result, _ = self.book.settle(
            reservation_id, data.draw(st.sampled_from([True, False, None])), symbol=symbol,
            side=side, now=self.now,
        )  # fmt: skip
        assert result is not SettleResult.SETTLED
        assert self.book.view == before

    @rule()
    def request_fetch(self) -> None:
        self.fetches.append(Fetch(self.now))

    @precondition(lambda self: bool(self.fetches))
    @rule(
        data=st.data(),
        positions=st.integers(0, 3),
        balances=st.integers(0, 3),
        fails=st.booleans(),
    )
    def answer_fetch(self, data: st.DataObject, positions: int, balances: int, fails: bool) -> None:
        """Any pending fetch answers (late ones after newer ones), the Portfolio having
        caught up by some fills in positions and in balances, or the fetch fails."""
        fetch = data.draw(st.sampled_from(self.fetches))
        self.fetches.remove(fetch)
        if fails:
            return
        self._answer(
            fetch,
            self.model.positions_index + positions,
            self.model.balances_index + balances,
        )

    @rule(seconds=st.sampled_from([0.5, 2.0, 7.0, 25.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for order in self._in_flight():
            if order.executed and order.reserved_at + LIFETIME <= self.now:
                # The lifetime is longer than the Trader's timeouts: an order that left
                # has its answer (or its timeout, unknown) before it.
                result, _ = self.book.settle(
                    order.reservation_id, None, symbol=order.symbol, side=order.side, now=self.now
                )
                assert result is SettleResult.SETTLED
                order.settled = True
                order.unknown = True
        released, trusted = self.book.expire(self.now)
        assert not trusted
        for order in released:
            mine = self.orders[order.reservation_id]
            # An expired reservation's order never leaves afterwards (its lifetime is
            # longer than the Trader's timeouts); one that did fill is the Portfolio's.
            mine.dead = True

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def one_sell_in_flight_per_symbol(self) -> None:
        selling = [
            o.plan.symbol
            for o in self.book.orders.values()
            if o.state is OrderState.RESERVED and o.plan.side is Side.SELL
        ]
        assert len(selling) == len(set(selling))

    @invariant()
    def no_reservation_outlives_its_lifetime(self) -> None:
        for order in self.book.orders.values():
            if order.state is OrderState.RESERVED:
                assert order.expires_at - order.reserved_at == LIFETIME
                assert order.reserved_at + LIFETIME > self.now or order.expires_at <= self.now

    @invariant()
    def every_fill_and_reservation_counts_once(self) -> None:
        """The book's view is the exchange's truth less the fills nobody has told it of
        yet (executed, not settled, not shown by the latest view)."""
        model = self.model
        settled = {o.reservation_id for o in self.orders.values() if o.settled}
        unknown_buys = {
            o.reservation_id
            for o in self.orders.values()
            if o.settled and o.unknown and o.side is Side.BUY
        }

        def expected(shown: int) -> State:
            state = model.states[0]
            for index, fill in enumerate(model.fills):
                if index < shown or fill.order_id not in unknown_buys:
                    if index < shown or fill.order_id in settled:
                        state = state.after(fill)
                else:
                    # An unknown BUY spends its cash, but its coins count only once
                    # the Portfolio shows them.
                    after = state.after(fill)
                    state = dataclasses.replace(after, bases=state.bases, holdings=state.holdings)
            return state

        balances = expected(model.shown_balances)
        positions = expected(model.shown_positions)
        view = self.book.view
        assert abs(view.balances[QUOTE].free - balances.quote) < EPS, (
            view.balances[QUOTE],
            balances.quote,
        )
        for symbol in SYMBOLS:
            base = symbol[:3]
            got = view.balances.get(base, Balance(0.0, 0.0, 0.0)).total
            assert abs(got - balances.bases.get(base, 0.0)) < EPS, (symbol, got, balances)
            shown = view.positions.get(symbol)
            holding = positions.holdings.get(symbol)
            if shown is not None and holding is None and symbol in self.book.selling():
                # A closed position the view shows while our SELL of it is unsettled,
                # when the Portfolio's positions alone cannot tell "sold" from "not yet
                # bought": held until the SELL settles (no other sell can start).
                continue
            assert (shown is None) == (holding is None), (symbol, shown, holding)
            if shown is not None and holding is not None:
                assert abs(shown.quantity - holding.quantity) < EPS

    @invariant()
    def buys_never_spend_money_spent_or_reserved(self) -> None:
        unexecuted = sum(
            o.quantity * o.price for o in self._in_flight() if o.side is Side.BUY and not o.executed
        )
        spendable = self.book.view.balances[QUOTE].free - self.book.held_quote()
        assert spendable <= self.truth.quote - unexecuted + EPS


TestLedgerBookModel = LedgerBookMachine.TestCase
TestLedgerBookModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
