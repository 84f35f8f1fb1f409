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

import contextlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import pykka

from coordinator.clock import utc_iso
from coordinator.infra.portfolio_client import PortfolioClient, PortfolioError
from coordinator.infra.stop_store import StopStore
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import (
    OrderSubmitted,
    PositionsSeen,
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
    HeldPosition,
    PositionsFetched,
    StopsFlushed,
    StopTick,
    StopTriggered,
    StoredStopsRead,
    TrailingStopsSnapshot,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.supervisor.ticker import Ticker
from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.routing import validator_for
from coordinator.trading.stop_book import (
    Holding,
    carry_over,
    exit_prefixes,
    find_rekeyed,
    from_record,
    parse_exit_id,
)
from coordinator.trading.stops import (
    EXIT_SOURCE,
    AtrTracker,
    StopState,
    open_stop,
    position_key,
    raise_stop,
    update_stop,
)

__all__ = ["TrailingStop"]

logger = logging.getLogger(__name__)

_TICK = 0.25
_SOON_AFTER_ORDER = 0.5  # seconds after one of our orders before positions are fetched
_ORDER_FETCH_GAP = 1.0  # but not sooner than this after the previous fetch started
_ORDER_POLL = 2.0  # how often the stored state of an unsettled exit order is read again


@dataclass(slots=True)
class _Flush:
    busy: bool = False
    dirty: set[str] = field(default_factory=set)
    error: str | None = None


class TrailingStop(ChildActor):
    subscriptions = (CandleClosed, SignalDecided, OrderSubmitted)

    def setup(self) -> None:
        services: Services = self.context.services
        self._services = services
        self._clock = self.context.clock
        config = services.config
        self._settings = config.stops
        self._params = config.stop_params()
        settings = self._settings
        self._life_params = lc.LifecycleParams(
            exit_timeout=settings.exit_timeout,
            exit_settle=settings.exit_settle,
            retry_base=settings.retry_base,
            retry_max=settings.retry_max,
        )
        self._validators = config.coordination.validation_threads
        self._kept = services.kept_stops
        self._positions: dict[str, Holding] = {}
        self._by_symbol: dict[str, list[Holding]] = defaultdict(list)
        self._alias: dict[str, str] = {}
        self._atr: dict[str, AtrTracker] = {}
        self._flush = _Flush()
        self._closing: dict[str, dict[str, Any]] = {}
        self._fetching = False
        self._fetch_due = 0.0
        self._fetch_started = 0.0
        self._last_fetch: float | None = None
        self._positions_error: str | None = None
        self._cycles_error: str | None = None
        self._stale_ticks = 0
        self._triggered = 0
        self._tick_mono = 0.0
        self._lookups: list[str] = []
        self._orders_reading: set[str] = set()
        self._orders_read_at: dict[str, float] = {}
        url = services.endpoints.portfolio_url
        self._portfolio = (
            PortfolioClient(url, timeout=config.risk.portfolio_timeout) if url else None
        )
        dsn = services.endpoints.database_dsn
        self._store = StopStore(dsn, timeout=5.0)
        self._cycles = StopStore(dsn, timeout=5.0)
        self._orders = StopStore(dsn, timeout=5.0)
        # The store's worker writes in order; the Portfolio has its own, so that a slow
        # Portfolio never holds back a write of the stops; reading exit orders has its
        # own too, so that a batch of writes never delays an exit.
        self._worker = self.worker_pool("store")
        self._fetcher = self.worker_pool("positions")
        self._reader = self.worker_pool("orders")
        self._restore()
        self._ticker = Ticker(
            min(_TICK, self._settings.flush_interval),
            lambda: self.actor_ref.tell(StopTick()),
            name=f"{self.name}-ticker",
        ).start()

    def cleanup(self) -> None:
        if getattr(self, "_ticker", None) is not None:
            self._ticker.stop()
        if getattr(self, "_fetcher", None) is not None:
            self._fetcher.submit(self._close_fetcher)
            self._fetcher.shutdown(wait=False)
        if getattr(self, "_reader", None) is not None:
            self._reader.submit(self._orders.close)
            self._reader.shutdown(wait=False)
        if getattr(self, "_worker", None) is not None:
            # A last write of what changed (the kept records have it all the same).
            records = self._dirty_records() if getattr(self, "_flush", None) else []
            if records:
                self._worker.submit(self._write, records)
            self._worker.submit(self._store.close)
            self._worker.shutdown(wait=False)

    def _close_fetcher(self) -> None:
        self._cycles.close()
        if self._portfolio is not None:
            self._portfolio.close()

    # --- start ------------------------------------------------------------------------

    def _restore(self) -> None:
        """Open stops from the store, then this process's kept records over them (they
        are newer: the store lags by a flush). Then positions and ATR history, at once."""
        records: dict[str, dict[str, Any]] = {}
        try:
            for record in self._store.open_stops():
                records[record["position_key"]] = record
        except StoreError as exc:
            logger.error("stops not restored from the store (kept records only): %s", exc)
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

    # --- messages ---------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case PricesUpdated(updates=updates):
                for update in updates:
                    self._on_update(update)
            case PriceUpdated():
                self._on_update(message)
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
            case OrderSubmitted(order=order):
                self._on_order(order.symbol, order.side, order.state, order.at, order.signal_id)
            case PositionsFetched():
                self._on_positions(message)
            case ExitsLookedUp(decisions=decisions, error=error):
                self._on_exits_looked_up(decisions, error)
            case ExitOrdersRead():
                self._on_orders_read(message)
            case AtrHistoryLoaded(candles=candles, error=error):
                if error:
                    logger.warning("no ATR history from market_data: %s", error)
                for symbol, time_ms, high, low, close in candles:
                    self._atr_add(symbol, time_ms, high, low, close)
            case StopsFlushed(keys=keys, error=error):
                self._on_flushed(keys, error)
            case StoredStopsRead(json=text, keys=keys, error=error):
                self._merge_stored(json.loads(text), keys, error)
            case GetTrailingStops():
                return self._snapshot()
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
        if life is not before:
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

    # --- prices -----------------------------------------------------------------------

    def _on_update(self, update: PriceUpdated) -> None:
        positions = self._by_symbol.get(update.symbol)
        if positions:
            for position in list(positions):
                self._on_price(position, update.price, update.at, update.received_mono)

    def _on_price(self, position: Holding, price: float, at: float, mono: float) -> None:
        now = self._clock.time()
        if now - at > self._settings.price_max_age:
            # Late (kept in a mailbox across a restart, say): no decision on it.
            self._stale_ticks += 1
            return
        if position.last_price_at is not None and at < position.last_price_at:
            return
        position.last_price, position.last_price_at = price, at
        if not position.life.live:
            return
        try:
            atr = self._atr_value(position)
            state, hit = update_stop(position.stop, price, position.rules, self._params, atr)
        except Exception as exc:
            # A bug or a bad number never sells: reported, and the position stays watched.
            position.errors += 1
            position.life = replace(
                position.life, detail=f"stop logic error: {type(exc).__name__}: {exc}"
            )
            if position.errors in (1, 10, 100) or position.errors % 1000 == 0:
                logger.exception("stop of %s not evaluated on %r", position.key, price)
            return
        if state is not position.stop:
            position.stop = state
            self._changed(position, now)
        if hit and position.life.phase is lc.Phase.WATCHING:
            self._tick_mono = mono
            try:
                self._step(position, lc.Tick(), now)
            finally:
                self._tick_mono = 0.0

    def _fresh_price(self, position: Holding, now: float) -> float | None:
        """The latest price, if it is not stale."""
        at = position.last_price_at
        if at is None or now - at > self._settings.price_max_age:
            return None
        return position.last_price

    def _atr_value(self, position: Holding) -> float | None:
        if "atr" not in position.rules:
            return None
        tracker = self._atr.get(position.symbol)
        return None if tracker is None else tracker.value

    def _on_candle(self, candle: CandleClosed) -> None:
        if candle.symbol not in self._by_symbol:
            return
        self._atr_add(candle.symbol, candle.time_ms, candle.high, candle.low, candle.close)

    def _atr_add(self, symbol: str, time_ms: int, high: float, low: float, close: float) -> None:
        tracker = self._atr.get(symbol)
        if tracker is None:
            tracker = self._atr[symbol] = AtrTracker(self._settings.atr_period)
        try:
            before = tracker.value
            value = tracker.add(time_ms, high, low, close)
        except ValueError as exc:
            logger.warning("candle of %s not used for the ATR: %s", symbol, exc)
            return
        if value is None or value == before:
            return
        now = self._clock.time()
        for position in self._by_symbol.get(symbol, ()):
            if "atr" in position.rules:
                raised = raise_stop(position.stop, position.rules, self._params, value)
                if raised is not position.stop:
                    position.stop = raised
                    self._changed(position, now)

    def _load_atr(self, symbols: list[str]) -> None:
        wanted = [s for s in symbols if s not in self._atr]
        if not wanted:
            return
        for symbol in wanted:
            self._atr[symbol] = AtrTracker(self._settings.atr_period)
        self._worker.submit(self._read_atr_history, wanted)

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
            price=price,
            price_at=position.last_price_at if position.last_price_at is not None else now,
            stop=stop.stop,
            rule=stop.rule,
            strategy="+".join(position.rules),
            triggered_at=now,
            tick_mono=self._tick_mono or time.monotonic(),
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
        if state in ("accepted", "unknown"):
            # A new position should get its stop at once, a sold one be closed; but with
            # many exits a second, fetching a thousand positions after each one would
            # take the time the exits need: at most one such fetch a second.
            soon = max(now + _SOON_AFTER_ORDER, self._fetch_started + _ORDER_FETCH_GAP)
            self._fetch_due = min(self._fetch_due, soon)
        if side != "SELL" or state != "accepted":
            return
        # Our SELL filled: it sold the holdings of the symbol we knew before it. A holding
        # opened after it (a BUY since) has its own stop from its own fetch.
        for position in list(self._by_symbol.get(symbol, ())):
            if position.known_since < at:
                self._step(position, lc.OwnSellFilled(detail=signal_id), now)

    def _read_orders(self, position: Holding, now: float) -> None:
        """Read the stored exit orders the holding's next attempt depends on. Reads of a
        holding waiting on an order are spaced; one that is due to send goes at once."""
        key = position.key
        if key in self._orders_reading:
            return
        waiting = position.life.phase is lc.Phase.AWAITING_ORDER
        if waiting and now - self._orders_read_at.get(key, -1e18) < _ORDER_POLL:
            return
        self._orders_reading.add(key)
        self._orders_read_at[key] = now
        self._reader.submit(
            self._read_exit_orders, key, position.symbol, exit_prefixes(position.keys)
        )

    def _on_orders_read(self, message: ExitOrdersRead) -> None:
        self._orders_reading.discard(message.position_key)
        position = self._holding_of(message.position_key)
        if position is None:
            return
        now = self._clock.time()
        if message.error is not None:
            logger.warning("exit orders of %s not read: %s", position.key, message.error)
        orders = tuple(
            lc.OrderSeen(
                client_order_id=client_order_id,
                state=state,
                attempt=position.attempt_of(signal_id),
            )
            for signal_id, client_order_id, state in message.orders
        )
        was_checking = position.life.phase is lc.Phase.CHECKING
        self._step(position, lc.OrdersRead(orders=orders, error=message.error), now)
        if was_checking and position.life.phase is lc.Phase.AWAITING_ORDER:
            logger.error(
                "ALERT stop of %s hit, but order %s is not settled: no new exit until it "
                "is reconciled or resolved",
                position.key,
                position.life.waiting_on,
            )

    # --- positions --------------------------------------------------------------------

    def _on_positions(self, message: PositionsFetched) -> None:
        self._fetching = False
        now = self._clock.time()
        if message.cycles_error != self._cycles_error:
            if message.cycles_error:
                logger.warning("trade_cycles not read: %s", message.cycles_error)
            self._cycles_error = message.cycles_error
        if message.error is not None:
            if message.error != self._positions_error:
                logger.warning("positions not fetched (stops kept as they are): %s", message.error)
            self._positions_error = message.error
            return
        if self._positions_error is not None:
            logger.info("positions fetched again")
        self._positions_error = None
        self._last_fetch = now
        shown: dict[str, HeldPosition] = {}
        for held in message.positions:
            if held.quantity <= 0 or held.entry_price <= 0:
                continue
            key = position_key(
                held.symbol,
                cycle_id=held.cycle_id,
                opened_at=held.opened_at,
                entry_price=held.entry_price,
            )
            shown[key] = held
        # Stops whose key this fetch lacks: one of them may be shown under a new key.
        vanished = [p for p in self._positions.values() if p.key not in shown]
        adopted: list[Holding] = []
        for key, held in shown.items():
            position = self._positions.get(key)
            if position is None:
                old = find_rekeyed(vanished, held.symbol, held.quantity, held.entry_price)
                if old is not None:
                    vanished.remove(old)
                    self._rekey(old, key, held, now)
                    position = old
                else:
                    position = self._adopt(key, held, now)
                    adopted.append(position)
            elif position.quantity != held.quantity:
                position.quantity = held.quantity
                self._changed(position, now)
            self._step(position, lc.PositionsSeen(held=True), now)
        for position in list(self._positions.values()):
            if position.key not in shown:
                self._step(position, lc.PositionsSeen(held=False), now)
        if adopted:
            logger.info(
                "watching %s",
                ", ".join(
                    f"{p.symbol} ({p.key}, entry {p.stop.entry:.8g}, stop {p.stop.stop:.8g})"
                    for p in adopted
                ),
            )
            # A position seen before (this key stored, closed or not) keeps its peak.
            self._worker.submit(self._read_stops, [p.key for p in adopted])
            # The Ledger sizes the exits from its own view: have it see them too.
            with contextlib.suppress(ChildUnavailable):
                self.context.directory.tell(
                    "ledger", PositionsSeen(symbols=tuple(sorted({p.symbol for p in adopted})))
                )
            self._load_atr(sorted({p.symbol for p in adopted}))

    def _adopt(self, key: str, held: HeldPosition, now: float) -> Holding:
        rules = self._settings.rules_for(held.symbol)
        atr = self._atr[held.symbol].value if held.symbol in self._atr else None
        position = Holding(
            key=key,
            symbol=held.symbol,
            cycle_id=held.cycle_id,
            quantity=held.quantity,
            entry_time=held.opened_at,
            rules=rules,
            stop=open_stop(rules, self._params, held.entry_price, atr=atr),
            watched_at=now,
            updated_at=now,
            known_since=self._fetch_started,
            life=lc.Lifecycle(confirmed=True, clean=False, seen_at=now),
        )
        self._add(position)
        self._changed(position, now)
        return position

    def _rekey(self, position: Holding, key: str, held: HeldPosition, now: float) -> None:
        """The holding is shown under another key: same stop, peak and lifecycle."""
        old_key, old_stop = position.key, position.stop.stop
        record = position.record()
        record.update(state=lc.Phase.CLOSED.value, closed_at=now, detail=f"re-keyed to {key}")
        self._closing[old_key] = record
        self._kept.put(old_key, record)
        self._flush.dirty.add(old_key)
        del self._positions[old_key]
        carry_over(
            position,
            key=key,
            cycle_id=held.cycle_id,
            entry=held.entry_price,
            opened_at=held.opened_at,
            quantity=held.quantity,
            params=self._params,
        )
        if position.sent_key is None and position.life.in_flight:
            position.sent_key = old_key
        self._positions[key] = position
        self._alias[old_key] = key
        self._orders_read_at.pop(old_key, None)
        logger.warning(
            "holding %s %s now shown as %s: peak %.8g and stop %.8g kept (was %.8g)",
            position.symbol,
            old_key,
            key,
            position.stop.peak,
            position.stop.stop,
            old_stop,
        )
        self._changed(position, now)
        self._worker.submit(self._read_stops, [key])

    def _merge_stored(
        self, records: list[dict[str, Any]], keys: tuple[str, ...], error: str | None
    ) -> None:
        """A position adopted just now may have been watched before: keep its peak (and
        count its attempts). One never stored has no earlier exit anywhere."""
        now = self._clock.time()
        by_key = {str(r["position_key"]): r for r in records}
        for key in keys or tuple(by_key):
            position = self._positions.get(key)
            if position is None:
                continue
            record = by_key.get(key)
            if record is None:
                life = position.life
                if error is None and life.attempt == 0 and not position.aliases:
                    position.life = replace(life, clean=True)
                continue
            peak, stop = float(record["peak"]), float(record["stop"])
            changed = False
            if peak > position.stop.peak:
                raised = open_stop(position.rules, self._params, position.stop.entry, peak=peak)
                position.stop = StopState(
                    raised.entry, peak, max(raised.stop, position.stop.stop), raised.rule
                )
                changed = True
            if stop > position.stop.stop:
                position.stop = StopState(
                    position.stop.entry, position.stop.peak, stop, str(record["stop_rule"])
                )
                changed = True
            if int(record["attempt"]) > position.life.attempt:
                position.life = replace(position.life, attempt=int(record["attempt"]))
                changed = True
            if changed:
                position.life = replace(
                    position.life, detail="peak and stop taken over from the stored record"
                )
                self._changed(position, now)

    def _add(self, position: Holding) -> None:
        self._positions[position.key] = position
        self._by_symbol[position.symbol].append(position)

    def _close(self, position: Holding, now: float) -> None:
        position.closed_at = now
        logger.info("stop of %s closed: %s", position.key, position.life.detail)
        self._changed(position, now)
        del self._positions[position.key]
        siblings = self._by_symbol[position.symbol]
        siblings.remove(position)
        if not siblings:
            del self._by_symbol[position.symbol]
        for alias in position.aliases:
            self._alias.pop(alias, None)
        self._orders_read_at.pop(position.key, None)
        # The last record goes to the store with the next flush; then it is forgotten here.
        self._closing[position.key] = position.record()

    # --- time -------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock.time()
        if not self._fetching and now >= self._fetch_due and self._portfolio is not None:
            self._fetching = True
            self._fetch_due = now + self._settings.refresh_interval
            self._fetch_started = now
            self._fetcher.submit(self._fetch_positions)
        timer = lc.Timer()
        for position in list(self._positions.values()):
            self._step(position, timer, now)
        self._submit_lookups()
        self._maybe_flush()

    def _submit_lookups(self) -> None:
        if self._lookups:
            lookups, self._lookups = self._lookups, []
            self._worker.submit(self._look_up_exits, lookups)

    # --- persistence ------------------------------------------------------------------

    def _changed(self, position: Holding, now: float) -> None:
        position.updated_at = now
        self._kept.put(position.key, position.record())
        self._flush.dirty.add(position.key)

    def _dirty_records(self) -> list[dict[str, Any]]:
        records = []
        for key in self._flush.dirty:
            position = self._positions.get(key)
            record = position.record() if position is not None else self._closing.get(key)
            if record is not None:
                records.append(record)
        self._flush.dirty = set()
        return records

    def _maybe_flush(self) -> None:
        flush = self._flush
        if flush.busy or not flush.dirty:
            return
        records = self._dirty_records()
        if records:
            flush.busy = True
            self._worker.submit(self._write, records)

    def _on_flushed(self, keys: tuple[str, ...], error: str | None) -> None:
        flush = self._flush
        flush.busy = False
        if error is not None:
            if flush.error != error:
                logger.error("stop state not stored (kept, written again): %s", error)
            flush.error = error
            flush.dirty.update(keys)
            return
        if flush.error is not None:
            logger.info("stop state stored again")
        flush.error = None
        for key in keys:
            if key in self._closing and key not in flush.dirty and key not in self._positions:
                del self._closing[key]
                self._kept.drop(key)

    # --- worker threads ---------------------------------------------------------------

    def _tell(self, message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(message)

    def _write(self, records: list[dict[str, Any]]) -> None:
        keys = tuple(r["position_key"] for r in records)
        try:
            self._store.write(records)
            self._tell(StopsFlushed(keys=keys, error=None))
        except StoreError as exc:
            self._tell(StopsFlushed(keys=keys, error=str(exc)))

    def _fetch_positions(self) -> None:
        assert self._portfolio is not None
        try:
            held = self._portfolio.held_positions()
        except PortfolioError as exc:
            self._tell(PositionsFetched(positions=(), error=str(exc)))
            return
        try:
            cycles = self._cycles.open_cycles()
        except StoreError as exc:
            # Without the cycles every key would change: a failed fetch, nothing changes.
            self._tell(
                PositionsFetched(
                    positions=(), error=f"trade_cycles not read: {exc}", cycles_error=str(exc)
                )
            )
            return
        by_symbol: dict[str, list[tuple[str, float | None, float | None]]] = defaultdict(list)
        for cycle, symbol, _entry, _quantity, created in cycles:
            by_symbol[symbol].append((cycle, _entry, created))
        positions = []
        for position in held:
            matches = by_symbol.get(position.symbol, [])
            if len(matches) == 1:
                cycle, _entry, created = matches[0]
                opened = position.opened_at if position.opened_at is not None else created
                position = HeldPosition(
                    position.symbol, position.quantity, position.entry_price, opened, cycle
                )
            positions.append(position)
        self._tell(PositionsFetched(positions=tuple(positions), error=None, cycles_error=None))

    def _read_stops(self, keys: list[str]) -> None:
        try:
            records = self._store.stops(keys)
        except StoreError as exc:
            logger.warning("stored stops of new positions not read: %s", exc)
            self._tell(StoredStopsRead(json="[]", keys=tuple(keys), error=str(exc)))
            return
        self._tell(StoredStopsRead(json=json.dumps(records), keys=tuple(keys)))

    def _read_atr_history(self, symbols: list[str]) -> None:
        try:
            candles = self._store.atr_candles(
                symbols, self._settings.atr_timeframe, self._settings.atr_period * 3
            )
            self._tell(AtrHistoryLoaded(candles=tuple(candles), error=None))
        except StoreError as exc:
            self._tell(AtrHistoryLoaded(candles=(), error=str(exc)))

    def _look_up_exits(self, exit_ids: list[str]) -> None:
        try:
            decisions = self._store.exit_decisions(exit_ids)
            self._tell(ExitsLookedUp(decisions=tuple(decisions), error=None))
        except StoreError as exc:
            self._tell(ExitsLookedUp(decisions=(), error=str(exc)))

    def _read_exit_orders(self, key: str, symbol: str, prefixes: list[str]) -> None:
        try:
            orders = self._orders.exit_orders(symbol, prefixes)
        except StoreError as exc:
            self._tell(ExitOrdersRead(position_key=key, orders=(), error=str(exc)))
            return
        self._tell(ExitOrdersRead(position_key=key, orders=tuple(orders), error=None))

    # --- API --------------------------------------------------------------------------

    def _snapshot(self) -> TrailingStopsSnapshot:
        now = self._clock.time()
        max_age = self._settings.price_max_age
        rows = [
            p.row(now, max_age)
            for p in sorted(self._positions.values(), key=lambda p: (p.symbol, p.key))
        ]
        settings = self._settings
        body = {
            "positions": rows,
            "count": len(rows),
            "awaiting_orders": sum(1 for r in rows if r["waiting_on_order"]),
            "rules": {
                "default": "+".join(settings.rules),
                "by_symbol": {s: "+".join(r) for s, r in settings.rules_by_symbol},
                "described": {
                    "+".join(r): self._params.describe(r)
                    for r in {settings.rules, *dict(settings.rules_by_symbol).values()}
                },
            },
            "price_max_age_s": max_age,
            "positions_fetched_at": None if self._last_fetch is None else utc_iso(self._last_fetch),
            "positions_error": self._positions_error,
            "trade_cycles_error": self._cycles_error,
            "store_error": self._flush.error,
            "stale_ticks_ignored": self._stale_ticks,
            "exits_triggered": self._triggered,
        }
        return TrailingStopsSnapshot(json=json.dumps(body, default=str), active=len(rows))
