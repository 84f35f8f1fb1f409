"""Token buckets per client: how many requests a client may make at once and how fast
its allowance comes back. Pure: the caller gives the time, so a test drives it."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Bucket", "Rate", "RateLimiter", "Verdict"]

_ROUNDING = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """A limit: ``burst`` requests at once, then ``per_second`` on average."""

    per_second: float
    """Tokens given back each second."""
    burst: int
    """The bucket's size: how many requests a rested client may make at once."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ValueError(f"a rate must be a positive number per second, got {self.per_second}")
        if self.burst < 1:
            raise ValueError(f"a burst must be 1 or more, got {self.burst}")

    def describe(self) -> str:
        return f"{self.per_second:g}/s burst {self.burst}"


@dataclass(slots=True)
class Bucket:
    """One client's allowance: ``tokens`` left at time ``updated``."""

    tokens: float
    updated: float

    def refill(self, rate: Rate, now: float) -> None:
        # A clock that steps back gives nothing back and moves nothing back.
        if now > self.updated:
            self.tokens = min(
                float(rate.burst), self.tokens + (now - self.updated) * rate.per_second
            )
            self.updated = now


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What the limiter says of one request."""

    allowed: bool
    """True: take it; False: refuse it (429)."""
    retry_after: float
    """Seconds until the client has a token again; 0 when allowed."""

    @property
    def retry_after_seconds(self) -> int:
        """``retry_after`` as whole seconds for a Retry-After header: never 0, which
        would invite the client straight back."""
        return max(1, math.ceil(self.retry_after))


class RateLimiter:
    """A token bucket per client, at most ``max_clients`` of them: past that the client
    heard from least recently is forgotten (its bucket has refilled for the longest, so
    forgetting it gives it the least)."""

    def __init__(self, rate: Rate, *, max_clients: int) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be 1 or more, got {max_clients}")
        self.rate = rate
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float) -> Verdict:
        """One request from ``client`` at ``now``: a token taken, or the wait for one."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = Bucket(tokens=float(self.rate.burst), updated=now)
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket.refill(self.rate, now)
        # The margin absorbs float rounding in the refill: a client that waited exactly
        # as long as it was told finds its token.
        if bucket.tokens >= 1.0 - _ROUNDING:
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            return Verdict(allowed=True, retry_after=0.0)
        return Verdict(allowed=False, retry_after=(1.0 - bucket.tokens) / self.rate.per_second)
