"""The TrailingStop's prices: each one of a held symbol moves its stops (only up) and may
start an exit.

The newest price of every symbol is kept, leading or not, so that a holding the
TrailingStop starts to watch (restored at a start or an election, adopted from the
Portfolio, its stop raised by a stored record or the ATR) is decided on it at once.
RootTrading publishes closed candles only: waiting for the next one would leave a price
that fell through a stop during a leadership change unanswered for up to a candle (a
minute for 1m). A process that has just started has heard no price at all: it reads the
held symbols' last closes from ``market_data``, where RootTrading stores the candles
published while it was away.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import PriceUpdated
from coordinator.messages.stops import StoredClosesRead
from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.freshness import newest_stored_close
from coordinator.trading.stop_book import Holding
from coordinator.trading.stops import update_stop

if TYPE_CHECKING:
    from coordinator.actors.trailing_stop_work import StopWork

    _Host = StopWork
else:
    _Host = object

__all__ = ["StopPrices"]

logger = logging.getLogger("coordinator.actors.trailing_stop")

# How far back a stored candle may have opened to hold a current price: it closed at
# most the maximum age ago, and no RootTrading timeframe is longer than a day.
_LONGEST_TIMEFRAME = 86_400.0


class StopPrices(_Host):
    """Part of the TrailingStop (its attributes are set up there)."""

    _by_symbol: dict[str, list[Holding]]
    _newest: dict[str, PriceUpdated]
    """The newest price of each symbol, kept while following too."""
    _stale_ticks: int
    _tick_mono: float

    if TYPE_CHECKING:

        def _atr_value(self, position: Holding) -> float | None: ...

    def _on_updates(self, updates: tuple[PriceUpdated, ...]) -> None:
        now = self._clock.time()
        self._keep_newest(updates)
        by_symbol = self._by_symbol
        for update in updates:
            positions = by_symbol.get(update.symbol)
            if positions:
                for position in tuple(positions):  # a copy: an exit may change it
                    self._on_price(position, update.price, update.at, update.received_mono, now)

    def _keep_newest(self, updates: Iterable[PriceUpdated]) -> None:
        """The newest price of each symbol, kept on a follower too (for the term it
        may lead)."""
        newest = self._newest
        for update in updates:
            newest[update.symbol] = update

    def _decide_on_newest(self, positions: Iterable[Holding], now: float) -> None:
        """Each holding decided on its symbol's newest price, if that is fresh and not
        older than the holding: a price from before a BUY filled says nothing of where
        the holding it opened stands (its entry time, else when it was first watched)."""
        max_age = self._settings.price_max_age
        for position in tuple(positions):
            update = self._newest.get(position.symbol)
            if update is None or now - update.at > max_age:
                continue
            since = position.entry_time if position.entry_time is not None else position.watched_at
            if update.at >= since:
                self._on_price(position, update.price, update.at, 0.0, now)

    def _on_price(
        self, position: Holding, price: float, at: float, mono: float, now: float
    ) -> None:
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

    # --- prices stored by RootTrading -------------------------------------------------

    def _read_stored_closes(self, symbols: list[str], now: float) -> None:
        if symbols:
            self.run_then_tell(functools.partial(self._stored_closes, symbols, now), pool="store")

    def _stored_closes(self, symbols: list[str], now: float) -> StoredClosesRead:
        max_age = self._settings.price_max_age
        try:
            rows = self._store.recent_candles(symbols, now - max_age - _LONGEST_TIMEFRAME)
        except StoreError as exc:
            return StoredClosesRead(prices=(), error=str(exc))
        by_symbol: dict[str, list[tuple[str | None, int, float]]] = {}
        for symbol, timeframe, open_ms, close in rows:
            by_symbol.setdefault(symbol, []).append((timeframe, open_ms, close))
        prices = []
        for symbol, candles in by_symbol.items():
            found = newest_stored_close(candles, now=now, max_age=max_age)
            if found is not None:
                prices.append((symbol, *found))
        return StoredClosesRead(prices=tuple(prices), error=None)

    def _on_stored_closes(self, message: StoredClosesRead) -> None:
        if message.error is not None:
            logger.warning(
                "no price read from market_data (stops wait for the next candle): %s",
                message.error,
            )
            return
        now = self._clock.time()
        taken = []
        for symbol, close, at in message.prices:
            known = self._newest.get(symbol)
            if known is not None and known.at >= at:
                continue
            self._newest[symbol] = PriceUpdated(symbol=symbol, price=close, at=at)
            taken.append(f"{symbol} {close:.8g} ({now - at:.0f} s old)")
            self._decide_on_newest(self._by_symbol.get(symbol, ()), now)
        if taken:
            more = f" and {len(taken) - 10} more" if len(taken) > 10 else ""
            logger.info("prices read from market_data: %s%s", ", ".join(taken[:10]), more)
