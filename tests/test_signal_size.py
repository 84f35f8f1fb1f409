"""A consensus carries its constituent signals (up to 100 a wave, well over 64 KiB):
taken in up to ``MAX_SIGNAL_BYTES`` (1 MiB by default) whichever way it comes; above
it, an invalid-signal decision naming the size and the limit, never a crash or a
silent drop."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import psycopg2
from psycopg2.extras import Json

from tests.aggregator_table import create_trading_signals
from tests.pipeline import signal_payload
from tests.waiting import wait_for


def constituent(index: int, symbol: str) -> dict[str, Any]:
    """One strategy signal as the aggregator keeps it inside a consensus."""
    return {
        "strategy": f"Strategy_Number_{index}_Reversal_Strategy",
        "symbol": symbol,
        "side": "BUY",
        "timestamp": "2025-10-27T14:03:12.118000+00:00",
        "price": 199.87,
        "confidence": 0.71,
        "strength": 0.7,
        "timeframe": "3m",
        "metadata": {
            "strategy": f"StrategyNumber{index}ReversalStrategy",
            "indicators": {f"indicator_{k}": f"{k * 1.3472:.4f}" for k in range(40)},
            "reason": "Z-Score extrême (-2.41) avec RSI survendu et volume confirmé " * 3,
            "wave_resolution": {"winner": True, "total_wave_signals": 100},
        },
        "analyzer_timestamp": "2025-10-27T14:03:12.118000+00:00",
        "received_at": "2025-10-27T14:03:12.301000+00:00",
    }


def big_consensus(symbol: str, constituents: int = 100) -> dict[str, Any]:
    payload = signal_payload(symbol)
    payload["metadata"]["original_signals"] = [constituent(i, symbol) for i in range(constituents)]
    return payload


def signal_id(payload: dict[str, Any]) -> str:
    return "consensus:" + payload["metadata"]["consensus_id"]


def test_a_consensus_of_100_constituents_is_taken_in_every_way(pipelines):
    pipe = pipelines()
    by_pubsub, by_stream, by_http = (big_consensus(s) for s in ("ETHUSDC", "SOLUSDC", "XRPUSDC"))
    assert len(json.dumps(by_pubsub)) > 100_000
    pipe.publish(by_pubsub)
    pipe.add_to_stream(by_stream)
    response = pipe.post(by_http)
    assert response.status_code == 202, response.text
    for payload, source in ((by_pubsub, "pubsub"), (by_stream, "stream"), (by_http, "http")):
        record = pipe.decision(signal_id(payload))
        assert record["signal"]["valid"] is True, record
        assert record["signal"]["source"] == source
        assert record["decision"]["reason"] != "invalid_signal", record["decision"]
        stored = record["signal"]["payload"]
        assert len(stored["metadata"]["original_signals"]) == 100, "stored whole"


def test_over_the_limit_is_an_invalid_signal_naming_size_and_limit_every_way(pipelines):
    pipe = pipelines({"MAX_SIGNAL_BYTES": "4096"})
    cases = {}
    for symbol, way in (("ETHUSDC", "pubsub"), ("SOLUSDC", "stream"), ("XRPUSDC", "http")):
        data = json.dumps(big_consensus(symbol, constituents=3)).encode()
        assert len(data) > 4096
        cases[way] = data
    pipe.publish(cases["pubsub"])
    pipe.add_to_stream(cases["stream"])
    response = pipe.post(cases["http"])
    assert response.status_code == 413, response.text
    assert f"{len(cases['http'])} bytes is over the limit of 4096 bytes" in response.text
    for way, data in cases.items():
        # Over the limit, no more than one byte past it is read from an HTTP body.
        read = data[:4097] if way == "http" else data
        record = pipe.decision("raw:" + hashlib.sha256(read).hexdigest())
        assert record["decision"]["reason"] == "invalid_signal"
        assert f"{len(data)} bytes is over the limit of 4096 bytes" in record["decision"]["detail"]
        assert record["signal"]["source"] == way
        assert record["signal"]["valid"] is False

    # Far over it, only the beginning is read; the record names the declared size.
    far = json.dumps(big_consensus("BNBUSDC", constituents=5)).encode()
    response = pipe.post(far)
    assert response.status_code == 413, response.text
    record = pipe.decision("raw:" + hashlib.sha256(far[:4097]).hexdigest())
    assert f"{len(far)} bytes is over the limit of 4096 bytes" in record["decision"]["detail"]

    # Within it, the next signal goes on as ever.
    small = signal_payload("LTCUSDC")
    pipe.publish(small)
    assert pipe.decision(signal_id(small))["decision"]["reason"] != "invalid_signal"


def test_trading_signals_rows_are_held_to_the_same_limit(pipelines, own_postgres):
    dsn = own_postgres.dsn
    create_trading_signals(dsn)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        ids = []
        for symbol, constituents in (("ETHUSDC", 2), ("SOLUSDC", 40)):
            metadata = big_consensus(symbol, constituents)["metadata"]
            metadata["consensus_id"] = uuid.uuid4().hex
            cur.execute(
                """INSERT INTO trading_signals (strategy, symbol, side, timestamp, price,
                        confidence, strength, metadata)
                   VALUES ('CONSENSUS', %s, 'BUY', now(), 2000.0, 0.8, 'strong', %s)
                   RETURNING id""",
                (symbol, Json(metadata)),
            )
            ids.append(cur.fetchone()[0])
    limit = 64 * 1024
    pipe = pipelines({"MAX_SIGNAL_BYTES": str(limit)}, database_dsn=dsn)

    assert pipe.decision(f"db:{ids[0]}")["signal"]["valid"] is True

    def refused() -> dict[str, Any] | None:
        return next(
            (
                d
                for d in pipe.decisions(outcome="rejected")
                if d["reason"] == "invalid_signal" and f"limit of {limit} bytes" in d["detail"]
            ),
            None,
        )

    decision = wait_for(refused, timeout=20, message="the 40-constituent row refused")
    assert "bytes is over the limit" in decision["detail"]
