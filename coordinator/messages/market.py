"""Market data: prices as the MarketFeed reads them and hands them to the Validators."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.messages.base import Command, Event, Query

__all__ = [
    "CandlesReceived",
    "CandlesWaiting",
    "GetMarketSnapshot",
    "MarketSnapshot",
    "MarketTick",
    "PriceUpdated",
    "PricesUpdated",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceUpdated(Event):
    """The latest price of a symbol, from the market-data channels."""

    symbol: str
    """The symbol."""
    price: float
    """Its latest close."""
    at: float
    """Wall-clock time the Redis reader received the price: its age starts there."""
    received_mono: float = 0.0
    """Monotonic time the candle arrived from Redis (0 when not from Redis)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PricesUpdated(Event):
    """Several latest prices at once: what arrived together, or what was held back."""

    updates: tuple[PriceUpdated, ...]
    """In order of arrival."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CandlesReceived(Command):
    """Market-data messages as they arrived together, for the MarketFeed to parse."""

    candles: tuple[tuple[str, bytes, float, float], ...]
    """(channel, candle JSON, monotonic time and wall-clock time the reader thread got
    it), in order of arrival; the channel is
    ``roottrading:market:data:{symbol}:{timeframe}``. The wall-clock time is the
    price's time (``PriceUpdated.at``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CandlesWaiting(Command):
    """Market-data messages wait in the MarketFeed's own buffer: it takes all of them.
    Told once however many arrive before it gets to them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketTick(Command):
    """Time for the MarketFeed to tell the Validators the prices it held back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetMarketSnapshot(Query):
    """Ask the MarketFeed for a ``MarketSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketSnapshot:
    prices: tuple[tuple[str, float, float], ...]
    """(symbol, price, wall-clock time) per symbol."""
    connected: bool
    """Whether the market-data subscription is up."""
    read: int = 0
    """Market-data messages read since start."""
    duplicates: int = 0
    """Closed candles read again (the dispatcher's copy) and not taken twice."""
    stale: int = 0
    """Candles closed too long before they were read to be a price (history)."""
    malformed: tuple[tuple[str, int], ...] = ()
    """(kind of fault, count) of the messages that were no candle."""
