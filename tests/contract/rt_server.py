"""A real HTTP server answering with RootTrading's recorded exchanges (``trader/*.json``,
``portfolio/*.json``): each route gets one fixture, and its ``body_raw`` is served with
the fixture's status and content type, byte for byte.

It also keeps what it was sent (method, path, query, content type, body), so a test can
compare the requests our code makes with the ones RootTrading's coordinator made.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.contract.fixtures import load_json
from tests.http_stub import serve_on_loopback

__all__ = ["Answer", "Received", "RootTradingServer"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer as a fixture records it."""

    status: int
    """The status code."""
    content_type: str
    """The Content-Type header."""
    body_raw: str
    """The exact response text."""

    @classmethod
    def of(cls, fixture: str) -> Answer:
        """The response of a fixture file (``trader/get_health.json``)."""
        response = load_json(fixture)["response"]
        return cls(
            status=int(response["status"]),
            content_type=str(response["content_type"]),
            body_raw=str(response["body_raw"]),
        )


@dataclass(frozen=True, slots=True)
class Received:
    """One request the server was sent."""

    method: str
    """GET or POST."""
    path: str
    """The path, without the query."""
    query: dict[str, list[str]]
    """The query parameters."""
    content_type: str | None
    """The request's Content-Type header."""
    body: bytes
    """The request body."""

    def json(self) -> Any:
        return json.loads(self.body)


class RootTradingServer:
    """Routes ``(method, path)`` to fixture answers; ``answer(method, path, ...)`` sets
    one route, or a sequence of answers served in turn (the last one repeating)."""

    def __init__(self, routes: dict[tuple[str, str], str] | None = None) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], list[Answer]] = {}
        self.received: list[Received] = []
        for (method, path), fixture in (routes or {}).items():
            self.answer(method, path, fixture)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_POST(self) -> None:
                server._serve(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http, self.url = serve_on_loopback(Handler)

    def answer(self, method: str, path: str, *answers: str | Answer) -> None:
        """Answer ``method path`` with these fixtures (file names or Answers), in turn."""
        resolved = [a if isinstance(a, Answer) else Answer.of(a) for a in answers]
        with self._lock:
            self._routes[(method, path)] = resolved

    def requests_to(self, method: str, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.method == method and r.path == path]

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.received.append(
                Received(
                    method=method,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    content_type=handler.headers.get("Content-Type"),
                    body=body,
                )
            )
            answers = self._routes.get((method, parts.path))
            answer = None
            if answers:
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer is None:
            # Like Flask for a route it does not have: an HTML 404.
            answer = Answer(404, "text/html; charset=utf-8", "<!doctype html><title>404</title>")
        data = answer.body_raw.encode("utf-8")
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", answer.content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up first
