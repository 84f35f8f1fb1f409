"""The stop store's batch write on the real PostgreSQL: one statement for any number of
records, a key written twice in one batch taken once, peak, stop and attempt never
lowered by a write that lands late, and every field stored as a row-by-row INSERT
stores it."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.stop_store import STOP_FIELDS, StopStore


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


# Text PostgreSQL holds (no NUL, no lone surrogate): quotes, backslashes, newlines,
# accents and emoji (the batch then goes as VALUES) among the rest.
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["", "it's", 'a "b"', "back\\slash", "line\nnext", "é😀", "\\u0000"])
EPOCH = st.floats(min_value=0, max_value=4e9, allow_nan=False)
NUMBER = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e6, 1e6)
COUNT = st.integers(0, 2**31 - 1)
RECORD = st.fixed_dictionaries(
    {
        "symbol": TEXT,
        "cycle_id": st.none() | TEXT,
        "entry_price": NUMBER,
        "entry_time": st.none() | EPOCH,
        "quantity": NUMBER,
        "rules": TEXT,
        "peak": NUMBER,
        "stop": NUMBER,
        "stop_rule": TEXT,
        "state": TEXT,
        "attempt": COUNT,
        "failures": COUNT,
        "detail": TEXT,
        "watched_at": EPOCH,
        "updated_at": EPOCH,
        "closed_at": st.none() | EPOCH,
        "aliases": st.lists(TEXT, max_size=2),
    }
)
_TIMES = ("entry_time", "watched_at", "updated_at", "closed_at")


def _stored(cur: Any, keys: list[str]) -> list[tuple[Any, ...]]:
    columns = ", ".join(
        f"extract(epoch FROM {f})::float8" if f in _TIMES else f for f in STOP_FIELDS
    )
    cur.execute(
        f"SELECT {columns} FROM coordinator_stops WHERE position_key = ANY(%s)"
        " ORDER BY position_key",
        (keys,),
    )
    return [row[1:] for row in cur.fetchall()]  # without the key


def _same(written: Any, reference: Any, field: str) -> bool:
    if written == reference:
        return True
    if isinstance(written, float) and isinstance(reference, float):
        if math.isnan(written) or math.isnan(reference):
            return math.isnan(written) and math.isnan(reference)
        # A time is kept to the microsecond, rounded on either side of the wire.
        return abs(written - reference) <= (1.5e-6 if field in _TIMES else 0.0)
    return False


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(RECORD, min_size=1, max_size=4))
def test_every_field_is_stored_as_a_row_by_row_insert_stores_it(
    postgres: EmbeddedPostgres, records: list[dict[str, Any]]
) -> None:
    """Written in one batch, each record's row is what an INSERT of that record alone
    (its times as datetimes, psycopg2 quoting each field) stores."""
    run = uuid.uuid4().hex[:8]
    ours = [f"B{run}-{n}" for n in range(len(records))]
    theirs = [f"R{run}-{n}" for n in range(len(records))]
    store = StopStore(postgres.dsn, timeout=5.0)
    try:
        store.write([{**r, "position_key": k} for r, k in zip(records, ours, strict=True)])
    finally:
        store.close()
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        for record, key in zip(records, theirs, strict=True):
            values = [
                key
                if f == "position_key"
                else (
                    None
                    if record[f] is None
                    else datetime.fromtimestamp(record[f], UTC)
                    if f in _TIMES
                    else record[f]
                )
                for f in STOP_FIELDS
            ]
            cur.execute(
                f"INSERT INTO coordinator_stops ({', '.join(STOP_FIELDS)})"
                f" VALUES ({', '.join(['%s'] * len(STOP_FIELDS))})",
                values,
            )
        written, reference = _stored(cur, ours), _stored(cur, theirs)
    conn.close()
    fields = STOP_FIELDS[1:]
    for row, expected in zip(written, reference, strict=True):
        differ = [
            (f, a, b) for a, b, f in zip(row, expected, fields, strict=True) if not _same(a, b, f)
        ]
        assert differ == []


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
