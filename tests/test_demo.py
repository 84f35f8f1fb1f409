"""``coordinator demo``: the replay and the signal rule (pure), the settings, the progress
line and the feeder (the whole demo as a process: tests/test_demo_process.py)."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.demo.feeder import DemoFeeder
from coordinator.demo.progress import progress_line
from coordinator.demo.replay import (
    BUCKET_MS,
    DemoDataError,
    MinuteCandles,
    SourceCandle,
    backlog_messages,
    convert_symbol,
    load_market,
)
from coordinator.demo.rules import EmaCross, Side, cross_signals, signal_message
from coordinator.demo.runner import demo_environment
from coordinator.trading.candles import Candle, read_candle
from coordinator.trading.freshness import candle_staleness
from coordinator.trading.signals import Signal, parse_signal
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
HEADER = "time_ms,open,high,low,close,volume\n"
T0 = 1_515_560_100_000
FIVE_MINUTES = 300_000


def _write(folder: Path, name: str, rows: list[tuple[int, float, float]]) -> None:
    """rows: (time_ms, close, volume); open, high and low around the close."""
    lines = [f"{t},{c},{c * 1.01},{c * 0.99},{c},{v}\n" for t, c, v in rows]
    (folder / name).write_text(HEADER + "".join(lines), encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        "ETHBTC-5m.csv",
        [(T0 + i * FIVE_MINUTES, 0.1 + i * 0.001, 10.0) for i in range(6)],
    )
    _write(
        tmp_path, "ADABTC-5m.csv", [(T0 + i * FIVE_MINUTES, 5e-5, 1000.0) for i in (0, 1, 3, 4, 5)]
    )
    _write(tmp_path, "XRPETH-5m.csv", [(T0, 0.0014, 1.0)])
    _write(tmp_path, "LTCBTC-1m.csv", [(T0, 0.017, 1.0)])
    return tmp_path


# --- the replay ----------------------------------------------------------------------


def test_btc_pairs_are_named_in_the_quote_asset_and_others_are_not_converted():
    assert convert_symbol("ETHBTC", "USDC") == "ETHUSDC"
    assert convert_symbol("UNITTESTBTC", "USDT") == "UNITTESTUSDT"
    assert convert_symbol("XRPETH", "USDC") is None
    assert convert_symbol("BTC", "USDC") is None


def test_the_files_load_converted_on_one_timeline_and_the_others_are_named(folder):
    market = load_market(folder, quote_asset="USDC", rate=10_000.0)
    assert sorted(market.series) == ["ADAUSDC", "ETHUSDC"]
    assert market.timeframe_ms == FIVE_MINUTES
    assert market.steps == tuple(T0 + i * FIVE_MINUTES for i in range(6))
    eth = market.series["ETHUSDC"][T0 + FIVE_MINUTES]
    assert eth.close == pytest.approx(0.101 * 10_000)
    assert eth.high == pytest.approx(0.101 * 1.01 * 10_000)
    assert eth.volume == 10.0  # in the base asset: not converted
    assert T0 + 2 * FIVE_MINUTES not in market.series["ADAUSDC"]
    assert sorted(market.skipped) == [
        "LTCBTC-1m.csv: another timeframe",
        "XRPETH-5m.csv: not quoted in BTC",
    ]


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(DemoDataError, match=str(tmp_path / "nowhere")):
        load_market(tmp_path / "nowhere", quote_asset="USDC", rate=10_000.0)


def test_a_bad_row_is_named_with_its_file_and_line(folder):
    (folder / "ETHBTC-5m.csv").write_text(HEADER + f"{T0},1,1,1,1,1\n{T0 + 1},x,1,1,1,1\n")
    with pytest.raises(DemoDataError, match=r"ETHBTC-5m.csv, line 3"):
        load_market(folder, quote_asset="USDC", rate=10_000.0)


def test_the_history_is_closed_1m_candles_in_the_minutes_before_now(folder):
    market = load_market(folder, quote_asset="USDC", rate=10_000.0)
    now_ms = 1_800_000_030_500  # 30.5 s into a minute
    minute = now_ms - now_ms % BUCKET_MS
    messages = list(backlog_messages(market, 3, now_ms))
    candles = [read_candle(payload, channel) for channel, payload in messages]
    assert all(isinstance(c, Candle) for c in candles)
    assert [(c.symbol, c.time_ms) for c in candles] == [
        ("ADAUSDC", minute - 3 * BUCKET_MS),
        ("ETHUSDC", minute - 3 * BUCKET_MS),
        ("ADAUSDC", minute - 2 * BUCKET_MS),
        ("ETHUSDC", minute - 2 * BUCKET_MS),
        ("ETHUSDC", minute - BUCKET_MS),  # ADA has no candle at that step
    ]
    assert all(c.closed and c.timeframe == "1m" for c in candles)
    assert messages[1][0] == "roottrading:market:data:ethusdc:1m"
    eth = candles[1]
    assert eth.close == pytest.approx(1000.0)
    assert eth.quote_volume == pytest.approx(10.0 * 1000.0)


def _candle(close: float, volume: float = 1.0, high: float | None = None) -> SourceCandle:
    return SourceCandle(T0, close, high or close, close, close, volume)


def test_the_live_candle_is_the_current_minute_in_progress_then_closed(folder):
    minutes = MinuteCandles()
    minute = 1_800_000_000_000
    first = minutes.add("ETHUSDC", _candle(100.0, 2.0, high=104.0), minute + 1_000)
    second = minutes.add("ETHUSDC", _candle(98.0, 3.0), minute + 2_000)
    [(channel, payload)] = second
    live = read_candle(payload, channel)
    assert isinstance(live, Candle) and not live.closed
    assert (live.time_ms, live.close, live.high, live.low) == (minute, 98.0, 104.0, 98.0)
    assert live.quote_volume == pytest.approx(5.0 * 98.0)
    assert len(first) == 1
    # Read now, the price in progress is current: no age limit refuses it.
    stale = candle_staleness(
        open_ms=live.time_ms,
        timeframe=live.timeframe,
        close_time_ms=live.close_time_ms,
        received_at=(minute + 2_000) / 1000,
        max_age=1.0,
        final=False,
    )
    assert stale is None
    # The next minute closes this one first, then opens its own.
    closed, opened = minutes.add("ETHUSDC", _candle(99.0), minute + BUCKET_MS + 10)
    closed_candle, opened_candle = read_candle(closed[1]), read_candle(opened[1])
    assert isinstance(closed_candle, Candle) and isinstance(opened_candle, Candle)
    assert closed_candle.closed and closed_candle.time_ms == minute
    assert closed_candle.close == 98.0
    assert not opened_candle.closed and opened_candle.time_ms == minute + BUCKET_MS
    assert minutes.close_finished(minute + BUCKET_MS + 20) == []
    [(_, last)] = minutes.close_finished(minute + 2 * BUCKET_MS)
    final = read_candle(last)
    assert isinstance(final, Candle) and final.closed and final.close == 99.0
    assert len(minutes) == 0


# --- the signal rule -----------------------------------------------------------------


def test_the_ema_cross_buys_on_the_way_up_and_sells_on_the_way_down():
    closes = [100.0] * 30 + [100.0 + i for i in range(1, 21)] + [120.0 - i for i in range(1, 41)]
    signals = cross_signals(closes, fast=3, slow=8)
    assert [side for _, side in signals] == [Side.BUY, Side.SELL]
    buy, sell = (index for index, _ in signals)
    assert buy == 30  # the first rise
    assert 50 < sell < 60  # a few candles into the fall


def test_the_warm_up_gives_no_signal_and_flat_prices_none():
    assert cross_signals([100.0] * 50, fast=3, slow=8) == []
    assert cross_signals([1.0, 2.0, 1.0, 2.0, 1.0], fast=2, slow=6) == []
    with pytest.raises(ValueError, match="fast < slow"):
        EmaCross(fast=8, slow=8)


@given(st.lists(st.floats(min_value=0.01, max_value=1e6), max_size=300))
def test_crosses_alternate_sides(closes):
    sides = [side for _, side in cross_signals(closes, fast=3, slow=8)]
    assert all(a is not b for a, b in itertools.pairwise(sides))


def test_the_signal_parses_as_an_aggregator_consensus_stamped_now():
    now = time.time()
    payload = signal_message("ETHUSDC", Side.BUY, 1043.2, now=now)
    signal_ = parse_signal(json.dumps(payload))
    assert isinstance(signal_, Signal), signal_
    assert (signal_.symbol, signal_.side, signal_.price) == ("ETHUSDC", "BUY", 1043.2)
    assert signal_.strategy == "CONSENSUS" and signal_.signal_type == "CONSENSUS"
    assert signal_.signal_id.startswith("consensus:demo_")
    assert signal_.timestamp == pytest.approx(now, abs=0.001)
    other = parse_signal(json.dumps(signal_message("ETHUSDC", Side.SELL, 1000.0, now=now)))
    assert isinstance(other, Signal) and other.signal_id != signal_.signal_id


# --- the settings and the progress line ------------------------------------------------


def test_the_demo_never_takes_the_servers_or_live_trading_from_the_environment():
    environ = {
        "REDIS_URL": "redis://real:6379/0",
        "PGHOST": "db",
        "DATABASE_URL": "postgresql://real/trading",
        "TRADER_API_URL": "http://trader:5002",
        "PAPER_TRADING": "false",
        "COORDINATOR_DATA_DIR": "/var/lib/coordinator",
        "COORDINATOR_INSTANCE": "prod-1",
        "UNIVERSE_SIZE": "6",
        "TRADING_SYMBOLS": "BTCUSDC,SOLUSDC",
        "CORE_PAIRS": "BTCUSDC",
        "PATH": "/bin",
    }
    env, own = demo_environment(environ, ["ADAUSDC", "ETHUSDC"])
    assert not {"REDIS_URL", "PGHOST", "DATABASE_URL", "TRADER_API_URL"} & set(env)
    assert not {"PAPER_TRADING", "COORDINATOR_DATA_DIR", "COORDINATOR_INSTANCE"} & set(env)
    assert env["UNIVERSE_SIZE"] == "6" and "UNIVERSE_SIZE" not in own
    # The candidates are the replayed pairs, whatever a real run trades.
    assert env["TRADING_SYMBOLS"] == "ADAUSDC,ETHUSDC" and env["CORE_PAIRS"] == "ETHUSDC"
    assert "TRADING_SYMBOLS" in own
    assert env["PATH"] == "/bin"


def test_the_progress_line_shows_the_replay_and_the_counts(folder):
    market = load_market(folder, quote_asset="USDC", rate=10_000.0)
    feeder = DemoFeeder(market, redis_url="redis://127.0.0.1:1/0", signals_channel="x", speed=1)
    feeder.counts.step, feeder.counts.replaying_ms = 2, T0
    feeder.counts.candles, feeder.counts.signals = 40, 3
    line = progress_line(
        feeder,
        {"/stats:orders_sent": 2, "/stats:signals_rejected": 1, "/trailing-stops:count": 1},
    )
    moment = datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    assert line.startswith(f"replay {moment} (66.7%)")  # 2 of the 3 steps after the history
    assert "candles 40 signals 3" in line and "orders 2 rejected 1" in line
    assert "positions 1 stops fired ? | universe ?" in line


# --- the feeder, through a real Redis ------------------------------------------------


def test_the_feeder_publishes_history_live_candles_and_signals(tmp_path, own_redis):
    # Flat for the history, then rising: the first live candle crosses up.
    _write(
        tmp_path,
        "ETHBTC-5m.csv",
        [(T0 + i * FIVE_MINUTES, 0.1 + max(0, i - 29) * 0.001, 1.0) for i in range(60)],
    )
    market = load_market(tmp_path, quote_asset="USDC", rate=10_000.0)
    now = {"t": 1_800_000_010.0}
    client = redis.Redis.from_url(own_redis.url)
    listener = client.pubsub()
    listener.psubscribe("roottrading:market:data:*")
    listener.subscribe("demo:signals")
    wait_for(
        lambda: listener.get_message(timeout=0.1) is None and listener.subscribed,
        message="subscribed",
    )
    feeder = DemoFeeder(
        market,
        redis_url=own_redis.url,
        signals_channel="demo:signals",
        speed=3_000_000,
        clock=lambda: now["t"],
    ).start()
    received: list[tuple[str, bytes]] = []

    def drain() -> None:
        while (message := listener.get_message(timeout=0.05)) is not None:
            if message["type"] in ("message", "pmessage"):
                received.append((message["channel"].decode(), message["data"]))

    try:
        wait_for(lambda: (drain(), feeder.counts.step == 30)[1], timeout=20, message="the replay")
        now["t"] += 60  # the minute is over: its candle closes
        wait_for(lambda: (drain(), feeder.counts.finished)[1], timeout=20, message="the end")
        drain()
    finally:
        feeder.stop()
        listener.close()
        client.close()
    assert feeder.error is None
    candles = [
        read_candle(data, channel) for channel, data in received if channel != "demo:signals"
    ]
    assert all(isinstance(c, Candle) and c.symbol == "ETHUSDC" for c in candles)
    minute = int(1_800_000_010_000 - 1_800_000_010_000 % BUCKET_MS)
    history, live = candles[:30], candles[30:]
    assert [c.time_ms for c in history] == [minute - (30 - i) * BUCKET_MS for i in range(30)]
    assert all(c.closed for c in history)
    assert [c.closed for c in live] == [False] * 30 + [True]
    assert {c.time_ms for c in live} == {minute}
    assert live[-1].close == pytest.approx((0.1 + 30 * 0.001) * 10_000)
    assert feeder.counts.candles == 30 and feeder.counts.backlog == 30
    signals = [parse_signal(data) for channel, data in received if channel == "demo:signals"]
    assert signals and all(isinstance(s, Signal) for s in signals)
    first = signals[0]
    assert isinstance(first, Signal)
    assert (first.side, first.price) == ("BUY", pytest.approx(0.101 * 10_000))
    assert first.timestamp == pytest.approx(1_800_000_010.0)
    assert feeder.counts.signals == len(signals) == 1
    # The signal follows the price it is priced at.
    assert [c for c, _ in received].index("demo:signals") > 30


class MinuteCandlesMachine(RuleBasedStateMachine):
    """Against a model (the source candles added in each symbol's open minute): every
    message is that minute's aggregate, in progress while the minute lasts, closed once
    after it, and no minute of a symbol is closed twice or left out."""

    def __init__(self) -> None:
        super().__init__()
        self.minutes = MinuteCandles()
        self.now_ms = 1_800_000_000_000
        self.open: dict[str, tuple[int, list[SourceCandle]]] = {}
        self.closed: set[tuple[str, int]] = set()

    def _closed_one(self, channel: str, payload: str) -> None:
        candle = read_candle(payload, channel)
        assert isinstance(candle, Candle) and candle.closed
        time_ms, added = self.open.pop(candle.symbol)
        assert candle.time_ms == time_ms
        self._matches(candle, added)
        assert (candle.symbol, time_ms) not in self.closed
        self.closed.add((candle.symbol, time_ms))

    @staticmethod
    def _matches(candle: Candle, added: list[SourceCandle]) -> None:
        assert candle.close == added[-1].close
        assert candle.high == max(c.high for c in added)
        assert candle.low == min(c.low for c in added)
        assert candle.quote_volume == pytest.approx(sum(c.volume for c in added) * added[-1].close)

    @rule(
        symbol=st.sampled_from(["ETHUSDC", "ADAUSDC"]),
        close=st.floats(min_value=0.01, max_value=1e5),
        volume=st.floats(min_value=0, max_value=1e6),
    )
    def add(self, symbol: str, close: float, volume: float) -> None:
        candle = SourceCandle(T0, close, close * 1.01, close * 0.99, close, volume)
        bucket = self.now_ms - self.now_ms % BUCKET_MS
        messages = self.minutes.add(symbol, candle, self.now_ms)
        *closing, (channel, payload) = messages
        held = self.open.get(symbol)
        assert len(closing) == (1 if held is not None and held[0] != bucket else 0)
        for closed_channel, closed_payload in closing:
            self._closed_one(closed_channel, closed_payload)
        time_ms, added = self.open.setdefault(symbol, (bucket, []))
        added.append(candle)
        live = read_candle(payload, channel)
        assert isinstance(live, Candle) and not live.closed and live.time_ms == bucket == time_ms
        self._matches(live, added)

    @rule(seconds=st.integers(min_value=0, max_value=150))
    def wait(self, seconds: int) -> None:
        self.now_ms += seconds * 1000

    @rule()
    def close_finished(self) -> None:
        bucket = self.now_ms - self.now_ms % BUCKET_MS
        finished = {s for s, (t, _) in self.open.items() if t != bucket}
        messages = self.minutes.close_finished(self.now_ms)
        assert len(messages) == len(finished)
        for channel, payload in messages:
            self._closed_one(channel, payload)

    @invariant()
    def open_minutes_agree(self) -> None:
        assert len(self.minutes) == len(self.open)


MinuteCandlesMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_minute_candles_model = MinuteCandlesMachine.TestCase
