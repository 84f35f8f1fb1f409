"""The blacklist: symbols kept out of the universe, each with a reason, a source and an
optional expiry; and the automatic rule that puts a symbol there after repeated
stop-losses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Blacklist", "BlacklistEntry", "StopLossRule"]


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    symbol: str
    reason: str
    source: str
    """``api`` (an operator), ``auto`` (the stop-loss rule)..."""
    added_at: float
    expires_at: float | None
    """None: until removed."""

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Blacklist:
    entries: Mapping[str, BlacklistEntry]

    @classmethod
    def empty(cls) -> Blacklist:
        return cls({})

    def active(self, now: float) -> frozenset[str]:
        return frozenset(s for s, e in self.entries.items() if not e.expired(now))

    def add(self, entry: BlacklistEntry) -> Blacklist:
        return Blacklist({**self.entries, entry.symbol: entry})

    def remove(self, symbol: str) -> tuple[Blacklist, BlacklistEntry | None]:
        entries = dict(self.entries)
        removed = entries.pop(symbol, None)
        return Blacklist(entries), removed

    def expire(self, now: float) -> tuple[Blacklist, list[BlacklistEntry]]:
        expired = [e for e in self.entries.values() if e.expired(now)]
        if not expired:
            return self, []
        return Blacklist({s: e for s, e in self.entries.items() if not e.expired(now)}), expired


@dataclass(frozen=True, slots=True)
class StopLossRule:
    """``count`` stop-losses on one symbol within ``window`` seconds blacklist it for
    ``cooldown`` seconds."""

    count: int
    window: float
    cooldown: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.window <= 0 or self.cooldown <= 0:
            raise ValueError("stop-loss rule needs count >= 1, window > 0 and cooldown > 0")

    def check(self, symbol: str, times: Iterable[float], now: float) -> BlacklistEntry | None:
        recent = [t for t in times if now - t <= self.window]
        if len(recent) < self.count:
            return None
        return BlacklistEntry(
            symbol=symbol,
            reason=f"{len(recent)} stop-losses within {self.window:g} s",
            source="auto",
            added_at=now,
            expires_at=now + self.cooldown,
        )
