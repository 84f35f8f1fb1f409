"""The Ledger's fetch throttle over time and its running numbers, without a Ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.trading.ledger_book import BookOrder, LedgerBook, OrderState
from coordinator.trading.ledger_fetching import COST_SHARE, MIN_REFRESH, URGENT_GAP, FetchThrottle
from coordinator.trading.portfolio_numbers import PortfolioNumbers, loss_of, unrealized_loss
from coordinator.trading.signals import Side
from coordinator.trading.validation import Balance, OrderPlan, PortfolioView, PositionView

TTL = 5.0


def test_a_view_is_fetched_when_missing_or_older_than_the_ttl():
    throttle = FetchThrottle(TTL)
    assert throttle.due(100.0, None)
    assert not throttle.due(100.0, 96.0)
    assert throttle.due(101.0, 96.0)


def test_fills_refresh_at_most_once_per_min_refresh():
    throttle = FetchThrottle(TTL)
    assert throttle.start(100.0)
    assert not throttle.finished(100.01)
    throttle.after_fill()
    throttle.after_fill()
    assert not throttle.due(100.0 + MIN_REFRESH / 2, 100.0)
    assert throttle.due(100.0 + MIN_REFRESH, 100.0)
    # One refresh for the fills before it, not one each.
    assert not throttle.due(100.0 + MIN_REFRESH, 100.0)


def test_an_urgent_fetch_too_soon_after_the_last_goes_with_the_refreshes():
    throttle = FetchThrottle(TTL)
    assert throttle.urgent(100.0)
    assert throttle.start(100.0)
    assert not throttle.urgent(100.0 + URGENT_GAP / 2)
    assert throttle.refresh_after_fill
    assert throttle.urgent(100.0 + URGENT_GAP)


def test_a_fetch_asked_for_while_one_runs_starts_when_it_ends():
    throttle = FetchThrottle(TTL)
    assert throttle.start(100.0)
    assert not throttle.start(100.5)
    assert not throttle.start(100.7)
    assert throttle.last_started == 100.0
    assert throttle.finished(100.8)  # once for both
    assert throttle.start(101.0)
    assert not throttle.finished(101.01)


def test_checks_while_a_fetch_runs_do_not_ask_for_another_after_it():
    """Every Reserve and Settle checks whether a fetch is due; while a fetch for a stale
    view runs, the view is still stale, and each check used to queue a second fetch
    of every position straight after it."""
    throttle = FetchThrottle(TTL)
    assert throttle.due(100.0, 90.0)
    assert throttle.start(100.0)
    throttle.after_fill()
    for moment in (100.01, 100.02, 100.04):
        if throttle.due(moment, 90.0):
            throttle.start(moment)
    assert not throttle.finished(100.05)
    # The refresh owed for the fill is still owed once the fetch has answered.
    assert not throttle.due(100.06, 100.0)
    assert throttle.due(100.0 + MIN_REFRESH, 100.0)
    # A fetch that failed leaves the view stale: the next check fetches.
    assert throttle.start(200.0)
    assert not throttle.finished(200.2)
    assert throttle.due(200.3, 100.0)


def test_a_fetch_that_took_long_spaces_the_refreshes_after_fills_up_to_the_ttl():
    """Ten thousand positions take a tenth of a second of CPU to read: refreshing
    after fills once a second would spend a good share of the machine on it."""
    throttle = FetchThrottle(TTL)
    took = 3 * MIN_REFRESH * COST_SHARE
    assert throttle.start(100.0)
    assert not throttle.finished(100.0 + took)
    throttle.after_fill()
    assert not throttle.due(100.0 + 2 * MIN_REFRESH, 100.0)
    assert throttle.due(100.0 + 3 * MIN_REFRESH, 100.0)
    # However long it took, a view older than the ttl is fetched again, and fills
    # refresh at the ttl at the latest.
    assert throttle.start(200.0)
    assert not throttle.finished(200.0 + 10 * TTL)
    assert throttle.due(200.0 + TTL, 200.0)
    throttle.after_fill()
    assert throttle.due(200.0 + TTL, 200.0 + TTL)
    # A quick fetch brings the refreshes back to once a ``MIN_REFRESH``.
    assert throttle.start(300.0)
    assert not throttle.finished(300.01)
    throttle.after_fill()
    assert throttle.due(300.0 + MIN_REFRESH, 300.0)


class ThrottleMachine(RuleBasedStateMachine):
    """Over any interleaving of ticks, fills, urgent asks and answers: one fetch at a
    time, none asked by a tick while one runs (it brings the fresh view), an urgent
    ask during one not lost, fills never refresh closer than ``MIN_REFRESH``
    nor than a tenth of the last fetch's time over ``COST_SHARE`` (up to the ttl),
    urgent asks never closer than ``URGENT_GAP``, and a view never older than the ttl
    without a fetch being due."""

    def __init__(self) -> None:
        super().__init__()
        self.throttle = FetchThrottle(TTL)
        self.now = 1_000.0
        self.fetched_at: float | None = None
        self.running: float | None = None
        self.starts: list[tuple[float, str]] = []
        self.owed = False
        self.took = 0.0

    def _fetch(self, why: str) -> None:
        if self.throttle.start(self.now):
            assert self.running is None
            self.running = self.now
            self.starts.append((self.now, why))
            self.owed = False
        else:
            assert self.running is not None
            self.owed = True

    @rule(seconds=st.floats(min_value=0.0, max_value=8.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def tick(self) -> None:
        refresh = self.throttle.refresh_after_fill
        last = self.throttle.last_started
        stale = self.fetched_at is None or self.now - self.fetched_at >= TTL
        gap = max(MIN_REFRESH, min(TTL, self.took / COST_SHARE))
        if self.throttle.due(self.now, self.fetched_at):
            assert self.running is None
            assert stale or (refresh and (last is None or self.now - last >= gap))
            self._fetch("tick")
        elif self.running is None:
            assert not stale
            assert not refresh or (last is not None and self.now - last < gap)

    @rule()
    def fill(self) -> None:
        self.throttle.after_fill()

    @rule()
    def position_missing(self) -> None:
        last = self.throttle.last_started
        if self.throttle.urgent(self.now):
            assert last is None or self.now - last >= URGENT_GAP
            self._fetch("urgent")
        else:
            assert self.throttle.refresh_after_fill

    @rule(view=st.booleans(), took=st.floats(min_value=0.0, max_value=2 * TTL))
    def answered(self, view: bool, took: float) -> None:
        if self.running is None:
            return
        if view:
            self.fetched_at = self.running
        self.now += took
        self.took = self.now - self.running  # what passed since it started, in all
        self.running = None
        again = self.throttle.finished(self.now)
        assert again is self.owed
        if again:
            self._fetch("again")

    @invariant()
    def one_fetch_at_a_time(self) -> None:
        assert self.throttle.fetching is (self.running is not None)
        if self.running is not None:
            assert self.throttle.last_started == self.running


TestThrottle = ThrottleMachine.TestCase


def _plan(side: Side, price: float = 90.0, quantity: float = 2.0) -> OrderPlan:
    return OrderPlan(
        symbol="SOLUSDC",
        side=side,
        quantity=quantity,
        reference_price=price,
        notional=price * quantity,
        category=None,
    )


def _order(plan: OrderPlan, entry: float | None) -> BookOrder:
    return BookOrder(
        reservation_id="r1",
        plan=plan,
        owner="validator-0#1",
        reserved_at=0.0,
        expires_at=10.0,
        state=OrderState.FILLED,
        base_before=0.0,
        base_after=0.0,
        held_before=0.0,
        held_after=0.0,
        entry_before=entry,
    )


def test_only_a_sell_under_its_entry_realizes_a_loss():
    assert loss_of(_order(_plan(Side.SELL, 90.0), 100.0)) == 20.0
    assert loss_of(_order(_plan(Side.SELL, 110.0), 100.0)) == 0.0
    assert loss_of(_order(_plan(Side.SELL, 90.0), None)) == 0.0
    assert loss_of(_order(_plan(Side.BUY, 90.0), 100.0)) == 0.0


def test_the_realized_loss_is_today_s():
    numbers = PortfolioNumbers()
    day = datetime(2026, 3, 1, 23, 0, tzinfo=UTC).timestamp()
    numbers.roll_day(day)
    numbers.filled(_order(_plan(Side.SELL, 90.0), 100.0))
    numbers.roll_day(day + 1800)
    assert numbers.realized_loss == 20.0
    numbers.roll_day(day + 3600)  # midnight UTC
    assert numbers.realized_loss == 0.0


def test_the_order_rate_counts_buys_of_the_last_minute():
    numbers = PortfolioNumbers()
    numbers.reserved(_plan(Side.BUY), 100.0)
    numbers.reserved(_plan(Side.SELL), 110.0)
    numbers.reserved(_plan(Side.BUY), 130.0)
    assert numbers.orders_last_minute(159.9) == 2
    assert numbers.orders_last_minute(160.0) == 1
    assert numbers.orders_last_minute(190.0) == 0


def test_the_peak_equity_only_rises():
    numbers = PortfolioNumbers()
    for equity in (1000.0, 1200.0, 900.0):
        numbers.equity_seen(equity)
    assert numbers.peak_equity == 1200.0


def _position(pnl: float) -> PositionView:
    return PositionView(symbol="X", quantity=1.0, entry_price=1.0, value=1.0, pnl=pnl)


def test_only_losing_positions_count_as_unrealized_loss():
    view = PortfolioView(
        balances={},
        positions={
            "A": _position(-5.0),
            "B": _position(7.0),
            "C": _position(-1.5),
            "D": _position(float("nan")),  # no number: no loss
            "E": _position(float("inf")),
        },
        fetched_at=0.0,
    )
    assert unrealized_loss(view) == 6.5
    assert unrealized_loss(PortfolioView(balances={}, positions={}, fetched_at=0.0)) == 0.0


def test_the_holdings_our_sells_closed_are_given_to_an_exit_only():
    book = LedgerBook(quote="USDC", fee_rate=0.001, lifetime=90.0, settle_window=180.0)
    held = PortfolioView(
        balances={"USDC": Balance(0.0, 0.0, 0.0), "SOL": Balance(2.0, 2.0, None)},
        positions={"SOLUSDC": PositionView("SOLUSDC", 2.0, 90.0, 180.0, 0.0)},
        fetched_at=0.0,
    )
    book.fetched_view(held, 0.0)
    sold = book.reserve(_plan(Side.SELL), owner="validator-0#1", now=1.0)
    book.settle(sold.reservation_id, True, symbol="SOLUSDC", side=Side.SELL, now=1.0)
    numbers = PortfolioNumbers()

    closed = numbers.ledger_state(book, 2.0, "SOLUSDC").closed
    assert [(c.symbol, c.entry_price, c.quantity) for c in closed] == [("SOLUSDC", 90.0, 2.0)]
    assert numbers.ledger_state(book, 2.0, "ETHUSDC").closed == ()
    assert numbers.ledger_state(book, 2.0, "SOLUSDC", exit=False).closed == ()
