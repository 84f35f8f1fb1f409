"""Group commit of intent claims on real PostgreSQL: claims made together share one
transaction and one commit, and each still gets its own answer."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest

from coordinator.clock import ManualClock
from coordinator.config.parts import LEADER_LEASE
from coordinator.infra.intent_batch import ClaimGroup, PendingClaim
from coordinator.infra.intent_claims import Claim, ClaimRequest, ClaimResult, IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.order_states import OrderStates
from coordinator.infra.records import RecordKind
from tests.test_execution import intent
from tests.test_intent_claims import held_row
from tests.waiting import wait_for


class Claimer:
    """A thread making one claim, as a Validator does."""

    def __init__(self, claims: IntentClaims, record: dict[str, Any], **kwargs: Any) -> None:
        self.claim: Claim | None = None
        self._thread = threading.Thread(
            target=lambda: setattr(self, "claim", claims.claim(record, **kwargs)), daemon=True
        )
        self._thread.start()

    def result(self) -> Claim:
        self._thread.join(30)
        assert self.claim is not None, "the claim did not return"
        return self.claim


def behind_a_locked_row(
    dsn: str, claims: IntentClaims, make: Callable[[], list[Claimer]]
) -> tuple[Claim, list[Claim]]:
    """A first claim waits on a row another transaction holds, so that the claims ``make``
    starts meanwhile queue and go together in the next batch once it is let go."""
    holder = held_row(dsn, "gate")
    try:
        gate = Claimer(claims, intent("gate"), first_seen=None)
        wait_for(lambda: claims.committing and claims.queued == 0, message="gate in")
        claimers = make()
        wait_for(lambda: claims.queued == len(claimers), message="the others queued")
    finally:
        holder.rollback()
        holder.close()
    return gate.result(), [c.result() for c in claimers]


def stored(dsn: str, client_order_id: str) -> bool:
    return OrderStates(dsn, timeout=5).order(client_order_id) is not None


def answered_before(dsn: str, tmp_path: Any) -> tuple[ManualClock, Journal, IntentClaims]:
    """Claims on a manual clock whose PostgreSQL last answered 10 s ago (the intent
    "before" stored then)."""
    clock = ManualClock(monotonic=1_800_000_000.0, wall=1_800_000_000.0)
    journal = Journal(tmp_path / "j.jsonl")
    claims = IntentClaims(dsn, journal, timeout=30, clock=clock)
    assert claims.claim(intent("before"), first_seen=clock.time()).result is ClaimResult.CLAIMED
    clock.advance(10)
    return clock, journal, claims


def test_claims_made_together_share_one_commit_each_answered(own_postgres, tmp_path):
    claims = IntentClaims(own_postgres.dsn, Journal(tmp_path / "j.jsonl"), timeout=30)
    gate, others = behind_a_locked_row(
        own_postgres.dsn,
        claims,
        lambda: [Claimer(claims, intent(f"together-{n}"), first_seen=None) for n in range(5)],
    )
    # The gate's row was rolled back by its holder: the gate's INSERT then went in.
    assert gate.result is ClaimResult.CLAIMED
    assert [c.result for c in others] == [ClaimResult.CLAIMED] * 5
    assert claims.batches == (2, 6)
    assert all(stored(own_postgres.dsn, f"together-{n}") for n in range(5))
    # Claimed already: each answers EXISTS, in a batch or alone.
    again = claims.claim(intent("together-3"), first_seen=None)
    assert (again.result, again.where) == (ClaimResult.EXISTS, "postgres")
    claims.close()


def test_a_second_claim_of_an_id_in_one_batch_waits_for_the_next_and_exists(own_postgres, tmp_path):
    claims = IntentClaims(own_postgres.dsn, Journal(tmp_path / "j.jsonl"), timeout=30)
    _, (first, second, other) = behind_a_locked_row(
        own_postgres.dsn,
        claims,
        lambda: [
            Claimer(claims, intent("twice"), first_seen=None),
            Claimer(claims, intent("twice"), first_seen=None),
            Claimer(claims, intent("once"), first_seen=None),
        ],
    )
    results = sorted([first.result, second.result])
    assert results == [ClaimResult.CLAIMED, ClaimResult.EXISTS], (first, second)
    assert other.result is ClaimResult.CLAIMED
    # The gate, then "twice" with "once", then the second "twice" alone.
    assert claims.batches == (3, 4)
    claims.close()


def test_a_fenced_claim_is_refused_alone_the_rest_of_its_batch_claimed(own_postgres, tmp_path):
    leases = LeaseStore(own_postgres.dsn, timeout=5)
    now = 1_900_000_000.0
    old = leases.acquire(LEADER_LEASE, "old#1", now=now, duration=1.5).row
    assert old is not None
    new = leases.acquire(LEADER_LEASE, "new#1", now=now + 2.0, duration=1.5).row
    assert new is not None and new.generation == old.generation + 1
    leases.close()
    journal = Journal(tmp_path / "j.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=30)
    _, (stale, plain, leading, stale_too) = behind_a_locked_row(
        own_postgres.dsn,
        claims,
        lambda: [
            Claimer(claims, intent("stale"), first_seen=now, fence=old.token()),
            Claimer(claims, intent("plain"), first_seen=now),
            Claimer(claims, intent("leading"), first_seen=now, fence=new.token()),
            Claimer(claims, intent("stale-too"), first_seen=now, fence=old.token()),
        ],
    )
    assert stale.result is ClaimResult.FENCED and stale_too.result is ClaimResult.FENCED
    assert f"generation {new.generation}" in stale.detail
    assert plain.result is ClaimResult.CLAIMED, plain
    assert leading.result is ClaimResult.CLAIMED, leading
    assert not stored(own_postgres.dsn, "stale") and not stored(own_postgres.dsn, "stale-too")
    assert stored(own_postgres.dsn, "plain") and stored(own_postgres.dsn, "leading")
    assert len(journal) == 0
    claims.close()


def test_a_row_postgres_refuses_is_that_claims_answer_only(own_postgres, tmp_path):
    """An error on the batch rolls all of it back: each claim is tried again alone, so
    the others are claimed and the refused one counts as existing (never sent)."""
    claims = IntentClaims(own_postgres.dsn, Journal(tmp_path / "j.jsonl"), timeout=30)
    bad = {**intent("refused"), "quantity": "not a number"}
    _, (good, refused, good_too) = behind_a_locked_row(
        own_postgres.dsn,
        claims,
        lambda: [
            Claimer(claims, intent("good"), first_seen=None),
            Claimer(claims, bad, first_seen=None),
            Claimer(claims, intent("good-too"), first_seen=None),
        ],
    )
    assert good.result is ClaimResult.CLAIMED and good_too.result is ClaimResult.CLAIMED
    assert (refused.result, refused.where) == (ClaimResult.EXISTS, "postgres"), refused
    assert "may exist" in refused.detail
    assert not stored(own_postgres.dsn, "refused")
    claims.close()


def test_a_batch_that_cannot_reach_postgres_answers_each_claim_by_its_own_rules(
    own_postgres, tmp_path
):
    clock, journal, claims = answered_before(own_postgres.dsn, tmp_path)
    holder = held_row(own_postgres.dsn, "gate")
    gate = Claimer(claims, intent("gate"), first_seen=None)
    wait_for(lambda: claims.committing and claims.queued == 0, message="gate in")
    claimers = [
        # First seen during the outage: the journal may claim it.
        Claimer(claims, intent("new"), first_seen=clock.time()),
        # Re-delivered: PostgreSQL may hold it.
        Claimer(claims, intent("again"), first_seen=None),
        # Seen before PostgreSQL last answered.
        Claimer(claims, intent("early"), first_seen=clock.time() - 20),
        # Claimed in PostgreSQL already.
        Claimer(claims, intent("before"), first_seen=clock.time()),
    ]
    wait_for(lambda: claims.queued == len(claimers), message="the others queued")
    try:
        own_postgres.stop()
        gated = gate.result()
        new, again, early, before = (c.result() for c in claimers)
    finally:
        holder.close()
        own_postgres.start()
    assert gated.result is ClaimResult.UNAVAILABLE, gated
    assert (new.result, new.where) == (ClaimResult.CLAIMED, "journal"), new
    assert again.result is ClaimResult.UNAVAILABLE, again
    assert early.result is ClaimResult.UNAVAILABLE, early
    assert before.result is ClaimResult.UNAVAILABLE, before
    assert journal.has_intent("new") and len(journal) == 1
    claims.close()


def test_many_threads_claiming_overlapping_ids_claim_each_id_once(postgres, tmp_path):
    """Eight threads, as many Validators, each claiming ids that others claim too: every
    id is claimed exactly once, and stored."""
    claims = IntentClaims(
        postgres.dsn, Journal(tmp_path / "j.jsonl"), timeout=30, group_wait=0.0005
    )
    prefix = f"many-{id(claims)}-"
    ids = [f"{prefix}{n}" for n in range(60)]
    results: list[tuple[str, ClaimResult]] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        mine = random.Random(seed).sample(ids, 30)
        for client_order_id in mine:
            result = claims.claim(intent(client_order_id), first_seen=None).result
            with lock:
                results.append((client_order_id, result))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 8 * 30
    claimed = [i for i, result in results if result is ClaimResult.CLAIMED]
    assert sorted(claimed) == sorted({i for i, _ in results})
    assert all(result in (ClaimResult.CLAIMED, ClaimResult.EXISTS) for _, result in results)
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM coordinator_orders WHERE client_order_id LIKE %s",
            (prefix + "%",),
        )
        assert cur.fetchone()[0] == len(set(claimed))
    batches, in_them = claims.batches
    assert in_them == 8 * 30 and batches <= in_them
    claims.close()


@pytest.mark.parametrize("wait", [0.0, 0.0005])
def test_the_group_answers_every_claim_once_whatever_the_interleaving(wait):
    """The group alone, its commit an in-memory table: twelve threads, ids shared among
    them, a commit that sometimes fails for the whole batch. Every claim comes back
    answered, each id is inserted once, and no batch holds an id twice."""
    table: set[str] = set()
    batches: list[list[str]] = []
    chance = random.Random(7)

    def execute(batch: list[PendingClaim]) -> None:
        ids = [p.client_order_id for p in batch]
        batches.append(ids)
        if chance.random() < 0.1:
            for pending in batch:
                pending.error = RuntimeError("batch failed")
            return
        for pending in batch:
            pending.inserted = pending.client_order_id not in table
            table.add(pending.client_order_id)

    group = ClaimGroup(execute, wait=wait)
    answers: list[tuple[str, bool | None, bool]] = []
    lock = threading.Lock()

    def claimer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            pending = PendingClaim({"client_order_id": f"id-{rng.randrange(150)}"}, None)
            group.submit(pending)
            assert pending.done
            with lock:
                answers.append((pending.client_order_id, pending.inserted, pending.error is None))

    threads = [threading.Thread(target=claimer, args=(n,), daemon=True) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a claimer never answered"
    assert len(answers) == 12 * 200
    assert all(len(ids) == len(set(ids)) for ids in batches)
    inserted = [i for i, ok, answered in answers if answered and ok]
    assert sorted(inserted) == sorted(table)
    assert group.claims == 12 * 200 and not group.leading and group.queued == 0


def test_claims_asked_in_one_call_are_answered_in_order_with_one_commit(own_postgres, tmp_path):
    """A Validator claiming its batch's intents at once: one commit for those PostgreSQL
    is asked, each answered as if alone (one stored before exists; one the journal holds
    exists without being asked)."""
    journal = Journal(tmp_path / "j.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=30)
    assert claims.claim(intent("call-1"), first_seen=None).result is ClaimResult.CLAIMED
    assert journal.claim_intent({**intent("call-4"), "kind": RecordKind.INTENT})
    answers = claims.claim_many([ClaimRequest(intent(f"call-{n}"), None) for n in range(5)])
    assert [(a.result, a.where) for a in answers] == [
        (ClaimResult.CLAIMED, "postgres"),
        (ClaimResult.EXISTS, "postgres"),
        (ClaimResult.CLAIMED, "postgres"),
        (ClaimResult.CLAIMED, "postgres"),
        (ClaimResult.EXISTS, "journal"),
    ]
    assert claims.batches == (2, 5)
    assert all(stored(own_postgres.dsn, f"call-{n}") for n in range(4))
    assert not stored(own_postgres.dsn, "call-4")
    claims.close()


def test_claims_asked_in_one_call_during_an_outage_follow_each_their_own_rules(
    own_postgres, tmp_path
):
    clock, journal, claims = answered_before(own_postgres.dsn, tmp_path)
    own_postgres.stop()
    try:
        new, again, early = claims.claim_many(
            [
                ClaimRequest(intent("new"), clock.time()),
                ClaimRequest(intent("again"), None),
                ClaimRequest(intent("early"), clock.time() - 20),
            ]
        )
    finally:
        own_postgres.start()
    assert (new.result, new.where) == (ClaimResult.CLAIMED, "journal"), new
    assert again.result is ClaimResult.UNAVAILABLE, again
    assert early.result is ClaimResult.UNAVAILABLE, early
    assert journal.has_intent("new") and len(journal) == 1
    claims.close()
