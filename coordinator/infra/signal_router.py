"""Hands a signal to the instance that owns its symbol, through its partition's stream.

In a cluster every instance hears each pub/sub signal, and any instance may take an
entry of the shared stream or a ``POST /signals``. Whichever does routes it: one Redis
script claims the signal's id (``SET NX`` with the dedup window as its lifetime) and,
only if the claim is new, appends the signal to its partition's stream; an entry of the
shared stream is acknowledged in the same script. Redis runs a script whole, so a
signal lands in a partition stream exactly once however many instances heard it and
whichever of them crashed when, and the shared stream's entry is never acknowledged
without it. The owner then reads it from there, through a consumer group, as it would
have read the shared stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from coordinator.errors import CoordinatorError

__all__ = ["Origin", "RouteError", "Routed", "SignalRouter"]

# KEYS: claim, partition stream ('' = claim only), origin stream ('' = none)
# ARGV: ttl, data, source, received_at, instance, signal_id, origin group, origin id
_ROUTE = """
local routed = 0
if redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[1]) then
  routed = 1
  if KEYS[2] ~= '' then
    redis.call('XADD', KEYS[2], '*', 'data', ARGV[2], 'source', ARGV[3],
               'received_at', ARGV[4], 'by', ARGV[5], 'signal_id', ARGV[6])
  end
end
if KEYS[3] ~= '' and ARGV[8] ~= '' then
  redis.call('XACK', KEYS[3], ARGV[7], ARGV[8])
end
return routed
"""


class Routed(StrEnum):
    ROUTED = "routed"
    """Claimed here: appended to the partition stream (or, claim only, to decide here)."""
    DUPLICATE = "duplicate"
    """Another arrival of the same signal (here or at another instance) claimed it."""


class RouteError(CoordinatorError):
    """Redis did not run the script: nothing was claimed, appended or acknowledged."""


@dataclass(frozen=True, slots=True)
class Origin:
    """An entry of the shared stream, acknowledged with the routing."""

    stream: str
    group: str
    entry_id: str


class SignalRouter:
    def __init__(
        self, redis_url: str, *, instance: str, claim_prefix: str, claim_ttl: float
    ) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        self._script = self._client.register_script(_ROUTE)
        self._instance = instance
        self._prefix = claim_prefix
        self._ttl = max(1, int(claim_ttl))

    def route(
        self,
        signal_id: str,
        payload: bytes,
        *,
        source: str,
        received_at: float,
        stream: str | None,
        origin: Origin | None = None,
    ) -> Routed:
        """Claim ``signal_id`` and, when claimed, append ``payload`` to ``stream`` (None:
        claim only, for a signal this instance decides itself)."""
        keys = [f"{self._prefix}{signal_id}", stream or "", origin.stream if origin else ""]
        args: list[bytes | str | int | float] = [
            self._ttl,
            payload,
            source,
            repr(received_at),
            self._instance,
            signal_id,
            origin.group if origin else "",
            origin.entry_id if origin else "",
        ]
        try:
            routed = self._script(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            raise RouteError(f"signal {signal_id} not routed: Redis: {exc}") from exc
        return Routed.ROUTED if int(routed) == 1 else Routed.DUPLICATE

    def close(self) -> None:
        self._client.close()
