"""The group commit's hand-over of the lead, on real threads, under any order of claims
arriving and batches ending (hypothesis stateful).

Each rule either starts a claimer thread (one claim, or several submitted in one call
as a Validator claims its batch's intents; ids drawn from a few, so a second claim of
an id in flight happens) or ends the batch being committed, with one of the ways a
batch can end: every claim stored, every claim refused as existing, an error for each,
some left unanswered, or the commit raising. After each rule the threads are let to
settle; then, whatever came before:

- one batch at most is committed at a time, and none holds an id twice;
- a claim not yet answered is in the batch being committed or queued behind it: never
  stranded with no leader (the hand-over's whole point), not even behind a commit
  that raised in the thread that also has the next claims to lead;
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
    together: list[_Claimer] = field(default_factory=list)
    """The claimers of the claims submitted by the same call (itself among them)."""


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
        """Every claim is answered, queued, or in the batch being committed, and each
        call whose claims are all answered has returned."""
        with self.lock:
            running = [p for b in self.running for p in b.claims]
        unanswered = [c for c in self.claimers if not c.pending.done]
        if len(unanswered) != len(running) + self.group.queued:
            return False
        if unanswered and not running:
            return False
        return all(c.returned for c in self.claimers if all(t.pending.done for t in c.together))

    def _start(self, order_ids: list[str]) -> None:
        """One thread submitting these claims in one call (``submit`` for one)."""
        together = [
            _Claimer(PendingClaim({"client_order_id": i}, None), threading.Thread())
            for i in order_ids
        ]

        def run() -> None:
            raised: BaseException | None = None
            try:
                if len(together) == 1:
                    self.group.submit(together[0].pending)
                else:
                    self.group.submit_many([c.pending for c in together])
            except BaseException as exc:  # the leader of a raising commit gets it
                raised = exc
            for claimer in together:
                claimer.raised = raised
                claimer.returned = True

        thread = threading.Thread(target=run, daemon=True)
        for claimer in together:
            claimer.together = together
            claimer.thread = thread
        self.claimers.extend(together)
        thread.start()
        settle(self._quiet, f"claims {order_ids} queued or led")

    @rule(order_id=IDS)
    def claim(self, order_id: str) -> None:
        self._start([order_id])

    @rule(order_ids=st.lists(IDS, min_size=2, max_size=4))
    def claim_together(self, order_ids: list[str]) -> None:
        """A Validator claiming its batch's intents at once (an id may come twice)."""
        self._start(order_ids)

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
            lambda: all(p.done for p in batch.claims) and self._quiet(),
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
            if not pending.done:
                continue
            assert claimer.returned or not all(c.pending.done for c in claimer.together)
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
            assert not claimer.thread.is_alive(), "a claimer never returned"


TestClaimGroupModel = ClaimGroupModel.TestCase
TestClaimGroupModel.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)
