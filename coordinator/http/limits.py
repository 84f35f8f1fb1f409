"""What one client may ask of the API: a rate per client address and route class, and
a body size per route. The decorator every route goes through applies both."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coordinator.trading.rate_limit import Rate, RateLimiter

__all__ = [
    "DEFAULT_MAX_BODY",
    "Body",
    "Limits",
    "RateClass",
    "RateLimits",
    "Refusal",
    "body_of",
    "declared_length",
    "read_body",
]

DEFAULT_MAX_BODY = 64 * 1024
_ENVIRON_KEY = "coordinator.body"


class RateClass(StrEnum):
    """Which allowance a route spends: commands, or signals (far more of them)."""

    MUTATING = "mutating"
    SIGNALS = "signals"


_SETTING = {
    RateClass.MUTATING: "HTTP_RATE_LIMIT_MUTATING",
    RateClass.SIGNALS: "HTTP_RATE_LIMIT_SIGNALS",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The limits the routes are held to."""

    mutating: Rate | None = None
    """Commands per client address; None: no limit."""
    signals: Rate | None = None
    """POST /signals per client address; None: no limit."""
    max_clients: int = 10_000
    """Client addresses remembered per route class."""
    max_body: int = DEFAULT_MAX_BODY
    """Body size limit of every route that does not name its own."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A request over its client's rate."""

    message: str
    """The limit named, and how long to wait."""
    limit: str
    """The limit in force, as configured (``10/s burst 20``)."""
    retry_after: int
    """Whole seconds to wait, 1 or more."""


class RateLimits:
    """A token bucket per client address and route class, safe across the server's
    threads."""

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limiters: dict[RateClass, RateLimiter] = {}
        for kind, rate in (
            (RateClass.MUTATING, limits.mutating),
            (RateClass.SIGNALS, limits.signals),
        ):
            if rate is not None:
                self._limiters[kind] = RateLimiter(rate, max_clients=limits.max_clients)

    def check(self, kind: RateClass, client: str) -> Refusal | None:
        limiter = self._limiters.get(kind)
        if limiter is None:
            return None
        with self._lock:
            verdict = limiter.take(client, self._clock())
        if verdict.allowed:
            return None
        wait = verdict.retry_after_seconds
        limit = limiter.rate.describe()
        return Refusal(
            message=(
                f"rate limit of {limit} per client for {kind} requests reached "
                f"({_SETTING[kind]}); retry in {wait} s"
            ),
            limit=limit,
            retry_after=wait,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    """A request's body as read, never more than one byte past its limit."""

    data: bytes
    """The bytes read: the whole body, or its first ``limit + 1`` bytes when over."""
    declared: int
    """The Content-Length the request gave; 0 without one."""
    limit: int
    """The route's limit in bytes."""

    @property
    def size(self) -> int:
        """The body's size as far as known: what it declared, or what was read."""
        return max(self.declared, len(self.data))

    @property
    def over(self) -> bool:
        return self.size > self.limit


def declared_length(environ: dict[str, Any]) -> int:
    raw = environ.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.strip().isdigit() else 0


def read_body(environ: dict[str, Any], limit: int, *, read_over: bool) -> Body:
    """The body, read once and kept for the route. Declared over ``limit``: nothing is
    read unless ``read_over`` (then ``limit + 1`` bytes, for a route that records what
    it refuses); without a declared length, no more than ``limit + 1`` bytes."""
    declared = declared_length(environ)
    stream = environ.get("wsgi.input")
    if stream is None or (declared > limit and not read_over):
        data = b""
    elif 0 < declared <= limit:
        data = stream.read(declared)
    else:
        data = stream.read(limit + 1)
    body = Body(data=data, declared=declared, limit=limit)
    environ[_ENVIRON_KEY] = body
    if not body.over:
        # Bottle reads request.body from here: the bytes already taken.
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
    return body


def body_of(environ: dict[str, Any]) -> Body:
    """The body ``read_body`` kept for this request."""
    body: Body = environ[_ENVIRON_KEY]
    return body
