"""RootTrading's signals (``signals/``), each published on the signals channel to a real
Redis and decided by a whole coordinator: parsed as they are (their 2025 timestamps make
them stale), taken in when current, a wave of 100 constituents (over 100 KB) included,
and held to ``MAX_SIGNAL_BYTES``."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.trading.signals import Signal, parse_signal
from tests.contract.fixtures import contract_files, load_json, load_raw, needs_contract

pytestmark = needs_contract

LARGE = "signals/buy_consensus_large_40_constituents.json"


def names() -> list[str]:
    return [p.name for p in contract_files("signals")]


def expected_id(body: dict[str, Any]) -> str:
    metadata = body["metadata"]
    if "db_id" in metadata:
        return f"db:{metadata['db_id']}"
    return f"consensus:{metadata['consensus_id']}"


def current(body: dict[str, Any], tag: str) -> bytes:
    """The same signal emitted now, under ids of its own."""
    moved = json.loads(json.dumps(body))
    moved["timestamp"] = datetime.now(UTC).isoformat()
    metadata = moved["metadata"]
    metadata["consensus_id"] = f"{metadata['consensus_id']}-{tag}"
    if "db_id" in metadata:
        metadata["db_id"] = metadata["db_id"] + 10_000_000
    return json.dumps(moved).encode()


@pytest.mark.parametrize("name", names())
def test_every_signal_parses_to_what_it_says(name: str):
    body = load_json(f"signals/{name}")
    signal = parse_signal(load_raw(f"signals/{name}"))
    assert isinstance(signal, Signal), signal.describe()
    assert (signal.symbol, signal.side.value, signal.price) == (
        body["symbol"],
        body["side"],
        body["price"],
    )
    assert signal.signal_id == expected_id(body)
    assert signal.strategies_count == body["metadata"]["strategies_count"]
    stored = json.loads(signal.payload)
    assert stored["metadata"]["original_signals"] == body["metadata"]["original_signals"]


def test_every_signal_is_published_and_decided(pipelines, own_postgres):
    pipe = pipelines(database_dsn=own_postgres.dsn)
    bodies = {name: load_json(f"signals/{name}") for name in names()}
    for name in bodies:
        pipe.publish(load_raw(f"signals/{name}"))
    for name, body in bodies.items():
        record = pipe.decision(expected_id(body))
        assert record["signal"]["valid"] is True, (name, record)
        assert record["decision"]["reason"] == "stale_signal", (name, record["decision"])

    for body in bodies.values():
        pipe.publish(current(body, "now"))
    for name, body in bodies.items():
        moved = json.loads(current(body, "now"))
        record = pipe.decision(expected_id(moved))
        assert record["signal"]["valid"] is True, (name, record)
        reason = record["decision"]["reason"]
        assert reason not in ("invalid_signal", "stale_signal", "duplicate_signal"), (name, reason)


def test_a_wave_of_100_constituents_is_taken_in(pipelines, own_postgres):
    pipe = pipelines(database_dsn=own_postgres.dsn)
    body = load_json(LARGE)
    constituents = body["metadata"]["original_signals"]
    wave = json.loads(json.dumps(body))
    wave["metadata"]["original_signals"] = [constituents[i % len(constituents)] for i in range(100)]
    wave["metadata"]["strategies_count"] = 100
    data = current(wave, "wave")
    assert len(data) > 100_000
    pipe.publish(data)
    record = pipe.decision(expected_id(json.loads(data)))
    assert record["signal"]["valid"] is True
    assert record["decision"]["reason"] not in ("invalid_signal", "stale_signal")
    assert len(record["signal"]["payload"]["metadata"]["original_signals"]) == 100


def test_over_max_signal_bytes_is_refused_naming_size_and_limit(pipelines, own_postgres):
    pipe = pipelines({"MAX_SIGNAL_BYTES": "32768"}, database_dsn=own_postgres.dsn)
    data = load_raw(LARGE)
    pipe.publish(data)
    record = pipe.decision("raw:" + hashlib.sha256(data).hexdigest())
    assert record["decision"]["reason"] == "invalid_signal"
    assert f"{len(data)} bytes is over the limit of 32768 bytes" in record["decision"]["detail"]
