"""The world of tests/test_money_model.py: the exchange (the truth), the Portfolio that
shows it late, and the store (what survives a crash).

The exchange executes an order when it receives it, at the order's reference price or a
little better (``slip``: a market order fills a moment after its sizing); its answer may
still be lost (a 5xx, a timeout). The Portfolio shows a prefix of the
exchange's fills, its positions and its balances each at their own pace, never going
back.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import event as hypothesis_event
from hypothesis.errors import InvalidArgument

from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.signals import Side, Signal
from coordinator.trading.sizing import SizingTable
from coordinator.trading.sizing_roottrading import SizingMode
from coordinator.trading.stop_book import Holding
from coordinator.trading.stops import StopParams
from coordinator.trading.validation import (
    Balance,
    ExitTarget,
    OrderPlan,
    PortfolioView,
    RiskConfig,
)
from tests.test_ledger_book_model import shown_position

QUOTE = "USDC"
SYMBOLS = ("AAAUSDC", "BBBUSDC")
FEE = 0.001
EPS = 1e-6


START = 1_800_000_000.0
LIFETIME = 60.0
SETTLE_WINDOW = 180.0
STOP_MAX_AGE = 30.0
SIGNAL_TIMEOUT = 30.0
RECONCILE_AFTER = 15.0
"""The reconciler's window after a send: no verdict "not found" before it passed."""
RULES = ("stoploss", "breakeven", "percent")
PARAMS = StopParams()
LIFE = lc.LifecycleParams(exit_timeout=60.0, exit_settle=90.0, retry_base=1.0, retry_max=30.0)
CONFIG = RiskConfig(
    quote_asset=QUOTE,
    max_concurrent_trades=10,
    min_notional=1.0,
    max_exposure_percent=100.0,
    max_orders_per_minute=10_000,
    daily_loss_limit_percent=100.0,
    max_drawdown_percent=100.0,
    stop_loss_cooldown=0.0,
    require_market_data=True,
    max_price_deviation_percent=100.0,
    market_data_max_age=STOP_MAX_AGE,
    portfolio_max_age=30.0,
    portfolio_max_age_exit=600.0,
    sizing=SizingTable((1.0, 1.5, 2.2), (12.0, 18.0, 22.0, 28.0)),
    sizing_mode=SizingMode.TABLE,
    fee_rate=FEE,
    quantity_decimals=3,
)
OUTCOMES = ("filled", "refused", "5xx_nofill", "5xx_fill", "timeout_nofill", "timeout_fill")
EXECUTES = frozenset({"filled", "5xx_fill", "timeout_fill"})
"""Outcomes whose order the exchange executed (whatever it answered)."""


def event(text: str) -> None:
    """A statistic of the run (nothing outside a hypothesis run)."""
    with contextlib.suppress(InvalidArgument):
        hypothesis_event(text)


@dataclass(frozen=True)
class TrueHolding:
    key: str
    """The TrailingStop's position key of this holding."""
    quantity: float
    entry: float
    opened: float | None = None
    """When the Portfolio shows it opened."""


@dataclass(frozen=True)
class State:
    """The exchange's books after some prefix of its fills."""

    cash: float
    bases: dict[str, float]
    holdings: dict[str, TrueHolding]

    def free_base(self, symbol: str) -> float:
        return self.bases.get(symbol[:3], 0.0)

    def view(self, positions: State, at: float) -> PortfolioView:
        """A Portfolio answer: balances from this state, positions from ``positions``."""
        balances = {QUOTE: Balance(self.cash, self.cash, self.cash)}
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


@dataclass
class Exchange:
    """The truth: every state after each fill, and the requests per client order id."""

    fee_in_base: bool
    states: list[State]
    slip: float = 0.0
    """Our orders fill this share of their price better (a BUY below it, a SELL above):
    never worse, which no sizing could allow for."""
    requests: Counter[str] = field(default_factory=Counter)
    executed: dict[str, int] = field(default_factory=dict)
    """Client order id -> how many times it executed."""
    fills: list[tuple[str, str, Side, float, float]] = field(default_factory=list)
    """(client order id, symbol, side, quantity, time): the Trader's list of orders."""
    last_ours: int = 0
    """The state after the latest fill of an order of ours."""
    opened: int = 0

    @property
    def truth(self) -> State:
        return self.states[-1]

    def cost(self, quantity: float, price: float) -> float:
        """Quote a BUY takes (its fee too, unless the fee is taken in the base asset)."""
        return quantity * price * (1.0 if self.fee_in_base else 1.0 + FEE)

    def execute(
        self, coid: str, symbol: str, side: Side, quantity: float, price: float, at: float
    ) -> None:
        truth = self.truth
        bases = dict(truth.bases)
        holdings = dict(truth.holdings)
        base = symbol[:3]
        if not coid.startswith("before:"):
            price *= 1 - self.slip if side is Side.BUY else 1 + self.slip
        if side is Side.BUY:
            cost = self.cost(quantity, price)
            # Invariant 8: the exchange never refuses a BUY for funds.
            assert cost <= truth.cash + EPS, f"BUY {coid} needs {cost}, {truth.cash} left"
            cash = truth.cash - cost
            bases[base] = bases.get(base, 0.0) + quantity * (1 - FEE if self.fee_in_base else 1)
            old = holdings.get(symbol)
            if old is None:
                self.opened += 1
                key = f"{symbol}@{self.opened}.000@{price:.10g}"
                holdings[symbol] = TrueHolding(key, quantity, price, float(self.opened))
            else:
                total = old.quantity + quantity
                entry = (old.quantity * old.entry + quantity * price) / total
                holdings[symbol] = TrueHolding(old.key, total, entry, old.opened)
        else:
            cash = truth.cash + quantity * price * (1 - FEE)
            bases[base] = max(0.0, bases.get(base, 0.0) - quantity)
            holdings.pop(symbol, None)
        self.executed[coid] = self.executed.get(coid, 0) + 1
        self.fills.append((coid, symbol, side, quantity, at))
        self.states.append(State(cash, bases, holdings))
        if not coid.startswith("before:"):
            self.last_ours = len(self.states) - 1


@dataclass
class Portfolio:
    """How far the Portfolio shows the exchange's fills (positions, balances)."""

    positions: int = 0
    balances: int = 0

    def catch_up(self, exchange: Exchange, positions: int, balances: int) -> None:
        top = len(exchange.states) - 1
        self.positions = min(top, self.positions + positions)
        self.balances = min(top, self.balances + balances)

    def shows_ours(self, exchange: Exchange) -> bool:
        """Whether it shows every fill of our orders, positions and balances."""
        return min(self.positions, self.balances) >= exchange.last_ours

    def view(self, exchange: Exchange, at: float) -> PortfolioView:
        states = exchange.states
        return states[self.balances].view(states[self.positions], at)

    def holdings(self, exchange: Exchange) -> dict[str, TrueHolding]:
        return exchange.states[self.positions].holdings


@dataclass
class StoredOrder:
    signal_id: str
    symbol: str
    side: Side
    quantity: float
    state: str
    """pending, accepted, rejected or unknown."""
    sent_at: float
    exit_key: str | None = None
    """The position key of a stop's exit."""
    held: bool = False
    """Answered 5xx: the Validator holds it (and its reservation) for the reconciler."""
    price: float = 0.0
    """The price it was sized at."""
    trader_order_id: str | None = None
    """The Trader's id of its fill, once known."""


@dataclass
class Store:
    """PostgreSQL: what a crash of the process leaves."""

    orders: dict[str, StoredOrder] = field(default_factory=dict)
    decisions: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Signal id -> (outcome, reason)."""
    stops: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Position key -> the stop's stored record."""
    ever_watched: set[str] = field(default_factory=set)


@dataclass
class Job:
    """A signal or a stop's exit in the Validator's mailbox."""

    signal: Signal
    exit: ExitTarget | None = None
    attempt: int = 0
    resend: bool = False
    """The same intent again: the reconciler found no order for its 5xx answer."""


@dataclass
class Held:
    job: Job
    plan: OrderPlan
    reservation_id: str


@dataclass
class Settle:
    reservation_id: str
    filled: bool | None
    symbol: str
    side: Side
    at: float


@dataclass
class World:
    store: Store = field(default_factory=Store)
    jobs: list[Job] = field(default_factory=list)
    held: dict[str, Held] = field(default_factory=dict)
    settles: list[Settle] = field(default_factory=list)
    fetches: list[float] = field(default_factory=list)
    decisions: list[tuple[str, lc.Decided]] = field(default_factory=list)
    """(position key, decision) on their way to the TrailingStop."""
    stops: dict[str, Holding] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    lookups: list[tuple[str, str]] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)
    """Symbol -> when the MarketFeed received its price (gone with the process)."""
    top_stop: dict[str, float] = field(default_factory=dict)
