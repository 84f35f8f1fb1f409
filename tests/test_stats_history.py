"""The minute-by-minute history of the last hour: bounded, and each minute's counts
are what happened in it."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.trading.history import MINUTES, MinuteHistory
from coordinator.trading.validation import Outcome

REASONS = ("not_in_universe", "cooldown", "stale_signal")


class HistoryMachine(RuleBasedStateMachine):
    """Events at a clock that moves forward (and sometimes back); a plain list of
    every event is the model."""

    def __init__(self) -> None:
        super().__init__()
        self.history = MinuteHistory()
        self.now = 1_800_000_000.0
        self.events: list[tuple[int, str, str | None]] = []  # (minute, kind, reason)
        self.newest: int | None = None
        self.forgotten_before = -math.inf  # minutes under it were dropped for good

    def _minute(self) -> int:
        # A clock stepping back files its events in the newest bucket.
        minute = math.floor(self.now / 60)
        if self.newest is None or minute > self.newest:
            self.newest = minute
            self.forgotten_before = max(self.forgotten_before, minute - MINUTES + 1)
        return self.newest

    @rule(seconds=st.floats(min_value=-120, max_value=1800))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(
        outcome=st.sampled_from(list(Outcome)),
        reason=st.sampled_from((None, *REASONS)),
        latency=st.floats(min_value=0, max_value=5000),
    )
    def decided(self, outcome: Outcome, reason: str | None, latency: float) -> None:
        self.history.decided(self.now, outcome=outcome, reason=reason, latency_ms=latency)
        self.events.append((self._minute(), outcome.value, reason))

    @rule()
    def order_finished(self) -> None:
        self.history.order_finished(self.now)
        self.events.append((self._minute(), "order", None))

    @invariant()
    def the_last_hour_and_nothing_else(self) -> None:
        current = math.floor(self.now / 60)
        minutes = self.history.minutes(self.now)
        assert len(minutes) <= MINUTES
        assert [m.minute for m in minutes] == sorted({m.minute for m in minutes})
        for m in minutes:
            assert current - MINUTES < m.minute
            mine = [e for e in self.events if e[0] == m.minute]
            decided = [e for e in mine if e[1] != "order"]
            assert m.signals == len(decided)
            assert m.accepted == sum(1 for e in decided if e[1] == Outcome.ACCEPTED)
            assert m.rejected == sum(1 for e in decided if e[1] == Outcome.REJECTED)
            assert m.orders == len(mine) - len(decided)
            assert dict(m.rejections_by_reason) == dict(Counter(e[2] for e in decided if e[2]))
            assert (m.p50_ms is None) == (not decided)
            if decided:
                assert m.p99_ms is not None and m.p50_ms is not None
                assert m.p99_ms >= m.p50_ms
        # Every minute of the last hour with an event is there (after a step back of
        # the clock, the newest minute too).
        wanted = {
            e[0] for e in self.events if current - MINUTES < e[0] and e[0] >= self.forgotten_before
        }
        assert {m.minute for m in minutes} == wanted


TestHistory = HistoryMachine.TestCase


def test_an_hour_later_the_minutes_are_gone():
    history = MinuteHistory()
    history.decided(0.0, outcome=Outcome.REJECTED, reason="cooldown", latency_ms=3.0)
    history.order_finished(30.0)
    (minute,) = history.minutes(59.0)
    assert (minute.signals, minute.rejected, minute.orders) == (1, 1, 1)
    assert minute.rejections_by_reason == (("cooldown", 1),)
    assert history.minutes(59 * 60 + 59.0)  # the 60th minute still holds it
    assert history.minutes(60 * 60.0) == ()


def test_a_history_of_no_minute_is_refused():
    with pytest.raises(ValueError, match="minutes must be >= 1"):
        MinuteHistory(0)
