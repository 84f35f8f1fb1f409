"""Latency percentiles from a logarithmic histogram: bounded memory, about 2 % error;
and the same observations in fixed buckets, as a Prometheus histogram exposes them."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["BUCKETS_S", "BucketCounts", "LatencyHistogram"]

_FLOOR_MS = 0.001
_GROWTH = 1.02

BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds of the fixed buckets, in seconds (a last one, +Inf, takes the rest)."""
_BUCKETS_MS = tuple(bound * 1000 for bound in BUCKETS_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketCounts:
    """Observations counted in the fixed buckets ``BUCKETS_S``."""

    bounds_s: tuple[float, ...] = BUCKETS_S
    """Upper bounds of the buckets, in seconds, ascending."""
    cumulative: tuple[int, ...] = field(default=(0,) * (len(BUCKETS_S) + 1))
    """Observations at or below each bound, then all of them (the +Inf bucket)."""
    sum_s: float = 0.0
    """Sum of the observations, in seconds."""

    @property
    def count(self) -> int:
        return self.cumulative[-1]


class LatencyHistogram:
    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self._fixed = [0] * (len(_BUCKETS_MS) + 1)
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, ms: float) -> None:
        if not math.isfinite(ms) or ms < 0:
            return
        index = 0 if ms <= _FLOOR_MS else int(math.log(ms / _FLOOR_MS, _GROWTH)) + 1
        self._buckets[index] += 1
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self._fixed[bisect.bisect_left(_BUCKETS_MS, ms)] += 1
        self.count += 1
        self.total += ms
        self.maximum = max(self.maximum, ms)

    def percentile(self, fraction: float) -> float | None:
        """The upper bound of the bucket holding that rank (never below the true value)."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(self.maximum, _FLOOR_MS * _GROWTH**index)
        return self.maximum

    def summary(self) -> dict[str, float | int | None]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "count": self.count,
            "p50": rounded(self.percentile(0.50)),
            "p90": rounded(self.percentile(0.90)),
            "p99": rounded(self.percentile(0.99)),
            "max": rounded(self.maximum) if self.count else None,
            "mean": rounded(self.total / self.count) if self.count else None,
        }

    def buckets(self) -> BucketCounts:
        running = 0
        cumulative = []
        for count in self._fixed:
            running += count
            cumulative.append(running)
        return BucketCounts(cumulative=tuple(cumulative), sum_s=self.total / 1000)
