"""The stop store's batch write on the real PostgreSQL: one statement for any number of
records, a key written twice in one batch taken once, and peak, stop and attempt never
lowered by a write that lands late."""

from __future__ import annotations

import uuid
from typing import Any

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
