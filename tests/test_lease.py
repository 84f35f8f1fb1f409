"""The lease contender's decisions, one at a time (the model-based test draws them all
together: tests/test_lease_model.py)."""

from __future__ import annotations

import pytest

from coordinator.cluster.lease import (
    Ask,
    Belief,
    Contender,
    Failed,
    Granted,
    LeaseTimings,
    LossReason,
    Refused,
    Role,
    StartedLeading,
    StoppedLeading,
    answered,
    may_act,
    release,
    role,
    tick,
)

TIMINGS = LeaseTimings(duration=1.5, renew_every=0.5)


def leader_at(now: float = 10.0, generation: int = 4) -> Contender:
    step = tick(Contender(), now, TIMINGS)
    assert step.request is not None
    return answered(step.state, Granted(step.request.number, generation), now, TIMINGS).state


@pytest.mark.parametrize(
    ("duration", "renew", "error"),
    [
        (0, 0.1, "duration must be > 0"),
        (1.5, 0, "renew_every must be > 0"),
        (1.5, 0.75, "under half of duration=1.5"),
        (1.5, 1.0, "under half of duration=1.5"),
    ],
)
def test_timings_refuse_a_renewal_that_leaves_no_room(duration, renew, error):
    with pytest.raises(ValueError, match=error):
        LeaseTimings(duration=duration, renew_every=renew)


def test_a_follower_acquires_at_once_and_leads_from_the_grant_until_send_plus_duration():
    step = tick(Contender(), 10.0, TIMINGS)
    assert step.request is not None and step.request.ask is Ask.ACQUIRE
    assert step.change is None
    # The answer comes 0.4 s later: the term still counts from the send.
    led = answered(step.state, Granted(step.request.number, 4), 10.4, TIMINGS)
    assert led.change == StartedLeading(generation=4)
    assert led.state.expires == pytest.approx(11.5)
    assert may_act(led.state, 11.49) and not may_act(led.state, 11.5)
    assert role(led.state, 11.0) is Role.LEADER and role(led.state, 11.5) is Role.FOLLOWER


def test_no_second_request_while_one_is_on_its_way_until_a_lease_has_passed():
    first = tick(Contender(), 10.0, TIMINGS)
    assert tick(first.state, 10.5, TIMINGS).request is None
    assert tick(first.state, 11.49, TIMINGS).request is None
    again = tick(first.state, 11.5, TIMINGS)
    assert again.request is not None and again.request.number == 2
    # The first one's answer, come at last, is not the one awaited.
    late = answered(again.state, Granted(1, 4), 11.6, TIMINGS)
    assert late.state == again.state and late.change is None


def test_the_leader_renews_every_renew_every_from_the_last_send():
    state = leader_at(10.0)
    assert tick(state, 10.45, TIMINGS).request is None
    step = tick(state, 10.5, TIMINGS)
    assert step.request is not None
    assert (step.request.ask, step.request.generation) == (Ask.RENEW, 4)
    renewed = answered(step.state, Granted(step.request.number, 4), 10.6, TIMINGS)
    assert renewed.change is None
    assert renewed.state.expires == pytest.approx(12.0)
    assert renewed.state.next_try == pytest.approx(11.0)


def test_the_leader_stops_at_its_deadline_even_if_nobody_answers():
    state = leader_at(10.0)
    step = tick(state, 10.5, TIMINGS)  # renewal sent, never answered
    assert may_act(step.state, 11.49)
    expired = tick(step.state, 11.5, TIMINGS)
    assert expired.change == StoppedLeading(generation=4, reason=LossReason.EXPIRED)
    assert expired.state.belief is Belief.LOST
    assert not may_act(expired.state, 11.5)
    # The renewal granted after the deadline gives no leadership back.
    assert step.state.pending is not None
    late = answered(expired.state, Granted(step.state.pending.number, 4), 11.6, TIMINGS)
    assert late.change is None and not may_act(late.state, 11.6)


def test_a_refused_renewal_ends_the_leadership_at_once():
    state = leader_at(10.0)
    step = tick(state, 10.5, TIMINGS)
    assert step.request is not None
    refused = answered(step.state, Refused(step.request.number, "b", 5, 1.4), 10.6, TIMINGS)
    assert refused.change == StoppedLeading(generation=4, reason=LossReason.REFUSED)
    assert refused.state.belief is Belief.FOLLOWER
    assert not may_act(refused.state, 10.6)


def test_a_follower_tries_again_when_the_lease_looks_free_or_after_renew_every():
    step = tick(Contender(), 10.0, TIMINGS)
    assert step.request is not None
    soon = answered(step.state, Refused(step.request.number, "b", 1, 0.2), 10.1, TIMINGS)
    assert soon.state.next_try == pytest.approx(10.2)
    later = answered(step.state, Refused(step.request.number, "b", 1, 1.4), 10.1, TIMINGS)
    assert later.state.next_try == pytest.approx(10.5)


def test_a_failed_call_is_tried_again_after_half_a_renewal_and_the_leader_keeps_its_term():
    state = leader_at(10.0)
    step = tick(state, 10.5, TIMINGS)
    assert step.request is not None
    failed = answered(step.state, Failed(step.request.number), 10.6, TIMINGS)
    assert failed.change is None
    assert failed.state.next_try == pytest.approx(10.85)
    assert may_act(failed.state, 11.4)


def test_a_grant_of_a_generation_already_led_is_not_a_new_leadership():
    state = leader_at(10.0, generation=4)
    lost = tick(state, 11.5, TIMINGS)
    assert lost.request is not None and lost.request.ask is Ask.ACQUIRE
    # Our row, not yet expired by the store's reading: extended at generation 4.
    again = answered(lost.state, Granted(lost.request.number, 4), 11.6, TIMINGS)
    assert again.change is None and not may_act(again.state, 11.6)
    assert again.state.next_try == pytest.approx(13.0)


def test_release_stops_a_leader_at_once_and_forgets_its_request():
    state = tick(leader_at(10.0), 10.5, TIMINGS).state
    released = release(state)
    assert released.change == StoppedLeading(generation=4, reason=LossReason.RELEASED)
    assert released.state.pending is None and not may_act(released.state, 10.5)
    assert release(Contender()).change is None
