"""RootTrading's ``trading_signals`` table: consensus rows lifted back into the signal
published, constituents left alone, and ``processed`` set for every decided signal that
names a row, whichever way it came in."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.soak_stack import TRADING_SIGNALS
from coordinator.actors.intake_catch_up import trading_signal_payload
from coordinator.infra import trading_signals as table_module
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.store import apply_migrations
from coordinator.trading.signal_rows import RowKind, db_id_of, lift_row
from coordinator.trading.signals import Signal, parse_signal
from tests.pipeline import signal_payload
from tests.waiting import wait_for

# RootTrading's database/schema.sql:300-316, as the aggregator's database has it (the
# soak makes it too).
RT_TRADING_SIGNALS = TRADING_SIGNALS


def fresh_database(server_dsn: str, *, rt_table: bool = True) -> str:
    """A database of its own on the session's server, migrated, with RootTrading's table."""
    name = "ts_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(server_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    dsn = server_dsn.rsplit("/", 1)[0] + "/" + name
    apply_migrations(dsn)
    if rt_table:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(RT_TRADING_SIGNALS)
    return dsn


def insert_row(dsn: str, row: dict[str, Any]) -> int:
    """One row as psycopg2 returns it (the contract's files), inserted as it is."""
    columns = [c for c in row if row[c] is not None or c == "metadata"]
    values = [json.dumps(row[c]) if c == "metadata" else row[c] for c in columns]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        names = ", ".join(f'"{c}"' for c in columns)
        cur.execute(
            f"INSERT INTO trading_signals ({names})"
            f" VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id",
            values,
        )
        return cur.fetchone()[0]


def processed(dsn: str) -> dict[int, bool]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, processed FROM trading_signals ORDER BY id")
        return dict(cur.fetchall())


def utc_naive(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).replace(tzinfo=None).isoformat()


def consensus_row(
    row_id: int, published: dict[str, Any], *, moment: float | None = None
) -> dict[str, Any]:
    """The consensus row the aggregator writes for ``published`` (without db_id)."""
    moment = time.time() if moment is None else moment
    inner = {k: v for k, v in published["metadata"].items() if k != "db_id"}
    return {
        "id": row_id,
        "strategy": "CONSENSUS",
        "symbol": published["symbol"],
        "side": published["side"],
        "timestamp": utc_naive(moment),
        "confidence": f"{published['confidence']:.2f}",
        "price": f"{published['price']:.8f}",
        "metadata": {"original_metadata": inner},
        "processed": False,
        "created_at": utc_naive(moment + 0.001),
    }


def constituent_row(row_id: int, consensus: dict[str, Any], strategy: str) -> dict[str, Any]:
    """A strategy's signal the aggregator stores beside its consensus."""
    return {
        **consensus,
        "id": row_id,
        "strategy": strategy,
        "confidence": "0.73",
        "metadata": {
            "original_metadata": {
                "timeframe": "3m",
                "original_metadata": {"strategy": strategy, "ema_12": "200.12"},
                "part_of_consensus": True,
                "consensus_id": consensus["metadata"]["original_metadata"].get("consensus_id"),
                "signal_hash": "ad0359b9",
                "market_regime": "TRENDING_BULL",
            }
        },
    }


# --- lifting a row (pure) --------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
metadata_dicts = st.dictionaries(
    st.text(max_size=12).filter(lambda k: k not in ("db_id", "part_of_consensus")),
    json_value,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(inner=metadata_dicts, row_id=st.integers(1, 2**31 - 1))
def test_a_consensus_row_lifts_back_to_the_published_metadata(inner, row_id):
    row = {
        "id": row_id,
        "strategy": "CONSENSUS",
        "symbol": "SOLUSDC",
        "side": "BUY",
        "metadata": {"original_metadata": inner},
    }
    lifted = lift_row(row)
    assert lifted.kind is RowKind.CONSENSUS
    assert lifted.signal_id == f"db:{row_id}"
    assert lifted.payload is not None
    assert lifted.payload["metadata"] == {**inner, "db_id": row_id}
    assert "id" not in lifted.payload and "processed" not in lifted.payload


@settings(max_examples=200, deadline=None)
@given(
    inner=metadata_dicts,
    strategy=st.text(min_size=1, max_size=20),
    marked=st.booleans(),
)
def test_a_constituent_row_is_never_a_signal(inner, strategy, marked):
    if marked:
        inner = {**inner, "part_of_consensus": True}
    elif strategy == "CONSENSUS":
        strategy = "EMA_Cross_Strategy"
    row = {"id": 7, "strategy": strategy, "metadata": {"original_metadata": inner}}
    lifted = lift_row(row)
    assert lifted.kind is RowKind.CONSTITUENT
    assert lifted.payload is None
    assert not isinstance(trading_signal_payload(row), bytes)


def test_the_lifted_row_parses_as_the_published_signal():
    published = signal_payload("SOLUSDC")
    published["metadata"]["db_id"] = 48213
    row = consensus_row(48213, published, moment=published["timestamp"] / 1000)
    # psycopg2 gives DECIMAL as Decimal and TIMESTAMP as naive datetimes.
    from decimal import Decimal

    row["confidence"] = Decimal(row["confidence"])
    row["price"] = Decimal(row["price"])
    row["timestamp"] = datetime.fromisoformat(row["timestamp"])
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    data = trading_signal_payload(row)
    assert isinstance(data, bytes)
    from_row = parse_signal(data)
    from_redis = parse_signal(json.dumps(published))
    assert isinstance(from_row, Signal) and isinstance(from_redis, Signal)
    assert from_row.signal_id == from_redis.signal_id == "db:48213"
    assert json.loads(from_row.payload)["metadata"] == published["metadata"]
    for field in ("symbol", "side", "strategy", "price", "consensus_strength", "db_id"):
        assert getattr(from_row, field) == getattr(from_redis, field), field
    assert from_row.timestamp == pytest.approx(from_redis.timestamp, abs=1e-3)


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ("{not json", "trading_signals.metadata"),
        ([1, 2], "trading_signals.metadata"),
        ({"original_metadata": "text"}, "trading_signals.metadata.original_metadata"),
        ({"original_metadata": None}, "trading_signals.metadata.original_metadata"),
    ],
)
def test_a_row_that_cannot_be_lifted_is_invalid_naming_why(metadata, field):
    row = {"id": 12, "strategy": "CONSENSUS", "metadata": metadata}
    lifted = lift_row(row)
    assert lifted.kind is RowKind.INVALID
    assert lifted.signal_id == "db:12"
    assert lifted.errors[0].field == field
    assert field in lifted.describe()


def test_a_lifted_row_the_parser_refuses_is_invalid_under_the_row_id():
    # The aggregator publishes price 0.0 when it has no candle.
    row = {
        "id": 13,
        "strategy": "CONSENSUS",
        "symbol": "SOLUSDC",
        "side": "BUY",
        "timestamp": datetime.now(UTC).replace(tzinfo=None),
        "price": 0,
        "confidence": 0.6,
        "metadata": {"original_metadata": {"type": "CONSENSUS"}},
    }
    answer = trading_signal_payload(row)
    assert not isinstance(answer, bytes)
    assert answer.kind is RowKind.INVALID and answer.signal_id == "db:13"
    assert "price" in answer.describe()


def test_db_id_of_a_signal_id():
    assert db_id_of("db:48213") == "48213"
    assert db_id_of("consensus:abc") is None
    assert db_id_of("sha256:00") is None
    assert db_id_of("db:") is None


# --- the table in PostgreSQL -----------------------------------------------------------


@pytest.fixture
def rt_db(postgres) -> Iterator[str]:
    yield fresh_database(postgres.dsn)


def decision_record(signal_id: str) -> dict[str, Any]:
    return {
        "kind": "decision",
        "signal_id": signal_id,
        "symbol": "SOLUSDC",
        "side": "BUY",
        "outcome": "rejected",
        "reason": "stale_signal",
        "detail": "test",
        "checks": [],
        "quantity": None,
        "decided_at": time.time(),
        "decided_by": "test",
    }


def test_the_query_reads_fresh_unprocessed_consensus_rows_only(rt_db):
    published = signal_payload("SOLUSDC")
    now = time.time()
    fresh = consensus_row(101, published)
    insert_row(rt_db, fresh)
    for offset, strategy in enumerate(("EMA_Cross_Strategy", "MACD_Crossover_Strategy")):
        insert_row(rt_db, constituent_row(95 + offset, fresh, strategy))
    insert_row(rt_db, {**consensus_row(102, signal_payload("ETHUSDC"), moment=now - 600)})
    insert_row(rt_db, {**consensus_row(103, signal_payload("XRPUSDC")), "processed": True})
    store = PipelineStore(rt_db, timeout=5)
    try:
        rows = store.pending_trading_signals(now - 30)
    finally:
        store.close()
    assert [row["id"] for row in rows] == [101]


def test_processed_is_set_with_the_decisions_and_unknown_ids_are_harmless(rt_db):
    published = signal_payload("SOLUSDC")
    consensus = consensus_row(201, published)
    insert_row(rt_db, consensus)
    insert_row(rt_db, constituent_row(200, consensus, "EMA_Cross_Strategy"))
    store = PipelineStore(rt_db, timeout=5)
    try:
        store.write(
            [
                decision_record("db:201"),
                {"kind": "processed", "db_id": "201"},
                # A constituent's id, as a signal sent by hand could carry it.
                {"kind": "processed", "db_id": "200"},
                {"kind": "processed", "db_id": "999999"},
                {"kind": "processed", "db_id": "not-a-row"},
                {"kind": "processed", "db_id": str(2**70)},
            ]
        )
    finally:
        store.close()
    assert processed(rt_db) == {200: False, 201: True}
    with psycopg2.connect(rt_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT signal_id FROM coordinator_decisions")
        assert cur.fetchall() == [("db:201",)]


def test_without_the_table_the_marks_are_dropped_with_one_info_line(postgres, caplog):
    dsn = fresh_database(postgres.dsn, rt_table=False)
    table_module._said_absent.clear()
    store = PipelineStore(dsn, timeout=5)
    caplog.set_level(logging.INFO, logger=table_module.__name__)
    try:
        for n in range(3):
            store.write([decision_record(f"db:{n}"), {"kind": "processed", "db_id": str(n)}])
        assert store.pending_trading_signals(time.time() - 30) == []
    finally:
        store.close()
    lines = [r for r in caplog.records if r.name == table_module.__name__]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM coordinator_decisions")
        assert cur.fetchone()[0] == 3


def test_a_table_that_refuses_the_update_costs_no_decision(postgres):
    dsn = fresh_database(postgres.dsn, rt_table=False)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        # Not updatable (a join): PostgreSQL refuses the UPDATE itself.
        cur.execute(
            "CREATE VIEW trading_signals AS SELECT 1 AS id, false AS processed"
            " FROM generate_series(1, 1) a, generate_series(1, 1) b"
        )
    store = PipelineStore(dsn, timeout=5)
    try:
        store.write([decision_record("db:1"), {"kind": "processed", "db_id": "1"}])
    finally:
        store.close()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT signal_id FROM coordinator_decisions")
        assert cur.fetchall() == [("db:1",)]


# --- every way in marks its row ------------------------------------------------------


def test_every_decided_signal_naming_a_row_marks_it_processed(pipelines, rt_db):
    """Pub/sub, the stream and POST /signals, an order and rejections alike; a row no
    signal names, and the constituents, stay unprocessed."""
    payloads = {
        "pubsub": signal_payload("SOLUSDC"),
        "stream": signal_payload("ETHUSDC"),
        "http": signal_payload("XRPUSDC"),
        # Decided (rejected: stale) after a successful parse.
        "stale": signal_payload("BNBUSDC", timestamp_ms=int((time.time() - 3600) * 1000)),
        "no_row": signal_payload("ADAUSDC"),
    }
    # An hour old in the table: the catch-up at start leaves them to the other ways.
    hour_ago = time.time() - 3600
    row_ids = {}
    for n, (way, payload) in enumerate(payloads.items()):
        row_id = 300 + n
        payload["metadata"]["db_id"] = 999_999 if way == "no_row" else row_id
        if way != "no_row":
            insert_row(rt_db, consensus_row(row_id, payload, moment=hour_ago))
            row_ids[way] = row_id
    unnamed = consensus_row(310, signal_payload("LTCUSDC"), moment=hour_ago)
    insert_row(rt_db, unnamed)
    insert_row(rt_db, constituent_row(311, unnamed, "EMA_Cross_Strategy"))
    pipe = pipelines(database_dsn=rt_db)
    pipe.publish(payloads["pubsub"])
    pipe.add_to_stream(payloads["stream"])
    assert pipe.post(payloads["http"]).status_code in (200, 202)
    pipe.publish(payloads["stale"])
    pipe.publish(payloads["no_row"])
    for way, payload in payloads.items():
        record = pipe.decision(f"db:{payload['metadata']['db_id']}")
        assert record["signal"]["source"] == {"stream": "stream", "http": "http"}.get(way, "pubsub")
    assert pipe.decision("db:303")["decision"]["reason"] == "stale_signal"
    expected = {row_id: True for row_id in row_ids.values()} | {310: False, 311: False}
    wait_for(
        lambda: processed(rt_db) == expected,
        message="each row named by a decided signal marked, the others not",
    )


def test_a_signal_that_fails_parsing_marks_the_row_it_names(pipelines, rt_db):
    """Decided invalid under its row's id, not under the hash of its bytes: the row is
    marked processed, so a later read of the table (a reconnection, an election)
    does not take it in as a signal never decided."""
    payload = signal_payload("SOLUSDC")
    payload["metadata"]["db_id"] = 600
    # An hour old in the table: the catch-up at start leaves it to pub/sub.
    insert_row(rt_db, consensus_row(600, payload, moment=time.time() - 3600))
    pipe = pipelines(database_dsn=rt_db)
    pipe.publish({**payload, "side": "HOLD"})
    decision = pipe.decision("db:600")["decision"]
    assert (decision["outcome"], decision["reason"]) == ("rejected", "invalid_signal")
    assert "side" in decision["detail"]
    wait_for(lambda: processed(rt_db) == {600: True}, message="the row it names marked")


def test_marks_made_while_postgres_is_down_are_written_when_it_returns(pipelines, own_postgres):
    dsn = own_postgres.dsn
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(RT_TRADING_SIGNALS)
    payloads = [signal_payload(symbol) for symbol in ("SOLUSDC", "ETHUSDC", "XRPUSDC")]
    hour_ago = time.time() - 3600
    for row_id, payload in enumerate(payloads, start=400):
        payload["metadata"]["db_id"] = row_id
        insert_row(dsn, consensus_row(row_id, payload, moment=hour_ago))
    # Alone on its own database: a cluster decides nothing while PostgreSQL is down (no
    # partition can be held), a lone coordinator goes on with its journal.
    pipe = pipelines({"COORDINATOR_INSTANCES": "single"}, database_dsn=dsn)
    own_postgres.stop()
    for payload in payloads:
        pipe.publish(payload)
    wait_for(
        lambda: pipe.store_snapshot().journaled >= len(payloads),
        message="the decisions and their marks journaled while PostgreSQL is down",
    )
    own_postgres.start()
    wait_for(
        lambda: processed(dsn) == {400: True, 401: True, 402: True},
        timeout=30,
        message="every mark written once PostgreSQL is back",
    )


def test_a_row_that_cannot_be_lifted_is_decided_invalid_and_marked(pipelines, rt_db):
    broken = consensus_row(500, signal_payload("SOLUSDC"))
    broken["metadata"] = {"original_metadata": "not an object"}
    insert_row(rt_db, broken)
    # The aggregator publishes (and stores) price 0 when it has no candle.
    insert_row(rt_db, {**consensus_row(501, signal_payload("ETHUSDC")), "price": "0"})
    pipe = pipelines(database_dsn=rt_db, wait_active=False)
    for row_id, field in ((500, "trading_signals.metadata.original_metadata"), (501, "price")):
        decision = pipe.decision(f"db:{row_id}")["decision"]
        assert (decision["outcome"], decision["reason"]) == ("rejected", "invalid_signal")
        assert field in decision["detail"]
    wait_for(lambda: processed(rt_db) == {500: True, 501: True}, message="both rows marked")
