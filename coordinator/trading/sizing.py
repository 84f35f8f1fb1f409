"""Order size by signal force (RootTrading's table, configurable)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.trading.signals import Signal

__all__ = ["CATEGORIES", "SizingTable", "signal_force"]

CATEGORIES = ("WEAK", "MODERATE", "STRONG", "VERY_STRONG")

# When the aggregator leaves consensus_strength out, the signal's strength word stands in.
_STRENGTH_VALUE = {
    "very_weak": 0.2,
    "weak": 0.4,
    "moderate": 0.6,
    "strong": 0.8,
    "very_strong": 1.0,
}


def signal_force(signal: Signal) -> float:
    """consensus strength x sqrt(strategies) x confidence, with documented fallbacks:
    strength word for a missing consensus strength (else 0.5), 1 strategy, and
    avg_confidence (else 0.5) for a missing confidence."""
    strength = signal.consensus_strength
    if strength is None:
        strength = _STRENGTH_VALUE.get(signal.strength or "", 0.5)
    count = signal.strategies_count if signal.strategies_count else 1
    confidence = signal.confidence
    if confidence is None:
        confidence = signal.avg_confidence if signal.avg_confidence is not None else 0.5
    return strength * math.sqrt(count) * confidence


@dataclass(frozen=True, slots=True)
class SizingTable:
    thresholds: tuple[float, float, float]
    """Force below the first is WEAK, below the second MODERATE, below the third STRONG."""
    percents: tuple[float, float, float, float]
    """Share of the free quote balance per category, in percent."""

    def __post_init__(self) -> None:
        if len(self.thresholds) != 3 or list(self.thresholds) != sorted(set(self.thresholds)):
            raise ValueError(
                f"sizing thresholds must be 3 increasing numbers, got {self.thresholds}"
            )
        if len(self.percents) != 4 or not all(0 < p <= 100 for p in self.percents):
            raise ValueError(f"sizing percents must be 4 numbers in (0, 100], got {self.percents}")

    def category(self, force: float) -> str:
        for name, limit in zip(CATEGORIES, self.thresholds, strict=False):
            if force < limit:
                return name
        return CATEGORIES[-1]

    def percent(self, category: str) -> float:
        return self.percents[CATEGORIES.index(category)]
