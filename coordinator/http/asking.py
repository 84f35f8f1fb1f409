"""What the facade and its parts share: the names of the actors they ask, and the
errors the routes turn into answers."""

from __future__ import annotations

__all__ = [
    "LEDGER",
    "MARKET_FEED",
    "RECONCILER",
    "SERVICE_HEALTH",
    "SIGNAL_INTAKE",
    "STATS",
    "STORE_TIMEOUT",
    "STORE_WRITER",
    "TRAILING_STOP",
    "UNIVERSE",
    "ActorUnavailable",
    "UnknownActor",
]

SERVICE_HEALTH = "service_health"
SIGNAL_INTAKE = "signal_intake"
STORE_WRITER = "store_writer"
STATS = "stats"
LEDGER = "ledger"
UNIVERSE = "universe_manager"
TRAILING_STOP = "trailing_stop"
MARKET_FEED = "market_feed"
RECONCILER = "reconciler"
STORE_TIMEOUT = 3.0  # reads of stored records are database queries


class ActorUnavailable(Exception):
    """An actor did not answer in time or is restarting: answer 503 naming it."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(f"actor {actor} is unavailable: {reason}")
        self.actor = actor
        self.reason = reason


class UnknownActor(LookupError):
    """No actor of that name in the tree."""
