"""The intent gate before ``POST /order``: each order's intent stored once, or not sent.

An intent is a row of ``coordinator_orders`` under a client order id derived from the
signal id; the row's unique key makes the claim. When PostgreSQL cannot be reached, the
local journal may stand in, but only for what it can know (see ``IntentClaims``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg2

from coordinator.clock import Clock, SystemClock
from coordinator.cluster.fencing import LeaseToken
from coordinator.compact_ids import CompactIdWindow
from coordinator.infra.intent_batch import ClaimGroup, PendingClaim
from coordinator.infra.journal import Journal
from coordinator.infra.lease_store import FENCE_SQLSTATE
from coordinator.infra.pipeline_rows import insert_intents, order_row
from coordinator.infra.records import RecordKind
from coordinator.infra.store import StoreError, connect, first_line

__all__ = ["Claim", "ClaimRequest", "ClaimResult", "IntentClaims", "unreachable"]

logger = logging.getLogger(__name__)


class ClaimResult(StrEnum):
    """The answer of the intent gate."""

    CLAIMED = "claimed"
    """Stored now: the order may be sent, once."""
    EXISTS = "exists"
    """An intent for this order exists, or may: never send."""
    UNAVAILABLE = "unavailable"
    """PostgreSQL cannot be reached and the journal may not decide: wait for it."""
    FENCED = "fenced"
    """The claim's lease is no longer held at its generation: nothing stored, never
    send (another instance leads and does this work now)."""


@dataclass(frozen=True, slots=True)
class Claim:
    result: ClaimResult
    where: str
    """``postgres`` or ``journal``: what answered (or could not)."""
    detail: str = ""
    """Why, when not claimed."""


# Connection exceptions (class 08) and a server shutting down or starting (57P01-3): the
# database was not reached. Any other error came from a server that may hold the intent.
_UNREACHABLE_PREFIX = "08"
_SENT_KEPT = 200_000
"""Claims remembered as sent to PostgreSQL: far more than a signal_timeout's worth."""
_UNREACHABLE_CODES = frozenset({"57P01", "57P02", "57P03"})


def unreachable(exc: BaseException) -> bool:
    """Whether an error means "PostgreSQL could not be reached" (and nothing else)."""
    if isinstance(exc, StoreError):
        return True  # raised by connect(): no connection was made
    code = getattr(exc, "pgcode", None)
    if code is None:
        # No answer from a server: the connection broke or never was.
        return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
    return code.startswith(_UNREACHABLE_PREFIX) or code in _UNREACHABLE_CODES


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One intent to claim (see ``IntentClaims.claim``)."""

    record: dict[str, Any]
    """The intent's row (``coordinator_orders`` columns)."""
    first_seen: float | None
    """Wall-clock time this process first saw the signal; None when it may have been
    seen before."""
    fence: LeaseToken | None = None
    """The lease its INSERT must pass, or None."""


class _Fenced(Exception):
    """A fence of the batch was refused (``error``, raised by PostgreSQL)."""

    def __init__(self, fence: LeaseToken, error: psycopg2.Error) -> None:
        super().__init__(str(error))
        self.fence = fence
        self.error = error


class IntentClaims:
    """The one gate before ``POST /order``: an intent stored under a unique client order id.

    Each caller thread has its own connection. Only an error that means PostgreSQL could
    not be reached may fall back to the local journal (fsync'd), and only for a signal
    first seen by this process after PostgreSQL last answered: the journal cannot know
    what PostgreSQL holds, so a signal seen earlier, or by an earlier process (taken in
    again, re-delivered, taken over), might have its intent there already and waits for
    PostgreSQL instead. Any other error (a lock or statement timeout on the same row, a
    refused statement) counts as "the intent exists": never sent.
    """

    def __init__(
        self,
        dsn: str,
        journal: Journal,
        *,
        timeout: float,
        clock: Clock | None = None,
        group_wait: float = 0.0,
    ) -> None:
        self._dsn = dsn
        self._journal = journal
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._answered_at: float | None = None
        # Ids whose INSERT left for PostgreSQL in this process: it may have committed
        # even if no answer came back (a crash of the actor, a connection cut).
        self._sent = CompactIdWindow(_SENT_KEPT)
        self._group = ClaimGroup(self._commit, wait=group_wait)

    @property
    def batches(self) -> tuple[int, int]:
        """Batches committed so far and the claims in them."""
        return self._group.batches, self._group.claims

    @property
    def queued(self) -> int:
        """Claims waiting for the batch being committed to end."""
        return self._group.queued

    @property
    def committing(self) -> bool:
        return self._group.leading

    @property
    def answered_at(self) -> float | None:
        """Wall-clock time PostgreSQL last answered a claim (or a warm-up) here."""
        with self._lock:
            return self._answered_at

    def _answered(self) -> None:
        now = self._clock.time()
        with self._lock:
            if self._answered_at is None or now > self._answered_at:
                self._answered_at = now

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self._dsn, timeout=self._timeout, application="coordinator-intents")
            self._local.conn = conn
        return conn

    def warm(self) -> str | None:
        """Open the calling thread's connection now rather than on its first order;
        the error when it cannot (the first claim tries again)."""
        opened = getattr(self._local, "conn", None) is None
        try:
            self._connection()
        except StoreError as exc:
            return str(exc)
        if opened:  # a connection held from before proves nothing about now
            self._answered()
        return None

    def claim(
        self,
        record: dict[str, Any],
        *,
        first_seen: float | None,
        fence: LeaseToken | None = None,
    ) -> Claim:
        """Store the intent ``record`` unless one with its client order id exists.

        ``first_seen``: wall-clock time this process first saw the signal; None when it
        may have been seen before (by an earlier process or incarnation).
        ``fence``: leader-only work (a stop's exit): the INSERT passes
        ``coordinator_assert_lease`` in its transaction, and the journal never stands
        in (it cannot know who leads). A coordinator leading alone passes no fence: its
        exits claim as any other intent, the journal standing in during an outage.
        """
        return self.claim_many([ClaimRequest(record, first_seen, fence)])[0]

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """Each request's claim as ``claim`` would answer it alone, in one batch (one
        statement and one durable commit, when nothing is refused)."""
        answers: dict[int, Claim] = {}
        asked: list[tuple[int, PendingClaim, float | None, bool]] = []
        for at, request in enumerate(requests):
            client_order_id = request.record["client_order_id"]
            if self._journal.has_intent(client_order_id):
                answers[at] = Claim(ClaimResult.EXISTS, "journal", "the local journal holds it")
                continue
            fence = request.fence
            if fence is not None and not fence.fenced:
                fence = None
            # An earlier call's INSERT (of an actor that crashed since, say) may have
            # been committed and its order sent. This call's own INSERT may not stop
            # this call from using the journal: whatever it did, it claims once at most.
            sent_before = self._was_sent(client_order_id)
            asked.append((at, PendingClaim(request.record, fence), request.first_seen, sent_before))
        self._group.submit_many([pending for _, pending, _, _ in asked])
        for at, pending, first_seen, sent_before in asked:
            answers[at] = self._answer(pending, first_seen, sent_before)
        return [answers[at] for at in range(len(requests))]

    def _answer(self, pending: PendingClaim, first_seen: float | None, sent_before: bool) -> Claim:
        client_order_id = pending.client_order_id
        error = pending.error
        if error is None:
            if pending.inserted:
                return Claim(ClaimResult.CLAIMED, "postgres")
            return Claim(ClaimResult.EXISTS, "postgres", "PostgreSQL holds it")
        if getattr(error, "pgcode", None) == FENCE_SQLSTATE:
            logger.warning(
                "intent %s refused by the lease fence: %s", client_order_id, first_line(error)
            )
            return Claim(ClaimResult.FENCED, "postgres", first_line(error))
        if not unreachable(error):
            logger.error(
                "intent %s: PostgreSQL answered an error (%s); taken as existing, never sent",
                client_order_id,
                first_line(error),
            )
            return Claim(
                ClaimResult.EXISTS,
                "postgres",
                f"PostgreSQL error at the claim, the intent may exist: {first_line(error)}",
            )
        reason = first_line(error)
        answered = self.answered_at
        if (
            pending.fence is not None
            or first_seen is None
            or (answered is not None and first_seen <= answered)
            or sent_before
        ):
            logger.warning(
                "intent %s waits for PostgreSQL (%s): its signal may have been seen before",
                client_order_id,
                reason,
            )
            return Claim(
                ClaimResult.UNAVAILABLE,
                "postgres",
                f"PostgreSQL unreachable ({reason}) and the signal may have been seen "
                "before the outage: waiting for PostgreSQL",
            )
        logger.warning("intent %s goes to the local journal: %s", client_order_id, reason)
        if self._journal.claim_intent({**pending.record, "kind": RecordKind.INTENT}):
            return Claim(ClaimResult.CLAIMED, "journal")
        return Claim(ClaimResult.EXISTS, "journal", "the local journal holds it")

    def _was_sent(self, client_order_id: str) -> bool:
        with self._lock:
            return client_order_id in self._sent

    def _commit(self, batch: list[PendingClaim]) -> None:
        """One batch in one transaction on the leading thread's connection, each claim
        answered. An error that may concern a single row (a lock or statement timeout
        on it, a refused value) rolled the whole batch back: each claim is then tried
        alone, so that it is that claim's answer only. A fence refused answers the
        claims of that fence, and the others go on without them. An open connection
        may be one the server dropped (a restart): one fresh try."""
        with self._lock:
            for pending in batch:
                # Sent again: kept from now on, the newest.
                self._sent.discard(pending.client_order_id)
                self._sent.add(pending.client_order_id)
        remaining = batch
        fresh_try = True
        while remaining:
            reused = getattr(self._local, "conn", None) is not None
            try:
                inserted = self._insert(remaining)
            except _Fenced as refused:
                # Rolled back, the connection sound: the rest goes on without them.
                for pending in remaining:
                    if pending.fence == refused.fence:
                        pending.error = refused.error
                remaining = [p for p in remaining if p.error is None]
                continue
            except (psycopg2.Error, StoreError) as exc:
                self.close()
                if not unreachable(exc) and len(remaining) > 1:
                    for pending in remaining:
                        self._commit([pending])
                    return
                if unreachable(exc) and reused and fresh_try:
                    fresh_try = False
                    continue
                for pending in remaining:
                    pending.error = exc
                return
            except BaseException as exc:
                self.close()
                for pending in remaining:
                    pending.error = exc
                raise
            self._answered()
            for pending in remaining:
                pending.inserted = pending.client_order_id in inserted
            return

    def _insert(self, batch: list[PendingClaim]) -> set[str]:
        """The ids stored now (the others existed). Raises _Fenced when a fence is
        refused: its claims must be answered apart from the others."""
        conn = self._connection()
        fences = {p.fence for p in batch if p.fence is not None}
        if not fences:
            # One statement commits itself: one round trip instead of three (BEGIN, the
            # INSERT, COMMIT), which a lone signal at a low rate pays in full.
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    return {row[0] for row in self._insert_rows(cur, batch)}
            finally:
                if not conn.closed:
                    conn.autocommit = False
        with conn, conn.cursor() as cur:
            for fence in sorted(fences, key=lambda f: (f.name, f.holder, f.generation)):
                # Held FOR SHARE until the commit: a takeover waits for this claim, and
                # a claim after the takeover is refused with nothing stored.
                try:
                    cur.execute(
                        "SELECT coordinator_assert_lease(%s, %s, %s)",
                        (fence.name, fence.holder, fence.generation),
                    )
                except psycopg2.Error as exc:
                    if exc.pgcode == FENCE_SQLSTATE:
                        raise _Fenced(fence, exc) from exc
                    raise
            return {row[0] for row in self._insert_rows(cur, batch)}

    @staticmethod
    def _insert_rows(cur: Any, batch: list[PendingClaim]) -> list[tuple[Any, ...]]:
        """The batch's INSERT, one statement: the ids stored now come back."""
        values = [value for p in batch for value in order_row(p.record)]
        cur.execute(insert_intents(len(batch)), values)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            finally:
                self._local.conn = None
