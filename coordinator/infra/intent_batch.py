"""Group commit of intent claims: the claims made at the same moment by several
Validators' threads go to PostgreSQL in one transaction, one durable commit for all.

No thread of its own: the first claimer to arrive while no batch is being committed
leads. It may wait a moment for companions (at most ``wait``, until as many are
queued as its last batch held, and only while claims come in together: a batch of
one last time means no one is likely to join), takes what has queued, commits it on
its own connection and answers each claim; the claimers that queued meanwhile sleep
until answered, the first of those still queued being woken to lead the next batch.
Each claim gets its own answer: the ``execute`` callable sets ``inserted`` or
``error`` on each one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coordinator.cluster.fencing import LeaseToken

__all__ = ["ClaimGroup", "PendingClaim"]

_MAX_BATCH = 256
"""Claims in one transaction at most: far more than there are Validators."""


def _locked() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False, slots=True)
class PendingClaim:
    """One claim on its way through a batch."""

    record: dict[str, Any]
    """The intent's row (``coordinator_orders`` columns)."""
    fence: LeaseToken | None
    """The lease its INSERT must pass, or None."""
    inserted: bool | None = None
    """Answered: True when stored now, False when the row existed already."""
    error: BaseException | None = None
    """Answered with the error its batch (or its own retry) met."""
    companion: bool = False
    """Submitted by the same call as the claim before it (a Validator claiming its
    batch's intents at once): not one more claimer to wait for."""
    done: bool = False
    """Answered, either way."""
    wake: threading.Lock = field(default_factory=_locked)
    """Held until the claim is answered (``done``) or, not done, its claimer is to lead
    the next batch: the cheapest wait there is, one release wakes exactly this one."""

    @property
    def client_order_id(self) -> str:
        return str(self.record["client_order_id"])


class ClaimGroup:
    """The batches of one ``IntentClaims``; ``submit`` returns once the claim is done."""

    def __init__(
        self,
        execute: Callable[[list[PendingClaim]], None],
        *,
        wait: float,
        max_batch: int = _MAX_BATCH,
    ) -> None:
        self._execute = execute
        self._wait = wait
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)
        self._gather_until = 0
        """While a leader waits for companions: the queue length that ends its wait."""
        self._queue: list[PendingClaim] = []
        self._leading = False
        self._last_size = 0
        self.batches = 0
        """Batches committed (or tried) so far."""
        self.claims = 0
        """Claims in them."""

    @property
    def queued(self) -> int:
        """Claims waiting for a batch."""
        with self._lock:
            return len(self._queue)

    @property
    def leading(self) -> bool:
        """A batch is being gathered or committed."""
        with self._lock:
            return self._leading

    def submit(self, pending: PendingClaim) -> None:
        self.submit_many([pending])

    def submit_many(self, claims: list[PendingClaim]) -> None:
        """Returns once every claim of ``claims`` is done; they go in order, as many
        in one batch as fit."""
        if not claims:
            return
        for pending in claims[1:]:
            pending.companion = True
        with self._lock:
            self._queue.extend(claims)
            lead = not self._leading
            self._leading = True
            if self._gather_until and len(self._queue) >= self._gather_until:
                self._joined.notify()
        raised: BaseException | None = None
        for at, pending in enumerate(claims):
            if at > 0 or not lead:
                # Released once answered by a batch, or to lead the next one.
                pending.wake.acquire()
                if pending.done:
                    continue
            while not pending.done:
                try:
                    self._lead_one(pending)
                except BaseException as exc:
                    # The rest of this call's claims still need this thread: one may be
                    # the next batch's leader.
                    raised = raised or exc
        if raised is not None:
            raise raised

    def _lead_one(self, mine: PendingClaim) -> None:
        """Commit one batch; hand the lead over once this thread's claim is answered
        (it may have waited in the queue: a second claim of an id in flight)."""
        if self._wait > 0 and self._last_size > 1:
            self._gather()
        batch = self._take()
        try:
            self._execute(batch)
        finally:
            for pending in batch:
                if not pending.done and pending.inserted is None and pending.error is None:
                    pending.error = RuntimeError("the intent batch ended without an answer")
                pending.done = True
            successor: PendingClaim | None = None
            with self._lock:
                self.batches += 1
                self.claims += len(batch)
                # Claimers, not claims: companions of one call do not come apart.
                self._last_size = sum(not pending.companion for pending in batch)
                if mine.done:
                    if self._queue:
                        # Stays at the head of the queue: it is in the batch it leads.
                        successor = self._queue[0]
                    else:
                        self._leading = False
            for pending in batch:
                if pending is not mine:
                    pending.wake.release()
            if successor is not None:
                successor.wake.release()

    def _gather(self) -> None:
        """Claims came in together last time: give the others a moment to join, until
        as many are here as then (likely every Validator with an order), at most
        ``wait``. Real time, not the injected clock: a fraction of a millisecond."""
        deadline = time.monotonic() + self._wait
        with self._lock:
            self._gather_until = min(self._last_size, self._max_batch)
            try:
                while len(self._queue) < self._gather_until:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._joined.wait(left)
            finally:
                self._gather_until = 0

    def _take(self) -> list[PendingClaim]:
        """The queued claims, first come first, one per client order id (a second claim
        of an id waits for the next batch: it must meet the first one's row)."""
        with self._lock:
            batch: list[PendingClaim] = []
            ids: set[str] = set()
            rest: list[PendingClaim] = []
            for pending in self._queue:
                if len(batch) < self._max_batch and pending.client_order_id not in ids:
                    ids.add(pending.client_order_id)
                    batch.append(pending)
                else:
                    rest.append(pending)
            self._queue = rest
            return batch
