"""The group commit's hand-over of the lead, on real threads, under any order of claims
arriving and batches ending (hypothesis stateful).

Each rule either starts a claimer thread (its id drawn from a few, so a second claim of
an id in flight happens) or ends the batch being committed, with one of the ways a
batch can end: every claim stored, every claim refused as existing, an error for each,
some left unanswered, or the commit raising. After each rule the threads are let to
settle; then, whatever came before:

- one batch at most is committed at a time, and none holds an id twice;
- a claim not yet answered is in the batch being committed or queued behind it: never
  stranded with no leader (the hand-over's whole point);
- every claim is answered once, with what its batch said of it;
- the counts of batches and claims add up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.infra.intent_batch import ClaimGroup, PendingClaim

IDS = st.sampled_from(["o1", "o2", "o3", "o4"])
ENDINGS = st.sampled_from(["stored", "existing", "error", "unanswered", "raise"])
SETTLE = 10.0


class CommitFailed(Exception):
    pass


@dataclass
class _Batch:
    claims: list[PendingClaim]
    release: threading.Event = field(default_factory=threading.Event)
    ending: str = ""


@dataclass
class _Claimer:
    pending: PendingClaim
    thread: threading.Thread
    raised: BaseException | None = None
    returned: bool = False
    expected: Any = None  # what its batch said of it: True, False or an error type


def settle(condition: Any, what: str) -> None:
    """Poll until the threads have done what follows from the last rule."""
    deadline = time.monotonic() + SETTLE
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"threads did not settle: {what}")
        pause.wait(0.001)


class ClaimGroupModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running: list[_Batch] = []  # batches inside execute (one at most)
        self.batches: list[_Batch] = []
        self.overlap = False
        self.group = ClaimGroup(self.execute, wait=0.0005)
        self.claimers: list[_Claimer] = []

    # --- the commit, held by the test until a rule ends it --------------------------

    def execute(self, claims: list[PendingClaim]) -> None:
        batch = _Batch(list(claims))
        with self.lock:
            if self.running:
                self.overlap = True
            self.running.append(batch)
            self.batches.append(batch)
        batch.release.wait(SETTLE * 3)
        with self.lock:
            self.running.remove(batch)
        if batch.ending == "raise":
            raise CommitFailed("the commit raised")
        for index, pending in enumerate(batch.claims):
            if batch.ending == "stored":
                pending.inserted = True
            elif batch.ending == "existing":
                pending.inserted = False
            elif batch.ending == "error":
                pending.error = CommitFailed(pending.client_order_id)
            elif index % 2 == 0:  # "unanswered": every other one answered
                pending.inserted = True

    # --- rules ------------------------------------------------------------------------

    def _quiet(self) -> bool:
        """Every claimer is answered, queued, or in the batch being committed."""
        with self.lock:
            running = [p for b in self.running for p in b.claims]
        waiting = [c for c in self.claimers if not c.returned]
        return len(waiting) == len(running) + self.group.queued and (not waiting or bool(running))

    @rule(order_id=IDS)
    def claim(self, order_id: str) -> None:
        pending = PendingClaim({"client_order_id": order_id}, None)
        claimer = _Claimer(pending, threading.Thread(target=lambda: None))

        def run() -> None:
            try:
                self.group.submit(pending)
            except BaseException as exc:  # the leader of a raising commit gets it
                claimer.raised = exc
            claimer.returned = True

        claimer.thread = threading.Thread(target=run, daemon=True)
        self.claimers.append(claimer)
        claimer.thread.start()
        settle(self._quiet, f"claim {order_id} queued or led")

    @precondition(lambda self: bool(self.running))
    @rule(ending=ENDINGS)
    def end_batch(self, ending: str) -> None:
        with self.lock:
            batch = self.running[0]
        for index, pending in enumerate(batch.claims):
            claimer = next(c for c in self.claimers if c.pending is pending)
            claimer.expected = {
                "stored": True,
                "existing": False,
                "error": CommitFailed,
                "raise": RuntimeError,
                "unanswered": True if index % 2 == 0 else RuntimeError,
            }[ending]
        batch.ending = ending
        batch.release.set()
        settle(
            lambda: (
                all(c.returned for c in self.claimers if c.pending in batch.claims)
                and self._quiet()
            ),
            f"the batch ended {ending} and the lead handed over",
        )

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def one_batch_at_a_time_and_no_id_twice_in_one(self) -> None:
        assert not self.overlap
        with self.lock:
            batches = list(self.batches)
        for batch in batches:
            ids = [p.client_order_id for p in batch.claims]
            assert len(ids) == len(set(ids)), ids

    @invariant()
    def no_claim_is_stranded(self) -> None:
        assert self._quiet()

    @invariant()
    def each_answer_is_its_batchs(self) -> None:
        for claimer in self.claimers:
            pending = claimer.pending
            if not claimer.returned:
                assert not pending.done or claimer.pending in [
                    p for b in self.running for p in b.claims
                ]
                continue
            assert pending.done
            expected = claimer.expected
            if expected is True or expected is False:
                assert pending.inserted is expected and pending.error is None
            else:
                assert pending.inserted is None and isinstance(pending.error, expected)
            if claimer.raised is not None:
                assert isinstance(claimer.raised, CommitFailed)

    @invariant()
    def the_counts_add_up(self) -> None:
        with self.lock:
            ended = [b for b in self.batches if b not in self.running]
        assert self.group.batches == len(ended)
        assert self.group.claims == sum(len(b.claims) for b in ended)

    def teardown(self) -> None:
        # Whatever is left is stored, batch after batch, so that no thread outlives the
        # example.
        while True:
            settle(
                lambda: bool(self.running) or all(c.returned for c in self.claimers),
                "the next batch of the teardown",
            )
            with self.lock:
                batch = self.running[0] if self.running else None
            if batch is None:
                break
            batch.ending = "stored"
            batch.release.set()
            settle(lambda b=batch: b not in self.running, "the teardown's batch")
        for claimer in self.claimers:
            claimer.thread.join(SETTLE)


TestClaimGroupModel = ClaimGroupModel.TestCase
TestClaimGroupModel.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)
