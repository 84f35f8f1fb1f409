"""Keep-alive JSON over HTTP to the Trader and the Portfolio, on urllib3's pool directly.

``requests.Session`` runs on urllib3 too; what it adds per request (merging settings,
hooks, the cookie jar, preparing and wrapping the request and answer) cost more than
the request itself: 880 against 350 us of CPU per ``POST /order`` to the Trader stub
(bench/http_client.py). What goes on the wire is unchanged: requests' default headers
(its User-Agent and Accept-Encoding included) and the body ``json.dumps`` writes, as
requests wrote it. Nothing is retried: a request is on the wire at most once, and the
errors are urllib3's own (``NewConnectionError`` for a connection refused,
``ConnectTimeoutError``, ``ReadTimeoutError``, ``ProtocolError`` for a connection that
broke), for the caller to sort. Nagle is off (urllib3's default socket options); a
pooled connection the server has closed meanwhile is seen before it is used again, and
replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests.utils
import urllib3

__all__ = ["HttpReply", "JsonHttp", "error_kind"]


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


class JsonHttp:
    """One service's base URL, and a pool of keep-alive connections to it."""

    def __init__(self, base_url: str, *, pool_size: int = 8) -> None:
        self._pool = urllib3.connection_from_url(
            base_url, maxsize=pool_size, block=False, retries=False
        )
        self._prefix = urlsplit(base_url).path.rstrip("/")
        # Built once: requests built these same headers again on every request.
        self._headers = dict(requests.utils.default_headers())
        self._json_headers = {**self._headers, "Content-Type": "application/json"}

    def get(self, path: str, *, timeout: urllib3.Timeout) -> HttpReply:
        return self._send("GET", path, None, self._headers, timeout)

    def post_json(self, path: str, body: Any, *, timeout: urllib3.Timeout) -> HttpReply:
        """``body`` encoded as requests' ``json=`` did; ValueError (a NaN, an object
        that is no JSON) before anything is sent."""
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        return self._send("POST", path, data, self._json_headers, timeout)

    def close(self) -> None:
        self._pool.close()

    def _send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: urllib3.Timeout,
    ) -> HttpReply:
        response = self._pool.urlopen(
            method,
            self._prefix + path,
            body=data,
            headers=headers,
            timeout=timeout,
            retries=False,
            redirect=False,
            assert_same_host=False,
        )
        return HttpReply(status=response.status, reason=response.reason or "", data=response.data)


def error_kind(exc: BaseException) -> str:
    """The error's name as requests named it (these texts are stored with decisions and
    read by people): ``ConnectionError`` for a connection refused or broken."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "ConnectionError"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "ReadTimeout"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "SSLError"
    if isinstance(exc, urllib3.exceptions.ProtocolError | OSError):
        return "ConnectionError"
    return type(exc).__name__
