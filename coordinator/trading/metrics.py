"""Latency percentiles from a logarithmic histogram: bounded memory, about 2 % error."""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["LatencyHistogram"]

_FLOOR_MS = 0.001
_GROWTH = 1.02


class LatencyHistogram:
    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, ms: float) -> None:
        if not math.isfinite(ms) or ms < 0:
            return
        index = 0 if ms <= _FLOOR_MS else int(math.log(ms / _FLOOR_MS, _GROWTH)) + 1
        self._buckets[index] += 1
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
