"""The paper exchange over real HTTP: the Trader and Portfolio contracts, and its knobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from coordinator.infra.paper_exchange import PaperExchange
from coordinator.trading.paper_book import BookRejection, PaperBook
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol
from tests.waiting import wait_for


@pytest.fixture
def paper() -> Iterator[PaperExchange]:
    exchange = PaperExchange(starting_balance=10_000.0).start()
    exchange.set_price("BTCUSDC", 50_000.0)
    yield exchange
    exchange.stop()


def order(url: str, side: str = "BUY", quantity: float = 0.1, **extra: Any) -> requests.Response:
    body = {
        "symbol": "BTCUSDC",
        "side": side,
        "quantity": quantity,
        "price": None,
        "strategy": "CONSENSUS",
        "timestamp": int(time.time() * 1000),
        "metadata": {},
        **extra,
    }
    return requests.post(url + "/order", json=body, timeout=5)


def test_buy_then_sell_moves_balances_and_positions(paper):
    bought = order(paper.url)
    assert bought.status_code == 201
    assert bought.json()["status"] == "created" and bought.json()["order_id"]
    balances = {b["asset"]: b for b in requests.get(paper.url + "/balances", timeout=5).json()}
    assert balances["USDC"]["free"] == pytest.approx(10_000 - 5_000 - 5)  # 0.1 % fee
    assert balances["BTC"]["total"] == pytest.approx(0.1)
    assert balances["BTC"]["value_usdc"] == pytest.approx(5_000)
    positions = requests.get(paper.url + "/positions/active", timeout=5).json()
    assert positions[0]["symbol"] == "BTCUSDC" and positions[0]["side"] == "LONG"
    assert positions[0]["entry_price"] == 50_000.0

    paper.set_price("BTCUSDC", 55_000.0)
    position = requests.get(paper.url + "/positions/active", timeout=5).json()[0]
    assert position["pnl"] == pytest.approx(500.0)
    sold = order(paper.url, "SELL", 0.1)
    assert sold.status_code == 201
    assert requests.get(paper.url + "/positions/active", timeout=5).json() == []
    usdc = requests.get(paper.url + "/balances", timeout=5).json()[0]
    assert usdc["free"] == pytest.approx(4_995 + 5_500 - 5.5)


def test_refusals_are_4xx(paper):
    assert order(paper.url, quantity=1.0).status_code == 400  # 50,000 > 10,000
    assert "insufficient BTC" in order(paper.url, "SELL", 0.1).json()["error"]
    assert order(paper.url, quantity=-1).status_code == 422
    assert requests.post(paper.url + "/order", data="x", timeout=5).status_code == 422


def test_one_order_per_client_order_id_and_trader_dedup(paper):
    first = order(paper.url, metadata={"client_order_id": "c-1"})
    again = order(paper.url, quantity=0.05, metadata={"client_order_id": "c-1"})
    assert again.json() == first.json()
    same = order(paper.url, quantity=0.1)  # identical symbol|side|quantity|strategy within 10 s
    assert same.json()["order_id"] == first.json()["order_id"]
    stats = paper.stats()
    assert stats["orders_received"] == 3
    assert stats["orders_filled"] == 1
    assert stats["requests_by_client_order_id"] == {"c-1": 2}
    assert stats["fills_by_client_order_id"] == {"c-1": 1}


def test_knobs(paper):
    knobs = paper.url + "/_paper/knobs"
    assert requests.post(knobs, json={"reject_next": 1}, timeout=5).status_code == 200
    assert order(paper.url, quantity=0.01).status_code == 400
    assert order(paper.url, quantity=0.011).status_code == 201
    requests.post(knobs, json={"error_rate": 1.0}, timeout=5)
    assert order(paper.url, quantity=0.012).status_code == 500
    requests.post(knobs, json={"error_rate": 0.0, "timeout": 1.0}, timeout=5)
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            paper.url + "/order",
            json={"symbol": "BTCUSDC", "side": "BUY", "quantity": 0.013, "strategy": "x"},
            timeout=(1, 0.2),
        )
    requests.post(knobs, json={"timeout": 0, "health_status": 503}, timeout=5)
    assert requests.get(paper.url + "/health", timeout=5).status_code == 503
    bad = requests.post(knobs, json={"error_rate": 2}, timeout=5)
    assert bad.status_code == 400 and "out of range" in bad.json()["error"]
    assert requests.post(knobs, json={"nope": 1}, timeout=5).status_code == 400
    # The order that timed out was filled: the caller just never heard.
    wait_for(lambda: paper.stats()["orders_filled"] == 2)


def test_order_log_keeps_each_arrival_with_its_answer(paper):
    knobs = paper.url + "/_paper/knobs"
    requests.post(knobs, json={"error_rate": 1.0}, timeout=5)
    order(paper.url, metadata={"client_order_id": "c-1"})
    requests.post(knobs, json={"error_rate": 0.0}, timeout=5)
    order(paper.url, metadata={"client_order_id": "c-1"})
    order(paper.url, "SELL", 0.2, metadata={"client_order_id": "c-2"})
    rows = requests.get(paper.url + "/_paper/orders", timeout=5).json()["orders"]
    assert [(r["client_order_id"], r["side"], r["quantity"], r["status"]) for r in rows] == [
        ("c-1", "BUY", 0.1, 500),
        ("c-1", "BUY", 0.1, 201),
        ("c-2", "SELL", 0.2, 400),
    ]
    assert rows[0]["error"] == "paper exchange: injected failure" and rows[1]["error"] is None
    assert "insufficient BTC" in rows[2]["error"]
    assert all(r["mono"] <= r["answered"] for r in rows)


def test_empty_balances_answer_404():
    empty = PaperExchange(starting_balance=0.0).start()
    try:
        assert requests.get(empty.url + "/balances", timeout=5).status_code == 404
    finally:
        empty.stop()


def test_prices_come_from_the_market_data_channels(redis_server):
    exchange = PaperExchange(redis_url=redis_server.url).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        candle = {"symbol": "ETHUSDC", "timeframe": "1m", "time": 0, "close": 3_000.0}
        wait_for(
            lambda: (
                client.publish("roottrading:market:data:ethusdc:1m", json.dumps(candle))
                and exchange.prices.get("ETHUSDC") == 3_000.0
            ),
            message="the price from the channel",
        )
        body = {"symbol": "ETHUSDC", "side": "BUY", "quantity": 1, "price": None, "strategy": "s"}
        assert requests.post(exchange.url + "/order", json=body, timeout=5).status_code == 201
        assert exchange.book.fills[-1].price == 3_000.0
    finally:
        client.close()
        exchange.stop()


def test_reference_price_when_no_market_price(paper):
    body = {
        "symbol": "SOLUSDC",
        "side": "BUY",
        "quantity": 1,
        "price": None,
        "strategy": "s",
        "metadata": {"reference_price": 150.0},
    }
    assert requests.post(paper.url + "/order", json=body, timeout=5).status_code == 201
    assert paper.book.fills[-1].price == 150.0
    # That fill is now the price of SOLUSDC; a symbol never priced cannot be filled.
    del body["metadata"]
    body["quantity"] = 2
    assert requests.post(paper.url + "/order", json=body, timeout=5).status_code == 201
    assert paper.book.fills[-1].price == 150.0
    body["symbol"] = "ADAUSDC"
    answer = requests.post(paper.url + "/order", json=body, timeout=5)
    assert answer.status_code == 422
    assert "no market price known for ADAUSDC" in answer.json()["error"]


def test_book_rules():
    book = PaperBook(starting_balance=100.0, fee_rate=0.0)
    book.fill(
        order_id="1",
        symbol="ETHUSDC",
        side=Side.BUY,
        quantity=0.02,
        price=3_000,
        strategy="s",
        now=0,
    )
    with pytest.raises(BookRejection, match="insufficient USDC"):
        book.fill(
            order_id="2",
            symbol="ETHUSDC",
            side=Side.BUY,
            quantity=0.02,
            price=3_000,
            strategy="s",
            now=0,
        )
    with pytest.raises(BookRejection, match="insufficient BTC"):
        book.fill(
            order_id="3",
            symbol="ETHBTC",
            side=Side.BUY,
            quantity=1,
            price=0.05,
            strategy="s",
            now=0,
        )
    book.fill(
        order_id="4",
        symbol="ETHUSDC",
        side=Side.BUY,
        quantity=0.01,
        price=4_000,
        strategy="s",
        now=1,
    )
    assert book.positions["ETHUSDC"].entry_price == pytest.approx(
        (0.02 * 3_000 + 0.01 * 4_000) / 0.03
    )
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD")
    with pytest.raises(ValueError):
        split_symbol("NOPE")


def test_a_balance_is_shown_rounded_down_so_that_selling_it_is_accepted():
    """A fee taken in the base asset leaves a balance with more than 8 decimals; shown
    rounded to the nearest (0.00947265 for 0.0094726479) it was more than is held, and
    the sale of the shown balance was refused."""
    book = PaperBook(starting_balance=1_000.0, fee_rate=0.001, fee_in_base=True)
    book.fill(
        order_id="1",
        symbol="BTCUSDC",
        side=Side.BUY,
        quantity=0.0094821300,
        price=65_000,
        strategy="s",
        now=0,
    )
    held = book.balances["BTC"]
    assert round(held, 8) > held, "the case where rounding to the nearest goes up"
    shown = next(r for r in book.balances_view({}) if r["asset"] == "BTC")["free"]
    assert shown <= held
    book.fill(
        order_id="2",
        symbol="BTCUSDC",
        side=Side.SELL,
        quantity=shown,
        price=65_000,
        strategy="s",
        now=1,
    )
