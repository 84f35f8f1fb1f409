"""A minimal Trader and Portfolio for benchmarks: cheap, stateful, and recording.

    python bench/trader_stub.py --port P [--host H] [--balance 1000000000]

One stdlib ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive, each answer written in one
``send``) serving what the coordinator uses of RootTrading's Trader (``POST /order``,
``GET /orders``, ``GET /order/<id>``, ``GET /health``) and Portfolio (``GET /balances``,
``GET /positions/active``), in the shapes of /work/shared/rt-contract. It holds one book:
a BUY fills at once at the order's reference price, adds its quantity to the base
asset's balance and opens (or adds to) the symbol's position; a SELL takes from the base
balance and closes the symbol's position whatever quantity it sold, as RootTrading's
Trader closes every open cycle of the symbol (what it leaves is dust in ``/balances``,
never a position); a SELL beyond the base balance (or a BUY beyond the quote balance) is
refused with the Trader's 422, as the exchange would refuse it. No fees, no step sizes,
no de-duplication: every request that arrives is executed or refused on its own, so a
second request for one client order id shows in the record as a second order.

For the benchmark itself:

``POST /_stub/positions``  seed held positions: ``[{"symbol", "quantity", "entry_price"}]``
``GET /_stub/orders?since=N``  every order request from the N-th on: arrival (monotonic
                           and wall clock), client order id, symbol, side, quantity,
                           status, the reason of a refusal, and the body as received
``GET /_stub/stats``       counts of requests, fills and refusals, positions held

Importable too: ``TraderStub(port=0).start()`` runs it on a thread of this process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["StubBook", "TraderStub"]

QUOTE = "USDC"
_EPSILON = 1e-9
_MAX_BODY = 16 * 1024 * 1024


class OrderRefused(Exception):
    """What the exchange would refuse (a SELL beyond the holding, a BUY beyond the
    balance); the Trader answers it 422."""


class StubBook:
    """Balances, positions and the record of every order request; thread-safe."""

    def __init__(self, quote_balance: float) -> None:
        self._lock = threading.Lock()
        self.quote = quote_balance
        # symbol -> quantity, entry price, opened at (epoch seconds): the open cycle
        self.positions: dict[str, list[float]] = {}
        # base asset -> amount held (a position's quantity, and what SELLs left of it)
        self.bases: dict[str, float] = {}
        self.prices: dict[str, float] = {}
        self.requests: list[dict[str, Any]] = []
        self.filled: list[dict[str, Any]] = []
        self._filled_by_id: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(10_000_000)

    def seed(self, rows: list[Any]) -> int:
        """Hold these positions and their base amounts (replacing any held of the same
        symbol)."""
        parsed = []
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"position {index}: must be an object")
            try:
                symbol = _symbol(row["symbol"])
                quantity = _positive(row["quantity"], "quantity")
                entry = _positive(row["entry_price"], "entry_price")
            except KeyError as exc:
                raise ValueError(f"position {index}: no field {exc.args[0]!r}") from None
            except ValueError as exc:
                raise ValueError(f"position {index}: {exc}") from None
            parsed.append((symbol, quantity, entry, float(row.get("opened_at") or time.time())))
        with self._lock:
            for symbol, quantity, entry, opened in parsed:
                self.positions[symbol] = [quantity, entry, opened]
                self.bases[symbol[: -len(QUOTE)]] = quantity
                self.prices[symbol] = entry
            return len(self.positions)

    def order(self, raw: bytes, arrived_mono: float, arrived_wall: float) -> tuple[int, Any]:
        """Execute or refuse one ``POST /order`` body; the status and the answer."""
        record: dict[str, Any] = {"mono": arrived_mono, "wall": arrived_wall}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record["body"] = body
        with self._lock:
            record["index"] = len(self.requests)
            self.requests.append(record)
        if not isinstance(body, dict) or not all(body.get(k) for k in ("symbol", "side")):
            # The Trader's own words for a body it cannot use.
            record["status"] = 400
            record["error"] = "Paramètres manquants: symbol, side, quantity requis"
            return 400, {"error": record["error"]}
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        record.update(
            client_order_id=str(metadata.get("client_order_id") or ""),
            signal_id=str(metadata.get("signal_id") or ""),
            symbol=str(body["symbol"]).upper(),
            side=str(body["side"]).upper(),
            quantity=body.get("quantity"),
        )
        try:
            symbol = _symbol(body["symbol"])
            quantity = _positive(body.get("quantity"), "quantity")
            side = record["side"]
            if side not in ("BUY", "SELL"):
                raise ValueError(f"side must be BUY or SELL, not {body['side']!r}")
            with self._lock:
                price = _reference_price(body, metadata) or self.prices.get(symbol) or 1.0
                self._execute(symbol, side, quantity, price)
                order_id = f"order_{uuid.uuid4().hex[:16]}"
                now = time.time()
                filled = {
                    "binance_order_id": str(next(self._ids)),
                    "demo": True,
                    "id": order_id,
                    "price": price,
                    "quantity": quantity,
                    "side": side,
                    "status": "FILLED",
                    "strategy": str(body.get("strategy") or ""),
                    "symbol": symbol,
                    "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
                }
                self.filled.append(filled)
                self._filled_by_id[order_id] = filled
        except (ValueError, OrderRefused) as exc:
            record["status"] = 422
            record["error"] = str(exc)
            return 422, {"error": f"Ordre non créé - {exc}"}
        record.update(status=201, order_id=order_id, price=price)
        return 201, {"order_id": order_id, "status": "created", "timestamp": now}

    def _execute(self, symbol: str, side: str, quantity: float, price: float) -> None:
        held = self.positions.get(symbol)
        base = symbol[: -len(QUOTE)]
        if side == "BUY":
            cost = quantity * price
            if cost > self.quote + _EPSILON:
                raise OrderRefused(f"insufficient {QUOTE} balance: {cost:.8g} > {self.quote:.8g}")
            self.quote -= cost
            self.bases[base] = self.bases.get(base, 0.0) + quantity
            if held is None:
                self.positions[symbol] = [quantity, price, time.time()]
            else:
                total = held[0] + quantity
                held[1] = (held[0] * held[1] + quantity * price) / total
                held[0] = total
            self.prices[symbol] = price
            return
        # The exchange checks the balance, not the position (RootTrading sells without
        # one: an orphan cycle).
        holding = self.bases.get(base, 0.0)
        if quantity > holding * (1 + _EPSILON) + _EPSILON:
            raise OrderRefused(
                f"insufficient balance: sell {quantity:.8g} {symbol}, held {holding:.8g}"
            )
        self.quote += quantity * price
        left = holding - quantity
        if left <= holding * _EPSILON + _EPSILON:
            self.bases.pop(base, None)
        else:
            self.bases[base] = left
        # A SELL closes the symbol's position whatever it sold: RootTrading's Trader
        # closes every open cycle of the symbol, each with its own quantity, so
        # /positions/active never shows a remainder (the Portfolio's positions are the
        # open cycles; the remainder is dust in /balances).
        self.positions.pop(symbol, None)
        self.prices[symbol] = price

    def trader_order(self, order_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._filled_by_id.get(order_id)

    def trader_orders(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.filled[-limit:]) if limit > 0 else list(self.filled)

    def balances(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = [_balance_row(QUOTE, self.quote, 1.0)]
            for base, amount in self.bases.items():
                rows.append(_balance_row(base, amount, self.prices.get(base + QUOTE, 0.0)))
        return rows

    def active_positions(self) -> list[dict[str, Any]]:
        with self._lock:
            held = [(s, *p, self.prices.get(s, p[1])) for s, p in self.positions.items()]
        return [
            {
                "symbol": symbol,
                "side": "LONG",
                "quantity": quantity,
                "entry_price": entry,
                "current_price": price,
                "pnl": (price - entry) * quantity,
                "pnl_percentage": (price / entry - 1) * 100,
                "value": price * quantity,
                "margin_used": price * quantity,
                # The Portfolio's naive UTC ISO time, as RootTrading's answers carry it.
                "timestamp": datetime.fromtimestamp(opened, UTC).replace(tzinfo=None).isoformat(),
                "status": "ACTIVE",
                "strategy": "CONSENSUS",
            }
            for symbol, quantity, entry, opened, price in held
        ]

    def recorded(self, since: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self.requests[max(0, since) :]]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            statuses: dict[str, int] = {}
            for row in self.requests:
                key = str(row.get("status"))
                statuses[key] = statuses.get(key, 0) + 1
            return {
                "requests": len(self.requests),
                "filled": len(self.filled),
                "by_status": statuses,
                "positions": len(self.positions),
                "quote_balance": self.quote,
            }


class TraderStub:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, balance: float = 1e9) -> None:
        self.book = StubBook(balance)
        self.started = time.time()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Small answers on kept-alive connections: Nagle would hold each one back
            # until the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                stub._get(self)

            def do_POST(self) -> None:
                stub._post(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="trader-stub", daemon=True
        )

    def start(self) -> TraderStub:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        path = parts.path
        book = self.book
        if path == "/health":
            now = time.time()
            _reply(
                handler, 200, {"status": "healthy", "timestamp": now, "uptime": now - self.started}
            )
        elif path == "/balances":
            _reply(handler, 200, book.balances())
        elif path == "/positions/active":
            _reply(handler, 200, book.active_positions())
        elif path == "/orders":
            try:
                limit = int(query.get("limit", ["50"])[0])
            except ValueError as exc:
                _reply(handler, 500, {"error": str(exc)})
                return
            orders = book.trader_orders(limit)
            _reply(handler, 200, {"count": len(orders), "orders": orders, "success": True})
        elif path.startswith("/order/"):
            found = book.trader_order(path[len("/order/") :])
            if found is None:
                missing = {
                    "message": f"Ordre {path[len('/order/') :]} non trouvé",
                    "success": False,
                }
                _reply(handler, 404, missing)
            else:
                _reply(handler, 200, {"order": found, "success": True})
        elif path == "/_stub/orders":
            try:
                since = int(query.get("since", ["0"])[0])
            except ValueError:
                _reply(handler, 400, {"error": "since must be an integer"})
                return
            _reply(handler, 200, {"orders": book.recorded(since)})
        elif path == "/_stub/stats":
            _reply(handler, 200, book.stats())
        else:
            _reply(handler, 404, {"error": f"no route GET {path}"})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_mono, arrived_wall = time.monotonic(), time.time()
        path = urlsplit(handler.path).path
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            handler.close_connection = True
            _reply(handler, 400, {"error": "Content-Length missing, malformed or too large"})
            return
        raw = handler.rfile.read(length)
        if path == "/order":
            status, answer = self.book.order(raw, arrived_mono, arrived_wall)
            _reply(handler, status, answer)
        elif path == "/_stub/positions":
            try:
                rows = json.loads(raw or b"[]")
                if not isinstance(rows, list):
                    raise ValueError("body must be a JSON list of positions")
                _reply(handler, 200, {"positions": self.book.seed(rows)})
            except ValueError as exc:
                _reply(handler, 400, {"error": str(exc)})
        else:
            _reply(handler, 404, {"error": f"no route POST {path}"})


def _reply(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {handler.responses.get(status, ('',))[0]}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        + ("Connection: close\r\n" if handler.close_connection else "")
        + "\r\n"
    )
    try:
        # One write: headers and body in one segment.
        handler.wfile.write(head.encode("latin-1") + data)
    except OSError:
        handler.close_connection = True  # the client gave up first


def _symbol(value: Any) -> str:
    if not isinstance(value, str) or not value.upper().endswith(QUOTE) or len(value) <= len(QUOTE):
        raise ValueError(f"symbol must be a string ending in {QUOTE}: {value!r}")
    return value.upper()


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number > 0: {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number > 0: {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a number > 0: {value!r}")
    return number


def _reference_price(body: dict[str, Any], metadata: dict[str, Any]) -> float | None:
    for value in (body.get("price"), metadata.get("reference_price")):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _balance_row(asset: str, quantity: float, price: float) -> dict[str, Any]:
    return {
        "asset": asset,
        "free": quantity,
        "locked": 0.0,
        "total": quantity,
        "value_usdc": quantity * price,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--balance", type=float, default=1e9, help=f"starting {QUOTE} balance")
    args = parser.parse_args()
    stub = TraderStub(host=args.host, port=args.port, balance=args.balance)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stub.stop).start())
    print(f"trader stub on {stub.url}", flush=True)
    stub.serve_forever()


if __name__ == "__main__":
    main()
