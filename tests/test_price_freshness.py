"""A stale price never decides, whatever queue it waited in: prices are as old as their
reading from Redis, old candles are no price, and an exit looks at its price again
right before it is sent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.actors.market_feed import parse_candle
from coordinator.messages.pipeline import (
    CandlesReceived,
    GetLedgerSnapshot,
    GetMarketSnapshot,
    PriceUpdated,
)
from coordinator.messages.stops import ExitPosition
from coordinator.trading.freshness import (
    PriceBook,
    PriceVerdict,
    candle_close,
    candle_staleness,
    exit_price_check,
    newest_stored_close,
    open_time_ms,
    timeframe_seconds,
)
from coordinator.trading.routing import validator_for
from coordinator.trading.validation import ExitTarget, MarketQuote, Reason
from tests.pipeline import Pipeline, candle_json, market_channel
from tests.waiting import wait_for

# RootTrading's gap-fill kline (rt-contract market_data/gateway_gap_fill_candle_5m.json).
GAP_FILL = (
    b'{"time": "2025-10-27T09:15:00+00:00", "symbol": "SOLUSDC", "timeframe": "5m", '
    b'"open": 197.64, "high": 197.98, "low": 197.41, "close": 197.9, "volume": 4127.558, '
    b'"close_time": 1761556799999, "quote_asset_volume": 816412.26655, '
    b'"number_of_trades": 3904, "taker_buy_base_asset_volume": 2210.874, '
    b'"taker_buy_quote_asset_volume": 437330.17094, "is_closed": true, '
    b'"source": "binance_historical"}'
)
# And its websocket kline (gateway_ws_closed_candle_1m.json), epoch milliseconds.
WEBSOCKET = (
    b'{"symbol": "SOLUSDC", "timeframe": "1m", "time": 1761573720000, '
    b'"close_time": 1761573779999, "open": 199.95, "high": 200.02, "low": 199.8, '
    b'"close": 199.87, "volume": 1843.271, "is_closed": true, '
    b'"quote_asset_volume": 368514.60903, "source": "binance_websocket", '
    b'"timestamp": 1761573780.214336}'
)


# --- candles --------------------------------------------------------------------------


def test_a_gap_fill_candle_with_an_iso_time_is_parsed():
    candle = parse_candle(GAP_FILL, "roottrading:market:data:solusdc:5m")
    assert candle is not None
    assert candle.time_ms == 1761556500000  # 2025-10-27T09:15:00Z
    assert (candle.timeframe, candle.close, candle.closed) == ("5m", 197.9, True)
    websocket = parse_candle(WEBSOCKET, "roottrading:market:data:solusdc:1m")
    assert websocket is not None and websocket.time_ms == 1761573720000


@pytest.mark.parametrize(
    "time_value", ["yesterday", "2025-10-27T09:15:00", None, True, -5, float("nan"), [1]]
)
def test_a_candle_time_that_is_no_time_makes_no_candle(time_value):
    body = json.loads(WEBSOCKET)
    body["time"] = time_value
    assert parse_candle(json.dumps(body).encode()) is None


def test_timeframes_and_times():
    assert [timeframe_seconds(t) for t in ("1m", "3m", "15m", "1h", "1d", "4H")] == [
        60,
        180,
        900,
        3600,
        86_400,
        14_400,
    ]
    assert timeframe_seconds("x") is None and timeframe_seconds(None) is None
    assert timeframe_seconds("0m") is None
    assert open_time_ms("2025-10-27T09:15:00Z") == 1761556500000
    assert open_time_ms("1761556500000") == 1761556500000


def test_a_candle_closed_longer_ago_than_its_timeframe_plus_the_maximum_age_is_stale():
    opened = 1_800_000_000_000  # a 1m candle: it closes 60 s later
    close = opened / 1000 + 60

    def stale(received_at: float, timeframe: str | None = "1m", close_ms: int | None = None):
        return candle_staleness(
            open_ms=opened,
            timeframe=timeframe,
            close_time_ms=close_ms,
            received_at=received_at,
            max_age=30,
        )

    assert stale(opened / 1000 + 10) is None  # in progress
    assert stale(close + 0.2) is None  # closed just now
    assert stale(close + 90) is None  # the limit: 60 s + 30 s
    why = stale(close + 91)
    assert why is not None and "closed 91 s before it was received" in why
    # Without a timeframe, its close_time field; without either, the open time alone.
    assert stale(close + 91, None, opened + 59_999) is not None
    assert stale(close + 89, None, opened + 59_999) is None
    assert stale(opened / 1000 + 31, None) is not None


def test_a_stored_candle_is_a_price_from_its_close_until_the_maximum_age():
    now = 1_800_000_000.0

    def newest(*candles: tuple[str | None, float, float]) -> tuple[float, float] | None:
        rows = [(tf, int((now + ago) * 1000), close) for tf, ago, close in candles]
        return newest_stored_close(rows, now=now, max_age=90)

    assert newest(("1m", -70, 10.0)) == (10.0, now - 10)  # closed 10 s ago
    assert newest(("1m", -150, 10.0)) == (10.0, now - 90)  # the limit
    assert newest(("1m", -151, 10.0)) is None  # stale
    assert newest(("1m", -30, 10.0)) is None  # still in progress: no price yet
    assert newest(("7x", -70, 10.0)) is None  # an unknown timeframe: no moment
    assert newest(("1m", -70, float("nan")), ("1m", -70, 0.0)) is None
    # Without a timeframe, the open time: never fresher than the candle is.
    assert newest((None, -30, 10.0)) == (10.0, now - 30)
    # The latest close decides, whichever timeframe and order.
    assert newest(("1m", -70, 10.0), ("5m", -305, 11.0), ("1m", -130, 9.0)) == (11.0, now - 5)
    assert newest(("5m", -400, 11.0), ("1m", -61, 10.0)) == (10.0, now - 1)
    assert newest() is None


# --- an exit's price, again before it is sent -------------------------------------------

EXIT = ExitTarget(
    position_key="BTCUSDC@1@50000",
    entry_price=50_000.0,
    quantity=0.1,
    stop=48_000.0,
    price=47_900.0,
    price_at=1_000.0,
)


def test_an_exit_on_a_fresh_price_under_its_stop_goes():
    check = exit_price_check(EXIT, None, now=1_010.0, max_age=30)
    assert check.passed and check.step == "exit_price"
    older = MarketQuote(49_000.0, 990.0)  # older than the trigger: not the deciding one
    assert exit_price_check(EXIT, older, now=1_010.0, max_age=30).passed


def test_an_exit_whose_price_aged_in_a_queue_is_not_sent():
    check = exit_price_check(EXIT, None, now=1_031.0, max_age=30)
    assert (check.passed, check.reason) == (False, Reason.MARKET_DATA_STALE)
    assert "31.0 s old" in check.detail


def test_an_exit_whose_newer_price_is_back_above_the_stop_is_not_sent():
    newer = MarketQuote(48_100.0, 1_005.0)
    check = exit_price_check(EXIT, newer, now=1_010.0, max_age=30)
    assert (check.passed, check.reason) == (False, Reason.STOP_NOT_HIT)
    assert "the latest price 48100" in check.detail


def test_a_price_read_at_the_same_instant_as_the_trigger_decides_as_the_later_one():
    """Two prices in one batch from Redis share their receive time: the Validator's latest
    is the later of them; above the stop, the exit is not sent."""
    same = MarketQuote(48_100.0, EXIT.price_at)
    check = exit_price_check(EXIT, same, now=1_010.0, max_age=30)
    assert (check.passed, check.reason) == (False, Reason.STOP_NOT_HIT)


@given(
    trigger_age=st.floats(-5, 100),
    latest=st.none() | st.tuples(st.floats(40_000, 56_000), st.floats(-50, 50)),
)
def test_an_exit_goes_only_on_a_fresh_price_at_or_under_its_stop(trigger_age, latest):
    now = EXIT.price_at + trigger_age
    quote = None if latest is None else MarketQuote(latest[0], EXIT.price_at + latest[1])
    check = exit_price_check(EXIT, quote, now=now, max_age=30)
    deciding = quote if quote is not None and quote.at >= EXIT.price_at else None
    price = EXIT.price if deciding is None else deciding.price
    at = EXIT.price_at if deciding is None else deciding.at
    assert check.passed == (now - at <= 30 and price <= EXIT.stop)


# --- in a whole coordinator -------------------------------------------------------------


def market_snapshot(pipe: Pipeline) -> dict[str, tuple[float, float]]:
    snapshot = pipe.directory.ask("market_feed", GetMarketSnapshot(), timeout=5)
    return {symbol: (price, at) for symbol, price, at in snapshot.prices}


def test_a_price_is_as_old_as_its_reading_from_redis(pipelines):
    """A backlog (the MarketFeed hung, or busy) keeps the time each candle was read;
    a candle closed long ago is no price at all."""
    pipe = pipelines()
    now = time.time()
    minute = int(now * 1000) // 60_000 * 60_000
    read_at = now - 20.0
    pipe.directory.tell(
        "market_feed",
        CandlesReceived(
            candles=(
                (
                    market_channel("ADAUSDC"),
                    candle_json("ADAUSDC", 0.51, time_ms=minute).encode(),
                    time.monotonic(),
                    read_at,
                ),
                (
                    market_channel("XRPUSDC"),
                    candle_json("XRPUSDC", 0.6, time_ms=minute - 10 * 60_000).encode(),
                    time.monotonic(),
                    now,
                ),
                (market_channel("SOLUSDC", "5m"), GAP_FILL, time.monotonic(), now),
            )
        ),
    )
    prices = market_snapshot(pipe)
    assert prices["ADAUSDC"] == (0.51, read_at)
    assert "XRPUSDC" not in prices, "a candle closed 9 minutes ago is not a price"
    assert "SOLUSDC" not in prices, "nor is a gap-fill candle of 2025"

    # What the reader reads is stamped as it reads it.
    before = time.time()
    channel = market_channel("DOTUSDC")
    data = candle_json("DOTUSDC", 4.2, time_ms=minute)
    wait_for(lambda: pipe.redis.publish(channel, data) > 0, message="the MarketFeed listening")
    price, at = wait_for(lambda: market_snapshot(pipe).get("DOTUSDC"), message="DOTUSDC read")
    assert price == 4.2 and at >= before


def seed(pipe: Pipeline, symbol: str, quantity: float, entry: float) -> dict[str, Any]:
    """A held position and the TrailingStop's view of it."""
    response = requests.post(
        pipe.paper.url + "/_paper/positions",
        json=[{"symbol": symbol, "quantity": quantity, "entry_price": entry}],
        timeout=5,
    )
    assert response.status_code == 200, response.text
    pipe.paper.set_price(symbol, entry)

    def view() -> dict[str, Any] | None:
        response = requests.get(pipe.url + "/trailing-stops", timeout=5)
        if response.status_code != 200:
            return None
        return next((p for p in response.json()["positions"] if p["symbol"] == symbol), None)

    # Positions are fetched again every POSITIONS_REFRESH_INTERVAL (10 s): up to one
    # interval, and the fetch itself, after the position is there.
    return wait_for(view, timeout=30, message=f"a stop on {symbol}")


def exit_for(view: dict[str, Any], attempt: int, price: float, price_at: float) -> ExitPosition:
    return ExitPosition(
        exit_id=f"exit:{view['position_key']}:{attempt}",
        position_key=view["position_key"],
        symbol=view["symbol"],
        quantity=view["quantity"],
        entry_price=view["entry_price"],
        price=price,
        price_at=price_at,
        stop=view["stop"],
        rule="stoploss",
        strategy="stoploss",
        triggered_at=price_at,
        tick_mono=time.monotonic(),
    )


def test_an_exit_looks_at_its_price_again_right_before_it_is_sent(pipelines):
    pipe = pipelines({"STOP_PRICE_MAX_AGE": "30", "MAX_PRICE_DEVIATION_PERCENT": "50"})
    view = seed(pipe, "LINKUSDC", 10.0, 20.0)
    wait_for(
        lambda: (
            "LINKUSDC" in pipe.directory.ask("ledger", GetLedgerSnapshot(), timeout=5).positions
        ),
        message="the Ledger holding it too",
    )
    validator = validator_for("LINKUSDC", pipe.config.coordination.validation_threads)
    under = view["stop"] * 0.99

    # It waited in a mailbox (or for the Trader) for a minute: its price is stale.
    pipe.directory.tell(validator, exit_for(view, 901, under, time.time() - 60))
    stale = pipe.decision(f"exit:{view['position_key']}:901")["decision"]
    assert (stale["outcome"], stale["reason"]) == ("rejected", "market_data_stale")
    assert stale["checks"][-1]["step"] == "exit_price"

    # A newer price than the trigger's is back above the stop.
    pipe.directory.tell(
        validator,
        PriceUpdated(symbol="LINKUSDC", price=view["stop"] * 1.01, at=time.time()),
    )
    pipe.directory.tell(validator, exit_for(view, 902, under, time.time() - 1))
    above = pipe.decision(f"exit:{view['position_key']}:902")["decision"]
    assert (above["outcome"], above["reason"]) == ("rejected", "stop_not_hit")
    assert pipe.positions()["LINKUSDC"] == pytest.approx(10.0), "nothing sold"

    # On a fresh price under the stop, the exit goes.
    pipe.directory.tell(validator, PriceUpdated(symbol="LINKUSDC", price=under, at=time.time()))
    pipe.directory.tell(validator, exit_for(view, 903, under, time.time()))
    sold = pipe.decision(f"exit:{view['position_key']}:903")["decision"]
    assert sold["outcome"] == "accepted", sold
    wait_for(lambda: "LINKUSDC" not in pipe.positions(), message="the position sold")


def test_an_exit_is_checked_against_the_last_price_of_the_batch_that_hit_its_stop(pipelines):
    """Two prices of one symbol read together, the first under the stop, the second above:
    the Validator holds the second (not only the first, the second held back), so the exit
    the first triggered is not sent."""
    pipe = pipelines({"STOP_PRICE_MAX_AGE": "30", "MAX_PRICE_DEVIATION_PERCENT": "50"})
    view = seed(pipe, "LINKUSDC", 10.0, 20.0)
    wait_for(
        lambda: (
            "LINKUSDC" in pipe.directory.ask("ledger", GetLedgerSnapshot(), timeout=5).positions
        ),
        message="the Ledger holding it too",
    )
    validator = validator_for("LINKUSDC", pipe.config.coordination.validation_threads)
    now = time.time()
    minute = int(now * 1000) // 60_000 * 60_000
    under, above = view["stop"] * 0.99, view["stop"] * 1.01
    pipe.directory.tell(
        "market_feed",
        CandlesReceived(
            candles=tuple(
                (
                    market_channel("LINKUSDC"),
                    candle_json("LINKUSDC", price, time_ms=minute).encode(),
                    time.monotonic(),
                    now,
                )
                for price in (under, above)
            )
        ),
    )
    # The feed has told the Validator what it had to tell before it answers this.
    assert market_snapshot(pipe)["LINKUSDC"] == (above, now)
    pipe.directory.tell(validator, exit_for(view, 901, under, now))
    decided = pipe.decision(f"exit:{view['position_key']}:901")["decision"]
    assert (decided["outcome"], decided["reason"]) == ("rejected", "stop_not_hit"), decided
    assert pipe.positions()["LINKUSDC"] == pytest.approx(10.0), "nothing sold"


def test_an_older_candle_arriving_late_does_not_replace_a_newer_price(pipelines):
    pipe = pipelines()
    now = time.time()
    minute = int(now * 1000) // 60_000 * 60_000
    late = candle_json("ADAUSDC", 0.40, time_ms=minute - 6 * 60_000, timeframe="5m", closed=True)
    pipe.directory.tell(
        "market_feed",
        CandlesReceived(
            candles=(
                (
                    market_channel("ADAUSDC"),
                    candle_json("ADAUSDC", 0.51, time_ms=minute).encode(),
                    time.monotonic(),
                    now,
                ),
                # A 5m candle that closed a minute or two ago: not stale, but older.
                (market_channel("ADAUSDC", "5m"), late.encode(), time.monotonic(), now),
            )
        ),
    )
    assert market_snapshot(pipe)["ADAUSDC"] == (0.51, now)


class PriceBookMachine(RuleBasedStateMachine):
    """Candles of a few symbols and timeframes, some live, some late, some replayed,
    read in order: the price held is never a stale candle's and never goes back."""

    def __init__(self) -> None:
        super().__init__()
        self.book = PriceBook(max_age=30.0)
        self.now = 1_800_000_000.0
        self.held: dict[str, tuple[float, float]] = {}  # symbol -> (moment, received_at)

    @rule(seconds=st.floats(0, 120))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(
        symbol=st.sampled_from(["BTCUSDC", "ETHUSDC"]),
        timeframe=st.sampled_from(["1m", "5m", "1h", None]),
        opened_ago=st.floats(-30, 7200),
        close_time=st.booleans(),
        final=st.booleans(),
    )
    def candle(
        self,
        symbol: str,
        timeframe: str | None,
        opened_ago: float,
        close_time: bool,
        final: bool,
    ) -> None:
        open_ms = int((self.now - opened_ago) * 1000)
        span = timeframe_seconds(timeframe)
        close_ms = open_ms + int((span or 60) * 1000) - 1 if close_time else None
        verdict, why = self.book.offer(
            symbol,
            open_ms=open_ms,
            timeframe=timeframe,
            close_time_ms=close_ms,
            received_at=self.now,
            final=final,
        )
        stale = candle_staleness(
            open_ms=open_ms,
            timeframe=timeframe,
            close_time_ms=close_ms,
            received_at=self.now,
            max_age=30.0,
            final=final,
        )
        if stale is not None:
            assert verdict is PriceVerdict.STALE and why == stale
            return
        assert verdict is not PriceVerdict.STALE
        if final:
            closed, _span = candle_close(open_ms, timeframe, close_ms)
            assert self.now - closed <= 30.0, "a closed candle's price older than the maximum age"
        if verdict is PriceVerdict.TAKEN:
            moment = self.book.observed[symbol]
            if symbol in self.held:
                assert moment >= self.held[symbol][0], "a held price replaced by an older one"
            self.held[symbol] = (moment, self.now)
        else:
            assert symbol in self.held, "older than a price never held"

    @invariant()
    def the_held_price_never_goes_back_and_is_never_after_its_reading(self) -> None:
        for symbol, (moment, received_at) in self.held.items():
            assert self.book.observed[symbol] == moment
            assert moment <= received_at <= self.now


TestPriceBook = PriceBookMachine.TestCase
