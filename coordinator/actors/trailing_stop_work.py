"""The TrailingStop's persistence and the work of its worker threads: stop records
written in batches, positions and ``trade_cycles`` fetched, stored stops, decisions, exit
orders and candles read. Each worker job answers the actor with a message."""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from coordinator.cluster.fencing import LeaseLost, LeaseToken
from coordinator.infra.portfolio_client import PortfolioError
from coordinator.infra.store import StoreError
from coordinator.logs import FailureLog
from coordinator.messages.stops import (
    AtrHistoryLoaded,
    ExitOrdersRead,
    ExitsLookedUp,
    HeldPosition,
    PositionsFetched,
    StopsFlushed,
    StoredStopsRead,
    TrailingStopsSnapshot,
)
from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.stop_book import Holding, exit_prefixes

if TYPE_CHECKING:
    from coordinator.actors.trailing_stop import _Flush
    from coordinator.clock import Clock
    from coordinator.config import StopsConfig
    from coordinator.infra.portfolio_client import PortfolioClient
    from coordinator.infra.stop_store import StopStore
    from coordinator.runtime import KeptRecords
    from coordinator.supervisor.child import ChildActor
    from coordinator.trading.stops import StopParams

    _Host = ChildActor
else:
    _Host = object

__all__ = ["StopWork"]

logger = logging.getLogger("coordinator.actors.trailing_stop")

_ORDER_POLL = 2.0  # how often the stored state of an unsettled exit order is read again


class StopWork(_Host):
    """Part of the TrailingStop (its attributes are set up there)."""

    _positions: dict[str, Holding]
    _closing: dict[str, dict[str, Any]]
    _clock: Clock
    _settings: StopsConfig
    _params: StopParams
    _kept: KeptRecords
    _flush: _Flush
    _store: StopStore
    _cycles: StopStore
    _orders: StopStore
    _portfolio: PortfolioClient | None
    _last_fetch: float | None
    _positions_failure: FailureLog
    _cycles_error: str | None
    _cycles_seen: bool
    """``trade_cycles`` was read in this incarnation: its absence is then a failure, not a
    deployment without it. Touched by the fetches alone, which run one at a time."""
    _stale_ticks: int
    _triggered: int
    _orders_reading: set[str]
    _orders_read_at: dict[str, float]
    _token: LeaseToken | None

    if TYPE_CHECKING:

        def _step(self, position: Holding, event: lc.StopEvent, now: float) -> None: ...

        def _holding_of(self, key: str | None) -> Holding | None: ...

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
            self.run_then_tell(functools.partial(self._write, records, self._token), pool="store")

    def _on_flushed(self, keys: tuple[str, ...], error: str | None) -> None:
        flush = self._flush
        flush.busy = False
        if error is not None:
            flush.failure.failed(error)
            flush.dirty.update(keys)
            return
        flush.failure.succeeded()
        for key in keys:
            if key in self._closing and key not in flush.dirty and key not in self._positions:
                del self._closing[key]
                self._kept.drop(key)

    # --- worker threads ---------------------------------------------------------------

    def _write(self, records: list[dict[str, Any]], fence: LeaseToken | None) -> StopsFlushed:
        keys = tuple(r["position_key"] for r in records)
        try:
            self._store.write(records, fence)
            return StopsFlushed(keys=keys, error=None, fence=fence)
        except LeaseLost as exc:
            return StopsFlushed(keys=keys, error=str(exc), fence=fence, lease_lost=True)
        except StoreError as exc:
            return StopsFlushed(keys=keys, error=str(exc), fence=fence)

    def _fetch_positions(self) -> PositionsFetched:
        assert self._portfolio is not None
        try:
            held = self._portfolio.held_positions()
        except PortfolioError as exc:
            return PositionsFetched(positions=(), error=str(exc))
        try:
            cycles = self._cycles.open_cycles()
        except StoreError as exc:
            # Without the cycles every key would change: a failed fetch, nothing changes.
            return PositionsFetched(
                positions=(), error=f"trade_cycles not read: {exc}", cycles_error=str(exc)
            )
        if cycles is None:
            if self._cycles_seen:
                # Read before and gone now (dropped, or renamed while RootTrading migrates
                # it): keying without it would change every key, so the fetch failed.
                gone = "trade_cycles is gone (it was read before)"
                return PositionsFetched(
                    positions=(), error=f"trade_cycles not read: {gone}", cycles_error=gone
                )
            cycles = []
        else:
            self._cycles_seen = True
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
        return PositionsFetched(positions=tuple(positions), error=None, cycles_error=None)

    def _read_stops(self, keys: list[str]) -> StoredStopsRead:
        try:
            records = self._store.stops(keys)
        except StoreError as exc:
            logger.warning("stored stops of new positions not read: %s", exc)
            return StoredStopsRead(json="[]", keys=tuple(keys), error=str(exc))
        return StoredStopsRead(json=json.dumps(records), keys=tuple(keys))

    def _read_atr_history(self, symbols: list[str]) -> AtrHistoryLoaded:
        try:
            candles = self._store.atr_candles(
                symbols, self._settings.atr_timeframe, self._settings.atr_period * 3
            )
            return AtrHistoryLoaded(candles=tuple(candles), error=None)
        except StoreError as exc:
            return AtrHistoryLoaded(candles=(), error=str(exc))

    def _look_up_exits(self, exit_ids: list[str]) -> ExitsLookedUp:
        try:
            decisions = self._store.exit_decisions(exit_ids)
            return ExitsLookedUp(decisions=tuple(decisions), error=None)
        except StoreError as exc:
            return ExitsLookedUp(decisions=(), error=str(exc))

    def _read_exit_orders(self, key: str, symbol: str, prefixes: list[str]) -> ExitOrdersRead:
        try:
            orders = self._orders.exit_orders(symbol, prefixes)
        except StoreError as exc:
            return ExitOrdersRead(position_key=key, orders=(), error=str(exc))
        return ExitOrdersRead(position_key=key, orders=tuple(orders), error=None)

    # --- exit orders ------------------------------------------------------------------

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
        self.run_then_tell(
            functools.partial(
                self._read_exit_orders, key, position.symbol, exit_prefixes(position.keys)
            ),
            pool="orders",
        )

    def _on_orders_read(self, message: ExitOrdersRead) -> None:
        self._orders_reading.discard(message.position_key)
        position = self._holding_of(message.position_key)
        if position is None:
            return
        now = self._clock.time()
        position.order_reads += 1
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

    # --- API --------------------------------------------------------------------------

    def _snapshot(self, rows: bool = True) -> TrailingStopsSnapshot:
        now = self._clock.time()
        settings = self._settings
        max_age = settings.price_max_age
        watched = self._positions.values()
        lines = (
            tuple(p.row(now, max_age) for p in sorted(watched, key=lambda p: (p.symbol, p.key)))
            if rows
            else ()
        )
        stale = sum(1 for position in watched if position.stale(now, max_age))
        in_use = {settings.rules, *dict(settings.rules_by_symbol).values()}
        return TrailingStopsSnapshot(
            active=len(self._positions),
            positions=lines,
            stale=stale,
            default_rules="+".join(settings.rules),
            rules_by_symbol=tuple((s, "+".join(r)) for s, r in settings.rules_by_symbol),
            rules_described=tuple(("+".join(r), self._params.describe(r)) for r in in_use),
            price_max_age=settings.price_max_age,
            positions_fetched_at=self._last_fetch,
            positions_error=self._positions_failure.error,
            trade_cycles_error=self._cycles_error,
            store_error=self._flush.failure.error,
            stale_ticks_ignored=self._stale_ticks,
            exits_triggered=self._triggered,
            leading=self._token is not None,
            leader=None if self._token is None else self._token.holder,
        )
