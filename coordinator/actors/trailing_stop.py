"""TrailingStop: a stop for every open position, following every price tick.

Positions come from the Portfolio (``GET /positions/active``, every
``POSITIONS_REFRESH_INTERVAL`` and soon after our own orders), with their RootTrading
cycle id from ``trade_cycles`` when the table exists. A position is keyed by that id,
else by symbol + entry time + entry price, never by the symbol alone. Each tick of a held
symbol moves the peak and, through the rules of ``coordinator.trading.stops``, the stop
(only up). A price at or below the stop sends one ``ExitPosition`` to the Validator of
the symbol: the same path as a SELL signal, where the Ledger holds one exit per symbol
in flight and sizes it from the position. The outcome comes back as the exit's stored
decision (``SignalDecided``): sold, unknown (never sent again; an alert), or failed
(tried again with backoff while the price is still at or below the stop; the peak and
the stop are kept).

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
from dataclasses import dataclass, field
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
from coordinator.trading.routing import validator_for
from coordinator.trading.stops import (
    EXIT_ID_PREFIX,
    EXIT_SOURCE,
    AtrTracker,
    StopState,
    exit_backoff,
    exit_id,
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
_MISSES_TO_CLOSE = 2  # successful fetches in a row without a position before it is closed

WATCHING = "watching"
EXITING = "exiting"
RETRY = "retry"
SOLD = "sold"
EXIT_UNKNOWN = "exit_unknown"
CLOSED = "closed"
# Rejections that say the position is not there to sell.
_GONE = frozenset({"no_position"})


@dataclass(slots=True)
class _Position:
    key: str
    symbol: str
    cycle_id: str | None
    quantity: float
    entry_time: float | None
    rules: tuple[str, ...]
    stop: StopState
    watched_at: float
    updated_at: float
    state: str = WATCHING
    attempt: int = 0
    """Exits sent so far; the current one is ``exit:<key>:<attempt>``."""
    failures: int = 0
    """Failed exits in a row."""
    detail: str = ""
    closed_at: float | None = None
    sent_at: float | None = None
    """When the current exit was sent (or its outcome came)."""
    retry_at: float | None = None
    seen_at: float | None = None
    """When the Portfolio last showed it."""
    missing: int = 0
    last_price: float | None = None
    last_price_at: float | None = None
    errors: int = 0
    lookup_pending: bool = False

    @property
    def exit_id(self) -> str:
        return exit_id(self.key, self.attempt)

    def record(self) -> dict[str, Any]:
        return {
            "position_key": self.key,
            "symbol": self.symbol,
            "cycle_id": self.cycle_id,
            "entry_price": self.stop.entry,
            "entry_time": self.entry_time,
            "quantity": self.quantity,
            "rules": "+".join(self.rules),
            "peak": self.stop.peak,
            "stop": self.stop.stop,
            "stop_rule": self.stop.rule,
            "state": self.state,
            "attempt": self.attempt,
            "failures": self.failures,
            "detail": self.detail,
            "watched_at": self.watched_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
        }


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
        self._validators = config.coordination.validation_threads
        self._kept = services.kept_stops
        self._positions: dict[str, _Position] = {}
        self._by_symbol: dict[str, list[_Position]] = defaultdict(list)
        self._atr: dict[str, AtrTracker] = {}
        self._flush = _Flush()
        self._closing: dict[str, _Position] = {}
        self._fetching = False
        self._fetch_due = 0.0
        self._fetch_started = 0.0
        self._last_fetch: float | None = None
        self._positions_error: str | None = None
        self._cycles_error: str | None = None
        self._stale_ticks = 0
        self._triggered = 0
        url = services.endpoints.portfolio_url
        self._portfolio = (
            PortfolioClient(url, timeout=config.risk.portfolio_timeout) if url else None
        )
        dsn = services.endpoints.database_dsn
        self._store = StopStore(dsn, timeout=5.0)
        self._cycles = StopStore(dsn, timeout=5.0)
        # The store's worker writes in order; the Portfolio has its own, so that a slow
        # Portfolio never holds back a write of the stops.
        self._worker = self.worker_pool("store")
        self._fetcher = self.worker_pool("positions")
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
        for record in records.values():
            if record.get("closed_at") is not None:
                continue
            try:
                position = self._from_record(record)
            except (KeyError, TypeError, ValueError) as exc:
                logger.error(
                    "stop record %s unusable, skipped: %s", record.get("position_key"), exc
                )
                continue
            self._add(position)
        if self._positions:
            logger.info(
                "%d stop(s) restored: %s",
                len(self._positions),
                ", ".join(
                    f"{p.symbol} peak {p.stop.peak:.8g} stop {p.stop.stop:.8g} ({p.state})"
                    for p in self._positions.values()
                ),
            )
        in_flight = [p.exit_id for p in self._positions.values() if p.state == EXITING]
        if in_flight:
            self._worker.submit(self._look_up_exits, in_flight)
        self._fetch_due = now
        self._load_atr(sorted(self._by_symbol))

    def _from_record(self, record: dict[str, Any]) -> _Position:
        entry = float(record["entry_price"])
        rules = tuple(str(record["rules"]).split("+"))
        stop = open_stop(rules, self._params, entry, peak=float(record["peak"]))
        stored_stop = float(record["stop"])
        if stored_stop > stop.stop:
            stop = StopState(entry, stop.peak, stored_stop, str(record["stop_rule"]))
        position = _Position(
            key=str(record["position_key"]),
            symbol=str(record["symbol"]),
            cycle_id=record.get("cycle_id"),
            quantity=float(record["quantity"]),
            entry_time=record.get("entry_time"),
            rules=rules,
            stop=stop,
            watched_at=float(record["watched_at"]),
            updated_at=float(record["updated_at"]),
            state=str(record["state"]),
            attempt=int(record["attempt"]),
            failures=int(record["failures"]),
            detail=str(record.get("detail") or ""),
        )
        if position.state in (RETRY, EXITING, SOLD, EXIT_UNKNOWN):
            # Times are not kept: give the current exit its full timeout from now.
            position.sent_at = self._clock.time()
            position.retry_at = self._clock.time()
        return position

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
                # A new position should get its stop at once, a sold one be closed; but
                # with many exits a second, fetching a thousand positions after each one
                # would take the time the exits need: at most one such fetch a second.
                if order.state in ("accepted", "unknown"):
                    now = self._clock.time()
                    soon = max(now + _SOON_AFTER_ORDER, self._fetch_started + _ORDER_FETCH_GAP)
                    self._fetch_due = min(self._fetch_due, soon)
            case PositionsFetched():
                self._on_positions(message)
            case ExitsLookedUp(decisions=decisions, error=error):
                self._on_exits_looked_up(decisions, error)
            case AtrHistoryLoaded(candles=candles, error=error):
                if error:
                    logger.warning("no ATR history from market_data: %s", error)
                for symbol, time_ms, high, low, close in candles:
                    self._atr_add(symbol, time_ms, high, low, close)
            case StopsFlushed(keys=keys, error=error):
                self._on_flushed(keys, error)
            case StoredStopsRead(json=text):
                self._merge_stored(json.loads(text))
            case GetTrailingStops():
                return self._snapshot()
            case _:
                return NOT_HANDLED
        return None

    # --- prices -----------------------------------------------------------------------

    def _on_update(self, update: PriceUpdated) -> None:
        positions = self._by_symbol.get(update.symbol)
        if positions:
            for position in list(positions):
                self._on_price(position, update.price, update.at, update.received_mono)

    def _on_price(self, position: _Position, price: float, at: float, mono: float) -> None:
        now = self._clock.time()
        if now - at > self._settings.price_max_age:
            # Late (kept in a mailbox across a restart, say): no decision on it.
            self._stale_ticks += 1
            return
        if position.last_price_at is not None and at < position.last_price_at:
            return
        position.last_price, position.last_price_at = price, at
        if position.state not in (WATCHING, RETRY, EXITING, SOLD, EXIT_UNKNOWN):
            return
        try:
            atr = self._atr_value(position)
            state, hit = update_stop(position.stop, price, position.rules, self._params, atr)
        except Exception as exc:
            # A bug or a bad number never sells: reported, and the position stays watched.
            position.errors += 1
            position.detail = f"stop logic error: {type(exc).__name__}: {exc}"
            if position.errors in (1, 10, 100) or position.errors % 1000 == 0:
                logger.exception("stop of %s not evaluated on %r", position.key, price)
            return
        if state is not position.stop:
            position.stop = state
            self._changed(position, now)
        # Only a watched position exits on a tick; one whose exit failed waits for its
        # retry time (backoff), when the latest price decides.
        if hit and position.state == WATCHING:
            self._send_exit(position, price, now, mono)

    def _fresh_price(self, position: _Position, now: float) -> float | None:
        """The latest price, if it is not stale."""
        at = position.last_price_at
        if at is None or now - at > self._settings.price_max_age:
            return None
        return position.last_price

    def _atr_value(self, position: _Position) -> float | None:
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

    def _send_exit(self, position: _Position, price: float, now: float, mono: float) -> None:
        if position.seen_at is None:
            # Restored from a record and not shown by the Portfolio since: it may have
            # been closed while we were down and another of its symbol opened, which the
            # Ledger would sell in its place. Its first fetch confirms or closes it.
            position.detail = (
                f"stop {position.stop.stop:.8g} hit at {price:.8g}, but the position is not "
                "confirmed by the Portfolio since the restart: no exit"
            )
            return
        position.attempt += 1
        position.state = EXITING
        position.sent_at = now
        position.retry_at = None
        position.detail = (
            f"exit {position.attempt} sent: {position.stop.rule} stop "
            f"{position.stop.stop:.8g} hit at {price:.8g}"
        )
        self._changed(position, now)
        self._triggered += 1
        message = ExitPosition(
            exit_id=position.exit_id,
            position_key=position.key,
            symbol=position.symbol,
            quantity=position.quantity,
            entry_price=position.stop.entry,
            price=price,
            price_at=position.last_price_at if position.last_price_at is not None else now,
            stop=position.stop.stop,
            rule=position.stop.rule,
            strategy="+".join(position.rules),
            triggered_at=now,
            tick_mono=mono or time.monotonic(),
        )
        validator = validator_for(position.symbol, self._validators)
        try:
            self.context.directory.tell(validator, message)
        except ChildUnavailable as exc:
            self._exit_failed(position, f"not handed to {validator}: {exc}", now)
            return
        logger.warning(
            "stop hit: %s %s at %.8g (stop %.8g by %s, peak %.8g, entry %.8g): exit %d sent",
            position.symbol,
            position.key,
            price,
            position.stop.stop,
            position.stop.rule,
            position.stop.peak,
            position.stop.entry,
            position.attempt,
        )
        self.context.directory.publish(
            StopTriggered(
                position_key=position.key,
                symbol=position.symbol,
                exit_id=position.exit_id,
                attempt=position.attempt,
                price=price,
                stop=position.stop.stop,
                peak=position.stop.peak,
                entry=position.stop.entry,
                rule=position.stop.rule,
                strategy="+".join(position.rules),
                at=now,
            )
        )

    def _exit_failed(self, position: _Position, why: str, now: float) -> None:
        position.failures += 1
        wait = exit_backoff(position.failures, self._settings.retry_base, self._settings.retry_max)
        position.state = RETRY
        position.retry_at = now + wait
        position.detail = (
            f"exit {position.attempt} failed ({why}); again in {wait:g} s if still hit"
        )
        logger.warning("exit of %s failed: %s; retry in %g s", position.key, why, wait)
        self._changed(position, now)

    def _on_exit_decided(
        self, signal_id: str, outcome: str, reason: str | None, detail: str
    ) -> None:
        key, attempt = _parse_exit_id(signal_id)
        position = self._positions.get(key) if key is not None else None
        if position is None:
            return
        now = self._clock.time()
        current = attempt == position.attempt and position.state == EXITING
        if outcome == "accepted":
            # Sold, even by an older attempt: nothing more to sell.
            position.state = SOLD
            position.sent_at = now
            position.failures = 0
            position.detail = f"exit {attempt} filled: {detail}"
            last = position.last_price or position.stop.stop
            if last < position.stop.entry:
                self.context.directory.publish(StopLossRecorded(symbol=position.symbol, at=now))
            self._changed(position, now)
            return
        if outcome == "unknown":
            position.state = EXIT_UNKNOWN
            position.sent_at = now
            position.detail = f"ALERT exit {attempt} outcome unknown, not sent again: {detail}"
            logger.error("ALERT exit of %s: outcome unknown (%s); not sent again", key, detail)
            self._changed(position, now)
            return
        if outcome == "shadow":
            position.state = SOLD
            position.sent_at = now
            position.detail = f"exit {attempt} in shadow mode (TRADING_ENABLED=false): not sent"
            self._changed(position, now)
            return
        if not current:
            return  # an older attempt's rejection: the current one decides
        if reason in _GONE:
            # The Ledger's view may lag behind a position opened elsewhere: the
            # TrailingStop's own reconciliation decides whether it is gone (then it is
            # closed); until then the exit is tried again like any failed one.
            position.missing = max(position.missing, 1)
            self._fetch_due = min(self._fetch_due, now)
        self._exit_failed(position, f"{reason}: {detail}", now)

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
        for position in self._positions.values():
            if not position.lookup_pending:
                continue
            position.lookup_pending = False
            if position.state == EXITING and position.exit_id not in found and not error:
                # No decision long after it was sent: the exit was lost on the way (a
                # Validator crashed on it). A new attempt has a new id; the Ledger still
                # holds one exit per symbol and sells only what is held.
                self._exit_failed(position, "no decision in time", now)

    # --- positions --------------------------------------------------------------------

    def _on_positions(self, message: PositionsFetched) -> None:
        self._fetching = False
        now = self._clock.time()
        if message.cycles_error != self._cycles_error:
            if message.cycles_error:
                logger.warning("trade_cycles not read (keys by entry): %s", message.cycles_error)
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
        seen: set[str] = set()
        adopted: list[_Position] = []
        for held in message.positions:
            if held.quantity <= 0 or held.entry_price <= 0:
                continue
            key = position_key(
                held.symbol,
                cycle_id=held.cycle_id,
                opened_at=held.opened_at,
                entry_price=held.entry_price,
            )
            seen.add(key)
            position = self._positions.get(key)
            if position is None:
                position = self._adopt(key, held, now)
                adopted.append(position)
            elif position.quantity != held.quantity:
                position.quantity = held.quantity
                self._changed(position, now)
            confirmed_now = position.seen_at is None
            position.seen_at = now
            position.missing = 0
            if confirmed_now and position.state == WATCHING:
                # A restored stop hit while it waited for this confirmation exits now.
                fresh = self._fresh_price(position, now)
                if fresh is not None and fresh <= position.stop.stop:
                    self._send_exit(position, fresh, now, 0.0)
        for position in list(self._positions.values()):
            if position.key in seen or position.state == EXITING:
                continue
            position.missing += 1
            if position.missing >= _MISSES_TO_CLOSE:
                why = "sold" if position.state == SOLD else "no longer held (closed elsewhere)"
                self._close(position, why, now)
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

    def _adopt(self, key: str, held: HeldPosition, now: float) -> _Position:
        rules = self._settings.rules_for(held.symbol)
        atr = self._atr[held.symbol].value if held.symbol in self._atr else None
        position = _Position(
            key=key,
            symbol=held.symbol,
            cycle_id=held.cycle_id,
            quantity=held.quantity,
            entry_time=held.opened_at,
            rules=rules,
            stop=open_stop(rules, self._params, held.entry_price, atr=atr),
            watched_at=now,
            updated_at=now,
        )
        self._add(position)
        self._changed(position, now)
        return position

    def _merge_stored(self, records: list[dict[str, Any]]) -> None:
        """A position adopted just now may have been watched before: keep its peak."""
        now = self._clock.time()
        for record in records:
            position = self._positions.get(str(record["position_key"]))
            if position is None:
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
            if int(record["attempt"]) > position.attempt:
                position.attempt = int(record["attempt"])
                changed = True
            if changed:
                position.detail = "peak and stop taken over from the stored record"
                self._changed(position, now)

    def _add(self, position: _Position) -> None:
        self._positions[position.key] = position
        self._by_symbol[position.symbol].append(position)

    def _close(self, position: _Position, why: str, now: float) -> None:
        position.state = CLOSED
        position.closed_at = now
        position.detail = why
        logger.info("stop of %s closed: %s", position.key, why)
        self._changed(position, now)
        del self._positions[position.key]
        siblings = self._by_symbol[position.symbol]
        siblings.remove(position)
        if not siblings:
            del self._by_symbol[position.symbol]
        # The last record goes to the store with the next flush; then it is forgotten here.
        self._closing[position.key] = position

    # --- time -------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock.time()
        settings = self._settings
        if not self._fetching and now >= self._fetch_due and self._portfolio is not None:
            self._fetching = True
            self._fetch_due = now + settings.refresh_interval
            self._fetch_started = now
            self._fetcher.submit(self._fetch_positions)
        lookups = []
        for position in list(self._positions.values()):
            if (
                position.state == RETRY
                and position.retry_at is not None
                and now >= position.retry_at
            ):
                fresh = self._fresh_price(position, now)
                if fresh is not None and fresh <= position.stop.stop:
                    self._send_exit(position, fresh, now, 0.0)
                elif fresh is not None:
                    position.state = WATCHING
                    position.detail = "price above the stop again; watching"
                    self._changed(position, now)
                else:
                    # No fresh price: no decision. Looked at again at the next tick.
                    position.detail = "exit due again, but the price is stale: waiting for one"
            elif (
                position.state == EXITING
                and position.sent_at is not None
                and now - position.sent_at > settings.exit_timeout
                and not position.lookup_pending
            ):
                position.lookup_pending = True
                lookups.append(position.exit_id)
            elif (
                position.state in (SOLD, EXIT_UNKNOWN)
                and position.sent_at is not None
                and position.seen_at is not None
                and position.seen_at - position.sent_at > settings.exit_settle
            ):
                held_for = position.seen_at - position.sent_at
                logger.error(
                    "ALERT %s still held %.0f s after its exit (%s): watching it again",
                    position.key,
                    held_for,
                    position.state,
                )
                position.detail = (
                    f"ALERT still held {held_for:.0f} s after its exit ({position.state}); "
                    "watched again"
                )
                position.state = RETRY
                position.retry_at = now
                self._changed(position, now)
        if lookups:
            self._worker.submit(self._look_up_exits, lookups)
        self._maybe_flush()

    # --- persistence ------------------------------------------------------------------

    def _changed(self, position: _Position, now: float) -> None:
        position.updated_at = now
        self._kept.put(position.key, position.record())
        self._flush.dirty.add(position.key)

    def _dirty_records(self) -> list[dict[str, Any]]:
        records = []
        for key in self._flush.dirty:
            position = self._positions.get(key) or self._closing.get(key)
            if position is not None:
                records.append(position.record())
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
            if key in self._closing and key not in flush.dirty:
                del self._closing[key]
                self._kept.drop(key)

    # --- worker thread ----------------------------------------------------------------

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
        cycles_error = None
        try:
            cycles = self._cycles.open_cycles()
        except StoreError as exc:
            cycles, cycles_error = [], str(exc)
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
        self._tell(
            PositionsFetched(positions=tuple(positions), error=None, cycles_error=cycles_error)
        )

    def _read_stops(self, keys: list[str]) -> None:
        try:
            records = self._store.stops(keys)
        except StoreError as exc:
            logger.warning("stored stops of new positions not read: %s", exc)
            return
        if records:
            self._tell(StoredStopsRead(json=json.dumps(records)))

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

    # --- API --------------------------------------------------------------------------

    def _snapshot(self) -> TrailingStopsSnapshot:
        now = self._clock.time()
        max_age = self._settings.price_max_age
        rows = []
        for position in sorted(self._positions.values(), key=lambda p: (p.symbol, p.key)):
            last, at = position.last_price, position.last_price_at
            age = None if at is None else round(now - at, 3)
            stop = position.stop
            rows.append(
                {
                    "position_key": position.key,
                    "symbol": position.symbol,
                    "cycle_id": position.cycle_id,
                    "quantity": position.quantity,
                    "entry_price": stop.entry,
                    "entry_time": None
                    if position.entry_time is None
                    else utc_iso(position.entry_time),
                    "last_price": last,
                    "last_price_at": None if at is None else utc_iso(at),
                    "price_age_s": age,
                    "stale": age is None or age > max_age,
                    "peak": stop.peak,
                    "stop": stop.stop,
                    "stop_rule": stop.rule,
                    "distance_to_stop_percent": None
                    if last is None
                    else round((last - stop.stop) / last * 100, 6),
                    "strategy": "+".join(position.rules),
                    "state": position.state,
                    "exit_attempts": position.attempt,
                    "failures": position.failures,
                    "retry_at": None
                    if position.retry_at is None or position.state != RETRY
                    else utc_iso(position.retry_at),
                    "detail": position.detail,
                    "errors": position.errors,
                    "watched_since": utc_iso(position.watched_at),
                }
            )
        body = {
            "positions": rows,
            "count": len(rows),
            "rules": {
                "default": "+".join(self._settings.rules),
                "by_symbol": {s: "+".join(r) for s, r in self._settings.rules_by_symbol},
                "described": {
                    "+".join(r): self._params.describe(r)
                    for r in {self._settings.rules, *dict(self._settings.rules_by_symbol).values()}
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


def _parse_exit_id(signal_id: str) -> tuple[str | None, int]:
    """(position key, attempt) of ``exit:<key>:<attempt>``."""
    if not signal_id.startswith(EXIT_ID_PREFIX):
        return None, 0
    key, _, attempt = signal_id[len(EXIT_ID_PREFIX) :].rpartition(":")
    try:
        return key, int(attempt)
    except ValueError:
        return None, 0
