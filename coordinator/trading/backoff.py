"""Exponential backoff: the one rule for how long to wait after failures in a row."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]

# 2**62 already overflows any cap worth having; beyond it a float power would only
# risk OverflowError for nothing.
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n) = min(maximum, base * factor**n)``, less a random share when jittered."""

    base: float
    """Delay after the first failure (attempt 0), seconds."""
    maximum: float
    """The delay grows per failure up to this, never above it."""
    jitter: float = 0.0
    """Up to this fraction of the delay is taken off at random, so that things failing
    together do not retry in lock-step."""
    factor: float = 2.0
    """How much each failure in a row multiplies the delay by."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.maximum < 0:
            raise ValueError(
                f"expected base and maximum >= 0, got base {self.base} and maximum {self.maximum}"
            )
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failure number ``attempt`` (0 for the first in a row)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        exact = min(self.maximum, self.base * self.factor ** min(attempt, _MAX_EXPONENT))
        if not self.jitter:
            return exact
        return exact * (1.0 - self.jitter * rand())
