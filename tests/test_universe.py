"""The UniverseManager in a whole coordinator: candles on Redis in, rotations, blacklist,
draining, restarts."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
import requests

from coordinator.messages.pipeline import StopLossRecorded
from tests.pipeline import (
    AUTH,
    PRICES,
    SYMBOLS,
    Pipeline,
    candle_json,
    market_channel,
    signal_payload,
)
from tests.test_pipeline import signal_id
from tests.waiting import wait_for

QUARTER = 900_000
# Volumes fall with the position in SYMBOLS: the ranking by volume is that order.
VOLUMES = {symbol: 10_000_000 / (index + 1) for index, symbol in enumerate(SYMBOLS)}
ENV = {
    "UNIVERSE_SIZE": "4",
    "CORE_PAIRS": "BTCUSDC",
    "MIN_VOLUME_24H": "1500000",
    "MIN_MARKET_CAP": "0",
    "VOLATILITY_RANGE": "0.0001-10",
    "CORRELATION_LIMIT": "0.99",
    "UNIVERSE_SCORE_WEIGHTS": "volume=1",
    "UNIVERSE_ENTRY_ROTATIONS": "1",
    "UNIVERSE_MIN_RESIDENCY": "0",
    "UNIVERSE_MAX_CHANGES": "10",
    "UNIVERSE_UPDATE_INTERVAL": "3600",
    # The candles here wander away from the signal prices of tests.pipeline.
    "MAX_PRICE_DEVIATION_PERCENT": "50",
}


def feed_candles(pipe: Pipeline, count: int = 100) -> None:
    """``count`` 15-minute candles per symbol, up to now, each on its own random walk."""
    newest = int(time.time() * 1000) // QUARTER * QUARTER
    for index, symbol in enumerate(SYMBOLS):
        walk = random.Random(index)
        price = PRICES[symbol]
        for step in range(count):
            price *= 1.0 + walk.gauss(0, 0.004)
            candle = candle_json(
                symbol,
                price,
                time_ms=newest - (count - 1 - step) * QUARTER,
                timeframe="15m",
                volume=VOLUMES[symbol] / 96 / price,
                closed=True,
            )
            pipe.redis.publish(market_channel(symbol, "15m"), candle)
    wait_for(
        lambda: universe(pipe)["symbols_with_data"] == len(SYMBOLS),
        message="candles of every symbol at the UniverseManager",
    )


def universe(pipe: Pipeline) -> dict[str, Any]:
    response = requests.get(pipe.url + "/universe", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(pipe: Pipeline) -> dict[str, Any]:
    response = requests.post(pipe.url + "/universe/refresh", headers=AUTH, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()


def decide(pipe: Pipeline, symbol: str, side: str = "BUY") -> dict[str, Any]:
    payload = signal_payload(symbol, side)
    pipe.publish(payload)
    return pipe.decision(signal_id(payload))["decision"]


@pytest.fixture
def pipe(own_postgres, pipelines) -> Pipeline:
    # A database of its own: the universe is restored from it, and must start empty.
    pipeline = pipelines(ENV, database_dsn=own_postgres.dsn)
    feed_candles(pipeline)
    return pipeline


def test_rotation_selects_from_market_data_and_explains_every_verdict(pipe):
    initial = universe(pipe)
    assert initial["last_reason"] == "initial"

    body = refresh(pipe)

    # BTC is a core pair; then the best by volume; SOLUSDC... below 1.5 M are out.
    assert body["selected_symbols"] == sorted(["BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC"])
    assert body["selected_count"] == 4
    assert body["core_pairs"] == ["BTCUSDC"]
    assert body["last_update"] and body["next_update"]
    excluded = body["excluded"]
    for symbol in ("DOGEUSDC", "LTCUSDC"):
        assert excluded[symbol].startswith("volume: 24 h volume"), excluded
    assert excluded["BNBUSDC"] == "correlation: rank 5: the walk had its 4 before reaching it"
    assert set(body["scores"]) >= {"ETHUSDC", "SOLUSDC", "XRPUSDC"}
    assert body["filters"][0].startswith("volume: ")

    ttl = pipe.redis.ttl("universe:selected")
    assert ttl > 3600, "the key outlives the rotation interval"
    assert json.loads(pipe.redis.get("universe:selected")) == body["selected_symbols"]
    history = requests.get(pipe.url + "/universe/history?limit=5", timeout=5).json()
    assert history["count"] == 1
    assert history["rotations"][0]["selected"] == body["selected_symbols"]

    # The Validators follow: a BUY outside the universe is refused, inside accepted.
    assert decide(pipe, "LTCUSDC")["reason"] == "not_in_universe"
    assert decide(pipe, "SOLUSDC")["outcome"] == "accepted"


def test_blacklist_with_expiry_and_the_api_checks(pipe):
    refresh(pipe)
    no_token = requests.post(
        pipe.url + "/universe/blacklist", json={"symbol": "ETHUSDC"}, timeout=5
    )
    assert no_token.status_code == 401
    bad = requests.post(
        pipe.url + "/universe/blacklist",
        json={"symbol": "eth", "ttl_s": -1},
        headers=AUTH,
        timeout=5,
    )
    assert bad.status_code == 400
    assert (
        "symbol" in bad.json()["error"]
        and "reason" in bad.json()["error"]
        and "ttl_s" in bad.json()["error"]
    )

    added = requests.post(
        pipe.url + "/universe/blacklist",
        json={"symbol": "ETHUSDC", "reason": "exchange incident", "ttl_s": 1.5},
        headers=AUTH,
        timeout=5,
    )
    assert added.status_code == 200
    body = added.json()
    assert "ETHUSDC" not in body["selected_symbols"]
    assert body["blacklist"][0]["reason"] == "exchange incident"
    assert body["blacklist"][0]["source"] == "api"
    decision = decide(pipe, "ETHUSDC")
    assert decision["reason"] == "blacklisted" and "exchange incident" in decision["detail"]

    wait_for(lambda: universe(pipe)["blacklist"] == [], timeout=10, message="the entry expired")
    refresh(pipe)
    assert "ETHUSDC" in universe(pipe)["selected_symbols"]

    requests.post(
        pipe.url + "/universe/blacklist",
        json={"symbol": "XRPUSDC", "reason": "manual"},
        headers=AUTH,
        timeout=5,
    )
    removed = requests.delete(pipe.url + "/universe/blacklist/XRPUSDC", headers=AUTH, timeout=5)
    assert removed.status_code == 200 and removed.json()["blacklist"] == []
    again = requests.delete(pipe.url + "/universe/blacklist/XRPUSDC", headers=AUTH, timeout=5)
    assert again.status_code == 404


def test_a_held_position_stays_sellable_after_its_symbol_leaves(pipe):
    refresh(pipe)
    assert decide(pipe, "XRPUSDC")["outcome"] == "accepted"
    wait_for(lambda: "XRPUSDC" in pipe.positions(), message="the position")
    requests.post(
        pipe.url + "/universe/blacklist",
        json={"symbol": "XRPUSDC", "reason": "delisting soon"},
        headers=AUTH,
        timeout=5,
    )
    body = refresh(pipe)
    assert "XRPUSDC" not in body["selected_symbols"]
    assert body["draining"] == ["XRPUSDC"]
    assert decide(pipe, "XRPUSDC")["reason"] == "blacklisted"
    sold = decide(pipe, "XRPUSDC", "SELL")
    assert sold["outcome"] == "accepted"
    wait_for(lambda: "XRPUSDC" not in pipe.positions(), message="the position closed")
    assert refresh(pipe)["draining"] == []
    performance = universe(pipe)["performance"]["XRPUSDC"]
    assert performance["orders"] == 2 and performance["closed"] == 1
    assert performance["accepted"] == 2 and performance["rejected"] == 1


def test_a_crashed_universe_manager_is_restored_and_the_validators_keep_the_universe(pipe):
    before = refresh(pipe)
    pipe.drill("universe_manager")
    # While it restarts (or right after), the Validators still hold the universe.
    assert decide(pipe, "SOLUSDC")["outcome"] == "accepted"
    assert decide(pipe, "LTCUSDC")["reason"] == "not_in_universe"
    # The incarnation counts up as the replacement starts; until it is running (its
    # state restored, installed in the directory) /universe answers 503 "restarting".
    wait_for(
        lambda: (
            next(
                (c["incarnation"], c["state"])
                for c in requests.get(pipe.url + "/supervisor", timeout=5).json()["children"]
                if c["name"] == "universe_manager"
            )
            == (2, "running")
        ),
        message="the UniverseManager restarted and running",
    )
    after = universe(pipe)
    assert after["selected_symbols"] == before["selected_symbols"]
    assert after["last_update"] == before["last_update"]
    assert after["last_reason"] == "api"


def test_repeated_stop_losses_blacklist_a_symbol_for_a_cooldown(own_postgres, pipelines):
    pipe = pipelines(
        {**ENV, "AUTO_BLACKLIST_STOP_LOSSES": "2", "AUTO_BLACKLIST_COOLDOWN": "600"},
        database_dsn=own_postgres.dsn,
    )
    now = time.time()
    for offset in (0.0, 1.0):
        pipe.directory.publish(StopLossRecorded(symbol="SOLUSDC", at=now + offset))
    entry = wait_for(
        lambda: next((e for e in universe(pipe)["blacklist"] if e["symbol"] == "SOLUSDC"), None),
        message="SOLUSDC blacklisted",
    )
    assert entry["source"] == "auto"
    assert entry["reason"] == "2 stop-losses within 86400 s"
    assert entry["expires_at"] is not None


def test_spread_and_market_cap_sources_feed_the_filters(own_postgres, pipelines, tmp_path):
    caps_file = tmp_path / "caps.json"
    caps_file.write_text(json.dumps({"ETH": 4e11, "SOL": 1e7}))
    pipe = pipelines(
        {
            **ENV,
            "MIN_MARKET_CAP": "50000000",
            "UNKNOWN_MARKET_CAP_POLICY": "drop",
            "MAX_SPREAD_PERCENT": "0.05",
            "MARKET_CAP_FILE": str(caps_file),
        },
        database_dsn=own_postgres.dsn,
    )
    feed_candles(pipe)
    now_ms = int(time.time() * 1000)
    pipe.redis.hset(
        "roottrading:market:book_ticker",
        mapping={
            "ETHUSDC": json.dumps({"bid": 3199.9, "ask": 3200.1, "time": now_ms}),
            "XRPUSDC": json.dumps({"bid": 0.599, "ask": 0.601, "time": now_ms}),
            "BNBUSDC": json.dumps({"bid": 579.0, "ask": 581.0, "time": now_ms - 3_600_000}),
        },
    )
    pipe.redis.hset("roottrading:market:cap", mapping={"XRP": 3e10, "BNBUSDC": 9e10})
    try:
        verdicts = refresh(pipe)["verdicts"]
    finally:
        pipe.redis.delete("roottrading:market:book_ticker", "roottrading:market:cap")
    assert verdicts["XRPUSDC"] == "spread: spread 0.3333 % > 0.05 %"
    assert verdicts["SOLUSDC"] == "market_cap: market cap 10,000,000 < 50,000,000"
    # BNB's bid/ask is an hour old: unknown, kept (UNKNOWN_SPREAD_POLICY=keep); it has a cap.
    assert not verdicts["BNBUSDC"].startswith(("spread", "market_cap"))
    assert verdicts["ADAUSDC"].startswith("market_cap: market cap unknown")


def test_warm_start_from_the_market_data_table(own_postgres, pipelines):
    import psycopg2

    newest = int(time.time() * 1000) // QUARTER * QUARTER
    with psycopg2.connect(own_postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """CREATE TABLE market_data (time timestamptz, symbol text, timeframe text,
                   open double precision, high double precision, low double precision,
                   close double precision, volume double precision)"""
        )
        for symbol in ("BTCUSDC", "ETHUSDC"):
            for step in range(100):
                cur.execute(
                    "INSERT INTO market_data VALUES (to_timestamp(%s), %s, '15m', 1, 1, 1, %s, %s)",
                    (
                        (newest - step * QUARTER) / 1000,
                        symbol,
                        PRICES[symbol] * (1 + step % 3 / 100),
                        10.0,
                    ),
                )
            cur.execute(
                "INSERT INTO market_data VALUES (to_timestamp(%s), %s, '1m', 1, 1, 1, 1, 1)",
                (newest / 1000, "DOGEUSDC"),
            )
    pipe = pipelines(ENV, database_dsn=own_postgres.dsn)
    body = wait_for(
        lambda: (u := universe(pipe))["symbols_with_data"] == 2 and u,
        message="the two symbols' history loaded",
    )
    assert body["symbols_with_data"] == 2, "only the statistics timeframe is read"
    body = refresh(pipe)
    verdicts = body["verdicts"]
    # DOGE's only row is a 1m candle, which is not the statistics timeframe.
    assert verdicts["DOGEUSDC"] == "volume: no market data"
    assert verdicts["BTCUSDC"] == "passed every filter"
    # ETH's history was loaded: it got as far as the correlation walk (same shape as BTC).
    assert verdicts["ETHUSDC"].startswith("correlation: correlation 1.000 with BTCUSDC")
    assert "BTCUSDC" in body["selected_symbols"]
