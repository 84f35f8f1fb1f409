"""The stop store's batch write on the real PostgreSQL: one statement for any number of
records, a key written twice in one batch taken once, and peak, stop and attempt never
lowered by a write that lands late."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2

from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.stop_store import StopStore


def record(key: str, *, peak: float, stop: float, attempt: int = 0, at: float = 1.0) -> dict:
    return {
        "position_key": key,
        "symbol": "BTCUSDC",
        "cycle_id": None,
        "entry_price": 100.0,
        "entry_time": 1_700_000_000.0,
        "quantity": 1.0,
        "rules": "stoploss+percent",
        "peak": peak,
        "stop": stop,
        "stop_rule": "percent",
        "state": "watching",
        "attempt": attempt,
        "failures": 0,
        "detail": f"at {at}",
        "watched_at": 1_700_000_000.0,
        "updated_at": 1_700_000_000.0 + at,
        "closed_at": None,
        "aliases": [],
    }


def test_a_batch_of_thousands_is_written_and_a_late_write_lowers_nothing(
    postgres: EmbeddedPostgres,
) -> None:
    store = StopStore(postgres.dsn, timeout=5.0)
    run = uuid.uuid4().hex[:8]
    keys = [f"T{run}-{n}@1@100" for n in range(3000)]
    try:
        store.write([record(k, peak=110.0, stop=104.5) for k in keys])
        # A key twice in a batch: the later record (its peak the higher, as in memory).
        store.write(
            [
                record(keys[0], peak=111.0, stop=105.0, attempt=1, at=2.0),
                record(keys[0], peak=112.0, stop=106.0, attempt=2, at=3.0),
            ]
        )
        # An older write landing late: peak, stop and attempt stay where they were.
        store.write([record(keys[1], peak=105.0, stop=99.0, at=0.5)])
        stored: dict[str, Any] = {r["position_key"]: r for r in store.stops(keys)}
        assert len(stored) == len(keys)
        assert (stored[keys[0]]["peak"], stored[keys[0]]["stop"]) == (112.0, 106.0)
        assert stored[keys[0]]["attempt"] == 2 and stored[keys[0]]["detail"] == "at 3.0"
        assert (stored[keys[1]]["peak"], stored[keys[1]]["stop"]) == (110.0, 104.5)
        assert all(stored[k]["peak"] == 110.0 for k in keys[2:])
    finally:
        store.close()


def test_recent_candles_are_read_with_or_without_a_timeframe_column(
    postgres: EmbeddedPostgres,
) -> None:
    """RootTrading's ``market_data`` has a timeframe; a table without one still gives its
    candles (the caller takes them at their open time); no table gives none."""
    name = "db_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(postgres.dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/" + name
    store = StopStore(dsn, timeout=5.0)
    try:
        assert store.recent_candles(["BTCUSDC"], 0.0) == []
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE market_data (time timestamptz, symbol text, close float8)")
            cur.execute(
                "INSERT INTO market_data VALUES (to_timestamp(1000), 'BTCUSDC', 1),"
                " (to_timestamp(2000), 'BTCUSDC', 2), (to_timestamp(3000), 'ETHUSDC', 3)"
            )
        conn.close()
        assert store.recent_candles(["BTCUSDC", "SOLUSDC"], 1500.0) == [
            ("BTCUSDC", None, 2_000_000, 2.0)
        ]
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("ALTER TABLE market_data ADD COLUMN timeframe text DEFAULT '1m'")
        conn.close()
        assert store.recent_candles(["BTCUSDC"], 0.0) == [
            ("BTCUSDC", "1m", 2_000_000, 2.0),
            ("BTCUSDC", "1m", 1_000_000, 1.0),
        ]
    finally:
        store.close()
