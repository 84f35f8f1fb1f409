"""The last hour minute by minute: signals, orders, rejections by reason and decision
latency, in a bounded ring of one-minute buckets (for the dashboard's chart)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from coordinator.trading.metrics import LatencyHistogram
from coordinator.trading.validation import Outcome

__all__ = ["MINUTES", "MinuteCounts", "MinuteHistory"]

MINUTES = 60
"""Buckets kept: one hour."""


@dataclass(slots=True)
class _Bucket:
    minute: int
    signals: int = 0
    accepted: int = 0
    rejected: int = 0
    orders: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(frozen=True, slots=True, kw_only=True)
class MinuteCounts:
    """What happened in one minute."""

    minute: int
    """Start of the minute, in whole minutes since the epoch (UTC)."""
    signals: int
    """Signals decided (the stops' exits are not signals)."""
    accepted: int
    """Signals decided ``accepted``."""
    rejected: int
    """Signals decided ``rejected``."""
    orders: int
    """Orders finished (any state)."""
    rejections_by_reason: tuple[tuple[str, int], ...]
    """(reason, count), most frequent first."""
    p50_ms: float | None
    """Median intake-to-decision latency in ms; None without a decision."""
    p99_ms: float | None
    """99th percentile of the same; None without a decision."""


class MinuteHistory:
    """At most ``MINUTES`` buckets: a bucket older than the last hour is dropped.

    Time comes from the caller (wall seconds) so that a test drives it; a clock that
    steps back files its events in the newest bucket rather than reopening old ones.
    """

    def __init__(self, minutes: int = MINUTES) -> None:
        if minutes < 1:
            raise ValueError(f"minutes must be >= 1, got {minutes}")
        self._minutes = minutes
        self._buckets: list[_Bucket] = []

    def _bucket(self, now: float) -> _Bucket:
        minute = math.floor(now / 60) if math.isfinite(now) else 0
        if self._buckets and minute <= self._buckets[-1].minute:
            return self._buckets[-1]
        self._buckets.append(_Bucket(minute=minute))
        self._drop_before(minute - self._minutes + 1)
        return self._buckets[-1]

    def _drop_before(self, first: int) -> None:
        self._buckets = [b for b in self._buckets if b.minute >= first]

    def decided(self, now: float, *, outcome: str, reason: str | None, latency_ms: float) -> None:
        bucket = self._bucket(now)
        bucket.signals += 1
        if outcome == Outcome.ACCEPTED:
            bucket.accepted += 1
        elif outcome == Outcome.REJECTED:
            bucket.rejected += 1
        if reason:
            bucket.rejections[reason] += 1
        bucket.latency.add(latency_ms)

    def order_finished(self, now: float) -> None:
        self._bucket(now).orders += 1

    def minutes(self, now: float) -> tuple[MinuteCounts, ...]:
        """The buckets of the last hour up to ``now``, oldest first (empty minutes
        are left out)."""
        current = math.floor(now / 60) if math.isfinite(now) else 0
        first = current - self._minutes + 1
        return tuple(_counts(b) for b in self._buckets if b.minute >= first)


def _counts(bucket: _Bucket) -> MinuteCounts:
    latency = bucket.latency.summary()
    return MinuteCounts(
        minute=bucket.minute,
        signals=bucket.signals,
        accepted=bucket.accepted,
        rejected=bucket.rejected,
        orders=bucket.orders,
        rejections_by_reason=tuple(bucket.rejections.most_common()),
        p50_ms=latency["p50"],
        p99_ms=latency["p99"],
    )
