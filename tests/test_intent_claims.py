"""The intent gate under PostgreSQL faults: what it cannot know, it never claims."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg2
import pytest
import redis

from coordinator.clock import ManualClock
from coordinator.config.parts import LEADER_LEASE
from coordinator.infra.intent_claims import ClaimResult, IntentClaims, unreachable
from coordinator.infra.journal import Journal
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.order_states import OrderStates
from coordinator.infra.store import StoreError
from coordinator.trading.routing import client_order_id, validator_for
from tests.pipeline import Pipeline, signal_payload
from tests.test_execution import intent
from tests.test_pipeline import signal_id
from tests.test_pipeline_faults import validator_snapshot, wait_state
from tests.waiting import wait_for


def driven_clock() -> ManualClock:
    """Time driven by the test (both readings the same, as the claims compare them)."""
    return ManualClock(monotonic=1_800_000_000.0, wall=1_800_000_000.0)


def held_row(dsn: str, client_order_id: str) -> Any:
    """Another connection inserts the intent's row and keeps its transaction open: the
    row is locked, and a claim of the same id waits on it."""
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    cur.execute(
        """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side, quantity,
               reference_price, state, created_at, updated_at)
           VALUES (%s, %s, 'BTCUSDC', 'BUY', 0.01, 50000, 'pending', now(), now())""",
        (client_order_id, "s-" + client_order_id),
    )
    return conn


def test_a_claim_timing_out_on_a_locked_row_counts_as_existing(own_postgres, tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1)
    holder = held_row(own_postgres.dsn, "locked")
    try:
        claim = claims.claim(intent("locked"), first_seen=1_900_000_000.0)
    finally:
        holder.rollback()
        holder.close()
    assert claim.result is ClaimResult.EXISTS, claim
    assert claim.where == "postgres" and "statement timeout" in claim.detail
    # Nothing went to the journal: it would have let the order go.
    assert not journal.has_intent("locked") and len(journal) == 0
    claims.close()


def test_a_redelivered_signal_waits_for_postgres_after_a_crash(own_postgres, tmp_path):
    """Process 1 claimed the intent in PostgreSQL (and maybe sent the order) then died.
    Process 2 gets the signal again while PostgreSQL is down: its journal knows nothing,
    so the intent may not be claimed there."""
    first = IntentClaims(own_postgres.dsn, Journal(tmp_path / "one.jsonl"), timeout=1)
    assert first.claim(intent("sent-before"), first_seen=None).result is ClaimResult.CLAIMED
    first.close()

    clock = driven_clock()
    journal = Journal(tmp_path / "two.jsonl")
    second = IntentClaims(own_postgres.dsn, journal, timeout=1, clock=clock)
    own_postgres.stop()
    try:
        claim = second.claim(intent("sent-before"), first_seen=None)
        assert claim.result is ClaimResult.UNAVAILABLE, claim
        assert not journal.has_intent("sent-before")
    finally:
        own_postgres.start()
    claim = second.claim(intent("sent-before"), first_seen=None)
    assert (claim.result, claim.where) == (ClaimResult.EXISTS, "postgres")
    second.close()


def test_only_signals_first_seen_after_postgres_last_answered_go_to_the_journal(
    own_postgres, tmp_path
):
    clock = driven_clock()
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1, clock=clock)
    seen_before = clock.time() - 1.0
    assert claims.claim(intent("ok"), first_seen=seen_before).result is ClaimResult.CLAIMED
    assert claims.answered_at == clock.time()
    clock.advance(5.0)
    own_postgres.stop()
    try:
        # Seen before PostgreSQL last answered: it may have been claimed there.
        early = claims.claim(intent("early"), first_seen=seen_before)
        assert early.result is ClaimResult.UNAVAILABLE
        # Re-delivered (taken in again, taken over, re-read): the same.
        assert claims.claim(intent("again"), first_seen=None).result is ClaimResult.UNAVAILABLE
        # First seen during the outage: the journal claims it, once.
        late = claims.claim(intent("late"), first_seen=clock.time())
        assert (late.result, late.where) == (ClaimResult.CLAIMED, "journal")
        twice = claims.claim(intent("late"), first_seen=clock.time())
        assert twice.result is ClaimResult.EXISTS
    finally:
        own_postgres.start()
    assert not journal.has_intent("early") and not journal.has_intent("again")
    assert claims.claim(intent("early"), first_seen=seen_before).result is ClaimResult.CLAIMED
    claims.close()


def test_a_connection_dropped_by_a_restart_is_opened_again_not_journaled(own_postgres, tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    # A server just started may take more than a second to answer on a loaded machine:
    # a timeout there would make the claim journal, which is not what is checked here.
    claims = IntentClaims(own_postgres.dsn, journal, timeout=5)
    assert claims.warm() is None
    own_postgres.stop()
    own_postgres.start()
    claim = claims.claim(intent("after-restart"), first_seen=None)
    assert (claim.result, claim.where) == (ClaimResult.CLAIMED, "postgres")
    assert len(journal) == 0
    claims.close()


def test_claims_from_many_threads_during_an_outage_are_each_claimed_once(own_postgres, tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1, clock=driven_clock())
    own_postgres.stop()
    results: list[ClaimResult] = []
    lock = threading.Lock()

    def claim() -> None:
        result = claims.claim(intent("shared"), first_seen=1_900_000_000.0).result
        with lock:
            results.append(result)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        own_postgres.start()
    assert sorted(results).count(ClaimResult.CLAIMED) == 1, results


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (StoreError("cannot connect to PostgreSQL"), True),
        (psycopg2.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg2.InterfaceError("connection already closed"), True),
        (psycopg2.ProgrammingError("syntax error"), False),
    ],
)
def test_only_not_reaching_postgres_counts_as_unreachable(error, expected):
    assert unreachable(error) is expected


# --- through the pipeline -------------------------------------------------------------


def test_a_taken_over_sell_waits_for_postgres_while_a_new_one_goes(
    pipelines, redis_server, own_postgres
):
    """During a PostgreSQL outage, a stream entry another consumer read and left pending
    (its process may have sent the order) waits for PostgreSQL; a SELL first seen now is
    claimed in the journal and sent. Once PostgreSQL is back the first is sent, once."""
    # Alone on its own database, in single mode: a cluster decides nothing while
    # PostgreSQL is down (no symbol partition can be held).
    pipe = pipelines({"COORDINATOR_INSTANCES": "single"}, database_dsn=own_postgres.dsn)
    wait_state(pipe, "ACTIVE")
    for symbol in ("SOLUSDC", "ETHUSDC"):
        buy = signal_payload(symbol, "BUY")
        pipe.publish(buy)
        assert pipe.decision(signal_id(buy))["decision"]["outcome"] == "accepted"
    wait_for(lambda: {"SOLUSDC", "ETHUSDC"} <= set(pipe.positions()), message="both held")

    client = redis.Redis.from_url(redis_server.url)
    taken_over = signal_payload("SOLUSDC", "SELL")
    pipe.coordinator._readers.stop()
    client.xadd(pipe.stream, {"data": json.dumps(taken_over)})
    assert client.xreadgroup("coordinator", "dead-consumer", {pipe.stream: ">"}, count=10)
    own_postgres.stop()
    try:
        wait_state(pipe, "DEGRADED")
        pipe.coordinator._readers.start_again()
        validator = validator_for("SOLUSDC", pipe.config.coordination.validation_threads)
        wait_for(
            lambda: (
                (snapshot := validator_snapshot(pipe, validator)) is not None
                and snapshot.waiting >= 1
            ),
            message="the taken-over SELL waiting for PostgreSQL",
        )
        fresh = signal_payload("ETHUSDC", "SELL")
        pipe.publish(fresh)
        wait_for(
            lambda: client_order_id(signal_id(fresh)) in fills(pipe),
            message="the new SELL sent during the outage",
        )
        assert client_order_id(signal_id(taken_over)) not in fills(pipe)
        assert "SOLUSDC" in pipe.positions()
    finally:
        own_postgres.start()
    record = pipe.decision(signal_id(taken_over), timeout=30)
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert fills(pipe)[client_order_id(signal_id(taken_over))] == 1
    assert pipe.decision(signal_id(fresh))["decision"]["outcome"] == "accepted"
    assert all(count == 1 for count in fills(pipe).values())
    client.close()


def fills(pipe: Pipeline) -> dict[str, int]:
    return pipe.paper.stats()["fills_by_client_order_id"]


def test_an_intent_once_sent_to_postgres_is_never_claimed_in_the_journal(own_postgres, tmp_path):
    """A Validator that crashed after its INSERT left (committed or not) and a copy of
    the signal processed again during an outage: PostgreSQL may hold the intent."""
    clock = driven_clock()
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1, clock=clock)
    assert claims.claim(intent("copy"), first_seen=clock.time()).result is ClaimResult.CLAIMED
    clock.advance(10)
    own_postgres.stop()
    try:
        again = claims.claim(intent("copy"), first_seen=clock.time())
    finally:
        own_postgres.start()
    assert again.result is ClaimResult.UNAVAILABLE, again
    assert not journal.has_intent("copy")
    claims.close()


def test_a_redelivered_signal_waits_until_signal_timeout_then_store_unavailable(
    pipelines, redis_server, own_postgres
):
    # Single mode: a cluster would hold no partition, and decide nothing, while
    # PostgreSQL is down.
    pipe = pipelines(
        {"SIGNAL_TIMEOUT": "4", "COORDINATOR_INSTANCES": "single"}, database_dsn=own_postgres.dsn
    )
    wait_state(pipe, "ACTIVE")
    buy = signal_payload("SOLUSDC", "BUY")
    pipe.publish(buy)
    assert pipe.decision(signal_id(buy))["decision"]["outcome"] == "accepted"
    wait_for(lambda: "SOLUSDC" in pipe.positions(), message="held")

    client = redis.Redis.from_url(redis_server.url)
    taken_over = signal_payload("SOLUSDC", "SELL")
    pipe.coordinator._readers.stop()
    client.xadd(pipe.stream, {"data": json.dumps(taken_over)})
    assert client.xreadgroup("coordinator", "dead-consumer", {pipe.stream: ">"}, count=10)
    validator = validator_for("SOLUSDC", pipe.config.coordination.validation_threads)
    own_postgres.stop()
    try:
        wait_state(pipe, "DEGRADED")
        pipe.coordinator._readers.start_again()
        wait_for(
            lambda: (s := validator_snapshot(pipe, validator)) is not None and s.waiting >= 1,
            message="the taken-over SELL waiting for PostgreSQL",
        )
        wait_for(
            lambda: (s := validator_snapshot(pipe, validator)) is not None and s.waiting == 0,
            message="given up at signal_timeout",
        )
    finally:
        own_postgres.start()
    decision = pipe.decision(signal_id(taken_over), timeout=30)["decision"]
    assert (decision["outcome"], decision["reason"]) == ("rejected", "store_unavailable")
    assert client_order_id(signal_id(taken_over)) not in fills(pipe)
    assert "SOLUSDC" in pipe.positions()
    client.close()


def test_a_new_signal_on_a_connection_the_outage_broke_goes_to_the_journal(own_postgres, tmp_path):
    """The first claim after PostgreSQL stopped meets the broken connection: its INSERT
    went nowhere, and a signal first seen now may still be claimed in the journal."""
    clock = driven_clock()
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1, clock=clock)
    assert claims.claim(intent("before"), first_seen=clock.time()).result is ClaimResult.CLAIMED
    own_postgres.stop()
    clock.advance(10)
    try:
        claim = claims.claim(intent("during"), first_seen=clock.time())
        assert claims.warm() is not None
    finally:
        own_postgres.start()
    assert (claim.result, claim.where) == (ClaimResult.CLAIMED, "journal")
    claims.close()


def test_a_fenced_claim_is_refused_once_the_lease_is_taken_over_and_stores_nothing(
    own_postgres, tmp_path
):
    """A stop's exit claims its intent under its leader's lease: a stale leader's is
    refused by PostgreSQL (nothing stored, so the order cannot leave), and the journal
    never stands in for a fenced claim, which it could not check."""
    leases = LeaseStore(own_postgres.dsn, timeout=5)
    now = 1_900_000_000.0
    old = leases.acquire(LEADER_LEASE, "old#1", now=now, duration=1.5).row
    assert old is not None
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1)
    try:
        leading = claims.claim(intent("fenced-ok"), first_seen=now, fence=old.token())
        assert leading.result is ClaimResult.CLAIMED, leading
        new = leases.acquire(LEADER_LEASE, "new#1", now=now + 2.0, duration=1.5).row
        assert new is not None and new.generation == old.generation + 1
        stale = claims.claim(intent("fenced-stale"), first_seen=now, fence=old.token())
        assert stale.result is ClaimResult.FENCED, stale
        assert f"generation {new.generation}" in stale.detail
        assert OrderStates(own_postgres.dsn, timeout=5).order("fenced-stale") is None
        assert not journal.has_intent("fenced-stale") and len(journal) == 0
        fresh = claims.claim(intent("fenced-new"), first_seen=now, fence=new.token())
        assert fresh.result is ClaimResult.CLAIMED, fresh
    finally:
        claims.close()
        leases.close()


def test_a_fenced_claim_waits_for_postgres_instead_of_the_journal(own_postgres, tmp_path):
    leases = LeaseStore(own_postgres.dsn, timeout=5)
    row = leases.acquire(LEADER_LEASE, "lead#1", now=1_900_000_000.0, duration=1.5).row
    leases.close()
    assert row is not None
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1)
    own_postgres.stop()
    try:
        claim = claims.claim(intent("fenced-down"), first_seen=2_000_000_000.0, fence=row.token())
    finally:
        own_postgres.start()
    assert claim.result is ClaimResult.UNAVAILABLE, claim
    assert len(journal) == 0
    claims.close()
