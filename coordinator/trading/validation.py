"""The checks of DESIGN section 4, in order, as plain functions.

Steps 1-3 (parse, staleness and duplicates, back-pressure) run at the intake; 4-5
(trading state, universe) in the Validator of the signal's symbol; 6-9 (risk limits,
portfolio, market conditions, sizing) in the Ledger, which alone sees every open
position and every order in flight; 10 (execution) in the Validator again. Every step
gives a ``CheckResult``; the first failed one is the decision's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from enum import StrEnum

from coordinator.cluster.fencing import LeaseToken
from coordinator.trading.signals import Side, Signal
from coordinator.trading.sizing import SizingTable
from coordinator.trading.sizing_roottrading import Force, SizingMode
from coordinator.trading.symbols import split_symbol
from coordinator.trading.trading_state import TradingState, TradingStatus

__all__ = [
    "AdmissionStatus",
    "Balance",
    "CheckResult",
    "ClosedHolding",
    "Evaluation",
    "ExitTarget",
    "LedgerState",
    "MarketQuote",
    "OrderPlan",
    "Outcome",
    "PortfolioView",
    "PositionView",
    "Reason",
    "RiskConfig",
    "check_freshness",
    "check_trading_state",
    "check_universe",
    "floor_quantity",
    "waiting_for_trader",
]


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    """Sent, and the Trader took it."""
    REJECTED = "rejected"
    SHADOW = "shadow"
    """Passed every check with trading disabled: recorded, not sent."""
    UNKNOWN = "unknown"
    """Sent, but the answer never came: it may have been executed."""


class AdmissionStatus(StrEnum):
    """The intake's answer to a signal (steps 1-3), before any decision."""

    ACCEPTED = "accepted"
    """Sent on for validation."""
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    """Seen already: not taken again."""


class Reason(StrEnum):
    INVALID_SIGNAL = "invalid_signal"
    STALE_SIGNAL = "stale_signal"
    DUPLICATE_SIGNAL = "duplicate_signal"
    OVERLOADED = "overloaded"
    ROUTING_UNAVAILABLE = "routing_unavailable"
    """Cluster mode: Redis did not take the signal to its symbol's owner (nothing was
    decided; a stream entry stays pending and comes again)."""
    TRADING_HALTED = "trading_halted"
    TRADING_DEGRADED = "trading_degraded"
    NOT_IN_UNIVERSE = "not_in_universe"
    BLACKLISTED = "blacklisted"
    POSITION_ALREADY_OPEN = "position_already_open"
    MAX_CONCURRENT_TRADES = "max_concurrent_trades"
    ORDER_RATE_LIMIT = "order_rate_limit"
    STOP_LOSS_COOLDOWN = "stop_loss_cooldown"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    DRAWDOWN_GUARD = "drawdown_guard"
    MAX_EXPOSURE = "max_exposure"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    PORTFOLIO_UNAVAILABLE = "portfolio_unavailable"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    NO_POSITION = "no_position"
    EXIT_IN_PROGRESS = "exit_in_progress"
    POSITION_CHANGED = "position_changed"
    """A stop's exit for a holding that is not the one held now (sold, another opened)."""
    DUST_REMAINDER = "dust_remainder"
    """What is left to sell is below what the exchange takes: reported, not retried."""
    MARKET_DATA_UNAVAILABLE = "market_data_unavailable"
    MARKET_DATA_STALE = "market_data_stale"
    STOP_NOT_HIT = "stop_not_hit"
    """An exit whose latest fresh price is back above its stop: not sent, the stop
    looks again."""
    PRICE_DEVIATION = "price_deviation"
    TRADER_UNAVAILABLE = "trader_unavailable"
    TRADER_REJECTED = "trader_rejected"
    TRADER_ERROR = "trader_error"
    ORDER_UNKNOWN = "order_unknown"
    STORE_UNAVAILABLE = "store_unavailable"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class CheckResult:
    step: str
    """``parse``, ``freshness``, ``back_pressure``, ``trading_state``, ``universe``,
    ``risk``, ``portfolio``, ``market``, ``sizing`` or ``execution``."""
    passed: bool
    reason: Reason | None
    """Set when the step failed."""
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "step": self.step,
            "passed": self.passed,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail,
        }


def _ok(step: str, detail: str) -> CheckResult:
    return CheckResult(step, True, None, detail)


def _fail(step: str, reason: Reason, detail: str) -> CheckResult:
    return CheckResult(step, False, reason, detail)


# --- steps 2, 4, 5 --------------------------------------------------------------------


def check_freshness(signal: Signal, *, now: float, signal_timeout: float) -> CheckResult:
    age = now - signal.timestamp
    if age > signal_timeout:
        return _fail(
            "freshness",
            Reason.STALE_SIGNAL,
            f"{age:.1f} s old, older than signal_timeout {signal_timeout:g} s",
        )
    if age < -5.0:
        return _fail(
            "freshness",
            Reason.STALE_SIGNAL,
            f"timestamp {-age:.1f} s in the future: the sender's clock is wrong",
        )
    return _ok("freshness", f"{max(age, 0.0):.3f} s old")


def check_trading_state(signal: Signal, status: TradingStatus) -> CheckResult:
    why = "; ".join(r.detail for r in status.reasons)
    if status.state is TradingState.HALTED:
        if signal.side is Side.SELL and status.sells_allowed:
            # A held symbol is always sellable unless an operator blocks exits.
            return _ok("trading_state", f"HALTED, exits allowed: SELL passes ({why})")
        return _fail("trading_state", Reason.TRADING_HALTED, f"trading HALTED: {why}")
    if status.state is TradingState.DEGRADED and signal.side is Side.BUY:
        return _fail("trading_state", Reason.TRADING_DEGRADED, f"DEGRADED, no BUY: {why}")
    return _ok("trading_state", f"{status.state.value}")


_TRADER_OUTAGE = frozenset({"trader_down", "trader_unchecked"})
# Causes of a halt that a Trader coming back does not lift, for a BUY and for a SELL
# (a halt that leaves exits allowed does not hold a SELL).
_HOLDS = frozenset(
    {
        "manual_halt",
        "manual_halt_exits_blocked",
        "halt_state_unknown",
        "trading_state_unknown",
        "trader_not_configured",
    }
)
_SELL_HOLDS = frozenset(
    {"manual_halt_exits_blocked", "trading_state_unknown", "trader_not_configured"}
)


def waiting_for_trader(status: TradingStatus, side: Side | None = None) -> bool:
    """HALTED because the Trader does not answer, and for nothing else that holds a
    signal of ``side`` (None: of any side): signals wait for it (and are checked again,
    from the trading state on, once it answers). A manual halt (for a SELL: one that
    blocks exits), or a Trader that is not configured, does not pass."""
    codes = {r.code for r in status.reasons}
    holds = _SELL_HOLDS if side is Side.SELL else _HOLDS
    return (
        status.state is TradingState.HALTED and bool(codes & _TRADER_OUTAGE) and not codes & holds
    )


_PORTFOLIO_OUTAGE = frozenset({"portfolio_down", "portfolio_unchecked"})


def waiting_for_portfolio(status: TradingStatus, side: Side) -> bool:
    """DEGRADED, for a BUY, because the Portfolio does not answer, and for nothing
    else. A signal that waited for the Trader waits on for it: the two often fail and
    come back together, and between their probes a BUY that waited the whole outage
    was refused ``trading_degraded``."""
    codes = {r.code for r in status.reasons}
    return (
        side is Side.BUY
        and status.state is TradingState.DEGRADED
        and bool(codes)
        and codes <= _PORTFOLIO_OUTAGE
    )


def check_universe(
    signal: Signal,
    universe: frozenset[str] | None,
    blacklist: Mapping[str, str],
    override: Force | None = None,
) -> CheckResult:
    """``universe`` None: not known yet (the UniverseManager has not answered).

    ``override``: the force of a BUY strong enough to enter outside the universe
    (``sizing_roottrading.universe_override``). It passes a symbol that is not in the
    universe; a blacklisted symbol, or a universe not known yet, still refuses."""
    if signal.side is Side.SELL:
        return _ok("universe", "SELL: a held position can always be sold")
    if universe is None:
        return _fail(
            "universe", Reason.NOT_IN_UNIVERSE, "the universe is not known yet: no BUY until it is"
        )
    if signal.symbol in blacklist:
        return _fail(
            "universe",
            Reason.BLACKLISTED,
            f"{signal.symbol} blacklisted: {blacklist[signal.symbol]}",
        )
    if signal.symbol not in universe and override is not None:
        return _ok(
            "universe",
            f"override: {signal.symbol} is not in the trading universe, entered by a "
            f"consensus of {override.strategies} strategies, force {override.value:.2f} "
            "(UNIVERSE_OVERRIDE)",
        )
    if signal.symbol not in universe:
        return _fail(
            "universe",
            Reason.NOT_IN_UNIVERSE,
            f"{signal.symbol} is not in the trading universe ({len(universe)} symbols)",
        )
    return _ok("universe", f"{signal.symbol} in the universe")


# --- steps 6 to 9 ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """The risk section of the configuration, as the checks of steps 6-9 take it.

    Its fields are filled by name from the settings table's rows of section ``risk``
    (``coordinator.config``): a new risk setting is a row there and a field here. The
    few that are not one row each are built in ``coordinator.config.sections``
    (``sizing``, ``sizing_mode``, and ``max_concurrent_trades`` and ``fee_rate`` from
    other sections)."""

    quote_asset: str
    max_concurrent_trades: int
    min_notional: float
    max_exposure_percent: float
    max_orders_per_minute: int
    daily_loss_limit_percent: float
    max_drawdown_percent: float
    stop_loss_cooldown: float
    require_market_data: bool
    max_price_deviation_percent: float
    market_data_max_age: float
    portfolio_max_age: float
    """A BUY needs a portfolio view at most this old."""
    portfolio_max_age_exit: float
    """A SELL may use an older one, up to this."""
    sizing: SizingTable
    """The table of ``SIZING_MODE=table``."""
    sizing_mode: SizingMode = SizingMode.ROOTTRADING
    """``roottrading``: RootTrading's force, categories and amount
    (``sizing_roottrading``); ``table``: ``sizing`` over ``sizing.signal_force``."""
    fee_rate: float = 0.001
    quantity_decimals: int = 8
    """Decimals an order quantity is floored to, unless its symbol has its own."""
    quantity_decimals_by_symbol: Mapping[str, int] | tuple[tuple[str, int], ...] = field(
        default_factory=dict
    )
    """By symbol: a mapping, or (symbol, decimals) pairs as the settings give them."""
    universe_override: bool = True
    """A consensus BUY strong enough may enter outside the universe (the Validator)."""
    portfolio_cache_ttl: float = 2.0
    """Balances and positions are fetched again after this (the Ledger)."""
    portfolio_timeout: float = 2.0
    """Timeout of a Portfolio request."""
    reservation_lifetime: float = 90.0
    """An order's reservation not settled after this is released (the Ledger's book)."""
    fill_settle_window: float = 180.0
    """Our fill is laid over the Portfolio's view at most this long (the Ledger's book)."""

    @property
    def sizing_thresholds(self) -> tuple[float, ...]:
        """``SIZING_THRESHOLDS``, as ``sizing`` holds it."""
        return self.sizing.thresholds

    @property
    def sizing_percents(self) -> tuple[float, ...]:
        """``SIZING_PERCENTS``, as ``sizing`` holds it."""
        return self.sizing.percents

    def decimals_for(self, symbol: str) -> int:
        return dict(self.quantity_decimals_by_symbol).get(symbol, self.quantity_decimals)


@dataclass(frozen=True, slots=True)
class Balance:
    free: float
    total: float
    value: float | None


OPENED_TOLERANCE = 0.001
"""Seconds between two opening times of the Portfolio under which they are one holding's
(the same timestamp, read through different float conversions and the store)."""


def opened_apart(a: float | None, b: float | None) -> bool:
    """Whether two times the Portfolio showed holdings opened at are two holdings'
    (``trade_cycles.created_at``: one per cycle). Unknown (None) is never apart."""
    return a is not None and b is not None and abs(a - b) > OPENED_TOLERANCE


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    quantity: float
    entry_price: float
    value: float
    pnl: float
    opened_at: tuple[float, ...] = ()
    """When the Portfolio's open holdings of the symbol were opened (its ``timestamp``,
    ``trade_cycles.created_at``): what tells a stop's holding from a later one of the
    same size and price. Empty where unknown, or where our own orders changed the
    position since the Portfolio showed it."""


@dataclass(frozen=True, slots=True)
class PortfolioView:
    balances: Mapping[str, Balance]
    positions: Mapping[str, PositionView]
    fetched_at: float | None
    """Wall-clock time the Portfolio answered; None: never."""
    error: str | None = None
    """Why the last fetch failed, if it did."""

    def unrealized_loss(self) -> float:
        """The open positions' losses, positive; gains do not offset them, and a pnl
        that is no number (NaN) counts as none. A list of the losing ones summed: this
        runs for each BUY and each fill over every position (75 -> 12 us at 500 with
        ``min`` per position before)."""
        return -sum([p.pnl for p in self.positions.values() if p.pnl < 0.0])

    def equity(self, quote: str | None = None) -> float:
        """Value of every balance; an asset the Portfolio could not price is valued at
        the value of its position, so that an unpriced holding is not taken for a loss,
        and the quote asset (``value_usdc: null`` happens) at face value."""
        total = 0.0
        unpriced = set()
        for asset, balance in self.balances.items():
            if balance.value is not None:
                total += balance.value
            elif asset == quote:
                total += balance.total
            else:
                unpriced.add(asset)
        if unpriced:
            # One pass over the positions (a view may hold a thousand of each).
            for symbol, position in self.positions.items():
                try:
                    base, _ = split_symbol(symbol)
                except ValueError:
                    continue
                if base in unpriced:
                    total += position.value
        return total


@dataclass(frozen=True, slots=True)
class ClosedHolding:
    """A holding our own SELL closed."""

    symbol: str
    entry_price: float
    quantity: float
    at: float
    reservation_id: str = ""
    """The reservation of the SELL that closed it."""


@dataclass(frozen=True, slots=True)
class LedgerState:
    reserved_quote: float = 0.0
    """Quote amount held by BUY orders in flight, and held back where the last view may
    count our orders beyond the exchange's cash (``LedgerBook.held_quote``)."""
    held_back_quote: float = 0.0
    """Of ``reserved_quote``, what is held back for the last view
    (``LedgerBook.cash_margin``); the rest is held by BUYs in flight."""
    held_base: Mapping[str, float] = field(default_factory=dict)
    """Base asset -> amount held back from what SELLs may sell, where the last view
    may count our orders beyond the exchange's holdings (``LedgerBook.base_margin``)."""
    buying: frozenset[str] = frozenset()
    """Symbols with a BUY in flight."""
    selling: frozenset[str] = frozenset()
    """Symbols with a SELL in flight."""
    orders_last_minute: int = 0
    """BUY orders sent (or in flight) within the last 60 seconds."""
    realized_loss_today: float = 0.0
    """Estimated loss of today's exits (UTC day), positive = loss."""
    peak_equity: float = 0.0
    stop_losses: Mapping[str, float] = field(default_factory=dict)
    """Symbol -> wall-clock time of its last stop-loss exit."""
    closed: tuple[ClosedHolding, ...] = ()
    """Holdings our own SELLs closed lately; given for a stop's exit only (the one
    check that reads them, ``exit_mismatch``)."""


@dataclass(frozen=True, slots=True)
class MarketQuote:
    price: float
    at: float
    """Wall-clock time of the price."""


@dataclass(frozen=True, slots=True)
class ExitTarget:
    """The holding a stop's exit is for. The Ledger sells only that holding: an exit
    whose holding is not the one held now is refused ``position_changed``."""

    position_key: str
    """The TrailingStop's key of the holding (``cycle:<id>`` or symbol@time@price)."""
    entry_price: float
    """The holding's entry price as the TrailingStop knows it."""
    quantity: float
    """The holding's quantity as the TrailingStop knows it."""
    stop: float
    """The stop level that was hit."""
    price: float
    """The price that hit it."""
    price_at: float
    """Wall-clock time that price was received (for the freshness re-check)."""
    opened_at: float | None = None
    """When the Portfolio showed the holding opened, as the TrailingStop knows it (None:
    unknown: the check leans on entry price and quantity alone)."""
    fence: LeaseToken | None = None
    """The lease the stop's leader held when it asked: the intent claim passes this
    fence (None: not fenced)."""


@dataclass(frozen=True, slots=True)
class OrderPlan:
    symbol: str
    side: Side
    quantity: float
    reference_price: float
    notional: float
    category: str | None
    """Sizing category of a BUY."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    checks: tuple[CheckResult, ...]
    plan: OrderPlan | None
    """Set when every step passed."""

    @property
    def failure(self) -> CheckResult | None:
        return next((c for c in self.checks if not c.passed), None)


def floor_quantity(quantity: float, decimals: int = 8) -> float:
    """``quantity`` cut to ``decimals`` decimals, never rounded up (the exchange refuses
    a quantity over the balance). Taken from its shortest decimal form, so that 0.3
    stays 0.3 rather than 0.29999999."""
    try:
        exact = Decimal(repr(float(quantity)))
        step = Decimal(1).scaleb(-decimals)
        return float(exact.quantize(step, rounding=ROUND_DOWN))
    except (InvalidOperation, ValueError, OverflowError):
        return 0.0


def __getattr__(name: str) -> object:
    # Steps 6-9 live in ``order_checks``, which builds on the types above; they are
    # still importable from here.
    if name in ("evaluate_order", "exit_mismatch"):
        from coordinator.trading import order_checks

        return getattr(order_checks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
