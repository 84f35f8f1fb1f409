"""What one contender for the leader lease believes, and what it does on each tick and
each answer of the lease store (pure: the elector does the I/O).

A contender is a follower, a leader of one generation until a deadline on its own
monotonic clock, or lost (it led, its own clock passed that deadline, and it has not
heard from the store since). The deadline is the moment the request that confirmed the
lease was *sent*, plus the lease's duration: the store's row expires at the sender's
wall-clock reading at that same moment plus the duration, and nobody takes a lease
before its row expires, so, with the instances' clocks in step, a contender stops
believing it leads no later than anyone else may take over, however late the answer
arrived or however long the process was paused. Clocks out of step could let two
believe at once for as long as they differ; what keeps them from both acting is the
generation fence in the store, not this.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = [
    "Answer",
    "Ask",
    "Belief",
    "Change",
    "Contender",
    "Failed",
    "Granted",
    "LeaseTimings",
    "LossReason",
    "Refused",
    "Request",
    "Role",
    "StartedLeading",
    "Step",
    "StoppedLeading",
    "answered",
    "may_act",
    "release",
    "role",
    "tick",
]


class Belief(StrEnum):
    FOLLOWER = "follower"
    """Someone else holds the lease, or nobody does yet: try to take it when it looks
    free."""
    LEADER = "leader"
    """The lease is ours at ``generation`` until ``expires`` on our own clock."""
    LOST = "lost"
    """We led, our clock passed the deadline before a renewal was confirmed; we do not
    know who holds it now."""


class Role(StrEnum):
    """What the rest of the instance is told: whether it may do leader-only work now."""

    LEADER = "leader"
    FOLLOWER = "follower"


class Ask(StrEnum):
    ACQUIRE = "acquire"
    RENEW = "renew"


class LossReason(StrEnum):
    EXPIRED = "expired"
    """Our own clock passed the deadline of the last confirmed renewal."""
    REFUSED = "refused"
    """The store refused our renewal: another holder or generation has the lease."""
    RELEASED = "released"
    """We gave it up on a clean stop."""


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    """How long a lease lasts and how often its holder renews it."""

    duration: float
    """Seconds a lease lasts from the moment its acquisition or renewal was sent."""
    renew_every: float
    """Seconds between two renewals by the leader, and at most between two attempts
    of a follower; under half the duration, so one lost renewal does not lose the
    lease."""

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")
        if not self.renew_every > 0:
            raise ValueError(f"renew_every must be > 0 seconds, got {self.renew_every}")
        if not self.renew_every < self.duration / 2:
            raise ValueError(
                f"renew_every={self.renew_every} must be under half of "
                f"duration={self.duration}: a lost renewal must leave time for the next"
            )

    @property
    def retry_after(self) -> float:
        """Seconds before a request that failed (store unreachable) is tried again."""
        return self.renew_every / 2

    @property
    def tick(self) -> float:
        """How often the elector should call ``tick``: the leader notices its deadline
        within this."""
        return self.renew_every / 5


@dataclass(frozen=True, slots=True)
class Request:
    """A call of the store the contender made and awaits."""

    number: int
    """Its sequence number at this contender: only the answer to the latest counts."""
    ask: Ask
    """Acquire, or renew the generation we hold."""
    sent_at: float
    """The contender's monotonic clock when it was sent."""
    generation: int | None = None
    """The generation to renew (None for an acquisition)."""


@dataclass(frozen=True, slots=True)
class Granted:
    """The lease is ours at ``generation``, until the request's send time plus the
    duration."""

    number: int
    """The request answered."""
    generation: int
    """The generation we hold."""


@dataclass(frozen=True, slots=True)
class Refused:
    """Someone else holds the lease (or ours has another generation)."""

    number: int
    """The request answered."""
    holder: str | None
    """Who holds it, as the store read it."""
    generation: int | None
    """Its generation."""
    remaining: float
    """Seconds it had left at the request's wall-clock reading (0 if expired)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """No answer: the store could not be reached, or refused the call as an error."""

    number: int
    """The request that failed."""


Answer = Granted | Refused | Failed


@dataclass(frozen=True, slots=True)
class StartedLeading:
    """This contender now leads at ``generation``."""

    generation: int
    """The lease's generation."""


@dataclass(frozen=True, slots=True)
class StoppedLeading:
    """This contender no longer leads at ``generation``."""

    generation: int
    """The generation it led at."""
    reason: LossReason
    """Why."""


Change = StartedLeading | StoppedLeading


@dataclass(frozen=True, slots=True)
class Contender:
    """What one contender believes and awaits."""

    belief: Belief = Belief.FOLLOWER
    """Follower, leader or lost."""
    generation: int | None = None
    """The generation we lead at, or last led at."""
    expires: float = 0.0
    """As leader: our monotonic deadline, the last confirmed request's send time plus
    the duration."""
    pending: Request | None = None
    """The request awaiting its answer."""
    next_try: float = 0.0
    """Monotonic time of the next request."""
    requests: int = 0
    """Requests made so far (the last one's number)."""
    highest_led: int = 0
    """The highest generation we have led at: a grant of it or lower is never taken as
    a new leadership (it would be reported twice)."""


@dataclass(frozen=True, slots=True)
class Step:
    """What came of a tick or an answer."""

    state: Contender
    """The new belief."""
    request: Request | None = None
    """A store call to make now."""
    change: Change | None = None
    """A change of leadership to tell the subscribers."""


def may_act(state: Contender, now: float) -> bool:
    """Whether leader-only work may start now (``now`` on the contender's monotonic
    clock). False as soon as the clock reaches the deadline, before any tick says so."""
    return state.belief is Belief.LEADER and now < state.expires


def role(state: Contender, now: float) -> Role:
    """Leader while ``may_act``; a lost or expired leader is a follower."""
    return Role.LEADER if may_act(state, now) else Role.FOLLOWER


def tick(state: Contender, now: float, timings: LeaseTimings) -> Step:
    """Notice a passed deadline, then make the request that is due, if any."""
    change: Change | None = None
    if state.belief is Belief.LEADER and now >= state.expires:
        assert state.generation is not None
        change = StoppedLeading(generation=state.generation, reason=LossReason.EXPIRED)
        # Try to take it again at once: nobody may have wanted it meanwhile.
        state = replace(state, belief=Belief.LOST, next_try=now)
    if state.pending is not None:
        # An answer that has not come within a lease is taken as lost; its late arrival
        # is ignored (another request will have been numbered since).
        if now - state.pending.sent_at < timings.duration:
            return Step(state, change=change)
        state = replace(state, pending=None)
    if now < state.next_try:
        return Step(state, change=change)
    number = state.requests + 1
    if state.belief is Belief.LEADER:
        request = Request(number, Ask.RENEW, now, state.generation)
    else:
        request = Request(number, Ask.ACQUIRE, now)
    state = replace(state, pending=request, requests=number)
    return Step(state, request=request, change=change)


def answered(state: Contender, answer: Answer, now: float, timings: LeaseTimings) -> Step:
    """Take the store's answer to the pending request (any other is stale: ignored)."""
    request = state.pending
    if request is None or answer.number != request.number:
        return Step(state)
    state = replace(state, pending=None)
    match answer:
        case Failed():
            return Step(replace(state, next_try=now + timings.retry_after))
        case Refused(remaining=remaining):
            return _refused(state, request, remaining, timings)
        case Granted(generation=generation):
            return _granted(state, request, generation, now, timings)


def release(state: Contender) -> Step:
    """Stop leading at once (a clean stop); the elector then releases the row so the
    next leader need not wait for it to expire."""
    if state.belief is not Belief.LEADER:
        return Step(replace(state, belief=Belief.FOLLOWER, pending=None))
    assert state.generation is not None
    return Step(
        replace(state, belief=Belief.FOLLOWER, pending=None),
        change=StoppedLeading(generation=state.generation, reason=LossReason.RELEASED),
    )


def _refused(state: Contender, request: Request, remaining: float, timings: LeaseTimings) -> Step:
    # Try again when it looks free, and at least every renew_every: a released lease
    # shows no expiry worth waiting for.
    wait = min(max(remaining, 0.0), timings.renew_every)
    change: Change | None = None
    if state.belief is Belief.LEADER:
        assert state.generation is not None
        change = StoppedLeading(generation=state.generation, reason=LossReason.REFUSED)
    return Step(
        replace(state, belief=Belief.FOLLOWER, next_try=request.sent_at + wait), change=change
    )


def _granted(
    state: Contender, request: Request, generation: int, now: float, timings: LeaseTimings
) -> Step:
    expires = request.sent_at + timings.duration
    if request.ask is Ask.RENEW:
        if state.belief is not Belief.LEADER or generation != state.generation:
            # Our term ended (by our clock) while the renewal was on its way: a new term
            # starts only with an acquisition, which gives a new generation.
            return Step(replace(state, next_try=now))
        if now >= expires:
            return tick(state, now, timings)
        return Step(
            replace(
                state,
                expires=max(state.expires, expires),
                next_try=request.sent_at + timings.renew_every,
            )
        )
    if generation <= state.highest_led or now >= expires:
        # Already led and reported lost (our clock ran out a moment before the row's), or
        # confirmed too late to be of use: wait for the row to expire and take a new one.
        return Step(replace(state, belief=Belief.FOLLOWER, next_try=expires))
    leader = replace(
        state,
        belief=Belief.LEADER,
        generation=generation,
        expires=expires,
        highest_led=generation,
        next_try=request.sent_at + timings.renew_every,
    )
    return Step(leader, change=StartedLeading(generation=generation))
