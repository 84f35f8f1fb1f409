"""UniverseManager: candles in, rotations, the blacklist, the universe out."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.messages.base import Command, Event, Query

__all__ = [
    "BlacklistSymbol",
    "CandleUpdated",
    "GetUniverse",
    "GetUniverseHistory",
    "RotateUniverse",
    "UnblacklistSymbol",
    "UniverseChanged",
    "UniverseHistory",
    "UniverseSnapshot",
    "UniverseTick",
    "WarmStartLoaded",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleUpdated(Event):
    """A candle of the statistics timeframe, in progress or closed (MarketFeed)."""

    symbol: str
    """The symbol."""
    time_ms: int
    """Open time, epoch milliseconds."""
    close: float
    """Close (or latest) price."""
    quote_volume: float
    """Volume in the quote asset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmStartLoaded(Event):
    """Candles read from the RootTrading ``market_data`` table at start."""

    candles: tuple[tuple[str, int, float, float], ...]
    """(symbol, open time ms, close, quote volume), oldest first."""
    error: str | None
    """Why nothing was read, if so."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseTick(Command):
    """Time to expire blacklist entries and rotate if the interval has passed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateUniverse(Command):
    """Rotate now; answered with a ``UniverseSnapshot`` when asked."""

    reason: str
    """``interval``, ``api`` or ``start``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlacklistSymbol(Command):
    """Keep a symbol out of the universe; answered with a ``UniverseSnapshot``."""

    symbol: str
    """The symbol."""
    reason: str
    """Why."""
    source: str
    """Who: ``api``, ``auto``..."""
    ttl: float | None
    """Seconds until it expires; None: until removed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnblacklistSymbol(Command):
    """Take a symbol off the blacklist; answered with a ``UniverseSnapshot``."""

    symbol: str
    """The symbol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseChanged(Event):
    """The universe after a rotation or a blacklist change."""

    selected: frozenset[str]
    """Symbols a BUY may be made in."""
    added: tuple[str, ...]
    """New this time."""
    removed: tuple[str, ...]
    """Gone this time."""
    draining: frozenset[str]
    """Out of the universe with a position still open: sellable until closed."""
    blacklist: tuple[tuple[str, str], ...]
    """(symbol, reason) of the active blacklist."""
    reasons: tuple[tuple[str, str], ...]
    """(symbol, why) for the symbols this change concerns."""
    at: float
    """Wall-clock time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetUniverse(Query):
    """Ask the UniverseManager for a ``UniverseSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseSnapshot:
    json: str
    """The universe for the API, as JSON text (selected, scores, verdicts, blacklist,
    draining, next update, last diff, performance)."""
    selected: frozenset[str]
    """Symbols a BUY may be made in."""
    blacklist: tuple[tuple[str, str], ...]
    """(symbol, reason) of the active blacklist."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetUniverseHistory(Query):
    """Ask for the stored rotations, newest first."""

    limit: int
    """How many."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseHistory:
    json: str
    """The rotations as JSON text."""
