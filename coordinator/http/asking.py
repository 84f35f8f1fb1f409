"""What the facade and its parts share: the names of the actors they ask, and the
errors the routes turn into answers."""

from __future__ import annotations

from coordinator.actors.names import ActorName
from coordinator.errors import CoordinatorError

__all__ = [
    "LEADER_ELECTOR",
    "LEDGER",
    "MARKET_FEED",
    "PARTITION_KEEPER",
    "RECONCILER",
    "SERVICE_HEALTH",
    "SIGNAL_INTAKE",
    "STATS",
    "STORE_TIMEOUT",
    "STORE_WRITER",
    "TRAILING_STOP",
    "UNIVERSE",
    "ActorUnavailable",
    "NotLeader",
    "NotOnBlacklist",
    "UnknownActor",
]

SERVICE_HEALTH = ActorName.SERVICE_HEALTH
SIGNAL_INTAKE = ActorName.SIGNAL_INTAKE
STORE_WRITER = ActorName.STORE_WRITER
STATS = ActorName.STATS
LEDGER = ActorName.LEDGER
UNIVERSE = ActorName.UNIVERSE_MANAGER
TRAILING_STOP = ActorName.TRAILING_STOP
MARKET_FEED = ActorName.MARKET_FEED
RECONCILER = ActorName.RECONCILER
LEADER_ELECTOR = ActorName.LEADER_ELECTOR
PARTITION_KEEPER = ActorName.PARTITION_KEEPER
STORE_TIMEOUT = 3.0  # reads of stored records are database queries


class ActorUnavailable(CoordinatorError):
    """An actor did not answer in time or is restarting: answer 503 naming it."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(f"actor {actor} is unavailable: {reason}")
        self.actor = actor
        self.reason = reason


class UnknownActor(CoordinatorError, LookupError):
    """No actor of that name in the tree."""


class NotOnBlacklist(CoordinatorError, LookupError):
    """A symbol to take off the blacklist is not on it: answer 404."""


class NotLeader(CoordinatorError):
    """Leader-only work asked of a follower: answer 409 naming the leader."""

    def __init__(self, leader: str | None) -> None:
        where = f"the leader is {leader}" if leader else "no instance leads right now"
        super().__init__(f"this instance follows: {where}; send it to the leader")
        self.leader = leader
