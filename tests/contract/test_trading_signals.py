"""RootTrading's ``trading_signals`` rows (``rt-contract/trading_signals``), inserted as
the aggregator writes them into a table made like its schema, and read back by the real
catch-up at start: the consensus row is taken in as the signal published on Redis
(``signals/buy_consensus.json``), each constituent row is left alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest

from coordinator.messages.pipeline import GetIntakeSnapshot
from coordinator.trading.signal_rows import RowKind, lift_row
from tests.contract.fixtures import contract_files, load_json, needs_contract
from tests.test_trading_signals_rows import (
    RT_TRADING_SIGNALS,
    fresh_database,
    insert_row,
    processed,
)
from tests.waiting import wait_for

pytestmark = needs_contract

ROWS = [p for p in contract_files("trading_signals") if p.name != "columns.json"]
CONSENSUS_ID = 48213


def rows_now() -> list[dict[str, Any]]:
    """Every row file, moved in time so the consensus is fresh (nothing else changed)."""
    rows = [load_json(f"trading_signals/{p.name}") for p in ROWS]
    consensus = next(r for r in rows if r["id"] == CONSENSUS_ID)
    shift = datetime.now(UTC).replace(tzinfo=None) - datetime.fromisoformat(consensus["timestamp"])
    for row in rows:
        for column in ("timestamp", "created_at"):
            row[column] = (datetime.fromisoformat(row[column]) + shift).isoformat()
    return rows


def published_now() -> dict[str, Any]:
    """``signals/buy_consensus.json`` as published now."""
    signal = load_json("signals/buy_consensus.json")
    signal["timestamp"] = datetime.now(UTC).isoformat()
    return signal


def test_the_files_are_there():
    assert {p.name for p in ROWS} >= {"consensus_row.json", "constituent_row_48207.json"}


def test_the_table_made_for_the_tests_is_roottradings(postgres):
    dsn = fresh_database(postgres.dsn)
    columns = load_json("trading_signals/columns.json")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'trading_signals' ORDER BY ordinal_position"
        )
        assert [r[0] for r in cur.fetchall()] == [c["name"] for c in columns["columns"]]


@pytest.mark.parametrize("path", ROWS, ids=[p.stem for p in ROWS])
def test_each_row_is_told_apart_and_the_consensus_lifted(path):
    row = load_json(f"trading_signals/{path.name}")
    lifted = lift_row(row)
    if row["strategy"] == "CONSENSUS":
        signal = load_json("signals/buy_consensus.json")
        assert lifted.kind is RowKind.CONSENSUS
        assert lifted.payload is not None
        assert lifted.payload["metadata"] == signal["metadata"]
        assert lifted.signal_id == f"db:{signal['metadata']['db_id']}"
    else:
        assert lifted.kind is RowKind.CONSTITUENT
        assert lifted.payload is None


def test_every_row_through_the_catch_up_at_start(pipelines, postgres):
    dsn = fresh_database(postgres.dsn)
    for row in rows_now():
        insert_row(dsn, row)
    pipe = pipelines(database_dsn=dsn, wait_active=False)

    record = pipe.decision(f"db:{CONSENSUS_ID}")
    assert record["signal"]["source"] == "database"
    stored = record["signal"]["payload"]
    signal = load_json("signals/buy_consensus.json")
    # The metadata as Redis carried it, db_id included (= the row id).
    assert stored["metadata"] == signal["metadata"]
    for field in ("strategy", "symbol", "side", "price"):
        assert stored[field] == signal[field], field
    # DECIMAL(5,2) keeps two places of the confidence.
    assert stored["confidence"] == pytest.approx(signal["confidence"], abs=0.005)

    wait_for(
        lambda: processed(dsn)[CONSENSUS_ID],
        message="the consensus row marked processed",
    )
    constituents = {r["id"] for r in rows_now() if r["strategy"] != "CONSENSUS"}
    assert constituents
    assert {i: processed(dsn)[i] for i in constituents} == dict.fromkeys(constituents, False)
    for row_id in constituents:
        assert pipe.stored(f"db:{row_id}") is None
    # Not read as signals at all: only the consensus was received. (It may have been
    # read twice: again when the subscription connected after the election's read.)
    counts = intake_snapshot(pipe)
    assert (counts.admitted, counts.rejected) == (1, 0)
    assert counts.received == 1 + counts.duplicates


def intake_snapshot(pipe: Any) -> Any:
    return pipe.directory.ask("signal_intake", GetIntakeSnapshot(), timeout=5)


def orders_of(dsn: str, signal_id: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM coordinator_orders WHERE signal_id = %s", (signal_id,))
        return cur.fetchone()[0]


def test_a_consensus_from_redis_then_in_the_table_is_decided_once(pipelines, postgres):
    # The table appears after the signal came by Redis: nothing marked the row then.
    dsn = fresh_database(postgres.dsn, rt_table=False)
    first = pipelines(database_dsn=dsn)
    first.paper.set_price("SOLUSDC", 199.87)
    first.publish(published_now())
    decided = first.decision(f"db:{CONSENSUS_ID}")
    first.stop()

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(RT_TRADING_SIGNALS)
    for row in rows_now():
        insert_row(dsn, row)
    second = pipelines(database_dsn=dsn, wait_active=False)
    # Marked at start as the row of a decided signal, so not even read again.
    wait_for(lambda: processed(dsn)[CONSENSUS_ID], message="the decided consensus row marked")
    again = second.decision(f"db:{CONSENSUS_ID}")
    assert again["decision"] == decided["decision"]
    assert again["signal"]["source"] == "pubsub"
    assert orders_of(dsn, f"db:{CONSENSUS_ID}") <= 1
    assert second.paper.stats()["fills_by_client_order_id"] == {}
    assert intake_snapshot(second).received == 0
    assert not any(processed(dsn)[r["id"]] for r in rows_now() if r["strategy"] != "CONSENSUS")


def test_a_consensus_taken_from_the_table_then_by_redis_is_decided_once(pipelines, postgres):
    dsn = fresh_database(postgres.dsn)
    for row in rows_now():
        insert_row(dsn, row)
    pipe = pipelines(database_dsn=dsn, wait_active=False)
    decided = pipe.decision(f"db:{CONSENSUS_ID}")
    assert decided["signal"]["source"] == "database"
    pipe.publish(published_now())
    wait_for(
        lambda: intake_snapshot(pipe).duplicates >= 1,
        message="the published signal recognised as the row decided",
    )
    assert pipe.decision(f"db:{CONSENSUS_ID}")["decision"] == decided["decision"]
    assert orders_of(dsn, f"db:{CONSENSUS_ID}") <= 1
