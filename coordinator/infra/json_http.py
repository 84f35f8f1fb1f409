"""Keep-alive JSON over HTTP to the Trader and the Portfolio (``http_wire``).

What goes on the wire is what ``requests`` wrote, which the coordinator used first:
its default headers (its User-Agent, ``Accept-Encoding: gzip, deflate``) and the body
``json.dumps`` writes. Nothing is retried: a request is on the wire at most once, and
the errors are ``http_wire``'s, sorted by what may have happened.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from coordinator.infra.http_wire import (
    AnswerTimedOut,
    ConnectionBroken,
    ConnectTimedOut,
    HttpError,
    NotConnected,
    Timeouts,
    WirePool,
)

__all__ = ["HttpError", "HttpReply", "JsonHttp", "Timeouts", "error_kind"]


@dataclass(frozen=True, slots=True)
class HttpReply:
    """An answer read whole."""

    status: int
    """The HTTP status code."""
    reason: str
    """The status line's reason phrase."""
    data: bytes
    """The body, decoded from the transfer's content encoding."""

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.data)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _header_lines(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


class JsonHttp:
    """One service's base URL, and a pool of keep-alive connections to it."""

    def __init__(self, base_url: str, *, pool_size: int = 8) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {base_url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        self._pool = WirePool(parts.hostname, port, size=pool_size, tls=tls)
        self._prefix = parts.path.rstrip("/")
        # requests' own defaults, as it sent them, but for the encodings this client
        # decodes (requests offered brotli or zstd when their modules were installed).
        headers = {**requests.utils.default_headers(), "Accept-Encoding": "gzip, deflate"}
        self._headers = _header_lines(headers)
        self._json_headers = _header_lines({**headers, "Content-Type": "application/json"})

    def get(self, path: str, *, timeout: Timeouts) -> HttpReply:
        return self._send("GET", path, None, self._headers, timeout)

    def post_json(self, path: str, body: Any, *, timeout: Timeouts) -> HttpReply:
        """``body`` encoded as requests' ``json=`` did; ValueError (a NaN, an object
        that is no JSON) before anything is sent."""
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        return self._send("POST", path, data, self._json_headers, timeout)

    def close(self) -> None:
        self._pool.close()

    def _send(
        self, method: str, path: str, data: bytes | None, headers: bytes, timeout: Timeouts
    ) -> HttpReply:
        answer = self._pool.request(method, self._prefix + path, headers, data, timeout)
        return HttpReply(status=answer.status, reason=answer.reason, data=answer.body)


def error_kind(exc: BaseException) -> str:
    """The error's name as requests named it (these texts are stored with decisions and
    read by people): ``ConnectionError`` for a connection refused or broken."""
    if isinstance(exc, ConnectTimedOut):
        return "ConnectTimeout"
    if isinstance(exc.__cause__, ssl.SSLError):
        return "SSLError"
    if isinstance(exc, AnswerTimedOut):
        return "ReadTimeout"
    if isinstance(exc, NotConnected | ConnectionBroken | OSError):
        return "ConnectionError"
    return type(exc).__name__
