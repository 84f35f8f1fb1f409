"""The window of recent signal ids against a plain model of it, under any sequence of
adds, discards, sweeps and limits (hypothesis stateful), and the examples that name its
rules: first sighting counts, forgotten by age to the second, never more than the limit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.id_window import IdWindow

IDS = st.sampled_from([f"s{n}" for n in range(12)])


@dataclass
class _Entry:
    signal_id: str
    second: int
    live: bool


class IdWindowModel(RuleBasedStateMachine):
    """Entries in arrival order, each with the second it counts from; an id is in the
    window while its newest entry is live."""

    LIMIT = 5
    HORIZON = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.window = IdWindow(self.LIMIT, self.HORIZON)
        self.entries: list[_Entry] = []
        self.now = 1_000.0

    def live(self) -> set[str]:
        return {e.signal_id for e in self.entries if e.live}

    def _drop_oldest(self) -> None:
        self.entries.pop(0).live = False

    @rule(signal_id=IDS, late=st.floats(0.0, 3.0))
    def add(self, signal_id: str, late: float) -> None:
        seen = self.now - late  # a time a little behind the clock, or out of order
        new = signal_id not in self.live()
        assert self.window.add(signal_id, seen) is new
        if new:
            newest = self.entries[-1].second if self.entries else None
            second = int(seen // 1)
            if newest is not None and newest >= second:
                second = newest
            self.entries.append(_Entry(signal_id, second, True))
            while len(self.live()) > self.LIMIT:
                self._drop_oldest()

    @rule(signal_id=IDS)
    def discard(self, signal_id: str) -> None:
        self.window.discard(signal_id)
        for entry in self.entries:
            if entry.signal_id == signal_id:
                entry.live = False

    @rule(step=st.floats(0.0, 6.0))
    def advance_and_sweep(self, step: float) -> None:
        self.now += step
        self.window.forget_older_than(self.now)
        horizon = self.now - self.HORIZON
        while self.entries and self.entries[0].second + 1 <= horizon:
            self._drop_oldest()

    @invariant()
    def same_ids(self) -> None:
        live = self.live()
        assert len(self.window) == len(live)
        assert self.window.snapshot() == frozenset(live)
        for n in range(12):
            assert (f"s{n}" in self.window) is (f"s{n}" in live)


TestIdWindowModel = IdWindowModel.TestCase
TestIdWindowModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_an_id_is_kept_from_its_first_sighting_until_the_horizon_passes_its_second() -> None:
    window = IdWindow(limit=100, horizon=60.0)
    assert window.add("a", 100.4)
    assert not window.add("a", 130.0)  # a second sighting does not extend it
    window.forget_older_than(160.9)
    assert "a" in window
    window.forget_older_than(161.0)
    assert "a" not in window and len(window) == 0


def test_the_oldest_go_first_past_the_limit() -> None:
    window = IdWindow(limit=3)
    for n in range(5):
        window.add(f"s{n}")
    assert window.snapshot() == {"s2", "s3", "s4"}


def test_an_id_discarded_then_seen_again_is_kept_for_its_new_sighting() -> None:
    window = IdWindow(limit=10, horizon=10.0)
    window.add("a", 0.0)
    window.discard("a")
    assert "a" not in window
    window.add("a", 8.0)
    window.forget_older_than(12.0)  # the first sighting's second is past, not the new one
    assert "a" in window
    window.forget_older_than(19.0)
    assert "a" not in window


def test_a_limit_below_one_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="limit must be at least 1, not 0"):
        IdWindow(0)
