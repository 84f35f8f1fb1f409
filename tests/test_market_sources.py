"""The bid/ask and market-cap sources read from a real Redis and a file: fresh entries
used, stale ones unknown, malformed ones unknown and named."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coordinator.infra.universe_store import MarketSources


@pytest.fixture
def keys(redis_server) -> Iterator[tuple[redis.Redis, str, str]]:
    client = redis.Redis.from_url(redis_server.url)
    book, cap = f"book:{uuid.uuid4().hex}", f"cap:{uuid.uuid4().hex}"
    yield client, book, cap
    client.delete(book, cap)
    client.close()


def sources(redis_server, book: str, cap: str, cap_file: Path | None = None) -> MarketSources:
    return MarketSources(redis_server.url, book_key=book, cap_key=cap, cap_file=cap_file)


def test_spreads_fresh_stale_and_malformed(redis_server, keys):
    client, book, cap = keys
    now = time.time()
    client.hset(
        book,
        mapping={
            "btcusdc": json.dumps({"bid": 99.0, "ask": 101.0, "time": now * 1000}),
            "ETHUSDC": json.dumps({"bid": 99.0, "ask": 101.0, "time": (now - 400) * 1000}),
            "SOLUSDC": "not json",
            "XRPUSDC": json.dumps({"bid": 2.0, "ask": 1.0, "time": now * 1000}),
            "ADAUSDC": json.dumps([1, 2]),
        },
    )
    source = sources(redis_server, book, cap)
    try:
        spreads, problem = source.spreads(now, 300.0)
    finally:
        source.close()
    assert spreads == {"BTCUSDC": pytest.approx(2.0)}
    assert (
        problem == f"3 malformed entries of bid/ask in {book} (unknown): ADAUSDC, SOLUSDC, XRPUSDC"
    )


def test_market_caps_from_the_hash_and_the_file(redis_server, keys, tmp_path):
    client, book, cap = keys
    client.hset(cap, mapping={"BTC": "1.3e12", "SOL": "8e10", "DOGE": "lots"})
    cap_file = tmp_path / "caps.json"
    cap_file.write_text(json.dumps({"SOL": 9e10, "adausdc": 2e10, "LTC": -1}))
    source = sources(redis_server, book, cap, cap_file)
    try:
        caps, problem = source.market_caps()
    finally:
        source.close()
    # The file wins for a name in both.
    assert caps == {"BTC": 1.3e12, "SOL": 9e10, "ADAUSDC": 2e10}
    assert problem == (
        f"1 malformed entry of market caps in {cap} (unknown): DOGE; "
        f"1 malformed entry of market caps in {cap_file} (unknown): LTC"
    )


def test_an_unreadable_cap_file_is_named_and_the_hash_still_used(redis_server, keys, tmp_path):
    client, book, cap = keys
    client.hset(cap, "BTC", "1e12")
    cap_file = tmp_path / "caps.json"
    cap_file.write_text("[1, 2]")
    source = sources(redis_server, book, cap, cap_file)
    try:
        caps, problem = source.market_caps()
    finally:
        source.close()
    assert caps == {"BTC": 1e12}
    assert problem == f"market cap file {cap_file} unreadable: expected a JSON object"


def test_redis_unreachable_is_an_error_not_a_crash(tmp_path):
    source = MarketSources("redis://127.0.0.1:1/0", book_key="b", cap_key="c", cap_file=None)
    try:
        spreads, spread_problem = source.spreads(time.time(), 300.0)
        caps, cap_problem = source.market_caps()
    finally:
        source.close()
    assert spreads == {} and caps == {}
    assert spread_problem.startswith("bid/ask unreadable:")
    assert cap_problem.startswith("market caps unreadable from Redis:")
