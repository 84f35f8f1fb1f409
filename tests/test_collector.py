"""The daemon's collector thresholds, in a fresh process (they are the whole process's):
containers that outlive their signal a while, as an order's do, no longer set off a
collection every few hundred; a cycle left behind is still freed."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from coordinator.collector import DAEMON_THRESHOLDS, space_out_collections

PROBE = r"""
import gc, json, sys, weakref
from coordinator.collector import space_out_collections

if sys.argv[1] == "spaced":
    space_out_collections()
runs = [0, 0, 0]
gc.callbacks.append(lambda phase, info: phase == "start" and runs.__setitem__(
    info["generation"], runs[info["generation"]] + 1))

class Node:
    pass

# A cycle no reference counting frees: only the collector does.
left = Node()
left.me = left
gone = weakref.ref(left)
del left
freed_after = None
kept = []
for n in range(100_000):
    # What an order leaves behind for a while (the Ledger's book, the records of a
    # batch): containers that outlive the signal, so that the count of those not
    # freed grows, which is what sets a collection off.
    kept.append({"id": n, "checks": [{"step": "risk", "passed": True}], "at": [n, n]})
    if freed_after is None and gone() is None:
        freed_after = n
print(json.dumps({"runs": runs, "freed_after": freed_after, "thresholds": gc.get_threshold()}))
"""


def probe(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_collections_are_rarer_and_a_cycle_is_still_freed() -> None:
    default, spaced = probe("default"), probe("spaced")
    assert tuple(spaced["thresholds"]) == DAEMON_THRESHOLDS
    # 400,000 containers kept: hundreds of young collections by default, a few dozen
    # spaced out; and fewer full ones, which go through every object.
    assert default["runs"][0] > 10 * spaced["runs"][0] > 0
    assert default["runs"][2] > spaced["runs"][2]
    # The cycle waits longer, but is freed within the run.
    assert default["freed_after"] is not None and spaced["freed_after"] is not None
    assert spaced["freed_after"] > default["freed_after"]


def test_the_thresholds_are_set_and_the_old_ones_returned() -> None:
    before = gc.get_threshold()
    try:
        assert space_out_collections((5_000, 7, 9)) == before
        assert gc.get_threshold() == (5_000, 7, 9)
    finally:
        gc.set_threshold(*before)


def test_a_threshold_under_one_is_refused_by_name() -> None:
    # gc.set_threshold(0) would turn the collector off: cycles never freed.
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="at least 1"):
        space_out_collections((0, 10, 10))
    assert gc.get_threshold() == before
