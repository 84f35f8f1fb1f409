"""MarketFeed: the latest price of every symbol, from the RootTrading market-data channels.

A reader thread subscribed to ``roottrading:market:data:*`` hands over what has arrived,
as it is, into a buffer the actor empties whole: one message wakes the actor, and what
arrives while it works waits for it without another (each hand-off between threads is a
wake-up and a GIL switch: at thousands of ticks a second they cost more than the ticks'
own work; this way the batches grow with the load instead). The actor keeps the latest
close per symbol and sends the changes (``PricesUpdated``, one message per batch) to the
TrailingStop every time, and to each Validator at most every ``_VALIDATOR_EVERY`` seconds
(the latest of each of its symbols since the last time; a BUY is checked against a price
up to ``MARKET_DATA_MAX_AGE`` old: at thousands of ticks a second, telling the Validators
each one, or each symbol's twice a second, would cost more than the checks, and would
queue exits behind them). Candles of the universe timeframe go to the UniverseManager
(``CandleUpdated``), closed ones of the ATR timeframe to the TrailingStop
(``CandleClosed``).

RootTrading publishes closed candles only, most of them twice (directly and through its
dispatcher): a closed candle already taken (same symbol, timeframe and open time) is
counted as a duplicate and goes no further. A source that publishes in-progress candles
(``is_closed`` false) moves the prices with each of them. A message that is no candle is
counted by what is wrong with it, and logged the first time each kind of fault appears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from coordinator.actors.names import ActorName
from coordinator.config.parts import FeedSettings
from coordinator.infra.redis_bus import MARKET_DATA_PATTERN, Subscription
from coordinator.messages.pipeline import (
    CandlesReceived,
    CandlesWaiting,
    GetMarketSnapshot,
    MarketSnapshot,
    MarketTick,
    PricesUpdated,
    PriceUpdated,
)
from coordinator.messages.stops import CandleClosed
from coordinator.messages.universe import CandleUpdated
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor, tell_unless_ended
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.candles import (
    Candle,
    CandleKey,
    CandleProblem,
    MalformedCandle,
    SeenCandles,
    parse_candle,
    read_candle,
)
from coordinator.trading.freshness import PriceBook, PriceVerdict, price_moment
from coordinator.trading.routing import validator_for

__all__ = ["Candle", "MarketFeed", "parse_candle"]

logger = logging.getLogger(__name__)


_VALIDATOR_EVERY = 0.5


class MarketFeed(ChildActor):
    settings: FeedSettings

    def setup(self) -> None:
        services: Services = self.context.services
        self._prices: dict[str, tuple[float, float]] = {}
        self._forwarded: dict[str, float] = {}
        settings = self.settings
        # A price given to the TrailingStop must meet its own maximum age as well.
        self._book = PriceBook(max_age=settings.price_max_age)
        self._stale = 0
        self._timeframe = settings.timeframe
        self._atr_timeframe = settings.atr_timeframe
        self._validators = settings.validators
        self._malformed: dict[CandleProblem, int] = {}
        self._seen = SeenCandles()
        self._read = 0
        self._duplicates = 0
        self._undelivered: set[str] = set()
        self._dropped = False
        # What the reader has handed over and the actor not yet taken, and whether the
        # actor was told so since it last took it; shared with the reader thread.
        self._waiting: list[tuple[str, bytes, float, float]] = []
        self._waiting_lock = threading.Lock()
        self._woken = False
        # Per Validator: when it was last told, and the latest update of each of its
        # symbols held back since.
        self._told: dict[str, float] = {}
        self._held_back: dict[str, dict[str, PriceUpdated]] = {}
        self._validator_of: dict[str, str] = {}
        self._subscription = Subscription(
            services.endpoints.redis_url,
            patterns=(MARKET_DATA_PATTERN,),
            on_batch=self._received,
            name=f"{self.name}-reader",
            actor=f"{self.name}#{self.context.incarnation}",
            clock=self.context.clock,
        ).start()
        self.on_cleanup(self._subscription.stop, what="market data subscription")
        self.ticker(_VALIDATOR_EVERY, MarketTick)

    def _received(self, batch: list[tuple[str, bytes, float, float]]) -> None:
        # Reader thread: hand over, nothing else (each stamped when read: the price's
        # time, and the tick-to-order latency).
        with self._waiting_lock:
            self._waiting.extend(batch)
            if self._woken:
                return  # the actor has not taken the last ones yet: it takes these too
            self._woken = True
        if tell_unless_ended(self.actor_ref, CandlesWaiting()):
            return
        with self._waiting_lock:
            self._waiting.clear()
            self._woken = False
        # This incarnation ended (a restart) before its reader stopped. The batch is
        # not kept for the next one: each candle is a snapshot of its price, the next
        # incarnation reads newer ones from its own subscription (pub/sub keeps nothing
        # for it: what is published between the two is not read either), and a price
        # missing meanwhile only makes the stops and the Validators wait, never decide.
        if not self._dropped:
            self._dropped = True
            logger.warning(
                "%d market-data messages read after this MarketFeed ended dropped "
                "(prices are read again by the next one)",
                len(batch),
            )

    def handle(self, message: Any) -> Any:
        match message:
            case CandlesWaiting():
                with self._waiting_lock:
                    candles, self._waiting = self._waiting, []
                    self._woken = False
                self._candles(candles)
            case CandlesReceived(candles=candles):
                self._candles(candles)
            case MarketTick():
                self._flush_held_back()
            case GetMarketSnapshot():
                return MarketSnapshot(
                    prices=tuple((s, p, t) for s, (p, t) in sorted(self._prices.items())),
                    connected=self._subscription.connected,
                    read=self._read,
                    duplicates=self._duplicates,
                    stale=self._stale,
                    malformed=tuple(sorted((str(k), n) for k, n in self._malformed.items())),
                )
            case _:
                return NOT_HANDLED
        return None

    def _candles(self, candles: Sequence[tuple[str, bytes, float, float]]) -> None:
        """The prices of what arrived together go on together: one message to the
        TrailingStop and at most one to each Validator."""
        to_stops: list[PriceUpdated] = []
        for channel, payload, mono, received_at in candles:
            self._read += 1
            parsed = read_candle(payload, channel)
            if isinstance(parsed, MalformedCandle):
                self._unusable(parsed, channel)
                continue
            if parsed.closed and not self._seen.first_time(CandleKey.of(parsed)):
                # The dispatcher's copy of a candle the gateway published already.
                self._duplicates += 1
                continue
            self._candle(parsed, mono, received_at, to_stops)
        if to_stops:
            self._tell(ActorName.TRAILING_STOP, PricesUpdated(updates=tuple(to_stops)))
            self._flush_held_back()

    def _unusable(self, bad: MalformedCandle, channel: str) -> None:
        count = self._malformed.get(bad.problem, 0) + 1
        self._malformed[bad.problem] = count
        if count == 1:
            logger.warning(
                "market-data message on %s ignored (%s: %s); further ones of this kind "
                "are counted in the MarketFeed's snapshot",
                channel,
                bad.problem,
                bad.detail,
            )

    def _candle(
        self,
        candle: Candle,
        mono: float,
        received_at: float,
        to_stops: list[PriceUpdated],
    ) -> None:
        symbol, price = candle.symbol, candle.close
        directory = self.context.directory
        if candle.timeframe == self._timeframe:
            directory.publish(
                CandleUpdated(
                    symbol=symbol,
                    time_ms=candle.time_ms,
                    close=price,
                    quote_volume=candle.quote_volume,
                )
            )
        if candle.closed and candle.timeframe == self._atr_timeframe:
            directory.publish(
                CandleClosed(
                    symbol=symbol,
                    timeframe=candle.timeframe,
                    time_ms=candle.time_ms,
                    high=candle.high,
                    low=candle.low,
                    close=price,
                )
            )
        if not self._fresh(candle, received_at):
            return
        # The price is as old as its reading from Redis, however long it queued here; a
        # closed candle's is as old as its close (a gap-fill is read long after it).
        at = (
            price_moment(
                open_ms=candle.time_ms,
                timeframe=candle.timeframe,
                close_time_ms=candle.close_time_ms,
                received_at=received_at,
            )
            if candle.closed
            else received_at
        )
        previous = self._prices.get(symbol)
        self._prices[symbol] = (price, at)
        # An unchanged price goes on once a second all the same (counted from the last
        # one that went, not the last one read: ticks closer than that would never go),
        # so that a stop still sees a fresh price of a holding whose price stopped moving.
        forwarded = self._forwarded.get(symbol)
        if previous is None or previous[0] != price or forwarded is None or at - forwarded >= 1.0:
            self._forwarded[symbol] = at
            update = PriceUpdated(symbol=symbol, price=price, at=at, received_mono=mono)
            to_stops.append(update)
            name = self._validator_of.get(symbol)
            if name is None:
                name = self._validator_of[symbol] = validator_for(symbol, self._validators)
            # The latest only: the Validator would re-check an exit against a
            # superseded price.
            self._held_back.setdefault(name, {})[symbol] = update

    def _fresh(self, candle: Candle, received_at: float) -> bool:
        """Whether the candle's close may be given as the symbol's current price."""
        verdict, why = self._book.offer(
            candle.symbol,
            open_ms=candle.time_ms,
            timeframe=candle.timeframe,
            close_time_ms=candle.close_time_ms,
            received_at=received_at,
            final=candle.closed,
        )
        if verdict is PriceVerdict.STALE:
            self._stale += 1
            if self._stale in (1, 10, 100) or self._stale % 1000 == 0:
                logger.warning(
                    "stale candle not taken as a price (%d so far): %s %s %s",
                    self._stale,
                    candle.symbol,
                    candle.timeframe,
                    why,
                )
        return verdict is PriceVerdict.TAKEN

    def _flush_held_back(self) -> None:
        """The latest prices held back for each Validator not told for a while, so no
        Validator keeps an old one (on every batch, and on the tick when none comes)."""
        now = self.context.clock.time()
        for name in [
            n for n in self._held_back if now - self._told.get(n, 0.0) >= _VALIDATOR_EVERY
        ]:
            self._told[name] = now
            self._tell(name, PricesUpdated(updates=tuple(self._held_back.pop(name).values())))

    def _tell(self, name: str, message: PricesUpdated) -> None:
        try:
            self.context.directory.tell(name, message)
        except ChildUnavailable as exc:
            if name not in self._undelivered:
                logger.error("prices not delivered to %s: %s", name, exc)
            self._undelivered.add(name)
        else:
            self._undelivered.discard(name)
