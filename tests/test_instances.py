"""The instance registry on a real PostgreSQL: a live identity is refused, a stale or
stopped one taken over, a claim is atomic, a heartbeat finds a takeover."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg2
import pytest

from coordinator.errors import CoordinatorError
from coordinator.infra.instances import (
    IdentityInUse,
    IdentityLost,
    InstanceRegistry,
    instance_dsn,
)
from coordinator.infra.store import apply_migrations


@pytest.fixture
def dsn(postgres) -> str:
    apply_migrations(postgres.dsn)
    return str(postgres.dsn)


def registry(dsn: str, instance: str, *, pid: int = 100, host: str = "host-a") -> InstanceRegistry:
    return InstanceRegistry(
        dsn, instance=instance, host=host, pid=pid, data_dir=f"/data/{pid}", liveness=5.0
    )


def sql(dsn: str, statement: str, *args: Any) -> Any:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def age(dsn: str, instance: str, seconds: float) -> None:
    """Make the row's last heartbeat ``seconds`` old: a process paused or dead."""
    sql(
        dsn,
        "UPDATE coordinator_instances SET heartbeat_at = clock_timestamp()"
        " - make_interval(secs => %s) WHERE instance = %s",
        seconds,
        instance,
    )


def name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_a_first_claim_writes_the_row(dsn):
    instance = name()
    first = registry(dsn, instance, pid=4242)
    assert first.claim() is None
    row = first.read()
    assert row is not None
    assert (row.instance, row.host, row.pid, row.data_dir) == (
        instance,
        "host-a",
        4242,
        "/data/4242",
    )
    assert row.incarnation == first.incarnation
    assert row.stopped_at is None and row.heartbeat_at >= row.started_at


def test_a_live_identity_is_refused_naming_its_holder(dsn):
    instance = name()
    holder = registry(dsn, instance, pid=111, host="box-1")
    holder.claim()
    second = registry(dsn, instance, pid=222, host="box-2")
    with pytest.raises(IdentityInUse) as refused:
        second.claim()
    assert isinstance(refused.value, CoordinatorError)
    text = str(refused.value)
    row = holder.read()
    assert row is not None
    assert "host box-1" in text and "pid 111" in text
    assert f"last heartbeat {row.heartbeat_at.isoformat()}" in text
    assert "INSTANCE_LIVENESS=5 s" in text
    assert row.incarnation == holder.incarnation, "the holder keeps it"


def test_a_stale_identity_is_taken_over_and_its_holder_named(dsn):
    instance = name()
    dead = registry(dsn, instance, pid=111)
    dead.claim()
    age(dsn, instance, 6)
    taker = registry(dsn, instance, pid=222, host="host-b")
    earlier = taker.claim()
    assert earlier is not None and earlier.pid == 111 and earlier.stopped_at is None
    assert earlier.incarnation == dead.incarnation
    row = taker.read()
    assert row is not None
    assert (row.pid, row.host, row.incarnation) == (222, "host-b", taker.incarnation)


def test_with_the_database_in_the_data_dir_a_row_of_that_dir_is_a_dead_process(dsn):
    """The embedded database lives in the data directory whose lock the claimer holds:
    a row of this host and directory was left by a process that died (a kill -9), and a
    restart takes it at once. Another directory's row, or a shared database, waits."""
    instance = name()
    registry(dsn, instance, pid=111).claim()  # killed: its heartbeat is still young

    def claimer(pid: int, data_dir: str, embedded: bool) -> InstanceRegistry:
        return InstanceRegistry(
            dsn,
            instance=instance,
            host="host-a",
            pid=pid,
            data_dir=data_dir,
            liveness=5.0,
            database_in_data_dir=embedded,
        )

    with pytest.raises(IdentityInUse):
        claimer(222, "/data/111", embedded=False).claim()
    with pytest.raises(IdentityInUse):
        claimer(222, "/data/other", embedded=True).claim()
    restarted = claimer(222, "/data/111", embedded=True)
    earlier = restarted.claim()
    assert earlier is not None and earlier.pid == 111
    row = restarted.read()
    assert row is not None and row.incarnation == restarted.incarnation


def test_a_released_identity_is_free_at_once(dsn):
    instance = name()
    first = registry(dsn, instance, pid=111)
    first.claim()
    assert first.release() is True
    again = registry(dsn, instance, pid=222)
    earlier = again.claim()
    assert earlier is not None and earlier.stopped_at is not None
    assert first.release() is False, "the first no longer holds it"
    row = again.read()
    assert row is not None and row.stopped_at is None and row.pid == 222


def test_the_heartbeat_moves_and_finds_a_takeover(dsn):
    instance = name()
    ours = registry(dsn, instance, pid=111)
    ours.claim()
    before = ours.read()
    ours.heartbeat()
    after = ours.read()
    assert before is not None and after is not None and after.heartbeat_at > before.heartbeat_at
    # Paused past the liveness: someone else takes the identity over.
    age(dsn, instance, 60)
    registry(dsn, instance, pid=333, host="host-c").claim()
    twin = ours.twin()
    with pytest.raises(IdentityLost) as lost:
        twin.heartbeat()
    assert "host host-c" in str(lost.value) and "pid 333" in str(lost.value)
    assert ours.lost is lost.value, "a twin's loss is the original's"
    assert ours.release() is False


def claim_at_once(claimers: list[InstanceRegistry]) -> dict[int, Any]:
    """Each claimer's outcome (``won`` or the IdentityInUse), all let go at one moment."""
    start = threading.Barrier(len(claimers))
    results: dict[int, Any] = {}

    def claim(index: int, claimer: InstanceRegistry) -> None:
        start.wait()
        try:
            claimer.claim()
            results[index] = "won"
        except IdentityInUse as exc:
            results[index] = exc

    threads = [threading.Thread(target=claim, args=(i, c)) for i, c in enumerate(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_claims_at_once_exactly_one_wins(dsn):
    """Each round: several processes claim one identity at the same moment, each on its
    own connection; one holds it, the others are refused. Then the same over a stale
    row (a dead holder), where every claimer sees it as free."""
    for round_ in range(8):
        instance = name()
        if round_ % 2:
            registry(dsn, instance, pid=1).claim()
            age(dsn, instance, 60)
        claimers = [registry(dsn, instance, pid=1000 + i) for i in range(4)]
        for claimer in claimers:
            claimer._connection()  # connected before the start, so they claim together
        results = claim_at_once(claimers)
        winners = [i for i, result in results.items() if result == "won"]
        assert len(results) == len(claimers)
        assert len(winners) == 1, results
        row = claimers[winners[0]].read()
        assert row is not None and row.incarnation == claimers[winners[0]].incarnation
        for claimer in claimers:
            claimer.close()


def test_a_connection_marked_with_the_instance_stores_it_with_decisions_and_orders(dsn):
    signal = f"instance-mark-{uuid.uuid4().hex}"
    conn = psycopg2.connect(instance_dsn(dsn, "coord-x:1"))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO coordinator_decisions (signal_id, outcome, checks, decided_at,"
                " decided_by) VALUES (%s, 'rejected', '[]', now(), 'test')",
                (signal,),
            )
            cur.execute(
                "INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side,"
                " quantity, state, created_at, updated_at)"
                # Settled: no other test's coordinator takes it for one of its own.
                " VALUES (%s, %s, 'BTCUSDC', 'BUY', 1, 'rejected', now(), now())",
                (f"coord-{signal}", signal),
            )
    finally:
        conn.close()
    decided = sql(dsn, "SELECT instance FROM coordinator_decisions WHERE signal_id = %s", signal)
    ordered = sql(dsn, "SELECT instance FROM coordinator_orders WHERE signal_id = %s", signal)
    assert decided == [("coord-x:1",)] and ordered == [("coord-x:1",)]
    # An unmarked connection (a tool, an older coordinator) records none.
    plain = f"{signal}-plain"
    sql(
        dsn,
        "INSERT INTO coordinator_decisions (signal_id, outcome, checks, decided_at, decided_by)"
        " VALUES (%s, 'rejected', '[]', now(), 'test')",
        plain,
    )
    assert sql(dsn, "SELECT instance FROM coordinator_decisions WHERE signal_id = %s", plain) == [
        (None,)
    ]
