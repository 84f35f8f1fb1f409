"""Restart policy: backoff and intensity as plain functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.supervisor.policy import BackoffPolicy, RestartIntensity, wants_restart
from coordinator.supervisor.spec import ChildSpec, Restart
from tests.test_supervisor import Worker


def test_backoff_doubles_up_to_the_maximum():
    policy = BackoffPolicy(base=0.5, maximum=4, jitter=0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]


@given(st.integers(0, 10_000), st.floats(0, 1))
def test_jitter_only_shortens_within_its_fraction(attempt, rand):
    policy = BackoffPolicy(base=0.5, maximum=30, jitter=0.2)
    exact = min(30, 0.5 * 2 ** min(attempt, 62))
    delay = policy.delay(attempt, lambda: rand)
    assert exact * 0.8 <= delay <= exact


def test_negative_attempt_is_refused():
    with pytest.raises(ValueError):
        BackoffPolicy(1, 1, 0).delay(-1)


def test_intensity_counts_within_the_window():
    intensity = RestartIntensity(max_restarts=2, window=10)
    assert intensity.record(0)
    assert intensity.record(5)
    assert not intensity.record(9)
    fresh = RestartIntensity(max_restarts=2, window=10)
    assert fresh.record(0) and fresh.record(5) and fresh.record(10.5)
    assert fresh.count(10.5) == 2


@pytest.mark.parametrize(
    ("restart", "failed", "expected"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.PERMANENT, False, True),
        (Restart.TRANSIENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TEMPORARY, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
def test_restart_types(restart, failed, expected):
    assert wants_restart(restart, failed=failed) is expected


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "has space", "x" * 64])
def test_child_names_are_checked(name):
    with pytest.raises(ValueError, match="child name"):
        ChildSpec(name, Worker)
