"""RootTrading's market-data messages (``market_data/``), each published on its channel
to a real Redis and read by the real MarketFeed: as they are (candles of 2025: history,
no price), and moved to the present (the same shapes, a current price, each candle
taken once though the dispatcher publishes it again)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.messages.pipeline import GetMarketSnapshot, MarketSnapshot
from coordinator.trading.candles import Candle, CandleKey, read_candle
from tests.contract.fixtures import contract_files, load_json, load_raw, needs_contract
from tests.pipeline import Pipeline
from tests.waiting import wait_for

pytestmark = needs_contract

_SPAN_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}


def channels() -> dict[str, str]:
    return load_json("market_data/channels.json")["files"]


def messages() -> list[str]:
    return [p.name for p in contract_files("market_data") if p.name != "channels.json"]


def test_every_message_has_its_channel():
    assert messages(), "no market-data files"
    assert sorted(channels()) == messages()


@pytest.mark.parametrize("name", messages())
def test_every_message_is_a_closed_candle_of_its_timeframe(name: str):
    body = load_json(f"market_data/{name}")
    candle = read_candle(load_raw(f"market_data/{name}"), channels()[name])
    assert isinstance(candle, Candle), candle
    assert candle.closed and candle.symbol == body["symbol"]
    assert candle.timeframe == body["timeframe"]
    assert candle.close == body["close"]
    if isinstance(body["time"], str):  # gap-fill: ISO with its offset
        assert candle.time_ms == int(datetime.fromisoformat(body["time"]).timestamp() * 1000)
    else:
        assert candle.time_ms == body["time"]
    assert candle.close_time_ms == body["close_time"]


def test_the_dispatchers_copy_is_the_same_candle():
    direct = read_candle(
        load_raw("market_data/gateway_ws_closed_candle_1m.json"),
        channels()["gateway_ws_closed_candle_1m.json"],
    )
    again = read_candle(
        load_raw("market_data/dispatcher_republished_1m.json"),
        channels()["dispatcher_republished_1m.json"],
    )
    assert isinstance(direct, Candle) and isinstance(again, Candle)
    assert CandleKey.of(direct) == CandleKey.of(again)


def snapshot(pipe: Pipeline) -> MarketSnapshot:
    return pipe.directory.ask("market_feed", GetMarketSnapshot(), timeout=5)


def publish_all(pipe: Pipeline, payloads: list[tuple[str, bytes]]) -> MarketSnapshot:
    before = snapshot(pipe).read
    for channel, payload in payloads:
        pipe.redis.publish(channel, payload)
    return wait_for(
        lambda: (now := snapshot(pipe)).read - before >= len(payloads) and now,
        message="every message read",
    )


def to_the_present(body: dict[str, Any], open_ms: int) -> bytes:
    """The same message, its candle opened at ``open_ms``: every time field moved, each
    in its own form, the keys in their order."""
    span = _SPAN_MS[body["timeframe"]]
    moved = dict(body)
    if isinstance(body["time"], str):
        moved["time"] = datetime.fromtimestamp(open_ms / 1000, UTC).isoformat()
    else:
        moved["time"] = open_ms
    moved["close_time"] = open_ms + span - 1
    if "timestamp" in body:
        moved["timestamp"] = (open_ms + span) / 1000 + 0.2
    return json.dumps(moved).encode()


def test_every_message_is_read_from_its_channel_by_the_market_feed(pipelines):
    pipe = pipelines()
    names = messages()

    # As they are: read, none malformed, the dispatcher's 1m copy a duplicate, the
    # others history (closed in 2025): no price.
    first = [(channels()[n], load_raw(f"market_data/{n}")) for n in names]
    wait_for(
        lambda: pipe.redis.publish(first[0][0], first[0][1]) > 0,
        message="the MarketFeed listening",
    )
    wait_for(lambda: snapshot(pipe).read >= 1, message="the first message read")
    after = publish_all(pipe, first[1:])
    assert after.malformed == ()
    assert after.duplicates == 1
    assert after.stale == len(names) - 1
    assert after.prices == ()

    # Moved to the present: the websocket candle of the minute that just closed is the
    # price, its dispatcher copy is taken once, the older ones do not replace it.
    # The 1m candle closes about now (the gateway publishes it as it closes).
    minute = int(time.time() * 1000) - 60_000
    opens = {
        "1m": minute,
        "5m": minute // 300_000 * 300_000 - 600_000,
        "1h": minute // 3_600_000 * 3_600_000 - 3_600_000,
    }
    present = []
    for name in ("gateway_ws_closed_candle_1m.json", *names):
        body = load_json(f"market_data/{name}")
        present.append((channels()[name], to_the_present(body, opens[body["timeframe"]])))
    moved = publish_all(pipe, present)
    assert moved.malformed == ()
    # The moved websocket 1m a second time, and the dispatcher's copy of it.
    assert moved.duplicates == after.duplicates + 2
    ws = load_json("market_data/gateway_ws_closed_candle_1m.json")
    prices = {symbol: price for symbol, price, _at in moved.prices}
    assert prices == {ws["symbol"]: ws["close"]}
