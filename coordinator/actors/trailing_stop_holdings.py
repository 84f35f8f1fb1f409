"""The TrailingStop's holdings: reconciled with the Portfolio's positions (adopted, re-keyed,
closed), their stored records merged in, and the ATR their stops may use."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from coordinator.actors.names import ActorName
from coordinator.logs import FailureLog
from coordinator.messages.pipeline import PositionsSeen
from coordinator.messages.stops import CandleClosed, HeldPosition, PositionsFetched
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.stop_book import Holding, carry_over, find_rekeyed
from coordinator.trading.stops import (
    AtrTracker,
    StopState,
    open_stop,
    position_key,
    raise_stop,
)

if TYPE_CHECKING:
    from coordinator.actors.trailing_stop_work import StopWork

    _Host = StopWork
else:
    _Host = object

__all__ = ["StopHoldings"]

logger = logging.getLogger("coordinator.actors.trailing_stop")


class StopHoldings(_Host):
    """Part of the TrailingStop (its attributes are set up there)."""

    _positions: dict[str, Holding]
    _by_symbol: dict[str, list[Holding]]
    _alias: dict[str, str]
    _atr: dict[str, AtrTracker]
    _closing: dict[str, dict[str, Any]]
    _orders_read_at: dict[str, float]
    _fetching: bool
    _fetch_started: float
    _positions_failure: FailureLog

    if TYPE_CHECKING:

        def _decide_on_newest(self, positions: Iterable[Holding], now: float) -> None: ...

    # --- positions --------------------------------------------------------------------

    def _on_positions(self, message: PositionsFetched) -> None:
        self._fetching = False
        now = self._clock.time()
        if message.cycles_error != self._cycles_error:
            if message.cycles_error:
                logger.warning("trade_cycles not read: %s", message.cycles_error)
            self._cycles_error = message.cycles_error
        if message.error is not None:
            self._positions_failure.failed(message.error)
            return
        self._positions_failure.succeeded()
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
        shown_as_old: set[str] = set()
        seen = lc.PositionsSeen(held=True)
        for key, held in shown.items():
            position = self._positions.get(key)
            if position is None:
                old = find_rekeyed(
                    vanished, held.symbol, held.quantity, held.entry_price, held.opened_at
                )
                if old is not None and not old.life.may_rekey:
                    # Mid-exit: it keeps its key (and stays watched) until the exit
                    # settles; the new key is taken over at a later fetch.
                    vanished.remove(old)
                    shown_as_old.add(old.key)
                    continue
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
            # Thousands of holdings, nearly all unchanged: the actor's thread, which
            # the ticks wait for, is spared a step of each.
            if not position.life.seen_unchanged:
                self._step(position, seen, now)
        for position in list(self._positions.values()):
            if position.key in shown_as_old:
                self._step(position, seen, now)
            elif position.key not in shown:
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
            self.run_then_tell(
                functools.partial(self._read_stops, [p.key for p in adopted]), pool="store"
            )
            # The Ledger sizes the exits from its own view: have it see them too.
            with contextlib.suppress(ChildUnavailable):
                self.context.directory.tell(
                    ActorName.LEDGER,
                    PositionsSeen(symbols=tuple(sorted({p.symbol for p in adopted}))),
                )
            self._load_atr(sorted({p.symbol for p in adopted}))
            self._decide_on_newest(adopted, now)

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
        self.run_then_tell(functools.partial(self._read_stops, [key]), pool="store")

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
                self._decide_on_newest((position,), now)

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
                    self._decide_on_newest((position,), now)

    def _load_atr(self, symbols: list[str]) -> None:
        wanted = [s for s in symbols if s not in self._atr]
        if not wanted:
            return
        for symbol in wanted:
            self._atr[symbol] = AtrTracker(self._settings.atr_period)
        self.run_then_tell(functools.partial(self._read_atr_history, wanted), pool="store")
