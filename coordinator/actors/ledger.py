"""Ledger: the one place that sees every position and every order in flight.

Validators run in parallel, one per group of symbols, so the limits that span symbols
(concurrent trades, free balance, exposure, order rate, loss limits) are checked here,
one signal at a time, and the room of an accepted order is held until its outcome is
known. The Portfolio is fetched on a worker thread (never blocking a check) when the
view is older than ``PORTFOLIO_CACHE_TTL``, at most once a second after our own fills,
and soon when the TrailingStop holds a position the view lacks; fills made after a fetch
started are laid over the view until a later fetch includes them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pykka import ActorDeadError

from coordinator.infra.portfolio_client import PortfolioClient, PortfolioError
from coordinator.messages.health import PortfolioGuardsChanged
from coordinator.messages.pipeline import (
    GetLedgerSnapshot,
    LedgerSnapshot,
    PortfolioFetched,
    PositionsSeen,
    RefreshPortfolio,
    Reservation,
    Reserve,
    Settle,
    StopLossRecorded,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.supervisor.ticker import Ticker
from coordinator.trading.guards import portfolio_guards
from coordinator.trading.paper_book import split_symbol
from coordinator.trading.signals import Side
from coordinator.trading.sizing import SizingTable
from coordinator.trading.stops import EXIT_ID_PREFIX
from coordinator.trading.trading_state import StateReason
from coordinator.trading.validation import (
    Balance,
    LedgerState,
    OrderPlan,
    PortfolioView,
    PositionView,
    Reason,
    RiskConfig,
    evaluate_order,
)

__all__ = ["Ledger", "apply_fill", "risk_config"]

logger = logging.getLogger(__name__)

# Seconds between fetches caused by our own fills. The view already has those fills
# applied; the fetch only confirms them, and with a thousand positions each one costs
# milliseconds of CPU that exits on other symbols wait behind.
_MIN_REFRESH = 1.0
_URGENT_GAP = 0.2  # seconds between fetches for a position the view lacks
_SETTLE_WINDOW = 60.0  # a fill not shown by the Portfolio after this is trusted to it


def risk_config(services: Services) -> RiskConfig:
    config = services.config
    risk = config.risk
    return RiskConfig(
        quote_asset=risk.quote_asset,
        max_concurrent_trades=config.trading.max_concurrent_trades,
        min_notional=risk.min_notional,
        max_exposure_percent=risk.max_exposure_percent,
        max_orders_per_minute=risk.max_orders_per_minute,
        daily_loss_limit_percent=risk.daily_loss_limit_percent,
        max_drawdown_percent=risk.max_drawdown_percent,
        stop_loss_cooldown=risk.stop_loss_cooldown,
        require_market_data=risk.require_market_data,
        max_price_deviation_percent=risk.max_price_deviation_percent,
        market_data_max_age=risk.market_data_max_age,
        portfolio_max_age=risk.portfolio_max_age,
        portfolio_max_age_exit=risk.portfolio_max_age_exit,
        sizing=SizingTable(risk.sizing_thresholds, risk.sizing_percents),  # type: ignore[arg-type]
        fee_rate=config.paper.fee_percent / 100.0,
    )


@dataclass(frozen=True, slots=True)
class _Fill:
    plan: OrderPlan
    at: float


def apply_fill(view: PortfolioView, plan: OrderPlan, quote: str, fee_rate: float) -> PortfolioView:
    """The view as it is after ``plan`` filled at its reference price."""
    base, _ = split_symbol(plan.symbol)
    balances = dict(view.balances)
    positions = dict(view.positions)
    cash = balances.get(quote, Balance(0.0, 0.0, 0.0))
    held = balances.get(base, Balance(0.0, 0.0, 0.0))
    if plan.side is Side.BUY:
        spent = plan.notional * (1 + fee_rate)
        balances[quote] = Balance(cash.free - spent, cash.total - spent, (cash.value or 0) - spent)
        balances[base] = Balance(
            held.free + plan.quantity, held.total + plan.quantity, (held.value or 0) + plan.notional
        )
        old = positions.get(plan.symbol)
        quantity = plan.quantity + (old.quantity if old else 0.0)
        positions[plan.symbol] = PositionView(
            plan.symbol, quantity, plan.reference_price, quantity * plan.reference_price, 0.0
        )
    else:
        got = plan.notional * (1 - fee_rate)
        balances[quote] = Balance(cash.free + got, cash.total + got, (cash.value or 0) + got)
        left = max(0.0, held.free - plan.quantity)
        balances[base] = Balance(left, left, left * plan.reference_price)
        positions.pop(plan.symbol, None)
    return replace(view, balances=balances, positions=positions)


def unreflected_fills(fills: list[_Fill], view: PortfolioView, now: float) -> list[_Fill]:
    """Our fills that the fetched view does not show yet.

    A fill made while a fetch was on its way may or may not be in the answer, and a
    Portfolio may lag behind the Trader. With one position per symbol the answer tells:
    if a symbol's latest fill was a BUY and the view holds the position (or a SELL and it
    does not), every fill of that symbol is in the view; otherwise they are laid over it
    again. A fill older than the settle window is taken to be in the view at last.
    """
    latest: dict[str, _Fill] = {}
    for fill in fills:
        latest[fill.plan.symbol] = fill
    kept = []
    for fill in fills:
        if now - fill.at > _SETTLE_WINDOW:
            logger.warning(
                "the Portfolio has not shown a %s of %s after %.0f s; trusting it",
                fill.plan.side,
                fill.plan.symbol,
                now - fill.at,
            )
            continue
        last = latest[fill.plan.symbol].plan
        held = fill.plan.symbol in view.positions
        shown = held if last.side is Side.BUY else not held
        if not shown:
            kept.append(fill)
    return kept


class Ledger(ChildActor):
    subscriptions = (StopLossRecorded,)

    def setup(self) -> None:
        services: Services = self.context.services
        self._clock = self.context.clock
        self._config = risk_config(services)
        self._ttl = services.config.risk.portfolio_cache_ttl
        self._fetched_view = PortfolioView(balances={}, positions={}, fetched_at=None)
        # The fetched view with our fills since laid over it, kept up to date fill by
        # fill rather than rebuilt per signal.
        self._view = self._fetched_view
        self._view_requested_at: float | None = None
        self._fetch_again = False
        self._refresh_after_fill = False
        self._last_fetch_started: float | None = None
        self._fetch_error: str | None = None
        self._fills: list[_Fill] = []
        self._reservations: dict[int, OrderPlan] = {}
        self._ids = itertools.count(1)
        self._order_times: deque[float] = deque()
        self._loss_day = ""
        self._realized_loss = 0.0
        self._peak_equity = 0.0
        self._stop_losses: dict[str, float] = {}
        self._guards: tuple[StateReason, ...] = ()
        self._fetching = False
        url = services.endpoints.portfolio_url
        self._client = (
            PortfolioClient(url, timeout=services.config.risk.portfolio_timeout) if url else None
        )
        self._worker = self.worker_pool("portfolio")
        if self._client is None:
            self._fetch_error = "PORTFOLIO_API_URL is not configured"
        else:
            # The first view before any signal: a short wait here saves rejecting the
            # first signals for want of a portfolio.
            self._fetch()
            try:
                self._pending.result(timeout=services.config.risk.portfolio_timeout * 2 + 1)
            except Exception:
                logger.warning("no portfolio view yet at start")
        self._ticker = Ticker(
            _MIN_REFRESH,
            lambda: self.actor_ref.tell(RefreshPortfolio()),
            name=f"{self.name}-ticker",
        ).start()

    def cleanup(self) -> None:
        if getattr(self, "_ticker", None) is not None:
            self._ticker.stop()
        if getattr(self, "_worker", None) is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def handle(self, message: Any) -> Any:
        match message:
            case Reserve(signal=signal, market=market):
                return self._reserve(signal, market)
            case Settle(reservation_id=reservation_id, filled=filled):
                self._settle(reservation_id, filled)
            case PortfolioFetched():
                self._fetched(message)
            case StopLossRecorded(symbol=symbol, at=at):
                self._stop_losses[symbol] = at
            case RefreshPortfolio():
                self._maybe_fetch()
            case PositionsSeen(symbols=symbols):
                if any(symbol not in self._view.positions for symbol in symbols):
                    self._fetch_urgently()
            case GetLedgerSnapshot():
                return self._snapshot()
            case _:
                return NOT_HANDLED
        return None

    # --- reservations -----------------------------------------------------------------

    def _reserve(self, signal: Any, market: Any) -> Reservation:
        now = self._clock.time()
        self._maybe_fetch()
        while self._order_times and now - self._order_times[0] >= 60.0:
            self._order_times.popleft()
        self._roll_day(now)
        view = self._view
        buying = [p for p in self._reservations.values() if p.side is Side.BUY]
        state = LedgerState(
            reserved_quote=sum(p.notional * (1 + self._config.fee_rate) for p in buying),
            buying=frozenset(p.symbol for p in buying),
            selling=frozenset(p.symbol for p in self._reservations.values() if p.side is Side.SELL),
            orders_last_minute=len(self._order_times),
            realized_loss_today=self._realized_loss,
            peak_equity=self._peak_equity,
            stop_losses=dict(self._stop_losses),
        )
        evaluation = evaluate_order(
            signal, view=view, ledger=state, market=market, config=self._config, now=now
        )
        if evaluation.plan is None:
            failure = evaluation.failure
            if (
                failure is not None
                and failure.reason is Reason.NO_POSITION
                and signal.signal_id.startswith(EXIT_ID_PREFIX)
            ):
                # The TrailingStop saw the position, so it may have opened since the view
                # was fetched: look now, for the exit that will be tried again. (Only for
                # exits: SELL signals on symbols never held are common.)
                self._fetch_urgently()
            return Reservation(checks=evaluation.checks, plan=None, reservation_id=None)
        reservation_id = next(self._ids)
        self._reservations[reservation_id] = evaluation.plan
        if evaluation.plan.side is Side.BUY:
            self._order_times.append(now)
        return Reservation(
            checks=evaluation.checks, plan=evaluation.plan, reservation_id=reservation_id
        )

    def _roll_day(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        if day != self._loss_day:
            self._loss_day, self._realized_loss = day, 0.0

    def _check_guards(self) -> None:
        """Tell ServiceHealth which protection limits hold, after every view change; it
        keeps the trading state DEGRADED (no BUY, exits go on) while one does. Told each
        time, not only on change, so a restarted ServiceHealth learns them again."""
        view = self._view
        if view.fetched_at is None:
            return
        self._roll_day(self._clock.time())
        unrealized = -sum(min(0.0, p.pnl) for p in view.positions.values())
        reasons = portfolio_guards(
            equity=view.equity(),
            peak_equity=self._peak_equity,
            loss_today=self._realized_loss + unrealized,
            daily_loss_limit_percent=self._config.daily_loss_limit_percent,
            max_drawdown_percent=self._config.max_drawdown_percent,
        )
        if reasons != self._guards:
            for reason in reasons:
                logger.warning("portfolio protection: %s", reason.detail)
            if not reasons:
                logger.info("portfolio protection limits clear again")
            self._guards = reasons
        with contextlib.suppress(ChildUnavailable):
            self.context.directory.tell("service_health", PortfolioGuardsChanged(reasons=reasons))

    def _settle(self, reservation_id: int, filled: bool | None) -> None:
        plan = self._reservations.pop(reservation_id, None)
        if plan is None:
            return
        if filled is False:
            return
        # Filled, or unknown: an unknown order is counted as filled until the
        # Portfolio says otherwise - the cautious side.
        if plan.side is Side.SELL:
            position = self._view.positions.get(plan.symbol)
            if position is not None and plan.reference_price < position.entry_price:
                self._realized_loss += (position.entry_price - plan.reference_price) * plan.quantity
        self._fills.append(_Fill(plan, self._clock.time()))
        self._view = apply_fill(self._view, plan, self._config.quote_asset, self._config.fee_rate)
        # Refreshed after our own orders, but not once per fill: the fills are laid over
        # the view meanwhile, and a fetch per fill would load the Portfolio for nothing.
        self._refresh_after_fill = True
        self._check_guards()
        self._maybe_fetch()

    # --- fetching ---------------------------------------------------------------------

    def _maybe_fetch(self) -> None:
        now = self._clock.time()
        last = self._last_fetch_started
        if self._refresh_after_fill and (last is None or now - last >= _MIN_REFRESH):
            self._refresh_after_fill = False
            self._fetch()
            return
        fetched = self._fetched_view.fetched_at
        if fetched is None or now - fetched >= self._ttl:
            self._fetch()

    def _fetch_urgently(self) -> None:
        """Fetch now, unless one started less than ``_URGENT_GAP`` ago: then with the
        refreshes after fills. Many exits refused at once must not hammer a Portfolio
        that is failing."""
        last = self._last_fetch_started
        if last is None or self._clock.time() - last >= _URGENT_GAP:
            self._fetch()
        else:
            self._refresh_after_fill = True

    def _fetch(self) -> None:
        if self._client is None:
            return
        if self._fetching:
            self._fetch_again = True
            return
        self._fetching = True
        client = self._client
        requested_at = self._clock.time()
        self._last_fetch_started = requested_at

        def fetch() -> None:
            try:
                view = client.fetch(time.time())
                message = PortfolioFetched(view=view, requested_at=requested_at, error=None)
            except PortfolioError as exc:
                message = PortfolioFetched(view=None, requested_at=requested_at, error=str(exc))
            with contextlib.suppress(ActorDeadError):
                self.actor_ref.tell(message)

        self._pending = self._worker.submit(fetch)

    def _fetched(self, message: PortfolioFetched) -> None:
        self._fetching = False
        if self._fetch_again:
            self._fetch_again = False
            self._fetch()
        if message.view is None:
            if self._fetch_error != message.error:
                logger.warning("portfolio not fetched: %s", message.error)
            self._fetch_error = message.error
            return
        if self._fetch_error is not None:
            logger.info("portfolio fetched again")
        self._fetch_error = None
        if self._view_requested_at is not None and message.requested_at < self._view_requested_at:
            return  # an older fetch answering late
        self._fetched_view = message.view
        self._view_requested_at = message.requested_at
        self._fills = unreflected_fills(self._fills, message.view, self._clock.time())
        view = message.view
        for fill in self._fills:
            view = apply_fill(view, fill.plan, self._config.quote_asset, self._config.fee_rate)
        self._view = view
        self._peak_equity = max(self._peak_equity, message.view.equity())
        self._check_guards()

    def _snapshot(self) -> LedgerSnapshot:
        view = self._view
        fetched = self._fetched_view.fetched_at
        return LedgerSnapshot(
            positions=tuple(sorted(view.positions)),
            reservations=len(self._reservations),
            reserved_quote=sum(
                p.notional for p in self._reservations.values() if p.side is Side.BUY
            ),
            view_age=None if fetched is None else self._clock.time() - fetched,
            error=self._fetch_error if fetched is None or self._fetch_error else None,
        )
