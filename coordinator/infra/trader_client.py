"""The Trader's ``POST /order``, with every outcome named, and never sent twice.

Connect and read timeouts are separate. Nothing is retried here: a request is on the
wire at most once (``http_wire``). What happened is sorted by what the
caller may do next:

accepted   2xx: the Trader took the order
rejected   4xx: a business refusal; the Trader works (not a breaker failure)
failed     5xx: the Trader says it failed (a breaker failure)
not_sent   the connection could not be made: safe to send later
unknown    sent, no answer in time or the connection broke: it may have been executed;
           it must never be sent again as a new order

It also reads the Trader's own record of what it executed (``GET /orders?limit=N``,
``GET /order/<id>``), in RootTrading's shapes, for the reconciliation of orders whose
outcome is not known.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.infra.http_wire import (
    AnswerTimedOut,
    ConnectTimedOut,
    HttpError,
    NotConnected,
    Timeouts,
)
from coordinator.infra.json_http import HttpReply, JsonHttp, error_kind
from coordinator.trading.execution import (
    NoAnswer,
    SendResult,
    TraderAnswer,
    result_of_status,
    result_without_answer,
)

__all__ = [
    "SendResult",
    "TraderAnswer",
    "TraderClient",
    "TraderOrder",
    "TraderReadError",
    "TraderStatus",
    "parse_trader_order",
]


class TraderReadError(CoordinatorError):
    """The Trader's record could not be read (no answer, an error, an unexpected shape)."""


@dataclass(frozen=True, slots=True)
class TraderOrder:
    """One order the Trader executed, as ``GET /orders`` and ``GET /order/<id>`` show it:
    only FILLED or PARTIALLY_FILLED orders are there."""

    order_id: str
    """The Trader's id, ``order_<16 hex>``."""
    symbol: str
    side: str
    quantity: float
    """The quantity requested, before the Trader truncated it to the step size."""
    price: float
    """The average fill price."""
    status: str
    at: float
    """When it executed, epoch seconds."""
    binance_order_id: str | None
    """Binance's numeric id (the ``order_id`` of a ``trade_executions`` row)."""


@dataclass(frozen=True, slots=True)
class TraderStatus:
    """What ``GET /health`` says about the Trader's memory of orders."""

    started_at: float | None
    """When the Trader started (its ``GET /orders`` covers every order since), epoch
    seconds; None when its answer does not say."""


def parse_trader_order(raw: Any) -> TraderOrder:
    """One entry of ``GET /orders`` (or the ``order`` of ``GET /order/<id>``); raises
    TraderReadError naming the field that is missing or malformed."""
    if not isinstance(raw, dict):
        raise TraderReadError(f"an order must be an object, got {type(raw).__name__}")
    try:
        order_id = raw["id"]
        symbol = raw["symbol"]
        side = raw["side"]
        status = raw["status"]
        quantity = raw["quantity"]
        price = raw["price"]
        stamp = raw["timestamp"]
    except KeyError as exc:
        raise TraderReadError(f"an order has no field {exc.args[0]!r}") from None
    for name, value in (("id", order_id), ("symbol", symbol), ("side", side), ("status", status)):
        if not isinstance(value, str) or not value:
            raise TraderReadError(f"order field {name!r} must be a non-empty string: {value!r}")
    for name, value in (("quantity", quantity), ("price", price)):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise TraderReadError(f"order {order_id} field {name!r} must be a number: {value!r}")
    if not isinstance(stamp, str):
        raise TraderReadError(f"order {order_id} field 'timestamp' must be an ISO string")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise TraderReadError(f"order {order_id} timestamp {stamp!r} is not ISO-8601") from None
    if moment.tzinfo is None:
        raise TraderReadError(f"order {order_id} timestamp {stamp!r} has no UTC offset")
    binance = raw.get("binance_order_id")
    return TraderOrder(
        order_id=order_id,
        symbol=symbol,
        side=side,
        quantity=float(quantity),
        price=float(price),
        status=status,
        at=moment.timestamp(),
        binance_order_id=None if binance is None else str(binance),
    )


class TraderClient:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/order"
        self._read_timeout = read_timeout
        self._timeout = Timeouts(connect=connect_timeout, read=read_timeout)
        self._warm_timeout = Timeouts(connect=connect_timeout, read=1.0)
        self._get_timeout = Timeouts(connect=connect_timeout, read=max(read_timeout, 2.0))
        self._http = JsonHttp(self.base_url, pool_size=pool_size)

    def warm(self) -> str | None:
        """Open a pooled connection with ``GET /health`` now, so the first order does not
        pay for it; the error when that fails (nothing else depends on it)."""
        try:
            self._http.get("/health", timeout=self._warm_timeout)
        except HttpError as exc:
            return f"{error_kind(exc)}: {_cause(exc)}"
        return None

    def submit(self, order: dict[str, Any]) -> TraderAnswer:
        started = time.perf_counter()
        try:
            response = self._http.post_json("/order", order, timeout=self._timeout)
        except ConnectTimedOut as exc:
            return self._answer(
                result_without_answer(NoAnswer.NEVER_CONNECTED),
                None,
                None,
                f"connect timeout: {exc}",
                started,
            )
        except NotConnected as exc:
            result = result_without_answer(NoAnswer.NEVER_CONNECTED)
            return self._answer(result, None, None, f"ConnectionError: {_cause(exc)}", started)
        except AnswerTimedOut:
            return self._answer(
                result_without_answer(NoAnswer.READ_TIMEOUT),
                None,
                None,
                f"no answer within the read timeout of {self._read_timeout:g} s",
                started,
            )
        except HttpError as exc:
            # Broken once the request began to go out: it may have been received.
            result = result_without_answer(NoAnswer.CONNECTION_BROKEN)
            return self._answer(result, None, None, f"{error_kind(exc)}: {_cause(exc)}", started)
        except ValueError as exc:
            # A body that is no JSON (NaN): never sent. requests counted it as a broken
            # connection, an order of unknown outcome never sent again: kept so.
            result = result_without_answer(NoAnswer.CONNECTION_BROKEN)
            return self._answer(result, None, None, f"InvalidJSONError: {exc}", started)
        code = response.status
        result = result_of_status(code)
        if result is SendResult.ACCEPTED:
            order_id = None
            try:
                body = response.json()
                order_id = str(body.get("order_id")) if isinstance(body, dict) else None
            except ValueError:
                pass
            return self._answer(SendResult.ACCEPTED, order_id, code, None, started)
        error = _error_text(response)
        return self._answer(result, None, code, f"{code}: {error}", started)

    def orders(self, limit: int = 0) -> list[TraderOrder]:
        """``GET /orders?limit=N``, oldest first; 0 is every order since the Trader
        started. Raises TraderReadError."""
        body = self._read(f"/orders?limit={int(limit)}", (200,))
        if not isinstance(body, dict) or not isinstance(body.get("orders"), list):
            raise TraderReadError("GET /orders: the answer has no list 'orders'")
        return [parse_trader_order(entry) for entry in body["orders"]]

    def order(self, order_id: str) -> TraderOrder | None:
        """``GET /order/<id>``: the order, or None when the Trader does not know it (404:
        never executed, such as the id of a de-duplicated retry). Raises TraderReadError."""
        if not order_id or "/" in order_id:
            raise TraderReadError(f"not a Trader order id: {order_id!r}")
        body = self._read(f"/order/{order_id}", (200, 404))
        if body is None:
            return None
        if not isinstance(body, dict) or "order" not in body:
            raise TraderReadError(f"GET /order/{order_id}: the answer has no 'order'")
        return parse_trader_order(body["order"])

    def status(self) -> TraderStatus:
        """``GET /health``: when the Trader started (timestamp - uptime)."""
        body = self._read("/health", (200,))
        started = None
        if isinstance(body, dict):
            stamp, uptime = body.get("timestamp"), body.get("uptime")
            numbers = [v for v in (stamp, uptime) if isinstance(v, int | float)]
            if len(numbers) == 2 and not any(isinstance(v, bool) for v in (stamp, uptime)):
                started = float(numbers[0]) - float(numbers[1])
        return TraderStatus(started_at=started)

    def _read(self, path: str, expected: tuple[int, ...]) -> Any:
        """A GET; the JSON body for an expected 2xx, None for an expected 404."""
        try:
            response = self._http.get(path, timeout=self._get_timeout)
        except HttpError as exc:
            raise TraderReadError(f"GET {path}: {error_kind(exc)}: {_cause(exc)}") from None
        if response.status not in expected:
            raise TraderReadError(f"GET {path}: {response.status}: {_error_text(response)[:200]}")
        if response.status == 404:
            # Only the Trader's own "not found" counts: Flask's HTML 404 for a route it
            # does not have says nothing about the order.
            try:
                missing = response.json()
            except ValueError:
                missing = None
            if isinstance(missing, dict) and missing.get("success") is False:
                return None
            raise TraderReadError(f"GET {path}: 404 that is not the Trader's 'order not found'")
        try:
            return response.json()
        except ValueError:
            raise TraderReadError(f"GET {path}: the answer is not JSON") from None

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _answer(
        result: SendResult,
        order_id: str | None,
        code: int | None,
        error: str | None,
        started: float,
    ) -> TraderAnswer:
        return TraderAnswer(result, order_id, code, error, time.perf_counter() - started)


def _cause(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _error_text(response: HttpReply) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])[:500]
    except ValueError:
        pass
    return response.text[:500] or response.reason or ""
