"""The paper exchange: the Trader and Portfolio contracts over real HTTP, filled on paper.

``POST /order``, ``GET /orders``, ``GET /order/<id>``, ``GET /balances``,
``GET /positions/active``, ``GET /health`` as the RootTrading services answer them
(DESIGN section 3, ``rt-contract/``). MARKET orders fill at the latest
price seen on the market-data channels, else at the order's reference price, with a
0.1 % fee (in the quote asset; with ``fee_in_base`` a BUY's fee is taken in the base
asset). Knobs for tests and drills (``POST /_paper/knobs``): added latency, an error
rate, answers that never come in time, rejection of the next N orders, the fee asset;
``GET /_paper/stats`` counts what was received.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

import bottle
from bottle import request, response

from coordinator.http.server import HttpServer
from coordinator.infra.redis_bus import MARKET_DATA_PATTERN, Subscription
from coordinator.trading.paper_book import BookRejection, PaperBook
from coordinator.trading.signals import Side
from coordinator.trading.symbols import split_symbol

__all__ = ["Knobs", "PaperExchange"]

logger = logging.getLogger(__name__)

_TRADER_DEDUP_SECONDS = 10.0
_KNOB_NAMES = (
    "latency",
    "error_rate",
    "timeout",
    "reject_next",
    "health_status",
    "fail_after_fill",
    "history_status",
)


class Knobs:
    """Fault injection, changed at run time through ``POST /_paper/knobs``."""

    def __init__(self) -> None:
        self.latency: float = 0.0
        """Seconds added before every order is answered."""
        self.error_rate: float = 0.0
        """Fraction of orders answered 500 without a fill."""
        self.timeout: float = 0.0
        """Seconds an order waits, after it is filled, before it is answered."""
        self.reject_next: int = 0
        """The next N orders are refused with 400 (a business rejection)."""
        self.health_status: int = 200
        """Status of ``GET /health``."""
        self.fail_after_fill: int = 0
        """The next N orders are filled, then answered 500 (the Trader's rare path where
        Binance filled and its own error handling answered a failure)."""
        self.history_status: int = 200
        """Status of ``GET /orders`` and ``GET /order/<id>`` (not 200: the Trader's order
        history cannot be read, as after its restart lost it)."""

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if name not in _KNOB_NAMES:
                raise ValueError(f"unknown knob {name!r}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"knob {name} must be a number")
            if not math.isfinite(value) or value < 0 or (name == "error_rate" and value > 1):
                raise ValueError(f"knob {name}={value} is out of range")
            counts = ("reject_next", "health_status", "fail_after_fill", "history_status")
            setattr(self, name, int(value) if name in counts else value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "error_rate": self.error_rate,
            "timeout": self.timeout,
            "reject_next": self.reject_next,
            "health_status": self.health_status,
            "fail_after_fill": self.fail_after_fill,
            "history_status": self.history_status,
        }


class PaperExchange:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        starting_balance: float = 10_000.0,
        fee_rate: float = 0.001,
        fee_in_base: bool = False,
        quote_asset: str = "USDC",
        redis_url: str | None = None,
        threads: int = 8,
        seed: int | None = None,
    ) -> None:
        self.book = PaperBook(
            quote_asset=quote_asset,
            starting_balance=starting_balance,
            fee_rate=fee_rate,
            fee_in_base=fee_in_base,
        )
        self.knobs = Knobs()
        self.prices: dict[str, float] = {}
        self.orders_received = 0
        self.fills_by_client_id: Counter[str] = Counter()
        self.requests_by_client_id: Counter[str] = Counter()
        self.balance_reads = 0
        # The latest orders in their order of arrival (monotonic arrival, symbol, side,
        # client order id, quantity; status and error once answered), so a benchmark on
        # this machine can time an order's arrival against its cause, and a soak can
        # tell a re-send after a failure from a second request after a fill.
        self.order_log: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._orders: dict[str, dict[str, Any]] = {}
        self._recent: dict[tuple[str, str, str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._ids = itertools.count(10_000_000)
        # The Trader's own record of executed orders (``GET /orders``), oldest first.
        self._trader_orders: list[dict[str, Any]] = []
        self._trader_order_ids: dict[str, dict[str, Any]] = {}
        self._started = time.time()
        self._release = threading.Event()
        self._subscription = (
            Subscription(
                redis_url,
                patterns=(MARKET_DATA_PATTERN,),
                on_message=self._on_market_data,
                name="paper-market-data",
            )
            if redis_url
            else None
        )
        self._server = HttpServer(self._app(), host=host, port=port, threads=threads)
        self.url = self._server.url

    def start(self) -> PaperExchange:
        if self._subscription is not None:
            self._subscription.start()
        self._server.start()
        logger.info(
            "paper exchange on %s (%.2f %s, fee %.3f %% in the %s asset)",
            self.url,
            self.book.starting_balance,
            self.book.quote_asset,
            self.book.fee_rate * 100,
            "base" if self.book.fee_in_base else "quote",
        )
        return self

    def stop(self) -> None:
        self._release.set()
        if self._subscription is not None:
            self._subscription.stop()
        self._server.stop()

    def set_price(self, symbol: str, price: float) -> None:
        with self._lock:
            self.prices[symbol] = price

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders_received": self.orders_received,
                "orders_filled": len(self.book.fills),
                "duplicates_by_client_order_id": sum(
                    1 for n in self.fills_by_client_id.values() if n > 1
                ),
                "fills_by_client_order_id": dict(self.fills_by_client_id),
                "requests_by_client_order_id": dict(self.requests_by_client_id),
                "balance_reads": self.balance_reads,
                "knobs": self.knobs.as_dict(),
            }

    # --- market data ------------------------------------------------------------------

    def _on_market_data(self, _channel: str, data: bytes) -> None:
        try:
            candle = json.loads(data)
            price = float(candle["close"])
            symbol = str(candle["symbol"]).upper()
        except (ValueError, KeyError, TypeError):
            return
        if math.isfinite(price) and price > 0:
            self.set_price(symbol, price)

    # --- HTTP -------------------------------------------------------------------------

    def _app(self) -> bottle.Bottle:
        app = bottle.Bottle(catchall=True, autojson=True)

        def error(res: bottle.HTTPError) -> str:
            response.content_type = "application/json"
            return json.dumps({"error": str(res.body)})

        app.default_error_handler = error

        @app.get("/health")
        def health() -> dict[str, Any]:
            response.status = self.knobs.health_status
            return {
                "status": "ok" if self.knobs.health_status < 400 else "failing",
                "service": "paper-exchange",
                "timestamp": time.time(),
                "uptime": time.time() - self._started,
            }

        @app.post("/order")
        def order() -> dict[str, Any]:
            arrival: dict[str, Any] = {}
            status, body = self._order(request.body.read(64 * 1024 + 1), arrival)
            arrival.update(status=status, error=body.get("error"), answered=time.monotonic())
            response.status = status
            return body

        @app.get("/orders")
        def trader_orders() -> Any:
            if self.knobs.history_status != 200:
                response.status = self.knobs.history_status
                return _flask_json({"error": "paper exchange: order history unavailable"})
            status, body = self._list_orders(request.query.get("limit", "50"))
            response.status = status
            response.content_type = "application/json"
            return body

        @app.get("/order/<order_id>")
        def trader_order(order_id: str) -> Any:
            if self.knobs.history_status != 200:
                response.status = self.knobs.history_status
                return _flask_json({"error": "paper exchange: order history unavailable"})
            with self._lock:
                found = self._trader_order_ids.get(order_id)
            response.content_type = "application/json"
            if found is None:
                response.status = 404
                return _flask_json({"message": f"Ordre {order_id} non trouvé", "success": False})
            return _flask_json({"order": found, "success": True})

        @app.get("/balances")
        def balances() -> Any:
            with self._lock:
                self.balance_reads += 1
                rows = self.book.balances_view(self._asset_prices())
            if not rows:
                response.status = 404
                return {"error": "no balances"}
            response.content_type = "application/json"
            return json.dumps(rows)

        @app.get("/positions/active")
        def positions() -> Any:
            with self._lock:
                rows = self.book.positions_view(dict(self.prices))
            response.content_type = "application/json"
            return json.dumps(rows)

        @app.post("/_paper/knobs")
        def knobs() -> dict[str, Any]:
            try:
                changes = json.loads(request.body.read(4096) or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object")
                fee_in_base = changes.pop("fee_in_base", None)
                if fee_in_base is not None and not isinstance(fee_in_base, bool):
                    raise ValueError("knob fee_in_base must be true or false")
                with self._lock:
                    self.knobs.update(changes)
                    if fee_in_base is not None:
                        self.book.fee_in_base = fee_in_base
            except ValueError as exc:
                response.status = 400
                return {"error": str(exc)}
            return {**self.knobs.as_dict(), "fee_in_base": self.book.fee_in_base}

        @app.post("/_paper/prices")
        def prices() -> dict[str, Any]:
            try:
                changes = json.loads(request.body.read(64 * 1024) or b"{}")
                for symbol, price in changes.items():
                    if not isinstance(price, int | float) or not price > 0:
                        raise ValueError(f"price of {symbol} must be > 0")
                    self.set_price(str(symbol).upper(), float(price))
            except (ValueError, AttributeError) as exc:
                response.status = 400
                return {"error": str(exc)}
            return {"prices": dict(self.prices)}

        @app.get("/_paper/stats")
        def stats() -> dict[str, Any]:
            return self.stats()

        @app.get("/_paper/orders")
        def order_log() -> dict[str, Any]:
            with self._lock:
                rows = list(self.order_log)
            return {"orders": [dict(row) for row in rows]}

        @app.post("/_paper/positions")
        def seed_positions() -> dict[str, Any]:
            try:
                rows = json.loads(request.body.read(16 * 1024 * 1024) or b"[]")
                if not isinstance(rows, list):
                    raise ValueError("body must be a JSON list of positions")
                with self._lock:
                    for row in rows:
                        if not isinstance(row, dict):
                            raise ValueError("each position must be an object")
                        self.book.seed(
                            symbol=str(row["symbol"]).upper(),
                            quantity=float(row["quantity"]),
                            entry_price=float(row["entry_price"]),
                            opened_at=float(row.get("opened_at") or time.time()),
                        )
            except (ValueError, KeyError, TypeError, BookRejection) as exc:
                response.status = 400
                return {"error": str(exc)}
            return {"positions": len(self.book.positions)}

        return app

    def _asset_prices(self) -> dict[str, float]:
        return dict(self.prices)

    def _order(self, raw: bytes, arrival: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arrived = time.monotonic()
        with self._lock:
            self.orders_received += 1
            knobs = (
                self.knobs.latency,
                self.knobs.error_rate,
                self.knobs.timeout,
            )
        latency, error_rate, timeout = knobs
        if latency:
            self._release.wait(latency)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            symbol = body["symbol"]
            side = Side(body["side"])
            quantity = float(body["quantity"])
            strategy = str(body.get("strategy") or "")
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ValueError("metadata must be an object")
            if not isinstance(symbol, str):
                raise ValueError("symbol must be a string")
            split_symbol(symbol)
            if not math.isfinite(quantity) or quantity <= 0:
                raise ValueError("quantity must be > 0")
        except (ValueError, KeyError, TypeError) as exc:
            return 422, {"error": f"invalid order: {exc}"}
        arrival.update(
            mono=arrived,
            symbol=symbol,
            side=side.value,
            client_order_id=str(metadata.get("client_order_id") or ""),
            quantity=quantity,
            status=None,
            error=None,
            answered=None,
        )
        with self._lock:
            self.order_log.append(arrival)
        client_id = str(metadata.get("client_order_id") or "")
        now = time.time()
        with self._lock:
            if client_id:
                self.requests_by_client_id[client_id] += 1
            if self.knobs.reject_next > 0:
                self.knobs.reject_next -= 1
                return 400, {"error": "paper exchange: order rejected (injected)"}
            if client_id and client_id in self._orders:
                return 201, self._orders[client_id]
            key = (symbol, side.value, str(quantity), strategy)
            seen = self._recent.get(key)
            if seen is not None and now - seen[0] < _TRADER_DEDUP_SECONDS:
                # The RootTrading Trader answers an identical order within 10 s with the
                # first one's id, whether or not that one executed.
                return 201, {"order_id": seen[1], "status": "created", "timestamp": now}
            order_id = f"order_{uuid.uuid4().hex[:16]}"
            # Like the Trader, the de-duplication entry is written before execution: a
            # failed attempt leaves it behind.
            self._recent[key] = (now, order_id)
            if error_rate and self._random.random() < error_rate:
                return 500, {"error": "paper exchange: injected failure"}
            price = self.prices.get(symbol) or _reference_price(body, metadata)
            if price is None:
                del self._recent[key]
                return 422, {"error": f"no market price known for {symbol} and no reference price"}
            try:
                fill = self.book.fill(
                    order_id=order_id,
                    symbol=symbol,
                    side=side,
                    quantity=quantity,
                    price=price,
                    strategy=strategy,
                    now=now,
                )
            except BookRejection as exc:
                # The Trader keeps the entry here too (its 422); dropped so that a
                # refused order can be tried again at once in tests of other parts.
                del self._recent[key]
                return 400, {"error": str(exc)}
            # A fill is a price: without a market-data price it stands in for one.
            self.prices.setdefault(symbol, price)
            record = {
                "binance_order_id": str(next(self._ids)),
                "demo": True,
                "id": order_id,
                "price": fill.price,
                "quantity": quantity,
                "side": side.value,
                "status": "FILLED",
                "strategy": strategy,
                "symbol": symbol,
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
            }
            self._trader_orders.append(record)
            self._trader_order_ids[order_id] = record
            answer = {"order_id": order_id, "status": "created", "timestamp": now}
            if client_id:
                self._orders[client_id] = answer
                self.fills_by_client_id[client_id] += 1
            if self.knobs.fail_after_fill > 0:
                self.knobs.fail_after_fill -= 1
                return 500, {"error": "paper exchange: failed after the fill (injected)"}
        if timeout:
            # Filled, but the answer comes too late: the caller cannot know.
            self._release.wait(timeout)
        return 201, answer

    def _list_orders(self, raw_limit: str) -> tuple[int, str]:
        """``GET /orders``: the Trader slices its history as ``[-limit:]`` (0: all), and
        a limit that is not an integer is its 500."""
        try:
            limit = int(raw_limit)
        except ValueError as exc:
            return 500, _flask_json({"error": str(exc)})
        with self._lock:
            orders = list(self._trader_orders[-limit:])
        return 200, _flask_json({"count": len(orders), "orders": orders, "success": True})


def _flask_json(body: Any) -> str:
    """As Flask's ``jsonify``: compact, keys sorted, non-ASCII escaped, a final newline."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n"


def _reference_price(body: dict[str, Any], metadata: dict[str, Any]) -> float | None:
    for value in (body.get("price"), metadata.get("reference_price")):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None
