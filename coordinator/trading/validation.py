"""The checks of DESIGN section 4, in order, as plain functions.

Steps 1-3 (parse, staleness and duplicates, back-pressure) run at the intake; 4-5
(trading state, universe) in the Validator of the signal's symbol; 6-9 (risk limits,
portfolio, market conditions, sizing) in the Ledger, which alone sees every open
position and every order in flight; 10 (execution) in the Validator again. Every step
gives a ``CheckResult``; the first failed one is the decision's reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from coordinator.trading.paper_book import split_symbol
from coordinator.trading.signals import Side, Signal
from coordinator.trading.sizing import SizingTable, signal_force
from coordinator.trading.trading_state import TradingState, TradingStatus

__all__ = [
    "Balance",
    "CheckResult",
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
    "evaluate_order",
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


class Reason(StrEnum):
    INVALID_SIGNAL = "invalid_signal"
    STALE_SIGNAL = "stale_signal"
    DUPLICATE_SIGNAL = "duplicate_signal"
    OVERLOADED = "overloaded"
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


def check_universe(
    signal: Signal, universe: frozenset[str] | None, blacklist: Mapping[str, str]
) -> CheckResult:
    """``universe`` None: not known yet (the UniverseManager has not answered)."""
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
    fee_rate: float = 0.001


@dataclass(frozen=True, slots=True)
class Balance:
    free: float
    total: float
    value: float | None


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    quantity: float
    entry_price: float
    value: float
    pnl: float


@dataclass(frozen=True, slots=True)
class PortfolioView:
    balances: Mapping[str, Balance]
    positions: Mapping[str, PositionView]
    fetched_at: float | None
    """Wall-clock time the Portfolio answered; None: never."""
    error: str | None = None
    """Why the last fetch failed, if it did."""

    def equity(self) -> float:
        """Value of every balance; an asset the Portfolio could not price is valued at
        the value of its position, so that an unpriced holding is not taken for a loss."""
        total = 0.0
        unpriced = set()
        for asset, balance in self.balances.items():
            if balance.value is not None:
                total += balance.value
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
class LedgerState:
    reserved_quote: float = 0.0
    """Quote amount held by BUY orders in flight."""
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
    factor = 10**decimals
    return math.floor(quantity * factor + 1e-6) / factor


def evaluate_order(
    signal: Signal,
    *,
    view: PortfolioView,
    ledger: LedgerState,
    market: MarketQuote | None,
    config: RiskConfig,
    now: float,
) -> Evaluation:
    """Steps 6 (risk), 7 (portfolio), 8 (market), 9 (sizing), stopping at the first failure."""
    if signal.side is Side.SELL:
        return _evaluate_exit(
            signal, view=view, ledger=ledger, market=market, config=config, now=now
        )
    checks: list[CheckResult] = []
    price = market.price if market is not None else signal.price
    view_age = None if view.fetched_at is None else now - view.fetched_at
    free_quote = (view.balances.get(config.quote_asset) or Balance(0.0, 0.0, 0.0)).free
    spendable = max(0.0, free_quote - ledger.reserved_quote)
    force = signal_force(signal)
    category = config.sizing.category(force)
    percent = config.sizing.percent(category)
    quantity = floor_quantity(spendable * percent / 100.0 / price) if price > 0 else 0.0
    notional = quantity * price

    # 6. risk limits
    risk = _risk(signal, view, ledger, config, now, notional)
    checks.append(risk)
    if not risk.passed:
        return Evaluation(tuple(checks), None)
    # 7. portfolio
    if view.fetched_at is None or view_age is None or view_age > config.portfolio_max_age:
        age = "never fetched" if view_age is None else f"{view_age:.0f} s old"
        checks.append(
            _fail(
                "portfolio",
                Reason.PORTFOLIO_UNAVAILABLE,
                f"portfolio view {age}" + (f" ({view.error})" if view.error else ""),
            )
        )
        return Evaluation(tuple(checks), None)
    needed = notional * (1 + config.fee_rate)
    if notional <= 0 or needed > spendable + 1e-9:
        checks.append(
            _fail(
                "portfolio",
                Reason.INSUFFICIENT_BALANCE,
                f"{needed:.2f} {config.quote_asset} needed, {spendable:.2f} free "
                f"({ledger.reserved_quote:.2f} held by orders in flight)",
            )
        )
        return Evaluation(tuple(checks), None)
    checks.append(_ok("portfolio", f"{spendable:.2f} {config.quote_asset} free"))
    # 8. market conditions
    market_check = _market(signal, market, config, now)
    checks.append(market_check)
    if not market_check.passed:
        return Evaluation(tuple(checks), None)
    # 9. sizing
    checks.append(
        _ok(
            "sizing",
            f"force {force:.3f} -> {category}: {percent:g} % of {spendable:.2f} "
            f"{config.quote_asset} = {quantity:.8f} at {price:.8g}",
        )
    )
    plan = OrderPlan(signal.symbol, Side.BUY, quantity, price, notional, category)
    return Evaluation(tuple(checks), plan)


def _risk(
    signal: Signal,
    view: PortfolioView,
    ledger: LedgerState,
    config: RiskConfig,
    now: float,
    notional: float,
) -> CheckResult:
    symbol = signal.symbol
    if symbol in view.positions or symbol in ledger.buying:
        return _fail(
            "risk", Reason.POSITION_ALREADY_OPEN, f"one position per symbol: {symbol} is held"
        )
    open_count = len(set(view.positions) | ledger.buying)
    if open_count >= config.max_concurrent_trades:
        return _fail(
            "risk",
            Reason.MAX_CONCURRENT_TRADES,
            f"{open_count} positions open or opening, "
            f"MAX_CONCURRENT_TRADES={config.max_concurrent_trades}",
        )
    recent = ledger.orders_last_minute
    if recent >= config.max_orders_per_minute:
        return _fail(
            "risk",
            Reason.ORDER_RATE_LIMIT,
            f"{recent} BUY orders in the last minute, limit {config.max_orders_per_minute}",
        )
    stopped = ledger.stop_losses.get(symbol)
    if stopped is not None and now - stopped < config.stop_loss_cooldown:
        return _fail(
            "risk",
            Reason.STOP_LOSS_COOLDOWN,
            f"stop-loss on {symbol} {now - stopped:.0f} s ago, "
            f"cooldown {config.stop_loss_cooldown:g} s",
        )
    equity = view.equity()
    if equity > 0:
        unrealized = -sum(min(0.0, p.pnl) for p in view.positions.values())
        loss = ledger.realized_loss_today + unrealized
        if loss / equity * 100 >= config.daily_loss_limit_percent:
            return _fail(
                "risk",
                Reason.DAILY_LOSS_LIMIT,
                f"loss today {loss:.2f} is {loss / equity * 100:.2f} % of equity, "
                f"limit {config.daily_loss_limit_percent:g} %",
            )
        peak = max(ledger.peak_equity, equity)
        drawdown = (peak - equity) / peak * 100
        if drawdown >= config.max_drawdown_percent:
            return _fail(
                "risk",
                Reason.DRAWDOWN_GUARD,
                f"drawdown {drawdown:.2f} % from peak {peak:.2f}, "
                f"limit {config.max_drawdown_percent:g} %",
            )
        base, _ = split_symbol(symbol)
        held = (view.balances.get(base) or Balance(0.0, 0.0, 0.0)).value or 0.0
        exposure = (held + notional) / equity * 100
        if exposure > config.max_exposure_percent:
            return _fail(
                "risk",
                Reason.MAX_EXPOSURE,
                f"{base} would be {exposure:.1f} % of equity, "
                f"limit {config.max_exposure_percent:g} %",
            )
    if notional < config.min_notional:
        return _fail(
            "risk",
            Reason.BELOW_MIN_NOTIONAL,
            f"order of {notional:.2f} {config.quote_asset} "
            f"is below the minimum {config.min_notional:g}",
        )
    return _ok(
        "risk",
        f"{open_count} of {config.max_concurrent_trades} positions, {recent} orders/min",
    )


def _market(
    signal: Signal, market: MarketQuote | None, config: RiskConfig, now: float
) -> CheckResult:
    if market is None:
        if config.require_market_data:
            return _fail(
                "market", Reason.MARKET_DATA_UNAVAILABLE, f"no market price for {signal.symbol} yet"
            )
        return _ok("market", "no market price; checked against nothing (REQUIRE_MARKET_DATA=false)")
    age = now - market.at
    if age > config.market_data_max_age:
        return _fail(
            "market",
            Reason.MARKET_DATA_STALE,
            f"last price {age:.0f} s old, limit {config.market_data_max_age:g} s",
        )
    deviation = abs(signal.price - market.price) / market.price * 100
    if deviation > config.max_price_deviation_percent:
        return _fail(
            "market",
            Reason.PRICE_DEVIATION,
            f"signal price {signal.price:.8g} is {deviation:.2f} % from market {market.price:.8g}, "
            f"limit {config.max_price_deviation_percent:g} %",
        )
    return _ok("market", f"market {market.price:.8g}, {deviation:.3f} % away, {age:.1f} s old")


def _evaluate_exit(
    signal: Signal,
    *,
    view: PortfolioView,
    ledger: LedgerState,
    market: MarketQuote | None,
    config: RiskConfig,
    now: float,
) -> Evaluation:
    checks = [_ok("risk", "SELL: risk limits do not hold back an exit")]
    view_age = None if view.fetched_at is None else now - view.fetched_at
    if view_age is None or view_age > config.portfolio_max_age_exit:
        age = "never fetched" if view_age is None else f"{view_age:.0f} s old"
        checks.append(
            _fail(
                "portfolio",
                Reason.PORTFOLIO_UNAVAILABLE,
                f"no position data to size the exit: portfolio view {age}"
                + (f" ({view.error})" if view.error else ""),
            )
        )
        return Evaluation(tuple(checks), None)
    if signal.symbol in ledger.selling:
        checks.append(
            _fail("portfolio", Reason.EXIT_IN_PROGRESS, f"a SELL of {signal.symbol} is in flight")
        )
        return Evaluation(tuple(checks), None)
    position = view.positions.get(signal.symbol)
    if position is None or position.quantity <= 0:
        checks.append(
            _fail("portfolio", Reason.NO_POSITION, f"no open position in {signal.symbol}")
        )
        return Evaluation(tuple(checks), None)
    checks.append(_ok("portfolio", f"position of {position.quantity:.8f} {signal.symbol}"))
    price = market.price if market is not None else signal.price
    if market is None:
        checks.append(_ok("market", "no market price; an exit does not wait for one"))
    else:
        checks.append(_ok("market", f"market {market.price:.8g}, {now - market.at:.1f} s old"))
    checks.append(_ok("sizing", f"SELL the position's quantity {position.quantity:.8f}"))
    plan = OrderPlan(
        signal.symbol, Side.SELL, position.quantity, price, position.quantity * price, None
    )
    return Evaluation(tuple(checks), plan)
