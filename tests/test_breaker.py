"""The circuit breaker, a pure value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.breaker import Breaker, BreakerPhase, BreakerPolicy

POLICY = BreakerPolicy(failure_threshold=3, open_seconds=10, open_max_seconds=60)


def test_opens_after_the_threshold_of_consecutive_failures():
    breaker = Breaker(POLICY)
    for now in (1.0, 2.0):
        breaker = breaker.before_call(now).after_failure(now)
        assert breaker.phase is BreakerPhase.CLOSED
    breaker = breaker.before_call(3.0).after_failure(3.0)
    assert breaker.phase is BreakerPhase.OPEN
    assert breaker.open_until == 13.0
    assert not breaker.allows_call(12.9)
    with pytest.raises(RuntimeError, match="open"):
        breaker.before_call(12.9)


def test_a_success_resets_the_count():
    breaker = Breaker(POLICY).after_failure(1).after_failure(2).after_success()
    assert breaker.failures == 0
    assert breaker.after_failure(3).after_failure(4).phase is BreakerPhase.CLOSED


def test_half_open_lets_one_trial_through():
    breaker = Breaker(POLICY)
    for now in range(3):
        breaker = breaker.after_failure(now)
    trial = breaker.before_call(20.0)
    assert trial.phase is BreakerPhase.HALF_OPEN
    assert not trial.allows_call(20.0), "one trial at a time"
    assert trial.after_success().phase is BreakerPhase.CLOSED


def test_failed_trials_double_the_open_period_up_to_the_maximum():
    breaker = Breaker(POLICY)
    for now in range(3):
        breaker = breaker.after_failure(now)
    periods = []
    now = 2.0
    for _ in range(5):
        now = breaker.open_until
        breaker = breaker.before_call(now).after_failure(now)
        periods.append(breaker.open_until - now)
    assert periods == [20, 40, 60, 60, 60]
    closed = breaker.before_call(breaker.open_until).after_success()
    assert closed.reopenings == 0
    again = closed
    for t in range(3):
        again = again.after_failure(1000 + t)
    assert again.open_until - 1002 == 10, "a fresh opening starts from the first period"


def test_late_failure_while_open_keeps_it_open():
    breaker = Breaker(POLICY)
    for now in range(3):
        breaker = breaker.after_failure(now)
    late = breaker.after_failure(5)
    assert late.phase is BreakerPhase.OPEN
    assert late.open_until == breaker.open_until


@pytest.mark.parametrize(
    ("threshold", "base", "maximum"), [(0, 1, 1), (1, 0, 1), (1, 5, 1), (1, -1, 1)]
)
def test_bad_policy_is_refused(threshold, base, maximum):
    with pytest.raises(ValueError):
        BreakerPolicy(threshold, base, maximum)


outcomes = st.lists(st.tuples(st.booleans(), st.floats(0, 100)), max_size=60)


@given(outcomes)
def test_never_calls_through_an_open_breaker_and_periods_stay_bounded(events):
    breaker = Breaker(POLICY)
    now = 0.0
    for ok, step in events:
        now += step
        if not breaker.allows_call(now):
            assert breaker.phase in (BreakerPhase.OPEN, BreakerPhase.HALF_OPEN)
            continue
        breaker = breaker.before_call(now)
        breaker = breaker.after_success() if ok else breaker.after_failure(now)
        if breaker.phase is BreakerPhase.OPEN:
            period = breaker.open_until - now
            assert POLICY.open_seconds - 1e-9 <= period <= POLICY.open_max_seconds + 1e-9
        if ok:
            assert breaker.phase is BreakerPhase.CLOSED
