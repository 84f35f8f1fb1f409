"""The TrailingStop's holdings: one stop and one lifecycle each, their stored records,
the API's view of them, and how a holding seen under a new key is recognised."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.clock import utc_iso
from coordinator.trading.stop_lifecycle import Action, Lifecycle, Phase
from coordinator.trading.stop_restore import restore
from coordinator.trading.stops import (
    EXIT_ID_PREFIX,
    StopParams,
    StopState,
    exit_id,
    open_stop,
)
from coordinator.trading.validation import opened_apart

__all__ = [
    "Holding",
    "carry_over",
    "exit_prefixes",
    "find_rekeyed",
    "from_record",
    "parse_exit_id",
    "same_holding",
    "stored_row",
]


@dataclass(slots=True)
class Holding:
    key: str
    """``cycle:<id>`` or symbol@entry time@entry price."""
    symbol: str
    """The symbol."""
    cycle_id: str | None
    """The RootTrading cycle, when known."""
    quantity: float
    """Base quantity as the Portfolio shows it."""
    entry_time: float | None
    """Entry time, epoch seconds."""
    rules: tuple[str, ...]
    """The stop's rule set."""
    stop: StopState
    """Entry, peak and stop."""
    watched_at: float
    """When it was first watched."""
    updated_at: float
    """Last change."""
    known_since: float
    """When a fetch that showed it started (or it was restored): a SELL of ours that
    filled after this sold it."""
    life: Lifecycle
    """Where its stop is."""
    aliases: tuple[str, ...] = ()
    """Earlier keys of the same holding (its exits under them are its own)."""
    closed_at: float | None = None
    """When its stop closed."""
    last_price: float | None = None
    """Latest price seen."""
    last_price_at: float | None = None
    """When that price was received."""
    errors: int = 0
    """Stop logic errors."""
    order_reads: int = 0
    """Reads of its stored exit orders (while it waits on one, every few seconds)."""
    sent_key: str | None = None
    """The key the current attempt was sent under (its exit id's), if not ``key``."""

    @property
    def exit_id(self) -> str:
        return exit_id(self.sent_key or self.key, self.life.attempt)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.aliases)

    def attempt_of(self, signal_id: str) -> int | None:
        """The attempt of one of this holding's exit ids; None for another's."""
        key, attempt = parse_exit_id(signal_id)
        return attempt if key is not None and key in self.keys else None

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
            "state": self.life.phase.value,
            "attempt": self.life.attempt,
            "failures": self.life.failures,
            "detail": self.life.detail,
            "watched_at": self.watched_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
            "aliases": list(self.aliases),
        }

    def price_age(self, now: float) -> float | None:
        """Seconds since its latest price, to the millisecond; None without one."""
        at = self.last_price_at
        return None if at is None else round(now - at, 3)

    def stale(self, now: float, max_age: float) -> bool:
        """Whether its latest price is missing or older than ``max_age``."""
        age = self.price_age(now)
        return age is None or age > max_age

    def row(self, now: float, max_age: float) -> dict[str, Any]:
        """Its line of ``GET /trailing-stops``."""
        last, at, stop, life = self.last_price, self.last_price_at, self.stop, self.life
        age = self.price_age(now)
        return {
            "position_key": self.key,
            "earlier_keys": list(self.aliases),
            "symbol": self.symbol,
            "cycle_id": self.cycle_id,
            "quantity": self.quantity,
            "entry_price": stop.entry,
            "entry_time": None if self.entry_time is None else utc_iso(self.entry_time),
            "last_price": last,
            "last_price_at": None if at is None else utc_iso(at),
            "price_age_s": age,
            "stale": self.stale(now, max_age),
            "peak": stop.peak,
            "stop": stop.stop,
            "stop_rule": stop.rule,
            "distance_to_stop_percent": None
            if last is None
            else round((last - stop.stop) / last * 100, 6),
            "strategy": "+".join(self.rules),
            "state": life.phase.value,
            "waiting_on_order": life.waiting_on if life.phase is Phase.AWAITING_ORDER else None,
            "exit_order_reads": self.order_reads,
            "exit_attempts": life.attempt,
            "failures": life.failures,
            "retry_at": None
            if life.retry_at is None or life.phase is not Phase.RETRY
            else utc_iso(life.retry_at),
            "detail": life.detail,
            "errors": self.errors,
            "watched_since": utc_iso(self.watched_at),
        }


def stored_row(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record's line of ``GET /trailing-stops`` on a follower: the fields of a
    watched holding's line that the record keeps, the others None (no price is followed
    there), and when the leader last wrote it."""
    at = record.get("entry_time")
    return {
        "position_key": record["position_key"],
        "earlier_keys": [],
        "symbol": record["symbol"],
        "cycle_id": record["cycle_id"],
        "quantity": record["quantity"],
        "entry_price": record["entry_price"],
        "entry_time": None if at is None else utc_iso(at),
        "last_price": None,
        "last_price_at": None,
        "price_age_s": None,
        "stale": None,
        "peak": record["peak"],
        "stop": record["stop"],
        "stop_rule": record["stop_rule"],
        "distance_to_stop_percent": None,
        "strategy": record["rules"],
        "state": record["state"],
        "waiting_on_order": None,
        "exit_order_reads": None,
        "exit_attempts": record["attempt"],
        "failures": record["failures"],
        "retry_at": None,
        "detail": record["detail"],
        "errors": None,
        "watched_since": utc_iso(record["watched_at"]),
        "stored_at": utc_iso(record["updated_at"]),
    }


def from_record(
    record: dict[str, Any], params: StopParams, now: float
) -> tuple[Holding, tuple[Action, ...]]:
    """A holding from its stored record; unusable records raise ValueError/KeyError."""
    entry = float(record["entry_price"])
    rules = tuple(str(record["rules"]).split("+"))
    stop = open_stop(rules, params, entry, peak=float(record["peak"]))
    stored_stop = float(record["stop"])
    if stored_stop > stop.stop:
        stop = StopState(entry, stop.peak, stored_stop, str(record["stop_rule"]))
    life, actions = restore(
        str(record["state"]), int(record["attempt"]), int(record["failures"]), now
    )
    detail = str(record.get("detail") or "")
    entry_time = record.get("entry_time")
    holding = Holding(
        key=str(record["position_key"]),
        symbol=str(record["symbol"]),
        cycle_id=record.get("cycle_id"),
        quantity=float(record["quantity"]),
        entry_time=None if entry_time is None else float(entry_time),
        rules=rules,
        stop=stop,
        watched_at=float(record["watched_at"]),
        updated_at=float(record["updated_at"]),
        known_since=now,
        life=life if not detail else _with_detail(life, detail),
        aliases=tuple(str(a) for a in record.get("aliases") or ()),
    )
    return holding, actions


def _with_detail(life: Lifecycle, detail: str) -> Lifecycle:
    return replace(life, detail=detail)


def find_rekeyed(
    candidates: Iterable[Holding],
    symbol: str,
    quantity: float,
    entry: float,
    opened_at: float | None = None,
) -> Holding | None:
    """The watched holding a position seen under a new key is, if exactly one fits; a
    sold or dusty stop is never one (its holding is gone: a new one of the same size
    must not take its stop), nor one the Portfolio showed opened at another time (a
    holding our SELL closed while this stop did not hear of it, and a new one bought
    since: each cycle has its own)."""
    fits = [
        h
        for h in candidates
        if h.life.live
        and same_holding(h.symbol, h.quantity, h.stop.entry, symbol, quantity, entry)
        and not opened_apart(h.entry_time, opened_at)
    ]
    if len(fits) != 1:
        return None
    return fits[0]


def carry_over(
    holding: Holding,
    *,
    key: str,
    cycle_id: str | None,
    entry: float,
    opened_at: float | None,
    quantity: float,
    params: StopParams,
) -> None:
    """The holding under its new key: peak and stop kept (never lowered), the lifecycle
    kept, the old key remembered so its exits stay its own."""
    fresh = open_stop(holding.rules, params, entry, peak=holding.stop.peak)
    if fresh.stop > holding.stop.stop:
        level, rule = fresh.stop, fresh.rule
    else:
        level, rule = holding.stop.stop, holding.stop.rule
    holding.stop = StopState(entry, max(fresh.peak, holding.stop.peak), level, rule)
    holding.aliases = tuple(a for a in (*holding.aliases, holding.key) if a != key)
    holding.key = key
    holding.cycle_id = cycle_id
    holding.entry_time = opened_at
    holding.quantity = quantity


def parse_exit_id(signal_id: str) -> tuple[str | None, int]:
    """(position key, attempt) of ``exit:<key>:<attempt>``."""
    if not signal_id.startswith(EXIT_ID_PREFIX):
        return None, 0
    key, _, attempt = signal_id[len(EXIT_ID_PREFIX) :].rpartition(":")
    try:
        return key, int(attempt)
    except ValueError:
        return None, 0


def exit_prefixes(keys: Sequence[str]) -> list[str]:
    """LIKE patterns matching every exit id of these keys."""
    out = []
    for key in keys:
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out.append(f"{EXIT_ID_PREFIX}{escaped}:%")
    return out


def same_holding(
    old_symbol: str,
    old_quantity: float,
    old_entry: float,
    new_symbol: str,
    new_quantity: float,
    new_entry: float,
    *,
    quantity_tolerance: float = 1e-4,
    entry_tolerance: float = 0.005,
) -> bool:
    """Whether a holding seen under a new key is the one watched under an old key: same
    symbol, same quantity within rounding, entry close (relative tolerances)."""
    if old_symbol != new_symbol:
        return False
    values = (old_quantity, old_entry, new_quantity, new_entry)
    if not all(math.isfinite(v) and v > 0 for v in values):
        return False
    if abs(old_quantity - new_quantity) > quantity_tolerance * max(old_quantity, new_quantity):
        return False
    return abs(old_entry - new_entry) <= entry_tolerance * max(old_entry, new_entry)
