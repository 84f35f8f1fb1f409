"""The Trader's record of executed orders (``GET /orders``, ``GET /order/<id>``): the
client against RootTrading's own answers (the contract fixtures, byte for byte over a
socket), and the paper exchange serving the same shapes, its de-duplication quirk
included."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.trader_client import (
    SendResult,
    TraderClient,
    TraderReadError,
    parse_trader_order,
)
from tests.http_stub import serve_on_loopback

CONTRACT = Path(
    os.environ.get("COORDINATOR_RT_CONTRACT_DIR")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "rt-contract"
)
needs_contract = pytest.mark.skipif(
    not (CONTRACT / "trader").is_dir(),
    reason=f"the RootTrading contract fixtures are not at {CONTRACT} "
    "(set COORDINATOR_RT_CONTRACT_DIR)",
)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((CONTRACT / "trader" / name).read_text(encoding="utf-8"))


class FixtureTrader:
    """A real HTTP server answering each request with the recorded exchange whose path
    and query it matches, exactly as recorded (``body_raw``)."""

    def __init__(self, *names: str) -> None:
        exchanges = [fixture(n) for n in names]
        self.routes = {
            (e["request"]["path"], tuple(sorted(e["request"].get("query", {}).items()))): e[
                "response"
            ]
            for e in exchanges
        }
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                key = (url.path, tuple(sorted(parse_qsl(url.query))))
                answer = routes.get(key)
                if answer is None:
                    status, kind, body = 404, "text/html", b"<!doctype html><title>404</title>"
                else:
                    status, kind = answer["status"], answer["content_type"]
                    body = answer["body_raw"].encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server, self.url = serve_on_loopback(Handler)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def client(url: str) -> TraderClient:
    return TraderClient(url, connect_timeout=0.5, read_timeout=2.0)


@pytest.fixture
def paper() -> Iterator[PaperExchange]:
    exchange = PaperExchange().start()
    exchange.set_price("SOLUSDC", 199.91)
    exchange.set_price("BTCUSDC", 114_651.02)
    yield exchange
    exchange.stop()


def buy(url: str, symbol: str = "SOLUSDC", quantity: float = 1.1068501275829288) -> Any:
    body = {
        "symbol": symbol,
        "side": "BUY",
        "quantity": quantity,
        "price": None,
        "strategy": "CONSENSUS",
        "timestamp": int(time.time() * 1000),
        "metadata": {"type": "CONSENSUS"},
    }
    return requests.post(url + "/order", json=body, timeout=5)


# --- the client against RootTrading's answers ----------------------------------------


@needs_contract
def test_the_client_reads_the_traders_order_list_and_one_order():
    trader = FixtureTrader("get_orders.json", "get_order.json", "get_order_404.json")
    try:
        orders = TraderClient(trader.url, connect_timeout=0.5, read_timeout=2).orders(limit=50)
        assert [o.order_id for o in orders] == ["order_631560999f74979d", "order_53f354c377021b43"]
        sol = orders[1]
        assert (sol.symbol, sol.side, sol.status) == ("SOLUSDC", "BUY", "FILLED")
        assert sol.quantity == 1.1068501275829288  # requested, before the step truncation
        assert sol.price == 199.90999999999997
        assert sol.binance_order_id == "2281734905"
        assert sol.at == pytest.approx(1761573796.239095)
        assert client(trader.url).order("order_53f354c377021b43") == sol
        assert client(trader.url).order("order_5a013c49508291c6") is None
    finally:
        trader.stop()


@needs_contract
def test_a_bad_limit_or_a_missing_route_is_an_error_not_an_empty_answer():
    trader = FixtureTrader("get_orders_500_bad_limit.json", "get_health.json")
    try:
        with pytest.raises(TraderReadError, match="500"):
            client(trader.url)._read("/orders?limit=abc", (200,))
        # Flask's HTML 404 of a route the Trader lacks says nothing about the order.
        with pytest.raises(TraderReadError, match="404"):
            client(trader.url).order("order_0123456789abcdef")
        started = client(trader.url).status().started_at
        assert started == pytest.approx(1761574212.402871 - 11287.930241584778)
    finally:
        trader.stop()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ([], "must be an object"),
        ({"id": "order_1", "symbol": "X"}, "no field"),
        (
            {
                "id": "order_1",
                "symbol": "SOLUSDC",
                "side": "BUY",
                "status": "FILLED",
                "quantity": "1.1",
                "price": 1.0,
                "timestamp": "2025-10-27T14:03:16+00:00",
            },
            "'quantity' must be a number",
        ),
        (
            {
                "id": "order_1",
                "symbol": "SOLUSDC",
                "side": "BUY",
                "status": "FILLED",
                "quantity": 1.1,
                "price": 1.0,
                "timestamp": "2025-10-27T14:03:16",
            },
            "no UTC offset",
        ),
    ],
)
def test_a_malformed_order_names_the_field(entry, problem):
    with pytest.raises(TraderReadError, match=problem):
        parse_trader_order(entry)


# --- the paper exchange serves the same shapes ---------------------------------------


@needs_contract
def test_the_paper_exchange_lists_orders_in_the_traders_shape(paper):
    recorded = fixture("get_orders.json")["response"]
    assert buy(paper.url, "BTCUSDC", 0.006253336541274885).status_code == 201
    placed = buy(paper.url).json()["order_id"]
    assert placed.startswith("order_") and len(placed) == len("order_53f354c377021b43")
    int(placed.removeprefix("order_"), 16)

    answer = requests.get(paper.url + "/orders", params={"limit": "50"}, timeout=5)
    assert answer.status_code == recorded["status"]
    assert answer.headers["Content-Type"].startswith(recorded["content_type"])
    body = answer.json()
    assert body.keys() == recorded["body"].keys() and body["count"] == 2 and body["success"]
    for ours, theirs in zip(body["orders"], recorded["body"]["orders"], strict=True):
        assert ours.keys() == theirs.keys()
        assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}
    # Flask's jsonify: compact, keys sorted, a final newline.
    assert answer.text == json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n"
    assert body["orders"][1]["id"] == placed
    assert body["orders"][1]["quantity"] == 1.1068501275829288
    assert body["orders"][1]["timestamp"].endswith("+00:00")

    last = requests.get(paper.url + "/orders", params={"limit": "1"}, timeout=5).json()
    assert [o["id"] for o in last["orders"]] == [placed]  # sliced as [-limit:]
    every = requests.get(paper.url + "/orders", params={"limit": "0"}, timeout=5).json()
    assert every["count"] == 2
    bad = requests.get(paper.url + "/orders", params={"limit": "abc"}, timeout=5)
    assert bad.status_code == 500
    assert bad.json() == fixture("get_orders_500_bad_limit.json")["response"]["body"]

    found = requests.get(f"{paper.url}/order/{placed}", timeout=5)
    recorded_one = fixture("get_order.json")["response"]["body"]
    assert found.status_code == 200 and found.json().keys() == recorded_one.keys()
    assert found.json()["order"] == body["orders"][1]
    assert [o.order_id for o in client(paper.url).orders()] == [o["id"] for o in body["orders"]]


@needs_contract
def test_the_paper_exchange_answers_an_unknown_order_as_the_trader_does(paper):
    recorded = fixture("get_order_404.json")["response"]
    missing = requests.get(paper.url + "/order/order_5a013c49508291c6", timeout=5)
    assert missing.status_code == 404
    assert missing.text == recorded["body_raw"]
    assert client(paper.url).order("order_5a013c49508291c6") is None


def test_a_retry_within_10_s_of_a_failed_attempt_gets_the_failed_attempts_id(paper):
    trader = client(paper.url)
    paper.knobs.update({"error_rate": 1.0})
    failed = buy(paper.url)
    assert failed.status_code == 500
    paper.knobs.update({"error_rate": 0.0})

    retry = trader.submit(
        {
            "symbol": "SOLUSDC",
            "side": "BUY",
            "quantity": 1.1068501275829288,
            "price": None,
            "strategy": "CONSENSUS",
        }
    )

    # A 201 that executed nothing: the id it carries is unknown to the Trader.
    assert retry.result is SendResult.ACCEPTED
    assert trader.order(retry.order_id) is None
    assert trader.orders() == []
    assert paper.stats()["orders_filled"] == 0
    # Another quantity is another order, and executes.
    other = trader.submit(
        {"symbol": "SOLUSDC", "side": "BUY", "quantity": 1.1, "strategy": "CONSENSUS"}
    )
    assert trader.order(other.order_id) is not None


def test_a_failure_after_the_fill_is_in_the_traders_list(paper):
    paper.knobs.update({"fail_after_fill": 1})
    answer = buy(paper.url)
    assert answer.status_code == 500
    orders = client(paper.url).orders()
    assert [(o.symbol, o.side, o.quantity) for o in orders] == [
        ("SOLUSDC", "BUY", 1.1068501275829288)
    ]
    assert paper.knobs.fail_after_fill == 0
    assert buy(paper.url, quantity=1.0).status_code == 201
