"""Stats: counts and latencies of decisions and orders, since start and over all time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coordinator.messages.base import Command, Event, Query
from coordinator.trading.history import MinuteCounts
from coordinator.trading.metrics import BucketCounts

__all__ = [
    "GetStats",
    "GetStatsHistory",
    "LifetimeFetched",
    "RefreshLifetime",
    "StatsHistory",
    "StatsSnapshot",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LifetimeFetched(Event):
    """Totals over everything stored, read by the Stats worker."""

    totals: Mapping[str, Any]
    """The totals, as the store gives them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshLifetime(Command):
    """Time for Stats to read the lifetime totals again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats(Query):
    """Ask Stats for a ``StatsSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsSnapshot:
    """Counts since this process started, and over every stored decision."""

    signals_processed: int = 0
    """Signals decided."""
    signals_accepted: int = 0
    """Signals decided ``accepted``."""
    signals_rejected: int = 0
    """Signals decided ``rejected``."""
    signals_shadow: int = 0
    """Signals decided ``shadow``."""
    signals_unknown: int = 0
    """Signals decided ``unknown``."""
    signals_validated: int = 0
    """Signals that passed validation."""
    orders_accepted: int = 0
    """Orders the Trader accepted."""
    orders_rejected: int = 0
    """Orders the Trader refused."""
    orders_unknown: int = 0
    """Orders whose outcome is unknown."""
    internal_errors: int = 0
    """Signals rejected on an internal error."""
    rejections_by_reason: tuple[tuple[str, int], ...] = ()
    """(reason, count), most frequent first."""
    intake_to_decision: Mapping[str, float | int | None] = field(default_factory=dict)
    """Latency percentiles from intake to decision, in ms."""
    intake_to_order: Mapping[str, float | int | None] = field(default_factory=dict)
    """Latency percentiles from intake to order, in ms."""
    tick_to_exit_order: Mapping[str, float | int | None] = field(default_factory=dict)
    """Latency percentiles from a price tick to a stop's exit order, in ms."""
    stop_exits: tuple[tuple[str, int], ...] = ()
    """(outcome, count) of the stops' exits."""
    reservations_expired: int = 0
    """Reservations that ran out without an order."""
    lifetime: Mapping[str, Any] | None = None
    """The counts over every stored decision (refreshed every 30 s); None until read."""
    signals_by_source: tuple[tuple[str, str, int], ...] = ()
    """(source, outcome, count) of the signals decided (stop exits left out)."""
    orders_by_state: tuple[tuple[str, int], ...] = ()
    """(state, count) of the orders finished."""
    intake_to_decision_buckets: BucketCounts = field(default_factory=BucketCounts)
    """Latencies from intake to decision, in fixed buckets."""
    intake_to_order_buckets: BucketCounts = field(default_factory=BucketCounts)
    """Latencies from intake to order, in fixed buckets."""
    tick_to_exit_order_buckets: BucketCounts = field(default_factory=BucketCounts)
    """Latencies from a price tick to a stop's exit order, in fixed buckets."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatsHistory(Query):
    """Ask Stats for a ``StatsHistory``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsHistory:
    """The last hour minute by minute, oldest first."""

    now: float
    """Wall time of the snapshot, epoch seconds."""
    minutes: tuple[MinuteCounts, ...] = ()
    """One record per minute that saw a decision or an order (quiet minutes left out)."""
