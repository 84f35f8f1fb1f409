"""Steps 6 to 9 of DESIGN section 4 (risk limits, portfolio, market conditions, sizing),
run by the Ledger, which alone sees every open position and every order in flight."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.trading.signals import Side, Signal
from coordinator.trading.sizing import signal_force
from coordinator.trading.sizing_roottrading import (
    ROOTTRADING_TABLE,
    SAFETY_SHARE,
    SizingMode,
    roottrading_amount,
    roottrading_force,
    roottrading_quantity,
)
from coordinator.trading.symbols import split_symbol
from coordinator.trading.validation import (
    Balance,
    CheckResult,
    ClosedHolding,
    Evaluation,
    ExitTarget,
    LedgerState,
    MarketQuote,
    OrderPlan,
    PortfolioView,
    PositionView,
    Reason,
    RiskConfig,
    _fail,
    _ok,
    floor_quantity,
    opened_apart,
)

__all__ = ["ENTRY_TOLERANCE", "QUANTITY_TOLERANCE", "evaluate_order", "exit_mismatch"]


ENTRY_TOLERANCE = 0.0005
"""Relative difference of entry prices under which two holdings are the same one."""
QUANTITY_TOLERANCE = 0.01
"""Relative difference of quantities under which two holdings are the same one."""


def _close(a: float, b: float, relative: float) -> bool:
    return abs(a - b) <= relative * max(abs(a), abs(b)) + 1e-12


def exit_mismatch(
    target: ExitTarget, position: PositionView, closed: tuple[ClosedHolding, ...] = ()
) -> str | None:
    """Why ``target`` is not the holding ``position`` (None: it is).

    The same holding has the same entry price (within ``ENTRY_TOLERANCE``) and quantity
    (within ``QUANTITY_TOLERANCE``): both come from the Portfolio's positions, so only
    rounding tells them apart. Where both know when the Portfolio showed it opened, it
    was opened at the same time. An exit for a holding our own SELL closed is refused even
    when the holding now held looks like it: a stop sells its own holding only.
    """
    held = f"held: {position.quantity:.8g} @ {position.entry_price:.8g}"
    asked = f"exit for {target.position_key} ({target.quantity:.8g} @ {target.entry_price:.8g})"
    if not _close(target.entry_price, position.entry_price, ENTRY_TOLERANCE):
        return f"{asked}, {held}: entry prices differ"
    if not _close(target.quantity, position.quantity, QUANTITY_TOLERANCE):
        return f"{asked}, {held}: quantities differ"
    if position.opened_at and all(opened_apart(target.opened_at, at) for at in position.opened_at):
        # Both times are the Portfolio's (the same cycle's creation): a holding of the
        # same size and price opened at another time is another holding, even when our
        # own SELL of the stop's one is not known here at the price the stop knew.
        shown = ", ".join(f"{at:.3f}" for at in position.opened_at)
        return f"{asked}, {held}: opened at {target.opened_at:.3f}, the Portfolio's at {shown}"
    for gone in closed:
        if (
            gone.symbol == position.symbol
            and _close(gone.entry_price, target.entry_price, ENTRY_TOLERANCE)
            and _close(gone.quantity, target.quantity, QUANTITY_TOLERANCE)
        ):
            return f"{asked}, {held}: that holding was closed by our SELL at {gone.at:.0f}"
    return None


def evaluate_order(
    signal: Signal,
    *,
    view: PortfolioView,
    ledger: LedgerState,
    market: MarketQuote | None,
    config: RiskConfig,
    now: float,
    exit: ExitTarget | None = None,
) -> Evaluation:
    """Steps 6 (risk), 7 (portfolio), 8 (market), 9 (sizing), stopping at the first failure.

    ``exit``: the holding a stop's exit is for (a SELL signal sells the symbol's)."""
    if signal.side is Side.SELL:
        return _evaluate_exit(
            signal, view=view, ledger=ledger, market=market, config=config, now=now, exit=exit
        )
    checks: list[CheckResult] = []
    price = market.price if market is not None else signal.price
    free_quote = (view.balances.get(config.quote_asset) or Balance(0.0, 0.0, 0.0)).free
    spendable = max(0.0, free_quote - ledger.reserved_quote)
    sized = _size(signal, spendable, price, config)
    quantity, notional, category = sized.quantity, sized.quantity * price, sized.category

    # 6. risk limits
    risk = _risk(signal, view, ledger, config, now, notional, sized.refused is None)
    checks.append(risk)
    if not risk.passed:
        return Evaluation(tuple(checks), None)
    # 7. portfolio
    stale = _stale_view(view, now, config.portfolio_max_age)
    if stale is not None:
        checks.append(stale)
        return Evaluation(tuple(checks), None)
    if sized.refused is not None:
        checks.append(
            _fail(
                "portfolio",
                Reason.INSUFFICIENT_BALANCE,
                f"{sized.refused} ({_held_quote(ledger, config.quote_asset)}): no BUY",
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
                f"({_held_quote(ledger, config.quote_asset)})",
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
    checks.append(_ok("sizing", sized.detail))
    plan = OrderPlan(signal.symbol, Side.BUY, quantity, price, notional, category)
    return Evaluation(tuple(checks), plan)


@dataclass(frozen=True, slots=True)
class _Sized:
    quantity: float
    category: str
    detail: str
    """How the size came about, for the sizing check."""
    refused: str | None = None
    """Why the free quote cannot fund an order (``SIZING_MODE=roottrading``)."""


def _size(signal: Signal, spendable: float, price: float, config: RiskConfig) -> _Sized:
    decimals = config.decimals_for(signal.symbol)
    quote = config.quote_asset
    if config.sizing_mode is SizingMode.TABLE:
        force = signal_force(signal)
        category = config.sizing.category(force)
        percent = config.sizing.percent(category)
        quantity = (
            floor_quantity(spendable * percent / 100.0 / price, decimals) if price > 0 else 0.0
        )
        return _Sized(
            quantity,
            category,
            f"force {force:.3f} -> {category}: {percent:g} % of {spendable:.2f} "
            f"{quote} = {quantity:.8f} at {price:.8g}",
        )
    rt_force = roottrading_force(signal)
    category = ROOTTRADING_TABLE.category(rt_force.value)
    percent = ROOTTRADING_TABLE.percent(category)
    if not price > 0:
        why = f"no usable price to size on ({price!r})"
        return _Sized(0.0, category, why, refused=why)
    amount = roottrading_amount(spendable, percent, minimum=config.min_notional)
    if amount.amount is None:
        return _Sized(0.0, category, amount.detail, refused=amount.detail)
    quantity = roottrading_quantity(
        amount.amount,
        price,
        decimals=decimals,
        minimum=config.min_notional,
        ceiling=spendable * SAFETY_SHARE,
    )
    if quantity <= 0:
        why = (
            f"{amount.amount:.2f} at {price:.8g} floored to {decimals} decimals is under "
            f"the minimum {config.min_notional:g}, and a step more is over "
            f"{SAFETY_SHARE * 100:g} % of {spendable:.2f}"
        )
        return _Sized(0.0, category, why, refused=why)
    return _Sized(
        quantity,
        category,
        f"rootTrading: {rt_force.describe()} -> {category}: {amount.detail} {quote} "
        f"= {quantity:.8f} at {price:.8g}",
    )


def _risk(
    signal: Signal,
    view: PortfolioView,
    ledger: LedgerState,
    config: RiskConfig,
    now: float,
    notional: float,
    sized: bool = True,
) -> CheckResult:
    """``sized`` False: no order size (the portfolio step refuses it), so no minimum
    order check here."""
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
    equity = view.equity(config.quote_asset)
    if not view.balances or not equity > 0:
        # Without a known positive equity the loss and exposure limits cannot be
        # checked: no BUY rather than one unchecked.
        what = "unknown (no balances)" if not view.balances else f"{equity:.2f}"
        return _fail(
            "risk",
            Reason.PORTFOLIO_UNAVAILABLE,
            f"equity {what}: the loss and exposure limits cannot be checked, no BUY",
        )
    unrealized = view.unrealized_loss()
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
            f"{base} would be {exposure:.1f} % of equity, limit {config.max_exposure_percent:g} %",
        )
    if sized and notional < config.min_notional:
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


def _held_quote(ledger: LedgerState, quote: str) -> str:
    """What keeps the quote from a BUY, each part named: a refusal that says only
    "held" leaves an operator to guess whether our own orders hold it or a lagging
    Portfolio view does."""
    in_flight = max(0.0, ledger.reserved_quote - ledger.held_back_quote)
    return (
        f"{ledger.reserved_quote:.2f} {quote} held: {in_flight:.2f} by BUYs in flight,"
        f" {ledger.held_back_quote:.2f} held back while the last Portfolio view may"
        " count our orders beyond the exchange's cash"
    )


def _stale_view(
    view: PortfolioView, now: float, max_age: float, why: str = ""
) -> CheckResult | None:
    """The failed portfolio check when the view was never fetched or is older than
    ``max_age`` seconds, else None."""
    age = None if view.fetched_at is None else now - view.fetched_at
    if age is not None and not age > max_age:
        return None
    told = "never fetched" if age is None else f"{age:.0f} s old"
    return _fail(
        "portfolio",
        Reason.PORTFOLIO_UNAVAILABLE,
        f"{why}portfolio view {told}" + (f" ({view.error})" if view.error else ""),
    )


def _evaluate_exit(
    signal: Signal,
    *,
    view: PortfolioView,
    ledger: LedgerState,
    market: MarketQuote | None,
    config: RiskConfig,
    now: float,
    exit: ExitTarget | None = None,
) -> Evaluation:
    """A SELL sells min(position quantity, free base balance) floored to the symbol's
    decimals: the position is gross, the free balance smaller when the buy fee was
    taken in the base asset, and the Trader refuses more than the balance."""
    checks = [_ok("risk", "SELL: risk limits do not hold back an exit")]
    stale = _stale_view(
        view, now, config.portfolio_max_age_exit, "no position data to size the exit: "
    )
    if stale is not None:
        checks.append(stale)
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
    if exit is not None:
        mismatch = exit_mismatch(exit, position, ledger.closed)
        if mismatch is not None:
            checks.append(_fail("portfolio", Reason.POSITION_CHANGED, mismatch))
            return Evaluation(tuple(checks), None)
    base, _ = split_symbol(signal.symbol)
    held_back = ledger.held_base.get(base, 0.0)
    free = (view.balances.get(base) or Balance(0.0, 0.0, 0.0)).free - held_back
    if free <= 0:
        # Not dust: the balances may lag the positions. Tried again, never final.
        held = f" ({held_back:.8g} held back: SELLs the view may not show yet)"
        checks.append(
            _fail(
                "portfolio",
                Reason.INSUFFICIENT_BALANCE,
                f"position of {position.quantity:.8g} {signal.symbol} but no free {base}"
                + (held if held_back else ""),
            )
        )
        return Evaluation(tuple(checks), None)
    price = market.price if market is not None else signal.price
    decimals = config.decimals_for(signal.symbol)
    sellable = min(position.quantity, free)
    quantity = floor_quantity(sellable, decimals)
    if quantity <= 0 or quantity * price < config.min_notional:
        checks.append(
            _fail(
                "portfolio",
                Reason.DUST_REMAINDER,
                f"{sellable:.8g} {base} left to sell (position {position.quantity:.8g}, "
                f"free {free:.8g}), {quantity:.8g} at {decimals} decimals = "
                f"{quantity * price:.2f} {config.quote_asset}, under the minimum "
                f"{config.min_notional:g}: dust, not sold",
            )
        )
        return Evaluation(tuple(checks), None)
    checks.append(
        _ok(
            "portfolio",
            f"position of {position.quantity:.8f} {signal.symbol}, {free:.8f} {base} free",
        )
    )
    if market is None:
        checks.append(_ok("market", "no market price; an exit does not wait for one"))
    else:
        checks.append(_ok("market", f"market {market.price:.8g}, {now - market.at:.1f} s old"))
    checks.append(
        _ok(
            "sizing",
            f"SELL min(position {position.quantity:.8f}, free {free:.8f}) "
            f"floored to {decimals} decimals: {quantity:.8f}",
        )
    )
    plan = OrderPlan(signal.symbol, Side.SELL, quantity, price, quantity * price, None)
    return Evaluation(tuple(checks), plan)
