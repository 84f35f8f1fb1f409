"""Signal records as the StoreWriter writes them, for tests that fill the store with
signals received at given times."""

from __future__ import annotations

from typing import Any

from coordinator.infra.records import RecordKind


def received_records(times: dict[str, float]) -> list[dict[str, Any]]:
    """One signal record per id, received at its time (epoch seconds), with no content."""
    return [
        {
            "kind": RecordKind.SIGNAL,
            "signal_id": signal_id,
            "source": "pubsub",
            "received_at": at,
            "valid": False,
            "symbol": None,
            "side": None,
            "price": None,
            "signal_at": None,
            "strategy": None,
            "db_id": None,
            "stream_id": None,
            "payload": "{}",
        }
        for signal_id, at in times.items()
    ]
