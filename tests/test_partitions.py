"""Symbol partitions and their owners: stable partitions, one owner per partition among
the live instances, the same answer whatever the order the instances are listed in, and
as few partitions moved as can be when an instance joins or leaves (model-based over
any sequence of joins and leaves)."""

from __future__ import annotations

from zlib import crc32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.cluster.partitions import assign, lease_name, partition_of, wanted_by

NAMES = st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=12)


def test_a_symbols_partition_is_its_crc32_modulo_the_count() -> None:
    assert partition_of("BTCUSDC", 16) == crc32(b"BTCUSDC") % 16
    assert partition_of("BTCUSDC", 1) == 0
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("BTCUSDC", 0)


def test_nobody_owns_anything_when_no_instance_is_live() -> None:
    assert assign([], 16) == {}


def test_the_lease_of_a_partition_names_its_cluster() -> None:
    assert lease_name("rt:signals:partition:", 3) == "partition:rt:signals:partition:3"


@given(st.lists(NAMES, min_size=1, max_size=8), st.integers(1, 64), st.randoms())
def test_each_partition_has_one_live_owner_whatever_the_order(instances, partitions, rng):
    owners = assign(instances, partitions)
    assert set(owners) == set(range(partitions))
    assert set(owners.values()) <= set(instances)
    shuffled = list(instances) + list(instances)
    rng.shuffle(shuffled)
    assert assign(shuffled, partitions) == owners
    mine = {name: wanted_by(name, instances, partitions) for name in set(instances)}
    assert sum(len(held) for held in mine.values()) == partitions
    for name, held in mine.items():
        assert held == {k for k, owner in owners.items() if owner == name}


@given(st.lists(NAMES, min_size=0, max_size=6, unique=True), NAMES)
def test_an_instance_always_counts_itself_live(others, me):
    owners = assign([*others, me], 32)
    assert wanted_by(me, others, 32) == {k for k, o in owners.items() if o == me}


def test_partitions_spread_over_three_instances() -> None:
    owners = assign(["coordinator-1", "coordinator-2", "coordinator-3"], 16)
    counts = {name: list(owners.values()).count(name) for name in set(owners.values())}
    # Rendezvous hashing spreads, not evenly: every instance gets some of 16.
    assert len(counts) == 3


class Membership(RuleBasedStateMachine):
    """Instances join and leave in any order; after each change every partition has one
    live owner, and only the partitions the change had to move moved."""

    partitions = 24

    def __init__(self) -> None:
        super().__init__()
        self.live: set[str] = set()
        self.owners: dict[int, str] = {}

    def _change(self, live: set[str]) -> dict[int, str]:
        before = self.owners
        self.live = live
        self.owners = assign(live, self.partitions)
        return before

    @rule(name=NAMES)
    def join(self, name: str) -> None:
        if name in self.live:
            return
        before = self._change(self.live | {name})
        for k, owner in self.owners.items():
            if before and owner != before[k]:
                # Moved: only to the newcomer.
                assert owner == name

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        gone = data.draw(st.sampled_from(sorted(self.live)))
        before = self._change(self.live - {gone})
        for k, owner in before.items():
            if owner != gone and self.owners:
                # Kept by whoever held it: only the leaver's partitions move.
                assert self.owners[k] == owner

    @invariant()
    def one_live_owner_each(self) -> None:
        if not self.live:
            assert self.owners == {}
            return
        assert set(self.owners) == set(range(self.partitions))
        assert set(self.owners.values()) <= self.live


TestMembership = Membership.TestCase
TestMembership.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
