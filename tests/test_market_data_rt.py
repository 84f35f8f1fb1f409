"""Market data as RootTrading publishes it: closed candles only, most of them twice
(directly and through the dispatcher, with ``_routing``), gap-fill candles with an ISO
``time``, hourly and daily ones on a channel without a timeframe. Each candle counts
once; history is no price; a message that is no candle is counted, never fatal."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest
import requests
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from coordinator.messages.pipeline import CandlesReceived, GetMarketSnapshot, MarketSnapshot
from coordinator.trading.candles import (
    Candle,
    CandleKey,
    CandleProblem,
    MalformedCandle,
    SeenCandles,
    read_candle,
)
from tests.pipeline import Pipeline, market_channel
from tests.waiting import wait_for

_ROUTING = {
    "source_topic": "market.data.solusdc.1m",
    "received_at": "2025-10-27T14:03:00.231874+00:00",
    "priority": "high",
    "data_type": "raw_market_data",
}


def websocket_kline(symbol: str, close: float, *, open_ms: int, timeframe: str = "1m") -> dict:
    """A closed kline as the gateway's websocket client publishes it."""
    span = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}[timeframe]
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "time": open_ms,
        "close_time": open_ms + span - 1,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 10.0,
        "is_closed": True,
        "quote_asset_volume": 10.0 * close,
        "number_of_trades": 12,
        "source": "binance_websocket",
        "timestamp": (open_ms + span) / 1000 + 0.2,
    }


def gap_fill_kline(symbol: str, close: float, *, open_ms: int, timeframe: str = "5m") -> dict:
    """A gap-fill kline: ``time`` an ISO string with +00:00, no ``timestamp``."""
    span = {"1m": 60_000, "5m": 300_000}[timeframe]
    return {
        "time": datetime.fromtimestamp(open_ms / 1000, UTC).isoformat(),
        "symbol": symbol,
        "timeframe": timeframe,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 3.0,
        "close_time": open_ms + span - 1,
        "is_closed": True,
        "source": "binance_historical",
    }


def dispatched(kline: dict) -> dict:
    """The dispatcher's copy: the same kline with its routing object."""
    return {**kline, "_routing": _ROUTING}


def wire(kline: dict) -> bytes:
    return json.dumps(kline).encode()


# --- parsing --------------------------------------------------------------------------


def test_the_three_shapes_are_one_candle_each():
    open_ms = 1761573720000
    direct = read_candle(wire(websocket_kline("SOLUSDC", 199.87, open_ms=open_ms)), "x:1m")
    again = read_candle(
        wire(dispatched(websocket_kline("SOLUSDC", 199.87, open_ms=open_ms))),
        market_channel("SOLUSDC"),
    )
    assert isinstance(direct, Candle) and isinstance(again, Candle)
    assert CandleKey.of(direct) == CandleKey.of(again) == CandleKey("SOLUSDC", "1m", open_ms)

    gap = read_candle(wire(gap_fill_kline("SOLUSDC", 197.9, open_ms=1761556500000)))
    assert isinstance(gap, Candle)
    assert (gap.time_ms, gap.timeframe, gap.closed) == (1761556500000, "5m", True)


def test_the_timeframe_comes_from_the_payload_else_the_channel_else_the_candle_span():
    hourly = websocket_kline("SOLUSDC", 199.73, open_ms=1761570000000, timeframe="1h")
    # The dispatcher's hourly candle: its channel has no timeframe, its payload has one.
    candle = read_candle(wire(dispatched(hourly)), "roottrading:market:data:solusdc")
    assert isinstance(candle, Candle) and candle.timeframe == "1h"

    del hourly["timeframe"]
    by_channel = read_candle(wire(hourly), "roottrading:market:data:solusdc:1h")
    by_span = read_candle(wire(hourly), "roottrading:market:data:solusdc")
    assert isinstance(by_channel, Candle) and by_channel.timeframe == "1h"
    assert isinstance(by_span, Candle) and by_span.timeframe == "1h"

    del hourly["close_time"]
    unknown = read_candle(wire(hourly), "roottrading:market:data:solusdc")
    assert isinstance(unknown, Candle) and unknown.timeframe is None


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\xff not json", CandleProblem.NOT_JSON),
        (b"[1, 2]", CandleProblem.NOT_OBJECT),
        (b'{"symbol": "SOLUSDC", "time": 1761573720000}', CandleProblem.MISSING_FIELD),
        (b'{"symbol": 7, "close": 1, "time": 1761573720000}', CandleProblem.BAD_SYMBOL),
        (b'{"symbol": "SOLUSDC", "close": 1, "time": "yesterday"}', CandleProblem.BAD_TIME),
        (
            b'{"symbol": "SOLUSDC", "close": 1, "time": "2025-10-27T09:15:00"}',
            CandleProblem.BAD_TIME,
        ),
        (b'{"symbol": "SOLUSDC", "close": -1, "time": 1761573720000}', CandleProblem.BAD_PRICE),
        (b'{"symbol": "SOLUSDC", "close": NaN, "time": 1761573720000}', CandleProblem.BAD_PRICE),
        (
            b'{"symbol": "SOLUSDC", "close": 1, "time": 1761573720000, "volume": "lots"}',
            CandleProblem.BAD_VOLUME,
        ),
        (
            b'{"symbol": "SOLUSDC", "close": 1, "time": 1761573720000, "timeframe": "soon"}',
            CandleProblem.BAD_TIMEFRAME,
        ),
    ],
)
def test_a_message_that_is_no_candle_says_what_is_wrong(payload: bytes, problem: CandleProblem):
    bad = read_candle(payload, market_channel("SOLUSDC"))
    assert isinstance(bad, MalformedCandle) and bad.problem is problem, bad
    assert bad.detail


class SeenCandlesMachine(RuleBasedStateMachine):
    """Candles of a few series offered in any order, some again: each of the newest
    ``keep`` open times of a series is taken once, and one never offered is always taken."""

    KEEP = 4

    def __init__(self) -> None:
        super().__init__()
        self.seen = SeenCandles(keep=self.KEEP)
        self.offered: dict[tuple[str, str | None], set[int]] = {}

    @rule(
        symbol=st.sampled_from(["BTCUSDC", "SOLUSDC"]),
        timeframe=st.sampled_from(["1m", "5m", None]),
        minute=st.integers(0, 12),
    )
    def offer(self, symbol: str, timeframe: str | None, minute: int) -> None:
        time_ms = 1_761_573_720_000 + minute * 60_000
        series = self.offered.setdefault((symbol, timeframe), set())
        newest = sorted(series, reverse=True)[: self.KEEP]
        first = self.seen.first_time(CandleKey(symbol, timeframe, time_ms))
        if time_ms not in series:
            assert first, "a candle never offered is taken"
        elif time_ms in newest:
            assert not first, "a candle among the newest of its series taken twice"
        series.add(time_ms)
        assert len(self.seen) <= self.KEEP * len(self.offered)


TestSeenCandles = SeenCandlesMachine.TestCase


# --- the MarketFeed -------------------------------------------------------------------


def snapshot(pipe: Pipeline) -> MarketSnapshot:
    return pipe.directory.ask("market_feed", GetMarketSnapshot(), timeout=5)


def prices(pipe: Pipeline) -> dict[str, tuple[float, float]]:
    return {symbol: (price, at) for symbol, price, at in snapshot(pipe).prices}


def test_a_candle_received_twice_is_one_price_tick(pipelines):
    """The dispatcher's copy arrives later: taken again, it would tell the stops and
    the statistics of the same candle twice."""
    pipe = pipelines()
    closed_at = time.time()  # the candle closes now; its copies are read after
    kline = websocket_kline("ADAUSDC", 0.51, open_ms=int(closed_at * 1000) - 60_000)
    pipe.directory.tell(
        "market_feed",
        CandlesReceived(
            candles=(
                (market_channel("ADAUSDC"), wire(kline), time.monotonic(), closed_at + 0.2),
                (
                    market_channel("ADAUSDC"),
                    wire(dispatched(kline)),
                    time.monotonic(),
                    closed_at + 3.0,
                ),
            )
        ),
    )
    price, at = prices(pipe)["ADAUSDC"]
    assert price == 0.51 and at == pytest.approx(closed_at, abs=0.002)
    assert snapshot(pipe).duplicates == 1


def test_an_old_gap_fill_candle_is_history_and_a_current_one_a_price(pipelines):
    pipe = pipelines()
    now = time.time()
    five = int(now * 1000) // 300_000 * 300_000
    old = gap_fill_kline("XRPUSDC", 0.4, open_ms=five - 12 * 300_000)
    # The gateway fills the minute that has just closed (read 2 s after its close).
    current = gap_fill_kline("DOTUSDC", 4.2, open_ms=int(now * 1000) - 60_000, timeframe="1m")
    pipe.directory.tell(
        "market_feed",
        CandlesReceived(
            candles=(
                (market_channel("XRPUSDC", "5m"), wire(old), time.monotonic(), now),
                (market_channel("DOTUSDC"), wire(current), time.monotonic(), now + 2.0),
            )
        ),
    )
    held = prices(pipe)
    assert "XRPUSDC" not in held, "a gap-fill candle of an hour ago is no price"
    # ISO text keeps microseconds: the close is the candle's, to the millisecond.
    assert held["DOTUSDC"] == (4.2, pytest.approx(now, abs=0.002))
    assert snapshot(pipe).stale == 1


def test_both_copies_through_redis_count_once_and_bad_messages_are_counted(pipelines, caplog):
    pipe = pipelines()
    caplog.set_level(logging.WARNING, logger="coordinator.actors.market_feed")
    channel = market_channel("LINKUSDC")
    # Closing about now: read well within the maximum age of a closed candle's price.
    minute = int(time.time() * 1000) - 60_000
    kline = websocket_kline("LINKUSDC", 20.5, open_ms=minute)
    before = snapshot(pipe)
    wait_for(lambda: pipe.redis.publish(channel, b"[]") > 0, message="the MarketFeed listening")
    for payload in (wire(kline), wire(dispatched(kline)), b"[]", b"not json", b"not json"):
        pipe.redis.publish(channel, payload)
    # The hourly candle the dispatcher publishes without a timeframe in the channel.
    hour = minute // 3_600_000 * 3_600_000 - 3_600_000
    hourly = websocket_kline("LINKUSDC", 20.4, open_ms=hour, timeframe="1h")
    pipe.redis.publish(market_channel("LINKUSDC", "1h"), wire(hourly))
    pipe.redis.publish("roottrading:market:data:linkusdc", wire(dispatched(hourly)))
    pipe.redis.publish(channel, wire(websocket_kline("LINKUSDC", 20.6, open_ms=minute + 60_000)))

    def settled() -> MarketSnapshot | None:
        now = snapshot(pipe)
        return now if now.read - before.read >= 9 else None

    after = wait_for(settled, message="every message read")
    assert after.duplicates - before.duplicates == 2
    assert dict(after.malformed) == {"not_object": 2, "not_json": 2}
    assert prices(pipe)["LINKUSDC"][0] == 20.6, "the feed goes on after bad messages"
    logged = [r.getMessage() for r in caplog.records if "ignored (" in r.getMessage()]
    assert len(logged) == 2, logged
    shown = requests.get(pipe.url + "/stats", timeout=5).json()["market_data"]
    assert shown["connected"] is True
    assert (shown["duplicates"], shown["malformed"]) == (2, {"not_object": 2, "not_json": 2})


def test_a_closed_candle_is_a_price_as_old_as_its_close(pipelines):
    """A gap-fill 15m candle that closed ten minutes ago is history, though within its
    timeframe; a closed candle read a little after its close is a price of its close."""
    pipe = pipelines()
    now = time.time()
    minute = int(now * 1000) // 60_000 * 60_000
    old = gap_fill_kline("XRPUSDC", 0.4, open_ms=minute - 600_000 - 900_000, timeframe="1m")
    old["timeframe"], old["close_time"] = "15m", minute - 600_000 - 1
    just_closed = websocket_kline("DOTUSDC", 4.2, open_ms=minute - 60_000)
    pipe.directory.tell(
        "market_feed",
        CandlesReceived(
            candles=(
                (market_channel("XRPUSDC", "15m"), wire(old), time.monotonic(), now),
                (market_channel("DOTUSDC"), wire(just_closed), time.monotonic(), minute / 1000 + 5),
            )
        ),
    )
    held = prices(pipe)
    assert "XRPUSDC" not in held, "a candle closed ten minutes ago is no current price"
    assert held["DOTUSDC"] == (4.2, minute / 1000), "as old as its close, not its reading"
