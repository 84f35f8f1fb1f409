"""The TrailingStop in a whole coordinator: positions held at the paper exchange, prices
on the Redis market-data channels, exits through the Validators to the paper exchange."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2
import pytest
import requests

from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.pipeline import PriceUpdated
from coordinator.messages.stops import ExitPosition
from coordinator.trading.routing import validator_for
from tests.pipeline import (
    PRICES,
    Pipeline,
    candle_json,
    market_channel,
    next_event,
    signal_payload,
)
from tests.test_pipeline import signal_id
from tests.waiting import wait_for

ENV = {
    "POSITIONS_REFRESH_INTERVAL": "0.3",
    "STOP_EXIT_RETRY_BASE": "0.2",
    "STOP_EXIT_RETRY_MAX": "1",
    "STOP_RULES": "stoploss,breakeven,percent",
    "STOP_LOSS_PERCENT": "5",
    "TRAILING_STOP_PERCENT": "2",
    "TRAILING_STOP_OFFSET_PERCENT": "1",
    "BREAKEVEN_AFTER_PERCENT": "1.5",
    "BREAKEVEN_OFFSET_PERCENT": "0.2",
    # The prices here move far from the signal prices of tests.pipeline.
    "MAX_PRICE_DEVIATION_PERCENT": "50",
}


def seed(at: Pipeline | PaperExchange, symbol: str, quantity: float, entry: float) -> None:
    """A position held at the paper exchange (a pipeline's, or one it is to start with),
    bought an hour ago."""
    paper = at.paper if isinstance(at, Pipeline) else at
    response = requests.post(
        paper.url + "/_paper/positions",
        json=[
            {
                "symbol": symbol,
                "quantity": quantity,
                "entry_price": entry,
                "opened_at": time.time() - 3600,
            }
        ],
        timeout=5,
    )
    assert response.status_code == 200, response.text
    paper.set_price(symbol, entry)


def stops(pipe: Pipeline) -> dict[str, Any]:
    response = requests.get(pipe.url + "/trailing-stops", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def stop_of(pipe: Pipeline, symbol: str) -> dict[str, Any] | None:
    """The stop of ``symbol``; None when there is none, or while the actor restarts."""
    response = requests.get(pipe.url + "/trailing-stops", timeout=5)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    return next((p for p in response.json()["positions"] if p["symbol"] == symbol), None)


def watched(pipe: Pipeline, symbol: str) -> dict[str, Any]:
    return wait_for(lambda: stop_of(pipe, symbol), message=f"a stop on {symbol}")


def tick(pipe: Pipeline, symbol: str, price: float) -> None:
    """A 1m candle update on Redis, once the MarketFeed listens."""
    data = candle_json(symbol, price, time_ms=int(time.time() * 1000) // 60_000 * 60_000)
    channel = market_channel(symbol)
    wait_for(lambda: pipe.redis.publish(channel, data) > 0, message="the MarketFeed listening")


def ticks_seen(pipe: Pipeline, symbol: str, price: float) -> dict[str, Any]:
    """Wait for the TrailingStop to have ``price`` as its latest price of ``symbol``."""
    return wait_for(
        lambda: (p := stop_of(pipe, symbol)) and p["last_price"] == price and p,
        message=f"{symbol} at {price} at the TrailingStop",
    )


def stored_stop(dsn: str, key: str) -> tuple[float | None, float | None]:
    """(peak, stop) of ``key`` in coordinator_stops; (None, None) before it is written."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT peak, stop FROM coordinator_stops WHERE position_key = %s", (key,))
        row = cur.fetchone()
    conn.close()
    return (None, None) if row is None else (row[0], row[1])


def sells(pipe: Pipeline, symbol: str) -> list[dict[str, Any]]:
    rows = requests.get(pipe.paper.url + "/_paper/orders", timeout=5).json()["orders"]
    return [r for r in rows if r["symbol"] == symbol and r["side"] == "SELL"]


def fills(pipe: Pipeline, symbol: str) -> list[Any]:
    return [f for f in pipe.paper.book.fills if f.symbol == symbol]


@pytest.fixture
def pipe(pipelines) -> Pipeline:
    return pipelines(ENV)


def test_a_stop_follows_the_price_and_sells_the_position_once(pipe):
    events = pipe.redis.pubsub()
    events.subscribe(pipe.events_channel)
    seed(pipe, "BTCUSDC", 0.1, 60_000.0)
    first = watched(pipe, "BTCUSDC")
    assert first["stop"] == pytest.approx(57_000.0) and first["stop_rule"] == "stoploss"
    assert first["position_key"].startswith("BTCUSDC@") and first["state"] == "watching"
    for price in (60_500.0, 61_000.0, 63_000.0, 62_000.0):
        tick(pipe, "BTCUSDC", price)
    view = ticks_seen(pipe, "BTCUSDC", 62_000.0)
    assert view["peak"] == 63_000.0
    assert view["stop"] == pytest.approx(61_740.0) and view["stop_rule"] == "percent"
    assert view["distance_to_stop_percent"] == pytest.approx((62_000 - 61_740) / 62_000 * 100)
    assert view["stale"] is False and view["strategy"] == "stoploss+breakeven+percent"
    assert requests.get(pipe.url + "/stats", timeout=5).json()["trailing_stops_active"] == 1
    assert sells(pipe, "BTCUSDC") == []

    pipe.paper.set_price("BTCUSDC", 61_700.0)
    tick(pipe, "BTCUSDC", 61_700.0)
    wait_for(lambda: "BTCUSDC" not in pipe.positions(), message="the position sold")
    (sell,) = sells(pipe, "BTCUSDC")
    (fill,) = [f for f in fills(pipe, "BTCUSDC") if f.side.value == "SELL"]
    assert fill.quantity == pytest.approx(0.1), "exactly the position's quantity"

    # On a loaded machine a first exit may be refused (a view or price not yet fresh)
    # and the stop sends the next one: exactly one of them is the sell.
    def exits_until_the_sell() -> list[dict] | None:
        found = []
        for attempt in range(1, 11):
            stored = pipe.stored(f"exit:{first['position_key']}:{attempt}")
            if stored is None or stored.get("decision") is None:
                return None
            found.append(stored)
            if (stored.get("order") or {}).get("client_order_id") == sell["client_order_id"]:
                return found
        return None

    *refused, record = wait_for(exits_until_the_sell, message="the exit that sold")
    assert record["decision"]["outcome"] == "accepted"
    assert all(e.get("order") is None for e in refused), [e["decision"] for e in refused]
    assert record["signal"]["source"] == "trailing_stop"
    assert record["decision"]["checks"][0]["step"] == "trigger"
    assert sell["client_order_id"] == record["order"]["client_order_id"]
    # Sold, then gone from the Portfolio: the stop is closed and no longer listed.
    wait_for(lambda: stop_of(pipe, "BTCUSDC") is None, message="the stop closed")
    # More ticks under the old stop sell nothing more.
    tick(pipe, "BTCUSDC", 50_000.0)
    assert len(sells(pipe, "BTCUSDC")) == 1
    triggered = next_event(events, "StopTriggered")
    assert triggered["symbol"] == "BTCUSDC" and triggered["price"] == 61_700.0
    assert triggered["stop"] == pytest.approx(61_740.0) and triggered["peak"] == 63_000.0
    events.close()
    stats = requests.get(pipe.url + "/stats", timeout=5).json()
    assert stats["trailing_stops_active"] == 0


def test_stale_prices_make_no_decision_and_show_on_the_api(pipelines):
    pipe = pipelines({**ENV, "STOP_PRICE_MAX_AGE": "2"})
    seed(pipe, "ETHUSDC", 1.0, 3_000.0)
    watched(pipe, "ETHUSDC")
    tick(pipe, "ETHUSDC", 3_010.0)
    assert ticks_seen(pipe, "ETHUSDC", 3_010.0)["stale"] is False
    # A price far under the stop, but seen a minute ago (kept in a mailbox, say).
    pipe.directory.tell(
        "trailing_stop",
        PriceUpdated(symbol="ETHUSDC", price=2_000.0, at=time.time() - 60, received_mono=0.0),
    )
    wait_for(lambda: stops(pipe)["stale_ticks_ignored"] >= 1, message="the late price ignored")
    view = stop_of(pipe, "ETHUSDC")
    assert view is not None and view["last_price"] == 3_010.0 and view["state"] == "watching"
    # No tick for longer than STOP_PRICE_MAX_AGE: the position shows its price is stale.
    stale = wait_for(
        lambda: (p := stop_of(pipe, "ETHUSDC")) and p["stale"] and p,
        timeout=10,
        message="the price shown stale",
    )
    assert stale["price_age_s"] > 2
    assert sells(pipe, "ETHUSDC") == []


def test_a_failing_sell_is_retried_and_the_state_kept(pipe):
    seed(pipe, "SOLUSDC", 10.0, 100.0)
    key = watched(pipe, "SOLUSDC")["position_key"]
    for price in (104.0, 106.0):
        tick(pipe, "SOLUSDC", price)
    ticks_seen(pipe, "SOLUSDC", 106.0)
    # The next two orders are refused (400): the exit is tried again, with backoff.
    requests.post(pipe.paper.url + "/_paper/knobs", json={"reject_next": 2}, timeout=5)
    tick(pipe, "SOLUSDC", 103.0)
    retrying = wait_for(
        lambda: (
            (p := stop_of(pipe, "SOLUSDC")) and p["exit_attempts"] >= 1 and p["failures"] >= 1 and p
        ),
        message="a failed exit",
    )
    assert retrying["peak"] == 106.0 and retrying["stop"] == pytest.approx(103.88)
    assert retrying["state"] in ("retry", "exiting")
    # Prices keep coming (an attempt goes only on a fresh price under the stop, and each
    # one after the first reads the earlier attempts' orders first).
    wait_for(
        lambda: tick(pipe, "SOLUSDC", 103.0) or "SOLUSDC" not in pipe.positions(),
        interval=0.2,
        timeout=40,
        message="sold in the end",
    )
    requests_made = sells(pipe, "SOLUSDC")
    assert len(requests_made) == 3, "two refused, the third filled"
    assert len({r["client_order_id"] for r in requests_made}) == 3, "one order per attempt"
    assert [f.quantity for f in fills(pipe, "SOLUSDC") if f.side.value == "SELL"] == [10.0]
    for attempt, outcome in ((1, "rejected"), (2, "rejected"), (3, "accepted")):
        decision = pipe.decision(f"exit:{key}:{attempt}")["decision"]
        assert decision["outcome"] == outcome
        if outcome == "rejected":
            assert decision["reason"] == "trader_rejected"


def test_an_error_in_the_stop_logic_never_sells(pipe, monkeypatch):
    """A fault in the rules is reported on the position, which stays watched; once the
    logic works again, the next price decides."""
    import coordinator.actors.trailing_stop_prices as trailing_stop

    broken = threading.Event()
    broken.set()
    working = trailing_stop.update_stop

    def update_stop(*args: Any, **kwargs: Any) -> Any:
        if broken.is_set():
            raise ArithmeticError("injected fault in the stop rules")
        return working(*args, **kwargs)

    monkeypatch.setattr(trailing_stop, "update_stop", update_stop)
    seed(pipe, "DOGEUSDC", 1_000.0, 0.15)
    watched(pipe, "DOGEUSDC")
    # Far under the 5 % stop-loss: a working stop would sell here.
    tick(pipe, "DOGEUSDC", 0.12)
    failed = wait_for(
        lambda: (p := stop_of(pipe, "DOGEUSDC")) and p["errors"] >= 1 and p,
        message="the fault reported on the position",
    )
    assert failed["state"] == "watching"
    assert "stop logic error: ArithmeticError: injected fault" in failed["detail"]
    assert sells(pipe, "DOGEUSDC") == []
    broken.clear()
    tick(pipe, "DOGEUSDC", 0.119)
    wait_for(lambda: "DOGEUSDC" not in pipe.positions(), message="sold once the logic works")
    assert len(sells(pipe, "DOGEUSDC")) == 1


def test_ticks_arriving_together_are_all_seen_in_order(pipe):
    """A burst read from Redis in one go: every tick counts for the peak, the last one is
    the price, and a malformed message among them costs only itself."""
    seed(pipe, "LTCUSDC", 2.0, 80.0)
    watched(pipe, "LTCUSDC")
    tick(pipe, "LTCUSDC", 80.0)  # the MarketFeed listens
    channel = market_channel("LTCUSDC")
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    prices = [round(80.0 + i * 0.01, 2) for i in range(1, 501)] + [84.5]
    burst = pipe.redis.pipeline(transaction=False)
    for index, price in enumerate(prices):
        if index == 250:
            burst.publish(channel, b'{"symbol": "LTCUSDC", "close": "not a price"}')
        burst.publish(channel, candle_json("LTCUSDC", price, time_ms=now_ms))
    burst.execute()
    view = ticks_seen(pipe, "LTCUSDC", 84.5)
    assert view["peak"] == max(prices) == 85.0
    # percent rule: 2 % under the 85.0 peak; 84.5 is above it.
    assert view["stop"] == pytest.approx(83.3) and view["state"] == "watching"
    assert sells(pipe, "LTCUSDC") == []


def test_many_exits_finding_no_position_do_not_hammer_the_portfolio(pipe):
    """An exit the Ledger cannot size makes it look at the Portfolio again (the position
    may be newer than its view), but not more than every 0.2 s however many come."""
    symbol = "DOGEUSDC"  # not held
    validator = validator_for(symbol, pipe.config.coordination.validation_threads)
    before = pipe.paper.stats()["balance_reads"]
    started = time.monotonic()
    ids = [f"exit:{symbol}@0@1:{attempt}" for attempt in range(1, 101)]
    for exit_id in ids:
        pipe.directory.tell(
            validator,
            ExitPosition(
                exit_id=exit_id,
                position_key=f"{symbol}@0@1",
                symbol=symbol,
                quantity=1_000.0,
                entry_price=1.0,
                price=0.1,
                price_at=time.time(),
                stop=0.12,
                rule="stoploss",
                strategy="stoploss",
                triggered_at=time.time(),
                tick_mono=time.monotonic(),
            ),
        )
    for exit_id in ids:
        assert pipe.decision(exit_id)["decision"]["reason"] == "no_position"
    elapsed = time.monotonic() - started
    reads = pipe.paper.stats()["balance_reads"] - before
    # At most one urgent fetch per 0.2 s, and one per PORTFOLIO_CACHE_TTL (0.2 s here).
    assert reads <= elapsed / 0.1 + 3, f"{reads} Portfolio reads in {elapsed:.2f} s"
    assert sells(pipe, symbol) == []


def test_a_sell_signal_racing_a_stop_makes_one_order(pipe):
    symbols = ("XRPUSDC", "ADAUSDC", "LTCUSDC")
    for symbol in symbols:
        seed(pipe, symbol, 100.0, PRICES[symbol])
        watched(pipe, symbol)
    for symbol in symbols:
        # The stop-loss (5 % under entry) and a SELL signal of the aggregator, together.
        low = round(PRICES[symbol] * 0.9, 8)
        pipe.paper.set_price(symbol, low)
        payload = signal_payload(symbol, "SELL")
        tick(pipe, symbol, low)
        pipe.publish(payload)
        pipe.decision(signal_id(payload))
    for symbol in symbols:
        wait_for(lambda s=symbol: s not in pipe.positions(), message=f"{symbol} sold")
        wait_for(lambda s=symbol: stop_of(pipe, s) is None, message=f"the stop of {symbol} closed")
        assert len([f for f in fills(pipe, symbol) if f.side.value == "SELL"]) == 1
        assert len(sells(pipe, symbol)) == 1, f"one sell of {symbol} reached the exchange"


def test_a_crashed_trailing_stop_keeps_its_peaks_and_sells_once(pipe):
    seed(pipe, "BNBUSDC", 5.0, 600.0)
    watched(pipe, "BNBUSDC")
    published: list[float] = []
    done = threading.Event()

    def rising() -> None:
        price = 600.0
        while not done.is_set() and price < 700.0:
            price = round(price + 0.25, 2)
            tick(pipe, "BNBUSDC", price)
            published.append(price)
            done.wait(0.002)

    feeder = threading.Thread(target=rising, daemon=True)
    feeder.start()
    for _ in range(3):
        before = requests.get(pipe.url + "/supervisor", timeout=5).json()
        restarts = _restarts(before, "trailing_stop")
        pipe.drill("trailing_stop")
        wait_for(
            lambda r=restarts: (
                _restarts(requests.get(pipe.url + "/supervisor", timeout=5).json(), "trailing_stop")
                > r
            ),
            message="the TrailingStop restarted",
        )
    done.set()
    feeder.join(timeout=10)
    top = max(published)
    view = ticks_seen(pipe, "BNBUSDC", top)
    assert view["peak"] == top, "every tick reached an incarnation; no peak lost"
    expected = max(
        600.0 * 0.95,
        top * 0.98 if top >= 606.0 else 0.0,  # the 2 % trail, armed 1 % up
        600.0 * 1.002 if top >= 609.0 else 0.0,  # breakeven, armed 1.5 % up
    )
    assert view["stop"] == pytest.approx(expected)
    pipe.paper.set_price("BNBUSDC", top * 0.9)
    tick(pipe, "BNBUSDC", round(top * 0.9, 2))
    wait_for(lambda: "BNBUSDC" not in pipe.positions(), message="sold")
    assert len(sells(pipe, "BNBUSDC")) == 1


def _restarts(supervisor: dict[str, Any], name: str) -> int:
    children = supervisor["children"]
    child = (
        children[name]
        if isinstance(children, dict)
        else next(c for c in children if c["name"] == name)
    )
    return int(child["restarts"])


def test_the_loss_limits_stop_buys_through_the_trading_state(pipelines):
    pipe = pipelines({**ENV, "DAILY_LOSS_LIMIT_PERCENT": "1", "STOP_LOSS_PERCENT": "50"})
    seed(pipe, "ETHUSDC", 1.0, 3_000.0)
    watched(pipe, "ETHUSDC")
    # The position is 1,000 USDC under water: more than 1 % of about 12,000 of equity.
    pipe.paper.set_price("ETHUSDC", 2_000.0)
    status = wait_for(
        lambda: (
            (s := requests.get(pipe.url + "/status", timeout=5).json())["trading_state"]
            == "DEGRADED"
            and s
        ),
        message="DEGRADED by the loss limit",
    )
    codes = [r["code"] for r in status["trading"]["reasons"]]
    assert codes == ["daily_loss_limit"]
    buy = signal_payload("BTCUSDC", "BUY")
    pipe.publish(buy)
    assert pipe.decision(signal_id(buy))["decision"]["reason"] == "trading_degraded"
    sell = signal_payload("ETHUSDC", "SELL", price=2_000.0)
    pipe.publish(sell)
    assert pipe.decision(signal_id(sell))["decision"]["outcome"] == "accepted", "exits go on"


def test_cycle_ids_from_trade_cycles_and_the_atr_from_market_data(pipelines, own_postgres):
    """With a RootTrading database: the position's key is its cycle id, and the ATR rule
    starts from the stored candles instead of waiting for new ones."""
    five = 300_000
    newest = int(time.time() * 1000) // five * five
    with psycopg2.connect(own_postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """CREATE TABLE trade_cycles (id varchar(50) PRIMARY KEY, symbol varchar(20),
                   strategy varchar(50), status varchar(20), entry_price numeric(16, 8),
                   quantity numeric(16, 8), created_at timestamp)"""
        )
        cur.execute(
            "INSERT INTO trade_cycles VALUES ('cyc-1', 'XRPUSDC', 'x', 'active_buy', 0.6, 500,"
            " now()), ('cyc-0', 'XRPUSDC', 'x', 'completed', 0.5, 500, now())"
        )
        cur.execute(
            """CREATE TABLE market_data (time timestamptz, symbol text, timeframe text,
                   open double precision, high double precision, low double precision,
                   close double precision, volume double precision)"""
        )
        # 30 candles, each 0.01 high-to-low around 0.6: the ATR is 0.01.
        for step in range(30):
            cur.execute(
                "INSERT INTO market_data VALUES (to_timestamp(%s), 'XRPUSDC', '5m',"
                " 0.6, 0.605, 0.595, 0.6, 1000)",
                ((newest - step * five) / 1000,),
            )
    conn.close()
    pipe = pipelines(
        {**ENV, "STOP_RULES_BY_SYMBOL": "XRPUSDC=stoploss+atr", "ATR_MULTIPLIER": "2"},
        database_dsn=own_postgres.dsn,
    )
    seed(pipe, "XRPUSDC", 500.0, 0.6)
    view = watched(pipe, "XRPUSDC")
    assert view["position_key"] == "cycle:cyc-1" and view["cycle_id"] == "cyc-1"
    assert view["strategy"] == "stoploss+atr"
    # Entry 0.6, ATR 0.01 from market_data: the ATR trail sits at 0.6 - 2 x 0.01.
    atr_stop = wait_for(
        lambda: (p := stop_of(pipe, "XRPUSDC")) and p["stop_rule"] == "atr" and p,
        message="the ATR stop once the history is read",
    )
    assert atr_stop["stop"] == pytest.approx(0.58)
    tick(pipe, "XRPUSDC", 0.62)
    assert ticks_seen(pipe, "XRPUSDC", 0.62)["stop"] == pytest.approx(0.60)
