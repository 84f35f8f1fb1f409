"""The Trader's ``POST /order``, with every outcome named, and never sent twice.

Connect and read timeouts are separate. Nothing is retried here: urllib3 retries are
off, so a request is on the wire at most once. What happened is sorted by what the
caller may do next:

accepted   2xx: the Trader took the order
rejected   4xx: a business refusal; the Trader works (not a breaker failure)
failed     5xx: the Trader says it failed (a breaker failure)
not_sent   the connection could not be made: safe to send later
unknown    sent, no answer in time or the connection broke: it may have been executed;
           it must never be sent again as a new order
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = ["SendResult", "TraderAnswer", "TraderClient"]


class SendResult(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TraderAnswer:
    result: SendResult
    order_id: str | None
    status_code: int | None
    error: str | None
    latency: float

    @property
    def trader_works(self) -> bool:
        """For the breaker: a 2xx or 4xx means the Trader is up."""
        return self.result in (SendResult.ACCEPTED, SendResult.REJECTED)


class TraderClient:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 8,
    ) -> None:
        self.url = base_url.rstrip("/") + "/order"
        self._timeout = (connect_timeout, read_timeout)
        self._session = requests.Session()
        # No proxy or .netrc lookups from the environment on every order: the Trader is
        # reached directly, and each lookup costs file-system calls on the hot path.
        self._session.trust_env = False
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=pool_size,
            max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0),
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def warm(self) -> str | None:
        """Open a pooled connection with ``GET /health`` now, so the first order does not
        pay for it; the error when that fails (nothing else depends on it)."""
        try:
            self._session.get(
                self.url[: -len("/order")] + "/health", timeout=(self._timeout[0], 1.0)
            ).close()
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def submit(self, order: dict[str, Any]) -> TraderAnswer:
        started = time.perf_counter()
        try:
            response = self._session.post(self.url, json=order, timeout=self._timeout)
        except requests.ConnectTimeout as exc:
            return self._answer(SendResult.NOT_SENT, None, None, f"connect timeout: {exc}", started)
        except requests.ReadTimeout:
            return self._answer(
                SendResult.UNKNOWN,
                None,
                None,
                f"no answer within the read timeout of {self._timeout[1]:g} s",
                started,
            )
        except requests.RequestException as exc:
            result = SendResult.NOT_SENT if _never_connected(exc) else SendResult.UNKNOWN
            return self._answer(result, None, None, f"{type(exc).__name__}: {_cause(exc)}", started)
        code = response.status_code
        if 200 <= code < 300:
            order_id = None
            try:
                body = response.json()
                order_id = str(body.get("order_id")) if isinstance(body, dict) else None
            except ValueError:
                pass
            return self._answer(SendResult.ACCEPTED, order_id, code, None, started)
        error = _error_text(response)
        result = SendResult.REJECTED if 400 <= code < 500 else SendResult.FAILED
        return self._answer(result, None, code, f"{code}: {error}", started)

    def close(self) -> None:
        self._session.close()

    @staticmethod
    def _answer(
        result: SendResult,
        order_id: str | None,
        code: int | None,
        error: str | None,
        started: float,
    ) -> TraderAnswer:
        return TraderAnswer(result, order_id, code, error, time.perf_counter() - started)


def _never_connected(exc: BaseException) -> bool:
    """True when the error chain shows the TCP connection was never made."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(
            current, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        ):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError):
            stack.append(current.reason)
        if isinstance(current, BaseException):
            stack.extend([current.__cause__, current.__context__, *current.args])
    return False


def _cause(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])[:500]
    except ValueError:
        pass
    return response.text[:500] or response.reason or ""
