"""The one exponential backoff: examples per caller's numbers, and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.backoff import Backoff


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        # Redis readers, the stream reader and the store writer: 0.1 s doubling to 5 s.
        (Backoff(0.1, 5.0), [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]),
        # A breaker opened for 10 s, at most 60 s.
        (Backoff(10, 60), [10, 20, 40, 60, 60, 60, 60, 60]),
        # A stop's exit retried after 1 s, at most 10 s.
        (Backoff(1, 10), [1, 2, 4, 8, 10, 10, 10, 10]),
        # Another factor.
        (Backoff(1, 100, factor=3), [1, 3, 9, 27, 81, 100, 100, 100]),
        # A factor of 1 never grows.
        (Backoff(2, 100, factor=1), [2] * 8),
        # A base above the maximum is held to the maximum.
        (Backoff(8, 5), [5] * 8),
    ],
)
def test_the_delay_grows_by_its_factor_up_to_the_maximum(backoff, expected):
    assert [backoff.delay(n) for n in range(8)] == pytest.approx(expected)


def test_a_huge_attempt_stays_at_the_maximum():
    assert Backoff(0.1, 5.0).delay(10**9) == 5.0


def test_jitter_takes_off_its_share_of_the_exact_delay():
    backoff = Backoff(1, 60, jitter=0.5)
    assert backoff.delay(2, lambda: 0.0) == 4
    assert backoff.delay(2, lambda: 1.0) == 2
    assert backoff.delay(2, lambda: 0.5) == 3


def test_without_jitter_no_random_number_is_drawn():
    def never() -> float:
        raise AssertionError("drawn")

    assert Backoff(1, 4).delay(1, never) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": -1, "maximum": 1},
        {"base": 1, "maximum": -1},
        {"base": 1, "maximum": 2, "factor": 0.5},
        {"base": 1, "maximum": 2, "jitter": 1.5},
        {"base": 1, "maximum": 2, "jitter": -0.1},
    ],
)
def test_a_policy_out_of_range_is_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_a_negative_attempt_is_refused():
    with pytest.raises(ValueError, match="attempt"):
        Backoff(1, 2).delay(-1)


policies = st.builds(
    Backoff,
    base=st.floats(0, 1e6, allow_nan=False),
    maximum=st.floats(0, 1e9, allow_nan=False),
    factor=st.floats(1, 10, allow_nan=False),
)


@given(policies, st.integers(0, 10_000))
def test_the_delay_never_shrinks_from_one_attempt_to_the_next_and_never_passes_the_cap(
    backoff, attempt
):
    now, then = backoff.delay(attempt), backoff.delay(attempt + 1)
    assert 0 <= now <= then <= backoff.maximum


@given(policies, st.floats(0, 1), st.floats(0, 1), st.integers(0, 10_000))
def test_jitter_only_shortens_within_its_fraction(backoff, jitter, rand, attempt):
    exact = backoff.delay(attempt)
    jittered = Backoff(backoff.base, backoff.maximum, jitter, backoff.factor)
    delay = jittered.delay(attempt, lambda: rand)
    assert exact * (1 - jitter) - 1e-9 * exact <= delay <= exact
