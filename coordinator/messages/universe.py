"""UniverseManager: candles in, rotations, the blacklist, the universe out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coordinator.messages.base import Command, Event, Query
from coordinator.trading.blacklist import BlacklistEntry
from coordinator.trading.universe_rotation import Member

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
    """Take a symbol off the blacklist; answered with a ``UniverseSnapshot``, or
    ``NotBlacklisted`` when it is not on it."""

    symbol: str
    """The symbol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NotBlacklisted:
    """The answer to ``UnblacklistSymbol`` for a symbol not on the blacklist: nothing
    done."""

    symbol: str
    """The symbol asked for."""


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
    selected: frozenset[str]
    """Symbols a BUY may be made in."""
    blacklist: tuple[tuple[str, str], ...]
    """(symbol, reason) of the active blacklist."""
    members: tuple[tuple[str, Member], ...] = ()
    """(symbol, membership) of the members, by symbol."""
    waiting: Mapping[str, int] = field(default_factory=dict)
    """Non-members: rotations in a row they qualified."""
    draining: frozenset[str] = frozenset()
    """Symbols left that still hold a position."""
    core_pairs: frozenset[str] = frozenset()
    """Symbols always in the universe."""
    blacklisted: tuple[BlacklistEntry, ...] = ()
    """The active blacklist entries, by symbol."""
    last_at: float | None = None
    """Wall-clock time of the last rotation (None: none yet)."""
    next_at: float = 0.0
    """Wall-clock time of the next rotation."""
    last_reason: str | None = None
    """Why the last rotation ran."""
    scores: Mapping[str, Any] = field(default_factory=dict)
    """Each candidate's score at the last rotation."""
    verdicts: Mapping[str, Any] = field(default_factory=dict)
    """Each candidate's verdict at the last rotation, members included."""
    added: tuple[str, ...] = ()
    """Symbols the last rotation added."""
    removed: tuple[str, ...] = ()
    """Symbols the last rotation removed."""
    reasons: Mapping[str, Any] = field(default_factory=dict)
    """Why each symbol was added or removed at the last rotation."""
    rotation_ms: float | None = None
    """How long the last rotation took."""
    filters: tuple[str, ...] = ()
    """The filters of the chain, described."""
    symbols_with_data: int = 0
    """Symbols with market statistics."""
    performance: Mapping[str, Any] = field(default_factory=dict)
    """Decisions and orders per symbol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetUniverseHistory(Query):
    """Ask for the stored rotations, newest first."""

    limit: int
    """How many."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseHistory:
    rotations: tuple[Mapping[str, Any], ...]
    """The stored rotations, newest first, as the store gives them."""
