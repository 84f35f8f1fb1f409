"""TrailingStop: a stop for every open position, following every price tick.

Positions come from the Portfolio (``GET /positions/active``, every
``POSITIONS_REFRESH_INTERVAL`` and soon after our own orders), with their RootTrading
cycle id from ``trade_cycles`` when the table exists (a fetch whose cycles cannot be read
is a failed fetch: nothing changes). A position is keyed by that id, else by symbol +
entry time + entry price, never by the symbol alone; a holding seen under a new key (same
symbol, same quantity, entry close) keeps its peak, stop and lifecycle. Each tick of a
held symbol moves the peak and, through the rules of ``coordinator.trading.stops``, the
stop (only up). The lifecycle of each stop (``coordinator.trading.stop_lifecycle``)
decides when an ``ExitPosition`` goes to the Validator of the symbol, and reads the
stored states of a holding's earlier exit orders before any new attempt: an unsettled
one holds every new attempt until it is reconciled or resolved. Our own SELL filled on
a symbol ends the stops of the holdings known before it.

Every change is written through to the process's kept records (a restarted incarnation
resumes from them exactly) and, in batches, to ``coordinator_stops`` (a restarted
process resumes from there).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from coordinator.actors.trailing_stop_holdings import StopHoldings
from coordinator.actors.trailing_stop_leader import LEADER_WORK, StopLeadership
from coordinator.actors.trailing_stop_prices import StopPrices
from coordinator.actors.trailing_stop_work import StopWork
from coordinator.cluster.lease import LossReason
from coordinator.config.parts import StopSettings
from coordinator.infra.portfolio_client import PortfolioClient
from coordinator.infra.stop_store import StopStore
from coordinator.infra.store import StoreError
from coordinator.logs import FailureLog
from coordinator.messages.leadership import LeaderElected, LeadershipLost
from coordinator.messages.pipeline import (
    OrderFinished,
    PricesUpdated,
    PriceUpdated,
    SignalDecided,
    StopLossRecorded,
)
from coordinator.messages.stops import (
    AtrHistoryLoaded,
    CandleClosed,
    ExitOrdersRead,
    ExitPosition,
    ExitsLookedUp,
    GetTrailingStops,
    PositionsFetched,
    StopsFlushed,
    StopTick,
    StopTriggered,
    StoredClosesRead,
    StoredStopsRead,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.execution import OrderStatus
from coordinator.trading.routing import validator_for
from coordinator.trading.signals import Side
from coordinator.trading.stop_book import (
    Holding,
    from_record,
    parse_exit_id,
)
from coordinator.trading.stops import EXIT_SOURCE

__all__ = ["TrailingStop"]

logger = logging.getLogger(__name__)

_TICK = 0.25
_SOON_AFTER_ORDER = 0.5  # seconds after one of our orders before positions are fetched
_ORDER_FETCH_GAP = 1.0  # but not sooner than this after the previous fetch started


@dataclass(slots=True)
class _Flush:
    failure: FailureLog
    busy: bool = False
    dirty: set[str] = field(default_factory=set)


class TrailingStop(StopLeadership, StopHoldings, StopPrices, StopWork, ChildActor):
    subscriptions = (CandleClosed, SignalDecided, OrderFinished, LeaderElected, LeadershipLost)
    settings: StopSettings

    def setup(self) -> None:
        services: Services = self.context.services
        self._services = services
        self._clock = self.context.clock
        self._settings = self.settings.stops
        self._params = self.settings.params
        settings = self._settings
        self._life_params = lc.LifecycleParams(
            exit_timeout=settings.exit_timeout,
            exit_settle=settings.exit_settle,
            retry_base=settings.retry_base,
            retry_max=settings.retry_max,
        )
        self._validators = self.settings.validators
        self._kept = services.kept_stops
        self._token = None
        self._flush = _Flush(
            FailureLog(
                logger,
                failed="stop state not stored (kept, written again)",
                recovered="stop state stored again",
                level=logging.ERROR,
            )
        )
        self._forget_stops()
        self._positions_failure = FailureLog(
            logger,
            failed="positions not fetched (stops kept as they are)",
            recovered="positions fetched again",
        )
        self._cycles_error: str | None = None
        self._cycles_seen = False
        self._stale_ticks = 0
        self._newest = {}
        self._triggered = 0
        self._tick_mono = 0.0
        url = services.endpoints.portfolio_url
        self._portfolio = (
            PortfolioClient(url, timeout=self.settings.portfolio_timeout) if url else None
        )
        dsn = services.endpoints.database_dsn
        self._dsn = dsn
        self._store = StopStore(dsn, timeout=5.0)
        self._cycles = StopStore(dsn, timeout=5.0)
        self._orders = StopStore(dsn, timeout=5.0)
        # The store's worker writes in order; the Portfolio has its own, so that a slow
        # Portfolio never holds back a write of the stops; reading exit orders has its
        # own too, so that a batch of writes never delays an exit.
        fetcher = self.worker_pool("positions", finish_queued=True)
        self.on_cleanup(lambda: fetcher.submit(self._close_fetcher), what="portfolio")
        reader = self.worker_pool("orders", finish_queued=True)
        self.on_cleanup(lambda: reader.submit(self._orders.close), what="order reader")
        writer = self.worker_pool("store", finish_queued=True)
        self.on_cleanup(lambda: self._last_write(writer), what="stop store")
        self.ticker(min(_TICK, self._settings.flush_interval), StopTick)
        self._follow_elector()

    def _last_write(self, writer: ThreadPoolExecutor) -> None:
        # A last write of what changed (the kept records have it all the same).
        records = self._dirty_records()
        if records and self._token is not None:
            writer.submit(self._write, records, self._token)
        writer.submit(self._store.close)

    def _close_fetcher(self) -> None:
        self._cycles.close()
        if self._portfolio is not None:
            self._portfolio.close()

    # --- start ------------------------------------------------------------------------

    def _restore(self) -> None:
        """Open stops from the store, then this process's kept records over them (they
        are newer: the store lags by a flush). Then positions and ATR history, at once."""
        records: dict[str, dict[str, Any]] = {}
        # A connection of its own: the writer's may be in use on its worker, or left
        # broken by a PostgreSQL outage that ended this term (a restore on election).
        reader = StopStore(self._dsn, timeout=5.0)
        try:
            for record in reader.open_stops():
                records[record["position_key"]] = record
        except StoreError as exc:
            logger.error("stops not restored from the store (kept records only): %s", exc)
        finally:
            reader.close()
        records.update(self._kept.copy())
        now = self._clock.time()
        pending: list[tuple[Holding, tuple[lc.Action, ...]]] = []
        for record in records.values():
            if record.get("closed_at") is not None:
                continue
            try:
                position, actions = from_record(record, self._params, now)
            except (KeyError, TypeError, ValueError) as exc:
                logger.error(
                    "stop record %s unusable, skipped: %s", record.get("position_key"), exc
                )
                continue
            self._add(position)
            pending.append((position, actions))
        for position, actions in pending:
            self._run(position, actions, now)
        if self._positions:
            logger.info(
                "%d stop(s) restored: %s",
                len(self._positions),
                ", ".join(
                    f"{p.symbol} peak {p.stop.peak:.8g} stop {p.stop.stop:.8g} ({p.life.phase})"
                    for p in self._positions.values()
                ),
            )
        self._submit_lookups()
        self._fetch_due = now
        self._load_atr(sorted(self._by_symbol))
        # Prices heard while following, then any newer one stored by RootTrading.
        self._decide_on_newest(self._positions.values(), now)
        self._read_stored_closes(sorted(self._by_symbol), now)

    # --- messages ---------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if self._token is None and isinstance(message, LEADER_WORK):
            if isinstance(message, PricesUpdated):
                self._keep_newest(message.updates)
            elif isinstance(message, PriceUpdated):
                self._keep_newest((message,))
            return None
        match message:
            case LeaderElected(token=token):
                self._lead(token)
            case LeadershipLost(token=token, reason=reason):
                self._lost(token, f"leadership {reason}", planned=reason is LossReason.RELEASED)
            case PricesUpdated(updates=updates):
                self._on_updates(updates)
            case PriceUpdated():
                self._on_updates((message,))
            case StopTick():
                self._tick()
            case CandleClosed():
                self._on_candle(message)
            case SignalDecided(decision=decision, source=source) if source == EXIT_SOURCE:
                self._on_exit_decided(
                    decision.signal_id, decision.outcome, decision.reason, decision.detail
                )
            case SignalDecided():
                pass
            case OrderFinished(order=order):
                self._on_order(order.symbol, order.side, order.state, order.at, order.signal_id)
            case PositionsFetched():
                self._on_positions(message)
            case StoredClosesRead():
                self._on_stored_closes(message)
            case ExitsLookedUp(decisions=decisions, error=error):
                self._on_exits_looked_up(decisions, error)
            case ExitOrdersRead():
                self._on_orders_read(message)
            case AtrHistoryLoaded(candles=candles, error=error):
                if error:
                    logger.warning("no ATR history from market_data: %s", error)
                for symbol, time_ms, high, low, close in candles:
                    self._atr_add(symbol, time_ms, high, low, close)
            case StopsFlushed(lease_lost=True, fence=fence) if fence is not None:
                self._lost(fence, f"the fence refused a write of the stops: {message.error}")
            case StopsFlushed(keys=keys, error=error) if self._token is not None:
                self._on_flushed(keys, error)
            case StopsFlushed():
                pass  # a write of a term that ended
            case StoredStopsRead(json=text, keys=keys, error=error):
                self._merge_stored(json.loads(text), keys, error)
            case GetTrailingStops(stored_if_following=True) if self._token is None:
                return self._stored_snapshot()
            case GetTrailingStops(rows=rows):
                return self._snapshot(rows)
            case _:
                return NOT_HANDLED
        return None

    # --- the lifecycle ----------------------------------------------------------------

    def _step(self, position: Holding, event: lc.StopEvent, now: float) -> None:
        """One event through the holding's lifecycle, and its actions done."""
        before = position.life
        life, actions = lc.step(
            before,
            event,
            now=now,
            price=self._fresh_price(position, now),
            stop=position.stop.stop,
            entry=position.stop.entry,
            params=self._life_params,
        )
        position.life = life
        # Only what the record holds is written (a fetch showing the holding again
        # changes its lifecycle, not its record).
        if life is not before and (
            life.phase is not before.phase
            or life.attempt != before.attempt
            or life.failures != before.failures
            or life.detail != before.detail
        ):
            self._changed(position, now)
        self._run(position, actions, now)
        if life.phase is lc.Phase.CLOSED and before.phase is not lc.Phase.CLOSED:
            self._close(position, now)

    def _run(self, position: Holding, actions: tuple[lc.Action, ...], now: float) -> None:
        for action in actions:
            match action:
                case lc.SendExit(attempt=attempt, price=price):
                    self._send_exit(position, attempt, price, now)
                case lc.ReadOrders():
                    self._read_orders(position, now)
                case lc.LookUpDecision():
                    self._lookups.append(position.exit_id)
                case lc.FetchPositions():
                    self._fetch_due = min(self._fetch_due, now)
                case lc.Alert(text=text):
                    logger.error("ALERT stop of %s: %s", position.key, text)
                case lc.RecordStopLoss():
                    self.context.directory.publish(StopLossRecorded(symbol=position.symbol, at=now))

    def _holding_of(self, key: str | None) -> Holding | None:
        if key is None:
            return None
        seen = 0
        while key in self._alias and key not in self._positions and seen < 100:
            key, seen = self._alias[key], seen + 1
        return self._positions.get(key)

    # --- exits ------------------------------------------------------------------------

    def _send_exit(self, position: Holding, attempt: int, price: float, now: float) -> None:
        self._triggered += 1
        position.sent_key = position.key
        stop = position.stop
        message = ExitPosition(
            exit_id=position.exit_id,
            position_key=position.key,
            symbol=position.symbol,
            quantity=position.quantity,
            entry_price=stop.entry,
            opened_at=position.entry_time,
            price=price,
            price_at=position.last_price_at if position.last_price_at is not None else now,
            stop=stop.stop,
            rule=stop.rule,
            strategy="+".join(position.rules),
            triggered_at=now,
            tick_mono=self._tick_mono or time.monotonic(),
            fence=self._token,
        )
        validator = validator_for(position.symbol, self._validators)
        try:
            self.context.directory.tell(validator, message)
        except ChildUnavailable as exc:
            failed = lc.Decided(
                attempt=attempt,
                outcome=lc.ExitOutcome.REJECTED,
                reason="validator_unavailable",
                detail=f"not handed to {validator}: {exc}",
            )
            self._step(position, failed, now)
            return
        logger.warning(
            "stop hit: %s %s at %.8g (stop %.8g by %s, peak %.8g, entry %.8g): exit %d sent",
            position.symbol,
            position.key,
            price,
            stop.stop,
            stop.rule,
            stop.peak,
            stop.entry,
            attempt,
        )
        self.context.directory.publish(
            StopTriggered(
                position_key=position.key,
                symbol=position.symbol,
                exit_id=position.exit_id,
                attempt=attempt,
                price=price,
                stop=stop.stop,
                peak=stop.peak,
                entry=stop.entry,
                rule=stop.rule,
                strategy="+".join(position.rules),
                at=now,
            )
        )

    def _on_exit_decided(
        self, signal_id: str, outcome: str, reason: str | None, detail: str
    ) -> None:
        key, attempt = parse_exit_id(signal_id)
        position = self._holding_of(key)
        if position is None:
            return
        # Attempts are numbered on across a change of key: the number alone says which.
        try:
            kind = lc.ExitOutcome(outcome)
        except ValueError:
            logger.error("exit %s: unknown outcome %r ignored", signal_id, outcome)
            return
        event = lc.Decided(attempt=attempt, outcome=kind, reason=reason, detail=detail)
        self._step(position, event, self._clock.time())

    def _on_exits_looked_up(
        self, decisions: tuple[tuple[str, str, str | None, str], ...], error: str | None
    ) -> None:
        if error:
            logger.warning("exits in flight not looked up: %s", error)
        found = set()
        for signal_id, outcome, reason, detail in decisions:
            found.add(signal_id)
            self._on_exit_decided(signal_id, outcome, reason, detail)
        now = self._clock.time()
        for position in list(self._positions.values()):
            if not position.life.lookup_pending:
                continue
            if position.exit_id in found or error:
                position.life = replace(position.life, lookup_pending=False)
                continue
            # No decision long after it was sent: lost on the way (a Validator crashed
            # on it). The next attempt reads this one's stored order first.
            self._step(position, lc.DecisionMissing(attempt=position.life.attempt), now)

    def _on_order(self, symbol: str, side: str, state: str, at: float, signal_id: str) -> None:
        now = self._clock.time()
        if state == OrderStatus.UNKNOWN or (side != Side.SELL and state == OrderStatus.ACCEPTED):
            # A new position should get its stop at once; but with many orders a second,
            # fetching thousands of positions after each one would take the time the
            # exits need: at most one such fetch a second. A SELL filled needs none: it
            # ends its stops here and now, and the regular fetch closes them.
            soon = max(now + _SOON_AFTER_ORDER, self._fetch_started + _ORDER_FETCH_GAP)
            self._fetch_due = min(self._fetch_due, soon)
        if side != Side.SELL or state != OrderStatus.ACCEPTED:
            return
        # Our SELL filled: it sold the holdings of the symbol we knew before it. A holding
        # opened after it (a BUY since) has its own stop from its own fetch.
        for position in list(self._by_symbol.get(symbol, ())):
            if position.known_since < at:
                self._step(position, lc.OwnSellFilled(detail=signal_id), now)

    # --- time -------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock.time()
        if not self._fetching and now >= self._fetch_due and self._portfolio is not None:
            self._fetching = True
            self._fetch_due = now + self._settings.refresh_interval
            self._fetch_started = now
            self.run_then_tell(self._fetch_positions, pool="positions")
        timer = lc.Timer()
        for position in [p for p in self._positions.values() if p.life.phase in lc.TIMED_PHASES]:
            self._step(position, timer, now)
        self._submit_lookups()
        self._maybe_flush()

    def _submit_lookups(self) -> None:
        if self._lookups:
            lookups, self._lookups = self._lookups, []
            self.run_then_tell(functools.partial(self._look_up_exits, lookups), pool="store")
