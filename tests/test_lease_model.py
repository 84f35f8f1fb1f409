"""Model-based test of the leader lease: contenders and a model of the database row.

Three contenders, each with its own monotonic clock (an arbitrary origin), share the
wall clock the store compares expiries with. Their requests reach the row late, out of
order or never; answers come late, out of order, as failures, or never; a contender is
paused (no ticks, no answers, its clock running on) and resumed; a leader stops cleanly
and releases. After every step: at most one contender may act at the model's time, and
it is the row's holder at its generation; the row's generation never goes back and
rises by one on each take; each generation is led by one contender, which leads each of
its generations once; a leader paused past its deadline does not act before a new
acquisition is confirmed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.cluster.lease import (
    Answer,
    Ask,
    Belief,
    Contender,
    Failed,
    Granted,
    LeaseTimings,
    LossReason,
    Refused,
    Request,
    StartedLeading,
    Step,
    StoppedLeading,
    answered,
    may_act,
    release,
    tick,
)

TIMINGS = LeaseTimings(duration=1.5, renew_every=0.5)
NAMES = ("a", "b", "c")


@dataclass
class Row:
    holder: str
    generation: int
    expires: float
    """Wall-clock seconds; -inf once released."""


@dataclass
class LeaseDatabase:
    """The row as coordinator_leases keeps it, with the store's rules."""

    row: Row | None = None
    takes: int = 0

    def acquire(self, holder: str, now: float, number: int) -> Answer:
        row = self.row
        if row is None:
            self.row = Row(holder, 1, now + TIMINGS.duration)
            self.takes += 1
            return Granted(number, 1)
        if row.expires <= now:
            # A take, by anyone (ourselves too): a new term.
            self.row = Row(holder, row.generation + 1, now + TIMINGS.duration)
            self.takes += 1
            return Granted(number, row.generation + 1)
        if row.holder == holder:
            row.expires = max(row.expires, now + TIMINGS.duration)
            return Granted(number, row.generation)
        return Refused(number, row.holder, row.generation, row.expires - now)

    def renew(self, holder: str, generation: int, now: float, number: int) -> Answer:
        row = self.row
        if (
            row is not None
            and row.holder == holder
            and row.generation == generation
            and row.expires != -math.inf
        ):
            row.expires = max(row.expires, now + TIMINGS.duration)
            return Granted(number, generation)
        if row is None:
            return Refused(number, None, None, 0.0)
        return Refused(number, row.holder, row.generation, max(0.0, row.expires - now))

    def release(self, holder: str, generation: int) -> None:
        row = self.row
        if row is not None and row.holder == holder and row.generation == generation:
            row.expires = -math.inf


@dataclass
class Member:
    name: str
    offset: float
    """Its monotonic clock reads the model's time plus this."""
    state: Contender = field(default_factory=Contender)
    paused: bool = False
    must_reconfirm: bool = False
    """Resumed after its deadline passed during the pause: may not act until it leads
    again by a new acquisition."""
    led: list[int] = field(default_factory=list)


@dataclass
class Sent:
    member: int
    request: Request | None
    """None: a release."""
    wall: float
    generation: int = 0


class LeaseModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000.0
        self.db = LeaseDatabase()
        self.members: list[Member] = []
        self.to_store: list[Sent] = []
        self.to_members: list[tuple[int, Answer]] = []
        self.last_generation = 0
        self.leader_of: dict[int, str] = {}

    @initialize(offsets=st.lists(st.floats(-1e5, 1e5), min_size=3, max_size=3))
    def start(self, offsets: list[float]) -> None:
        self.members = [Member(name, offset) for name, offset in zip(NAMES, offsets, strict=True)]

    def _clock(self, member: Member) -> float:
        return self.now + member.offset

    def _apply(self, index: int, step: Step) -> None:
        member = self.members[index]
        member.state = step.state
        match step.change:
            case StartedLeading(generation=generation):
                assert not member.led or generation > member.led[-1], "led twice at a generation"
                assert self.leader_of.setdefault(generation, member.name) == member.name
                member.led.append(generation)
                if self.leader_of.get(generation - 1, member.name) != member.name:
                    event("took over from another")
                member.must_reconfirm = False
                event("started leading")
            case StoppedLeading(reason=reason):
                event(f"stopped leading: {reason}")
        if step.request is not None:
            self.to_store.append(Sent(index, step.request, self.now))

    @rule(seconds=st.one_of(st.sampled_from([0.05, 0.1, 0.3, 0.5, 1.5]), st.floats(0.0, 3.0)))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(index=st.integers(0, 2))
    def tick(self, index: int) -> None:
        member = self.members[index]
        if not member.paused:
            self._apply(index, tick(member.state, self._clock(member), TIMINGS))

    @rule(index=st.integers(0, 2))
    def round_trip(self, index: int) -> None:
        """A tick whose request is taken and answered at once: the usual case."""
        self.tick(index)
        if self.to_store and self.to_store[-1].member == index:
            self._store_takes(self.to_store.pop(), "answered")
            if self.to_members and self.to_members[-1][0] == index:
                self._arrives(len(self.to_members) - 1)

    @precondition(lambda self: self.to_store)
    @rule(data=st.data(), fate=st.sampled_from(["answered", "answer lost", "failed", "lost"]))
    def store_takes_one(self, data: st.DataObject, fate: str) -> None:
        """Requests reach the store in any order, or never; answers are lost or fail."""
        self._store_takes(
            self.to_store.pop(data.draw(st.integers(0, len(self.to_store) - 1))), fate
        )

    def _store_takes(self, sent: Sent, fate: str) -> None:
        member = self.members[sent.member]
        if sent.request is None:
            self.db.release(member.name, sent.generation)
            return
        if fate == "lost":
            return
        request = sent.request
        if fate == "failed":
            self.to_members.append((sent.member, Failed(request.number)))
            return
        before = self.db.row.generation if self.db.row else 0
        if request.ask is Ask.ACQUIRE:
            answer = self.db.acquire(member.name, sent.wall, request.number)
        else:
            assert request.generation is not None
            answer = self.db.renew(member.name, request.generation, sent.wall, request.number)
        after = self.db.row.generation if self.db.row else 0
        assert after in (before, before + 1), "a take raises the generation by one"
        if fate == "answered":
            self.to_members.append((sent.member, answer))

    @precondition(lambda self: self.to_members)
    @rule(data=st.data())
    def answer_arrives(self, data: st.DataObject) -> None:
        waiting = [i for i, (m, _) in enumerate(self.to_members) if not self.members[m].paused]
        if not waiting:
            return
        self._arrives(data.draw(st.sampled_from(waiting)))

    def _arrives(self, position: int) -> None:
        index, answer = self.to_members.pop(position)
        member = self.members[index]
        self._apply(index, answered(member.state, answer, self._clock(member), TIMINGS))

    @rule(index=st.integers(0, 2))
    def pause(self, index: int) -> None:
        self.members[index].paused = True

    @rule(index=st.integers(0, 2))
    def resume(self, index: int) -> None:
        member = self.members[index]
        if not member.paused:
            return
        member.paused = False
        state = member.state
        if state.belief is Belief.LEADER and self._clock(member) >= state.expires:
            member.must_reconfirm = True
            event("resumed past its deadline")

    @rule(index=st.integers(0, 2))
    def stop_cleanly(self, index: int) -> None:
        member = self.members[index]
        if member.paused:
            return
        generation = member.state.generation
        step = release(member.state)
        self._apply(index, step)
        if step.change is not None and generation is not None:
            self.to_store.append(Sent(index, None, self.now, generation))

    @invariant()
    def one_leader_and_it_holds_the_row(self) -> None:
        acting = [m for m in self.members if may_act(m.state, self._clock(m))]
        assert len(acting) <= 1, f"{[m.name for m in acting]} all act at {self.now}"
        for member in acting:
            row = self.db.row
            assert row is not None
            assert (row.holder, row.generation) == (member.name, member.state.generation)
            assert not member.must_reconfirm, "acts after a pause before reconfirming"

    @invariant()
    def generation_never_goes_back(self) -> None:
        generation = self.db.row.generation if self.db.row else 0
        assert generation >= self.last_generation
        self.last_generation = generation


TestLeaseModel = LeaseModel.TestCase
TestLeaseModel.settings = settings(max_examples=300, stateful_step_count=80, deadline=None)


def test_a_follower_takes_over_once_the_paused_leaders_lease_expires() -> None:
    """The plain story the model draws among others: a leader stops answering, the
    follower waits out the lease, takes it at the next generation, and the old leader,
    resumed, knows it lost before it may act."""
    db = LeaseDatabase()
    a, b = Contender(), Contender()
    now = 0.0

    def call(name: str, step: Step) -> Contender:
        request = step.request
        assert request is not None
        if request.ask is Ask.ACQUIRE:
            answer = db.acquire(name, now, request.number)
        else:
            assert request.generation is not None
            answer = db.renew(name, request.generation, now, request.number)
        return answered(step.state, answer, now, TIMINGS).state

    a = call("a", tick(a, now, TIMINGS))
    assert may_act(a, now) and a.generation == 1
    b = call("b", tick(b, now, TIMINGS))
    assert b.belief is Belief.FOLLOWER
    # a is paused from here on: b keeps trying and takes over once the row expired.
    while b.belief is not Belief.LEADER:
        now += TIMINGS.tick
        step = tick(b, now, TIMINGS)
        b = call("b", step) if step.request else step.state
    assert b.generation == 2
    assert 1.5 <= now <= 1.5 + TIMINGS.tick
    assert not may_act(a, now)
    resumed = tick(a, now, TIMINGS)
    assert resumed.change == StoppedLeading(generation=1, reason=LossReason.EXPIRED)
    assert resumed.state.belief is Belief.LOST
    assert call("a", resumed).belief is Belief.FOLLOWER
