"""MarketFeed: the latest price of every symbol, from the RootTrading market-data channels.

A reader thread subscribed to ``roottrading:market:data:*`` hands each candle over as
it is; the actor keeps the latest close per symbol (in-progress candles included) and
publishes ``PriceUpdated`` to the Validators.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from coordinator.infra.redis_bus import MARKET_DATA_PATTERN, Subscription
from coordinator.messages.pipeline import (
    CandleReceived,
    GetMarketSnapshot,
    MarketSnapshot,
    PriceUpdated,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor

__all__ = ["MarketFeed", "parse_candle"]

logger = logging.getLogger(__name__)


def parse_candle(payload: bytes) -> tuple[str, float, float] | None:
    """(symbol, close, time of the price in epoch seconds), or None for a bad candle."""
    try:
        candle = json.loads(payload)
        symbol = str(candle["symbol"]).upper()
        close = float(candle["close"])
        opened = float(candle["time"]) / 1000.0
    except (ValueError, KeyError, TypeError):
        return None
    if not math.isfinite(close) or close <= 0 or not math.isfinite(opened):
        return None
    return symbol, close, opened


class MarketFeed(ChildActor):
    def setup(self) -> None:
        services: Services = self.context.services
        self._prices: dict[str, tuple[float, float]] = {}
        self._bad = 0
        self._subscription = Subscription(
            services.endpoints.redis_url,
            patterns=(MARKET_DATA_PATTERN,),
            on_message=self._received,
            name=f"{self.name}-reader",
            actor=f"{self.name}#{self.context.incarnation}",
        ).start()

    def cleanup(self) -> None:
        if getattr(self, "_subscription", None) is not None:
            self._subscription.stop()

    def _received(self, _channel: str, payload: bytes) -> None:
        # Reader thread: hand over, nothing else.
        self.actor_ref.tell(CandleReceived(payload=payload))

    def handle(self, message: Any) -> Any:
        match message:
            case CandleReceived(payload=payload):
                parsed = parse_candle(payload)
                if parsed is None:
                    self._bad += 1
                    if self._bad in (1, 10, 100) or self._bad % 1000 == 0:
                        logger.warning("%d unusable market-data message(s) ignored", self._bad)
                    return None
                symbol, price, _opened = parsed
                # The candle's open time is not when the price was seen: use arrival time.
                at = self.context.clock.time()
                previous = self._prices.get(symbol)
                self._prices[symbol] = (price, at)
                if previous is None or previous[0] != price or at - previous[1] > 1.0:
                    self.context.directory.publish(PriceUpdated(symbol=symbol, price=price, at=at))
            case GetMarketSnapshot():
                return MarketSnapshot(
                    prices=tuple((s, p, t) for s, (p, t) in sorted(self._prices.items())),
                    connected=self._subscription.connected,
                )
            case _:
                return NOT_HANDLED
        return None
