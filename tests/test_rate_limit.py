"""The token buckets behind the HTTP rate limits, on a clock the tests drive."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from coordinator.trading.rate_limit import Rate, RateLimiter

SLACK = 1e-6


def test_a_rested_client_gets_its_burst_then_waits_for_the_rate():
    limiter = RateLimiter(Rate(per_second=2.0, burst=3), max_clients=10)
    assert [limiter.take("a", 100.0).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.take("a", 100.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.retry_after_seconds == 1
    assert not limiter.take("a", 100.4).allowed
    assert limiter.take("a", 100.5).allowed
    assert not limiter.take("a", 100.5).allowed


def test_one_client_does_not_spend_another_ones_tokens():
    limiter = RateLimiter(Rate(per_second=1.0, burst=1), max_clients=10)
    assert limiter.take("a", 0.0).allowed
    assert not limiter.take("a", 0.0).allowed
    assert limiter.take("b", 0.0).allowed


def test_retry_after_is_whole_seconds_and_never_zero():
    slow = RateLimiter(Rate(per_second=0.1, burst=1), max_clients=10)
    slow.take("a", 0.0)
    assert slow.take("a", 0.0).retry_after_seconds == 10
    fast = RateLimiter(Rate(per_second=1000.0, burst=1), max_clients=10)
    fast.take("a", 0.0)
    verdict = fast.take("a", 0.0)
    assert 0 < verdict.retry_after < 0.01
    assert verdict.retry_after_seconds == 1


def test_a_clock_stepping_back_gives_no_tokens():
    limiter = RateLimiter(Rate(per_second=1.0, burst=1), max_clients=10)
    assert limiter.take("a", 50.0).allowed
    assert not limiter.take("a", 10.0).allowed
    assert not limiter.take("a", 50.5).allowed
    assert limiter.take("a", 51.0).allowed


def test_the_client_table_is_capped_forgetting_the_least_recent():
    limiter = RateLimiter(Rate(per_second=1.0, burst=1), max_clients=3)
    for client in ("a", "b", "c"):
        limiter.take(client, 0.0)
    limiter.take("a", 0.0)  # a is now the most recent
    limiter.take("d", 0.0)
    assert len(limiter) == 3
    assert not limiter.take("a", 0.0).allowed, "a kept its empty bucket"
    assert limiter.take("b", 0.0).allowed, "b was forgotten: a full bucket again"


@pytest.mark.parametrize(
    ("per_second", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (float("nan"), 1), (1.0, 0)]
)
def test_a_rate_refuses_values_that_mean_nothing(per_second, burst):
    with pytest.raises(ValueError):
        Rate(per_second=per_second, burst=burst)


@given(
    per_second=st.floats(0.01, 1000.0),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_t_over_any_window(per_second, burst, gaps):
    limiter = RateLimiter(Rate(per_second=per_second, burst=burst), max_clients=1)
    now, accepted = 0.0, []
    for gap in gaps:
        now += gap
        if limiter.take("a", now).allowed:
            accepted.append(now)
    for i in range(len(accepted)):
        for j in range(i, len(accepted)):
            window = accepted[j] - accepted[i]
            assert j - i + 1 <= burst + per_second * window + SLACK


class Clients(RuleBasedStateMachine):
    """Several clients, a clock that moves, a table smaller than the clients at times:
    for every client still remembered, never more than burst + rate * t accepted over
    any window t since it was last forgotten; a refused client told to wait gets in
    once it has; the table never grows past its cap."""

    @initialize(
        per_second=st.floats(0.05, 100.0),
        burst=st.integers(1, 20),
        max_clients=st.integers(1, 5),
    )
    def start(self, per_second: float, burst: int, max_clients: int) -> None:
        self.rate = Rate(per_second=per_second, burst=burst)
        self.limiter = RateLimiter(self.rate, max_clients=max_clients)
        self.now = 1000.0
        self.accepted: dict[str, list[float]] = {}
        self.remembered: list[str] = []

    def _seen(self, client: str) -> None:
        if client in self.remembered:
            self.remembered.remove(client)
        else:
            # A client new to the table starts afresh: a full bucket is its due.
            self.accepted[client] = []
        self.remembered.append(client)
        del self.remembered[: -self.limiter.max_clients]

    @rule(seconds=st.floats(0.0, 5.0))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule(client=st.sampled_from("abcdefg"))
    def request(self, client: str) -> None:
        self._seen(client)
        verdict = self.limiter.take(client, self.now)
        if verdict.allowed:
            self.accepted[client].append(self.now)
        else:
            assert verdict.retry_after > 0
            assert verdict.retry_after <= 1.0 / self.rate.per_second + SLACK

    @rule(client=st.sampled_from("abcdefg"))
    def waits_as_told(self, client: str) -> None:
        self._seen(client)
        verdict = self.limiter.take(client, self.now)
        if not verdict.allowed:
            self.now += verdict.retry_after_seconds
            self._seen(client)
            verdict = self.limiter.take(client, self.now)
            assert verdict.allowed, "a client that waited as told was refused"
        self.accepted[client].append(self.now)

    @invariant()
    def within_the_rate(self) -> None:
        if not hasattr(self, "limiter"):
            return
        for client in self.remembered:
            times = self.accepted[client]
            for i in range(len(times)):
                for j in range(i, len(times)):
                    allowance = self.rate.burst + self.rate.per_second * (times[j] - times[i])
                    assert j - i + 1 <= allowance + SLACK, (client, times)

    @invariant()
    def table_capped(self) -> None:
        if hasattr(self, "limiter"):
            assert len(self.limiter) <= self.limiter.max_clients


Clients.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_clients = Clients.TestCase
