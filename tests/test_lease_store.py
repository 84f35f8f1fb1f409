"""The leases in the real PostgreSQL: takes, renewals, releases and the fence."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2
import pytest

from coordinator.cluster.fencing import LeaseLost, LeaseToken
from coordinator.infra.lease_store import LeaseStore, run_fenced
from coordinator.infra.store import StoreError
from tests.waiting import wait_for

DURATION = 1.5
T0 = 1_800_000_000.0


@pytest.fixture
def lease() -> str:
    """A lease of this test alone (the session's database is shared)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stores(postgres) -> Iterator[Any]:
    opened: list[LeaseStore] = []

    def open_store(application: str = "coordinator-lease") -> LeaseStore:
        store = LeaseStore(postgres.dsn, timeout=10)
        store.application = application
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def writes(postgres) -> Iterator[str]:
    """A table of this test alone that fenced transactions write to."""
    table = f"lease_writes_{uuid.uuid4().hex[:12]}"
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (what text NOT NULL)")
    conn.close()
    yield table
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {table}")
    conn.close()


def _written(dsn: str, table: str) -> list[str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT what FROM {table} ORDER BY what")
        rows = [row[0] for row in cur.fetchall()]
    conn.close()
    return rows


def _insert(table: str, what: str) -> Any:
    def work(cur: Any) -> None:
        cur.execute(f"INSERT INTO {table} (what) VALUES (%s)", (what,))

    return work


def test_the_first_take_is_generation_one_and_refuses_the_others(stores, lease):
    a, b = stores(), stores()
    taken = a.acquire(lease, "a", now=T0, duration=DURATION)
    assert taken.granted and taken.row is not None
    assert (taken.row.holder, taken.row.generation) == ("a", 1)
    assert taken.row.expires_at == pytest.approx(T0 + DURATION)
    refused = b.acquire(lease, "b", now=T0 + 1.0, duration=DURATION)
    assert not refused.granted and refused.row is not None
    assert (refused.row.holder, refused.row.generation) == ("a", 1)
    assert refused.row.remaining(T0 + 1.0) == pytest.approx(0.5)


@pytest.mark.parametrize("row_before", ["absent", "expired", "released"])
def test_two_holders_racing_for_a_free_lease_one_gets_it(stores, lease, row_before):
    setup = stores()
    if row_before != "absent":
        assert setup.acquire(lease, "old", now=T0 - 10, duration=DURATION).granted
    if row_before == "released":
        assert setup.release(lease, "old", 1)
    contenders = [stores() for _ in range(4)]
    start = threading.Barrier(len(contenders))

    def race(index: int) -> bool:
        start.wait()
        return contenders[index].acquire(lease, f"c{index}", now=T0, duration=DURATION).granted

    with ThreadPoolExecutor(len(contenders)) as pool:
        granted = list(pool.map(race, range(len(contenders))))
    assert granted.count(True) == 1
    row = setup.read(lease)
    assert row is not None
    assert row.holder == f"c{granted.index(True)}"
    assert row.generation == (1 if row_before == "absent" else 2)


def test_an_expired_lease_is_taken_at_the_next_generation_and_the_old_renewal_refused(
    stores, lease
):
    a, b = stores(), stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    assert a.renew(lease, "a", 1, now=T0 + 0.5, duration=DURATION).granted
    # Renewed to T0 + 2.0: still a's at T0 + 1.9.
    assert not b.acquire(lease, "b", now=T0 + 1.9, duration=DURATION).granted
    taken = b.acquire(lease, "b", now=T0 + 2.0, duration=DURATION)
    assert taken.granted and taken.row is not None
    assert (taken.row.holder, taken.row.generation) == ("b", 2)
    stale = a.renew(lease, "a", 1, now=T0 + 2.1, duration=DURATION)
    assert not stale.granted and stale.row is not None
    assert (stale.row.holder, stale.row.generation) == ("b", 2)
    # Nor may b renew a generation it does not hold.
    assert not b.renew(lease, "b", 1, now=T0 + 2.1, duration=DURATION).granted
    assert not b.renew(lease, "b", 3, now=T0 + 2.1, duration=DURATION).granted


def test_our_own_lease_is_extended_in_its_term_and_a_new_term_after_it_expired(stores, lease):
    a = stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    again = a.acquire(lease, "a", now=T0 + 1.0, duration=DURATION)
    assert again.granted and again.row is not None
    assert again.row.generation == 1
    assert again.row.expires_at == pytest.approx(T0 + 2.5)
    # A late request of ours never brings the expiry back.
    late = a.renew(lease, "a", 1, now=T0 + 0.2, duration=DURATION)
    assert late.granted and late.row is not None
    assert late.row.expires_at == pytest.approx(T0 + 2.5)
    after = a.acquire(lease, "a", now=T0 + 2.5, duration=DURATION)
    assert after.granted and after.row is not None
    assert after.row.generation == 2
    assert after.row.acquired_at == pytest.approx(T0 + 2.5)


def test_a_released_lease_is_taken_at_once_and_not_revived_by_a_late_renewal(stores, lease):
    a, b = stores(), stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    assert a.release(lease, "a", 1)
    row = a.read(lease)
    assert row is not None and row.released
    assert not a.renew(lease, "a", 1, now=T0 + 0.1, duration=DURATION).granted
    taken = b.acquire(lease, "b", now=T0 + 0.1, duration=DURATION)
    assert taken.granted and taken.row is not None and taken.row.generation == 2
    # Released by another holder or generation: not given.
    assert not a.release(lease, "a", 1)
    assert not a.release(lease, "b", 1)
    assert a.read(lease).holder == "b"


def test_a_fenced_write_of_the_current_holder_is_committed(stores, lease, writes, postgres):
    a = stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    a.run_fenced(LeaseToken(lease, "a", 1), _insert(writes, "by a"))
    assert _written(postgres.dsn, writes) == ["by a"]


def test_a_fenced_write_after_a_takeover_is_refused_and_writes_nothing(
    stores, lease, writes, postgres
):
    a, b = stores(), stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    assert b.acquire(lease, "b", now=T0 + DURATION, duration=DURATION).granted
    with pytest.raises(LeaseLost) as lost:
        a.run_fenced(LeaseToken(lease, "a", 1), _insert(writes, "by a, stale"))
    assert lost.value.token == LeaseToken(lease, "a", 1)
    assert "held by b at generation 2, not by a at generation 1" in str(lost.value)
    assert _written(postgres.dsn, writes) == []
    # The same connection goes on: b's write passes, a's is still refused.
    b.run_fenced(LeaseToken(lease, "b", 2), _insert(writes, "by b"))
    with pytest.raises(LeaseLost):
        a.run_fenced(LeaseToken(lease, "a", 1), _insert(writes, "by a, stale again"))
    assert _written(postgres.dsn, writes) == ["by b"]


def test_a_fenced_write_of_a_lease_nobody_took_is_refused(stores, lease, writes, postgres):
    with pytest.raises(LeaseLost, match="held by nobody"):
        stores().run_fenced(LeaseToken(lease, "a", 1), _insert(writes, "never"))
    assert _written(postgres.dsn, writes) == []


def test_other_errors_of_a_fenced_transaction_are_store_errors(stores, lease):
    a = stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted

    def broken(cur: Any) -> None:
        cur.execute("SELECT * FROM no_such_table_of_leases")

    with pytest.raises(StoreError, match="no_such_table_of_leases") as failed:
        a.run_fenced(LeaseToken(lease, "a", 1), broken)
    assert not isinstance(failed.value, LeaseLost)
    a.run_fenced(LeaseToken(lease, "a", 1), lambda cur: cur.execute("SELECT 1"))


def test_a_takeover_waits_for_a_fenced_transaction_in_flight_then_fences_the_next(
    stores, lease, writes, postgres
):
    a = stores()
    taker = stores(application=f"lease-taker-{lease}")
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    token = LeaseToken(lease, "a", 1)
    in_flight = threading.Event()
    finish = threading.Event()

    def slow_write(cur: Any) -> None:
        # In flight, not frozen: longer than the fence's own limit on idle time.
        cur.execute("SET LOCAL idle_in_transaction_session_timeout = '60s'")
        cur.execute(f"INSERT INTO {writes} (what) VALUES ('by a, in flight')")
        in_flight.set()
        assert finish.wait(10)

    with ThreadPoolExecutor(2) as pool:
        writing = pool.submit(a.run_fenced, token, slow_write)
        assert in_flight.wait(10)
        # Past the expiry by every clock: b would take it at once, but the row is held
        # FOR SHARE by a's transaction.
        taking = pool.submit(taker.acquire, lease, "b", now=T0 + 5, duration=DURATION)
        wait_for(
            lambda: _waits_for_a_lock(postgres.dsn, f"lease-taker-{lease}"),
            message="the takeover to wait for the fenced transaction",
        )
        assert not taking.done()
        finish.set()
        writing.result(timeout=10)
        taken = taking.result(timeout=10)
    assert taken.granted and taken.row is not None
    assert (taken.row.holder, taken.row.generation) == ("b", 2)
    with pytest.raises(LeaseLost):
        a.run_fenced(token, _insert(writes, "by a, after the takeover"))
    assert _written(postgres.dsn, writes) == ["by a, in flight"]


def test_run_fenced_takes_any_connection(postgres, lease, writes, stores):
    assert stores().acquire(lease, "a", now=T0, duration=DURATION).granted
    conn = psycopg2.connect(postgres.dsn)
    try:
        run_fenced(conn, LeaseToken(lease, "a", 1), _insert(writes, "plain connection"))
        with pytest.raises(LeaseLost):
            run_fenced(conn, LeaseToken(lease, "a", 2), _insert(writes, "wrong generation"))
        assert conn.closed == 0
    finally:
        conn.close()
    assert _written(postgres.dsn, writes) == ["plain connection"]


def _waits_for_a_lock(dsn: str, application: str) -> bool:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application,),
        )
        waiting = cur.fetchone()[0] > 0
    conn.close()
    return waiting


def test_a_fenced_transaction_left_open_by_a_paused_holder_does_not_block_a_takeover(
    stores, lease, postgres
):
    """A leader frozen (SIGSTOP) between two statements of a fenced transaction holds the
    lease row FOR SHARE: PostgreSQL ends that idle transaction after
    1 s, and the takeover goes through."""
    a = stores()
    assert a.acquire(lease, "a", now=T0, duration=DURATION).granted
    frozen = psycopg2.connect(postgres.dsn)
    try:
        cur = frozen.cursor()
        cur.execute("SELECT coordinator_assert_lease(%s, %s, %s)", (lease, "a", 1))
        # ... and nothing more: the process is stopped with its transaction open.
        taken = stores().acquire(lease, "b", now=T0 + 5, duration=DURATION)
        assert taken.granted and taken.row is not None
        assert (taken.row.holder, taken.row.generation) == ("b", 2)
        with pytest.raises(psycopg2.Error):
            cur.execute("SELECT 1")
    finally:
        frozen.close()
