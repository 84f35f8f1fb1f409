"""Ledger: the one place that sees every position and every order in flight.

Validators run in parallel, one per group of symbols, so the limits that span symbols
(concurrent trades, free balance, exposure, order rate, loss limits) are checked here,
one signal at a time, and the room of an accepted order is held until its outcome is
known. The Portfolio is fetched on a worker thread (never blocking a check) when the
view is older than ``PORTFOLIO_CACHE_TTL``, at most once a second after our own fills,
and soon when the TrailingStop holds a position the view lacks. The book of holdings,
reservations and fills (``coordinator.trading.ledger_book``) merges the fetched view
with our orders so that each counts once whatever the order of answers; this actor
keeps the dispatch, the fetching and the clock.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from coordinator.actors.ledger_store import read_recent_orders
from coordinator.actors.names import ActorName
from coordinator.infra.portfolio_client import PortfolioClient, PortfolioError
from coordinator.logs import FailureLog
from coordinator.messages.health import PortfolioGuardsChanged
from coordinator.messages.ledger import OrderNotExecuted
from coordinator.messages.pipeline import (
    GetLedgerSnapshot,
    LedgerSnapshot,
    PortfolioFetched,
    PositionsSeen,
    RefreshPortfolio,
    Reservation,
    ReservationsExpired,
    Reserve,
    ReserveMany,
    Settle,
    StopLossRecorded,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.ledger_book import LedgerBook, SettleResult
from coordinator.trading.ledger_changes import Change, resumed
from coordinator.trading.ledger_fetching import MIN_REFRESH, FetchThrottle
from coordinator.trading.ledger_restore import StoredOrder, restore
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.portfolio_numbers import PortfolioNumbers
from coordinator.trading.stops import EXIT_ID_PREFIX
from coordinator.trading.trading_state import StateReason
from coordinator.trading.validation import (
    CheckResult,
    Reason,
    RiskConfig,
)

__all__ = ["Ledger"]

logger = logging.getLogger(__name__)

_STORE_TIMEOUT = 5.0  # seconds to connect to and read from PostgreSQL
_LOGGED = frozenset({Reserve, ReserveMany, Settle})
"""The messages whose changes go to the log after the kept copy of the book."""
_LOG_LIMIT = 4_096
"""Changes in the log at most; beyond, a new copy (the log is made again at a restart)."""


class Ledger(ChildActor):
    subscriptions = (StopLossRecorded,)
    settings: RiskConfig
    # A fill's Settle waits in the inbox for the Ledger's next wake (a Reserve, an
    # ask, its refresh tick) instead of waking it: under load a wake per order cost more
    # than the settling. Every Reserve comes after the Settles told before it, so each
    # finds the book as if they had been taken at once; the Settle carries its time.
    # Any other outcome wakes it (``Settle.wakes``).
    deferred_messages = (Settle,)

    def setup(self) -> None:
        services: Services = self.context.services
        self._clock = self.context.clock
        self._config = risk = self.settings
        self._kept = services.kept_ledger
        kept = self._kept.copy().get("book")
        self._dsn = services.endpoints.database_dsn
        # A new process lays our recent orders from the store over its first view; an
        # actor restart has them in the kept book already.
        self._restored = bool(kept["restored"]) if kept is not None else not self._dsn
        self._stored: Future[list[StoredOrder]] | None = None
        self._store_worker: ThreadPoolExecutor | None = None
        if kept is not None:
            # An earlier incarnation's book: our orders the Portfolio does not show yet,
            # and the reservations whose Settles are on their way (ids stay unique).
            self._book: LedgerBook = resumed(kept["book"], kept.get("changes", ()))
            logger.info("the Ledger resumes its book: %d order(s) of ours", len(self._book.orders))
        else:
            self._book = LedgerBook(
                quote=self._config.quote_asset,
                fee_rate=self._config.fee_rate,
                lifetime=risk.reservation_lifetime,
                settle_window=risk.fill_settle_window,
            )
        self._log: list[Change] | None = None
        """The changes after the kept copy (None: no copy of this incarnation's yet)."""
        self._changes: list[Change] = []
        """The changes of the message being handled."""
        self._unlogged = False
        """The message being handled changed the book otherwise (a restore)."""
        self._expired = 0
        self._throttle = FetchThrottle(risk.portfolio_cache_ttl)
        self._fetch_failure = FailureLog(
            logger, failed="portfolio not fetched", recovered="portfolio fetched again"
        )
        self._numbers = PortfolioNumbers()
        self._guards: tuple[StateReason, ...] = ()
        self._guards_told_at: float | None = None
        url = services.endpoints.portfolio_url
        self._client = PortfolioClient(url, timeout=risk.portfolio_timeout) if url else None
        self.worker_pool("portfolio")
        if not self._restored:
            self._read_stored()
        if self._client is None:
            self._fetch_failure.error = "PORTFOLIO_API_URL is not configured"
        else:
            # The first view before any signal: a short wait here saves rejecting the
            # first signals for want of a portfolio.
            self._fetch()
            try:
                self._pending.result(timeout=risk.portfolio_timeout * 2 + 1)
            except Exception:
                logger.warning("no portfolio view yet at start")
        if self._stored is not None:
            with contextlib.suppress(Exception):
                self._stored.result(timeout=_STORE_TIMEOUT + 1)
        self.ticker(MIN_REFRESH, RefreshPortfolio)

    def handle(self, message: Any) -> Any:
        self._changes = []
        self._unlogged = False
        result = self._dispatch(message)
        if isinstance(message, GetLedgerSnapshot | StopLossRecorded):
            return result
        # Only after a complete change: a crash in the middle of one leaves the next
        # incarnation the book as it was before it. The orders' own messages add their
        # changes to the log after the kept copy (a copy per order cost more than the
        # rest of a Settle); anything else, or a long log, makes a new copy.
        log = self._log
        if (
            log is not None
            and type(message) in _LOGGED
            and not self._unlogged
            and len(log) + len(self._changes) <= _LOG_LIMIT
        ):
            log.extend(self._changes)
        else:
            self._keep()
        return result

    def _keep(self) -> None:
        """A copy of the book for the next incarnation, and a new log after it."""
        self._log = []
        self._kept.put(
            "book",
            {"book": self._book.snapshot(), "restored": self._restored, "changes": self._log},
        )

    def _change(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A change of the book that the next incarnation can make again on the kept
        copy (the book is a pure state machine: the same calls, the same book)."""
        result = getattr(self._book, name)(*args, **kwargs)
        self._changes.append((name, args, kwargs))
        return result

    def _dispatch(self, message: Any) -> Any:
        match message:
            case Reserve():
                return self._reserve(message)
            case ReserveMany(reserves=reserves):
                # One wake-up and one kept book for them all (see ``handle``).
                return tuple(self._reserve_among_many(reserve) for reserve in reserves)
            case Settle():
                self._settle(message)
            case OrderNotExecuted():
                self._not_executed(message)
            case PortfolioFetched():
                self._fetched(message)
            case StopLossRecorded(symbol=symbol, at=at):
                self._numbers.stop_loss(symbol, at)
            case RefreshPortfolio():
                self._restore()
                self._expire()
                self._maybe_fetch()
                self._check_guards()
            case PositionsSeen(symbols=symbols):
                if any(symbol not in self._book.view.positions for symbol in symbols):
                    self._fetch_urgently()
            case GetLedgerSnapshot():
                return self._snapshot()
            case _:
                return NOT_HANDLED
        return None

    # --- reservations -----------------------------------------------------------------

    def _reserve(self, message: Reserve) -> Reservation:
        signal = message.signal
        now = self._clock.time()
        if message.deadline is not None and now > message.deadline:
            # The asker has given up on this answer: a reservation now would be held
            # by nobody (and a leaked SELL one would refuse every exit of the symbol).
            logger.warning(
                "Reserve of %s by %s came %.1f s after its asker gave up; no reservation",
                signal.signal_id,
                message.owner or "?",
                now - message.deadline,
            )
            late = CheckResult(
                "risk", False, Reason.INTERNAL_ERROR, "the Ledger answered after the ask timed out"
            )
            return Reservation(checks=(late,), plan=None, reservation_id=None)
        self._restore()
        if not self._restored and self._book.fetched.fetched_at is None:
            # Nothing to lay our orders over yet: the Portfolio is what is missing.
            error = self._fetch_failure.error
            why = f" ({error})" if error else ""
            missing = CheckResult(
                "portfolio",
                False,
                Reason.PORTFOLIO_UNAVAILABLE,
                f"no portfolio view fetched yet{why}",
            )
            return Reservation(checks=(missing,), plan=None, reservation_id=None)
        if not self._restored:
            # Without our recent orders, a lagging Portfolio would make us sell again
            # what we sold, or spend again what we spent.
            waiting = CheckResult(
                "risk",
                False,
                Reason.STORE_UNAVAILABLE,
                "our recent orders are not read from the store yet",
            )
            return Reservation(checks=(waiting,), plan=None, reservation_id=None)
        self._expire()
        self._maybe_fetch()
        book = self._book
        state = self._numbers.ledger_state(book, now, signal.symbol, exit=message.exit is not None)
        evaluation = evaluate_order(
            signal,
            view=book.view,
            ledger=state,
            market=message.market,
            config=self._config,
            now=now,
            exit=message.exit,
        )
        if evaluation.plan is None:
            failure = evaluation.failure
            if (
                failure is not None
                and failure.reason in (Reason.NO_POSITION, Reason.POSITION_CHANGED)
                and signal.signal_id.startswith(EXIT_ID_PREFIX)
            ):
                # The TrailingStop saw the position, so it may have opened since the view
                # was fetched: look now, for the exit that will be tried again. (Only for
                # exits: SELL signals on symbols never held are common.)
                self._fetch_urgently()
            return Reservation(checks=evaluation.checks, plan=None, reservation_id=None)
        order = self._change(
            "reserve", evaluation.plan, owner=message.owner, now=now, signal_id=signal.signal_id
        )
        self._numbers.reserved(evaluation.plan, now)
        return Reservation(
            checks=evaluation.checks, plan=evaluation.plan, reservation_id=order.reservation_id
        )

    def _reserve_among_many(self, message: Reserve) -> Reservation:
        """One Reserve of a ReserveMany. A bug on it is its own refusal: the ask does not
        fail for all, whose reservations made already would be held by nobody."""
        try:
            return self._reserve(message)
        except Exception as exc:
            logger.exception("internal error reserving for %s", message.signal.signal_id)
            failed = CheckResult(
                "risk", False, Reason.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"
            )
            return Reservation(checks=(failed,), plan=None, reservation_id=None)

    def _expire(self) -> None:
        released, trusted = self._change("expire", self._clock.time())
        for order in released:
            logger.warning(
                "reservation %s (%s %s %.8g, signal %s, by %s) not settled within %g s; released",
                order.reservation_id,
                order.plan.side,
                order.plan.symbol,
                order.plan.quantity,
                order.signal_id,
                order.owner or "?",
                self._book.lifetime,
            )
        for order in trusted:
            logger.warning(
                "the Portfolio has not shown our %s of %s after %.0f s; trusting it",
                order.plan.side,
                order.plan.symbol,
                self._book.settle_window,
            )
        if released:
            self._expired += len(released)
            with contextlib.suppress(ChildUnavailable):
                self.context.directory.publish(
                    ReservationsExpired(
                        count=len(released), owners=tuple(o.owner for o in released)
                    )
                )
        if released or trusted:
            self._check_guards()

    def _check_guards(self) -> None:
        """Tell ServiceHealth which protection limits hold, checked after every view
        change; it keeps the trading state DEGRADED (no BUY, exits go on) while one does.
        Told at once when they change, and once a second (the refresh tick) even when
        they do not, so a restarted ServiceHealth learns them again: a message per
        order would cost more than the order's own work here."""
        view = self._book.view
        if view.fetched_at is None:
            return
        now = self._clock.time()
        reasons = self._numbers.guards(view, self._config, now)
        changed = reasons != self._guards
        if changed:
            for reason in reasons:
                logger.warning("portfolio protection: %s", reason.detail)
            if not reasons:
                logger.info("portfolio protection limits clear again")
            self._guards = reasons
        told = self._guards_told_at
        if not changed and told is not None and 0 <= now - told < MIN_REFRESH:
            return
        self._guards_told_at = now
        with contextlib.suppress(ChildUnavailable):
            self.context.directory.tell(
                ActorName.SERVICE_HEALTH, PortfolioGuardsChanged(reasons=reasons)
            )

    def _settle(self, message: Settle) -> None:
        result, order = self._change(
            "settle",
            message.reservation_id,
            message.filled,
            symbol=message.symbol,
            side=message.side,
            now=self._clock.time() if message.at is None else message.at,
        )
        if result is SettleResult.UNKNOWN_ID:
            logger.warning(
                "settlement of %s %s by reservation %s ignored: no such reservation here "
                "(settled or expired already, or made by an earlier Ledger)",
                message.side,
                message.symbol,
                message.reservation_id,
            )
            return
        if result is SettleResult.WRONG_PLAN and order is not None:
            logger.warning(
                "settlement of %s %s by reservation %s ignored: that reservation is for %s %s",
                message.side,
                message.symbol,
                message.reservation_id,
                order.plan.side,
                order.plan.symbol,
            )
            return
        if message.filled is False or order is None:
            return
        self._numbers.filled(order)
        # The fills are laid over the view meanwhile: a fetch per fill would load the
        # Portfolio for nothing.
        self._throttle.after_fill()
        self._check_guards()
        self._maybe_fetch()

    def _not_executed(self, message: OrderNotExecuted) -> None:
        order = self._book.not_executed(
            message.signal_id, symbol=message.symbol, side=message.side, now=self._clock.time()
        )
        if order is None:
            return
        logger.warning(
            "%s %s of %s (order %s) was never executed: no longer counted as filled",
            message.side,
            order.plan.quantity,
            message.symbol,
            message.client_order_id,
        )
        self._check_guards()

    # --- fetching ---------------------------------------------------------------------

    def _maybe_fetch(self) -> None:
        if self._throttle.due(self._clock.time(), self._book.fetched.fetched_at):
            self._fetch()

    def _fetch_urgently(self) -> None:
        if self._throttle.urgent(self._clock.time()):
            self._fetch()

    def _fetch(self) -> None:
        if self._client is None:
            return
        requested_at = self._clock.time()
        if not self._throttle.start(requested_at):
            return
        client = self._client
        self._pending = self.run_then_tell(
            lambda: client.fetch(self._clock.time()),
            lambda view: PortfolioFetched(view=view, requested_at=requested_at, error=None),
            on_error=lambda exc: PortfolioFetched(
                view=None, requested_at=requested_at, error=str(exc)
            ),
            errors=(PortfolioError,),
            pool="portfolio",
        )

    def _fetched(self, message: PortfolioFetched) -> None:
        if self._throttle.finished(self._clock.time()):
            self._fetch()
        if message.view is None:
            self._fetch_failure.failed(message.error)
            return
        self._fetch_failure.succeeded()
        if not self._book.fetched_view(message.view, message.requested_at):
            return  # an older fetch answering late
        self._restore()
        self._numbers.equity_seen(message.view.equity(self._config.quote_asset))
        self._check_guards()

    # --- our orders from before this process -------------------------------------------

    def _read_stored(self) -> None:
        """Read our recent orders from the store, off the actor's thread."""
        dsn, since = self._dsn, self._clock.time() - self._book.settle_window
        # A thread of its own: reads failing during an outage do not delay the fetches.
        if self._store_worker is None:
            self._store_worker = self.worker_pool("store")
        self._stored = self._store_worker.submit(read_recent_orders, dsn, since, _STORE_TIMEOUT)

    def _restore(self) -> None:
        """Once both are there, lay the stored orders over the first fetched view."""
        stored = self._stored
        if self._restored or stored is None or not stored.done():
            return
        if self._book.fetched.fetched_at is None:
            return
        try:
            orders = stored.result()
        except Exception as exc:
            logger.warning("our recent orders not read from the store (%s); reading again", exc)
            self._read_stored()
            return
        laid = restore(self._book, orders, now=self._clock.time())
        self._restored, self._stored = True, None
        self._unlogged = True
        logger.info("%d recent order(s) of ours laid over the Portfolio's view", laid)
        self._check_guards()

    def _snapshot(self) -> LedgerSnapshot:
        view = self._book.view
        fetched = self._book.fetched.fetched_at
        error = self._fetch_failure.error
        return LedgerSnapshot(
            positions=tuple(sorted(view.positions)),
            reservations=self._book.reservation_count(),
            reservations_expired=self._expired,
            reserved_quote=self._book.reserved_notional(),
            view_age=None if fetched is None else self._clock.time() - fetched,
            error=error if fetched is None or error else None,
            cash_held_back=self._book.cash_margin,
            base_held_back=self._book.base_margin,
        )
