"""Who reconciles which unknown order in cluster mode, on a real PostgreSQL, for any mix
of instances (live, stopped, silent past the liveness) and orders (held after a 5xx or
not, of any instance or of none): the leader's selection and each live follower's
selection of its own held orders split the unknown orders exactly, each reconciled by one
instance, and a live instance's held order by that instance alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.order_states import HELD_MARK, OrderStates
from coordinator.infra.store import apply_migrations

LIVENESS = 5.0
LEADER = "leader"
PEERS = ("peer-a", "peer-b", "peer-c")
STATUSES = ("live", "stopped", "silent")

orders = st.lists(
    st.tuples(st.sampled_from((LEADER, *PEERS, None)), st.booleans(), st.booleans()),
    max_size=12,
)
"""(instance that stored it, held after a 5xx, settled already)."""


@pytest.fixture(scope="module")
def dsn(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A database of this module's own on the session's server."""
    name = "scope_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(postgres.dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    url = postgres.dsn.rsplit("/", 1)[0] + "/" + name
    apply_migrations(url)
    yield url


def lay_out(dsn: str, statuses: dict[str, str], rows: list[tuple[str | None, bool, bool]]) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE coordinator_orders, coordinator_instances")
        for instance, status in {LEADER: "live", **statuses}.items():
            cur.execute(
                """INSERT INTO coordinator_instances (instance, host, pid, data_dir,
                       incarnation, started_at, heartbeat_at, stopped_at, mode)
                   VALUES (%s, 'h', 1, '/d', gen_random_uuid(), now(),
                           CASE WHEN %s THEN clock_timestamp() - interval '1 hour'
                                ELSE clock_timestamp() END,
                           CASE WHEN %s THEN now() END, 'cluster')""",
                (instance, status == "silent", status == "stopped"),
            )
        for number, (instance, held, settled) in enumerate(rows):
            cur.execute(
                """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side,
                       quantity, reference_price, state, error, created_at, updated_at,
                       instance)
                   VALUES (%s, %s, 'BTCUSDC', 'BUY', 0.01, 50000, %s, %s, now(), now(), %s)""",
                (
                    f"o-{number}",
                    f"s-{number}",
                    "accepted" if settled else "unknown",
                    f"{HELD_MARK}500" if held else "timed out",
                    instance,
                ),
            )
    conn.close()


@settings(max_examples=40, deadline=None)
@given(statuses=st.fixed_dictionaries({p: st.sampled_from(STATUSES) for p in PEERS}), rows=orders)
def test_every_unknown_order_is_reconciled_by_exactly_one_instance(
    dsn: str, statuses: dict[str, str], rows: list[tuple[str | None, bool, bool]]
) -> None:
    lay_out(dsn, statuses, rows)
    store = OrderStates(dsn, timeout=5.0)
    try:
        by: dict[str, list[str]] = {}
        for order in store.unknown_but_held_elsewhere(LEADER, LIVENESS):
            by.setdefault(order.client_order_id, []).append(LEADER)
        for peer in (p for p in PEERS if statuses[p] == "live"):
            for order in store.held_by(peer):
                by.setdefault(order.client_order_id, []).append(peer)
    finally:
        store.close()
    expected = {}
    for number, (instance, held, settled) in enumerate(rows):
        if settled:
            continue
        live_peer = instance in PEERS and statuses[instance] == "live"
        expected[f"o-{number}"] = [instance if held and live_peer else LEADER]
    assert by == expected
