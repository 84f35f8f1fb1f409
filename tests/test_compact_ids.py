"""The compact window of signal ids against a plain model (hypothesis stateful): never an
id it was not given or that was discarded since, always every id among the most recent
``limit`` within the horizon, and nothing left once the horizon has passed it all; and the
examples that name what it is for."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.compact_ids import (
    CompactIdWindow,
    id_digest,
    pack_digests,
    pack_sorted_digests,
    unpack_digests,
)
from coordinator.id_window import IdWindow

NAMES = [f"s{n}" for n in range(14)]
IDS = st.sampled_from(NAMES)


@dataclass
class _Entry:
    signal_id: str
    second: int
    live: bool


class CompactIdWindowModel(RuleBasedStateMachine):
    """Every add in order, none ever dropped: what the window must hold is computed from
    them, and what it may hold is what was added and not discarded since."""

    LIMIT = 6
    RECENT = 2
    GENERATION = 3
    HORIZON = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.window = CompactIdWindow(
            self.LIMIT, self.HORIZON, recent=self.RECENT, generation=self.GENERATION
        )
        self.entries: list[_Entry] = []
        self.now = 1_000.0
        self.swept = 0.0

    def newest(self) -> dict[str, _Entry]:
        return {e.signal_id: e for e in self.entries}

    @rule(signal_id=IDS)
    def add(self, signal_id: str) -> None:
        current = self.newest().get(signal_id)
        present = signal_id in self.window
        assert self.window.add(signal_id, self.now) is not present
        if not present:
            # Only an id the model says may be gone can be added anew.
            assert current is None or not self.must_hold(current) or not current.live
            if current is not None:
                current.live = False
            self.entries.append(_Entry(signal_id, int(self.now // 1), True))

    @precondition(lambda self: self.window.takes_digests)
    @rule(names=st.lists(IDS, max_size=3), back=st.floats(0.0, 5.0))
    def add_a_stored_generation(self, names: list[str], back: float) -> None:
        """A store's ids, a generation at a time, oldest first: distinct, none held
        already, seen a moment ago (never before what was added earlier)."""
        fresh = [n for n in dict.fromkeys(names) if n not in self.window]
        seen = max(self.now - back, max((e.second for e in self.entries), default=0))
        self.window.add_generation(pack_sorted_digests(id_digest(n) for n in fresh), seen)
        for name in fresh:
            current = self.newest().get(name)
            assert current is None or not self.must_hold(current) or not current.live
            if current is not None:
                current.live = False
            self.entries.append(_Entry(name, int(seen // 1), True))

    @rule()
    def its_digests_are_those_of_what_it_holds(self) -> None:
        held = set(self.window.digests())
        for name in NAMES:
            assert (id_digest(name) in held) is (name in self.window), name

    @rule(signal_id=IDS)
    def discard(self, signal_id: str) -> None:
        self.window.discard(signal_id)
        for entry in self.entries:
            if entry.signal_id == signal_id:
                entry.live = False

    @rule(step=st.floats(0.0, 6.0))
    def advance_and_sweep(self, step: float) -> None:
        self.now += step
        self.swept = self.now
        self.window.forget_older_than(self.now)

    @rule()
    def everything_past_the_horizon_is_forgotten(self) -> None:
        self.now += self.HORIZON + 1.0
        self.swept = self.now
        self.window.forget_older_than(self.now)
        assert self.window.held() == 0
        for entry in self.entries:
            entry.live = False

    def must_hold(self, entry: _Entry) -> bool:
        within_limit = entry in self.entries[-self.LIMIT :]
        within_horizon = entry.second + 1 > self.swept - self.HORIZON
        return entry.live and within_limit and within_horizon

    @invariant()
    def holds_what_it_must_and_nothing_it_must_not(self) -> None:
        newest = self.newest()
        for name in NAMES:
            entry = newest.get(name)
            if entry is None or not entry.live:
                assert name not in self.window, f"{name} was never added or was discarded"
            elif self.must_hold(entry):
                assert name in self.window, f"{name} is among the most recent, in the horizon"

    @invariant()
    def holds_at_most_a_generation_past_the_limit(self) -> None:
        assert self.window.held() <= self.LIMIT + self.GENERATION


TestCompactIdWindowModel = CompactIdWindowModel.TestCase
TestCompactIdWindowModel.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)


def test_ids_past_the_recent_ones_are_still_found_by_their_digest() -> None:
    window = CompactIdWindow(limit=10_000, recent=100, generation=1_000)
    window.update((f"signal-{n}" for n in range(10_000)), 5.0)
    assert all(f"signal-{n}" in window for n in range(0, 10_000, 7))
    assert not any(f"other-{n}" in window for n in range(2_000))
    assert not window.add("signal-3", 6.0)
    window.discard("signal-3")
    assert "signal-3" not in window
    assert window.add("signal-3", 7.0) and "signal-3" in window


def test_an_id_discarded_while_sealed_then_added_and_sealed_again_is_held() -> None:
    window = CompactIdWindow(limit=20, recent=1, generation=2)
    window.update(["x", "a", "b"])  # x and a sealed
    window.discard("x")
    assert "x" not in window
    window.update(["x", "c", "d", "e"])  # x again, sealed anew
    assert "x" in window and "a" in window
    window.discard("x")  # both sealed copies passed over
    assert "x" not in window and "c" in window


def test_without_a_horizon_the_limit_alone_forgets() -> None:
    window = CompactIdWindow(limit=5_000, recent=100, generation=1_000)
    window.update(f"signal-{n}" for n in range(20_000))
    window.forget_older_than(1e12)  # no horizon: nothing by age
    assert all(f"signal-{n}" in window for n in range(15_000, 20_000))
    assert "signal-0" not in window
    assert window.held() <= 5_000 + 1_000


def test_an_id_with_a_lone_surrogate_is_kept_like_any_other() -> None:
    # JSON may carry "\ud800"; strict UTF-8 refuses to encode it.
    window = CompactIdWindow(limit=10, recent=1, generation=2)
    odd = "id-\ud800"
    window.add(odd)
    window.update(["a", "b", "c"])
    assert odd in window
    assert id_digest(odd) != id_digest("id-")


def test_a_long_window_costs_a_fraction_of_the_exact_one() -> None:
    """At an eighth of the defaults' scale (400,000 ids, 4,096 recent, generations of
    65,536, where it costs a sixth): traced, the defaults' run takes half a minute."""
    count = 50_000

    def cost(window: IdWindow | CompactIdWindow) -> int:
        # The ids are made while traced: a window that keeps a string keeps its cost.
        tracemalloc.start()
        try:
            window.update((f"consensus-{n:012d}-BTCUSDC-BUY" for n in range(count)), 1.0)
            # The window's own: not the digests of the newest ids, which the process
            # keeps once for all its windows (a bounded cache, about 3.5 MB full).
            id_digest.cache_clear()
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    exact = cost(IdWindow(count))
    compact = cost(CompactIdWindow(count, recent=512, generation=8_192))
    assert compact < exact / 3, (compact, exact)


def test_digests_handed_over_packed_come_back_as_they_were() -> None:
    digests = [id_digest(f"s{n}") for n in range(5)] + [0, (1 << 128) - 1]
    packed = pack_digests(digests)
    assert len(packed) == 16 * len(digests)
    assert list(unpack_digests(packed)) == digests


def test_packed_digests_cut_short_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        list(unpack_digests(b"\x01" * 17))


def test_a_window_holding_ids_as_strings_refuses_digests() -> None:
    window = CompactIdWindow(10)
    window.add_generation(pack_sorted_digests([id_digest("a")]))
    window.add("b")
    assert "a" in window and "b" in window
    with pytest.raises(ValueError, match="digests go in before ids"):
        window.add_generation(pack_sorted_digests([id_digest("c")]))


def test_ids_added_after_digests_still_keep_it_within_a_generation_of_the_limit() -> None:
    """Digests fill the generations while no id is held as a string; the ids that come
    next push none out, and count all the same."""
    window = CompactIdWindow(6, recent=2, generation=3)
    for first in range(0, 8, 3):
        window.add_generation(
            pack_sorted_digests(id_digest(f"d{n}") for n in range(first, min(first + 3, 8)))
        )
    window.add("a")
    window.add("b")
    assert window.held() <= 6 + 3
    assert all(f"d{n}" in window for n in range(4, 8)) and "a" in window and "b" in window


def test_a_stored_hour_goes_in_a_generation_at_a_time_and_the_oldest_goes_first() -> None:
    """Rebuilt from a store, oldest generation first: new ids pushing the window past
    its limit forget the oldest stored ids, not those received just before."""
    window = CompactIdWindow(6, recent=2, generation=3)
    window.add_generation(pack_sorted_digests(id_digest(f"old{n}") for n in range(3)), 10.0)
    window.add_generation(pack_sorted_digests(id_digest(f"new{n}") for n in range(3)), 20.0)
    assert all(f"old{n}" in window and f"new{n}" in window for n in range(3))
    for n in range(4):
        window.add(f"fresh{n}", 30.0)
    assert not any(f"old{n}" in window for n in range(3))
    assert all(f"new{n}" in window and f"fresh{n}" in window for n in range(3))


def test_a_stored_generation_is_forgotten_once_its_newest_id_is_past_the_horizon() -> None:
    window = CompactIdWindow(1_000, horizon=60.0)
    window.add_generation(pack_sorted_digests(id_digest(f"s{n}") for n in range(5)), 100.0)
    window.forget_older_than(160.0)
    assert "s0" in window
    window.forget_older_than(161.0)
    assert window.held() == 0 and "s0" not in window


def test_a_generation_given_out_of_order_is_sorted_rather_than_misread() -> None:
    digests = [id_digest(f"s{n}") for n in range(50)]
    window = CompactIdWindow(1_000)
    window.add_generation(pack_digests(sorted(digests, reverse=True)), 0.0)
    assert all(f"s{n}" in window for n in range(50))
    assert "s50" not in window


def test_the_digest_is_the_one_postgresql_computes() -> None:
    """What ``substr(sha256(convert_to(id, 'UTF8')), 1, 16)`` gave in PostgreSQL 18: the
    store hands over digests it computed, which must match the intake's own."""
    assert id_digest("consensus:1") == 0x518789A8FF0E2F828F0507C04D78503F
    assert id_digest("sig-\u00e9\u20ac\U0001f600") == 0x8B8EF08A64FB05E154F9688E1FD1AE31
