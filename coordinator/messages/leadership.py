"""LeaderElector: the leader lease taken, renewed and lost; who leads, as this
instance sees it."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.cluster.fencing import LeaseToken
from coordinator.cluster.lease import Answer, Belief, LossReason, Role
from coordinator.messages.base import Command, Event, Query

__all__ = [
    "GetLeadership",
    "LeaderElected",
    "LeadershipLost",
    "LeadershipSnapshot",
    "LeaseAnswered",
    "LeaseTick",
    "NotLeading",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseTick(Command):
    """Time to look at the lease's deadline and make the request that is due."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseAnswered(Event):
    """The store answered a request (or failed to); sent by the elector's worker to the
    elector."""

    answer: Answer
    """Granted, refused or failed, with the number of the request it answers."""
    error: str | None = None
    """Why it failed, when it did."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElected(Event):
    """This instance leads from now on, at ``token.generation``: leader-only work may
    start, each of its writes fenced by ``token``."""

    token: LeaseToken
    """The lease, this instance's name and the generation it leads at."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadershipLost(Event):
    """This instance no longer leads at ``token.generation``: leader-only work stops
    (whatever it still sends is refused by the fence)."""

    token: LeaseToken
    """The lease, this instance's name and the generation it led at."""
    reason: LossReason
    """Expired (our clock passed the deadline), refused (someone else holds it) or
    released (a clean stop)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetLeadership(Query):
    """Who leads, as the elector believes now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadershipSnapshot:
    """The elector's view of the lease."""

    lease: str
    """The lease's name."""
    holder: str
    """This instance's name in the lease."""
    role: Role
    """Leader while this instance may do leader-only work, else follower."""
    belief: Belief
    """The contender's state: follower, leader or lost."""
    generation: int | None
    """The generation it leads at or last led at."""
    expires_in: float | None
    """Seconds left of our lease on our own clock, as leader."""
    elected: int
    """Times this incarnation became leader."""
    last_error: str | None
    """The last failure to reach the store, if the last answer was one."""
    awaiting: bool
    """Whether a store call is on its way."""
    ticks: int
    """Ticks taken by this incarnation (a stalled elector shows none coming)."""
    alone: bool = False
    """This coordinator runs alone (COORDINATOR_INSTANCES=single): it leads without a
    lease, always, and its leader-only writes pass no fence."""

    @property
    def leading(self) -> bool:
        return self.role is Role.LEADER

    @property
    def token(self) -> LeaseToken | None:
        """What this instance's leader-only writes pass now: None while it follows."""
        if not self.leading:
            return None
        if self.alone:
            return LeaseToken.alone(self.lease, self.holder)
        if self.generation is None:
            return None
        return LeaseToken(self.lease, self.holder, self.generation)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotLeading:
    """The answer of an actor asked for leader-only work on a follower: nothing done,
    ask the leader."""

    leader: str | None
    """The lease's holder as stored (None: unknown, or nobody holds it)."""
