"""Answers produced off the request path (/health, /status), and waitress's queue
warnings summed up: on a small app served by the real server over real HTTP."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import bottle
import pytest
import requests

from coordinator.clock import ManualClock
from coordinator.http.asking import ActorUnavailable
from coordinator.http.endpoints import Endpoints, json_error
from coordinator.http.published import PublishedAnswers
from coordinator.http.queue_log import QUEUE_LOGGER, QueueDepthSummary
from coordinator.http.server import HttpServer
from tests.waiting import wait_for

TOKEN = "a-token-of-sixteen-or-more"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Board:
    """What the route reads: a counter of productions and an actor that may be away."""

    def __init__(self) -> None:
        self.produced = 0
        self.away = False
        self.during: Any = None
        """Called in the middle of a production, when set."""

    def read(self) -> dict[str, Any]:
        if self.during is not None:
            self.during()
        if self.away:
            raise ActorUnavailable("service_health", "no answer within 0.5 s")
        self.produced += 1
        return {"produced": self.produced}


def published_app(
    board: Board, clock: ManualClock, *, published: bool = True
) -> tuple[bottle.Bottle, PublishedAnswers]:
    answers = PublishedAnswers(interval=0.25, lifetime=1.25, clock=clock.monotonic)
    app = bottle.Bottle(catchall=True, autojson=True)
    app.default_error_handler = json_error  # type: ignore[method-assign]
    endpoint = Endpoints(
        app,
        api_token=TOKEN,
        snapshot_ttl=0.0,
        clock=clock.monotonic,
        published=answers if published else None,
    )
    endpoint("GET", "/health", published=True)(board.read)
    endpoint("POST", "/command", token=True)(lambda: {"done": True})
    endpoint("GET", "/other")(lambda: {"other": True})
    return app, answers


@pytest.fixture
def served() -> Iterator[tuple[str, Board, ManualClock, PublishedAnswers]]:
    board, clock = Board(), ManualClock()
    app, answers = published_app(board, clock)
    server = HttpServer(app, host="127.0.0.1", port=0, threads=2, published=answers).start()
    try:
        yield server.url, board, clock, answers
    finally:
        server.stop()


def get(url: str) -> requests.Response:
    return requests.get(url + "/health", timeout=5)


def test_a_published_answer_is_served_until_its_lifetime_without_producing(served) -> None:
    url, board, clock, answers = served
    assert get(url).json() == {"produced": 1}  # nothing published yet: produced by the request
    answers.refresh("/health")

    assert [get(url).json() for _ in range(5)] == [{"produced": 2}] * 5
    assert board.produced == 2

    clock.advance(1.25)
    assert get(url).json() == {"produced": 2}
    clock.advance(0.01)  # older than its lifetime: the request produces its own
    assert get(url).json() == {"produced": 3}


def test_a_command_drops_the_published_answer_and_a_production_begun_before_it(served) -> None:
    url, board, _, answers = served
    answers.refresh("/health")
    assert get(url).json() == {"produced": 1}

    def command_meanwhile() -> None:
        board.during = None
        assert requests.post(url + "/command", headers=AUTH, timeout=5).json() == {"done": True}

    board.during = command_meanwhile
    answers.refresh("/health")  # produced {"produced": 2}, from before the command

    assert answers.get("/health") is None
    assert get(url).json() == {"produced": 3}


def test_an_actor_away_is_published_as_a_503_naming_it(served) -> None:
    url, board, _, answers = served
    board.away = True
    answers.refresh("/health")
    board.away = False  # what is served is what was published

    response = get(url)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["actor"] == "service_health"
    assert board.produced == 0


def test_a_failing_production_keeps_the_answer_until_it_expires(served, caplog) -> None:
    _, board, clock, answers = served
    answers.refresh("/health")

    def explode() -> None:
        raise RuntimeError("boom")

    board.during = explode
    answers.refresh("/health")

    assert answers.get("/health") == (200, b'{"produced": 1}')
    assert "could not produce the answer of /health" in caplog.text
    clock.advance(1.3)
    assert answers.get("/health") is None


def test_the_listener_answers_with_the_headers_of_the_app() -> None:
    """Served by the listener itself or by the app on a worker, a client sees the same
    answer."""
    clock = ManualClock()
    seen = []
    for published in (True, False):
        app, answers = published_app(Board(), clock, published=published)
        if published:
            answers.refresh("/health")
        server = HttpServer(
            app, host="127.0.0.1", port=0, threads=2, published=answers if published else None
        ).start()
        try:
            response = get(server.url)
        finally:
            server.stop()
        headers = {k: v for k, v in response.headers.items() if k not in ("Date",)}
        seen.append((response.status_code, headers, response.content))
    assert seen[0] == seen[1]


def raw_answers(port: int, data: bytes, count: int) -> list[tuple[str, bytes]]:
    """``count`` answers (status line, body) to ``data`` sent at once on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        answers = []
        for _ in range(count):
            status = reader.readline().decode().strip()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answers.append((status, reader.read(length)))
        return answers


def test_pipelined_requests_are_answered_in_order(served) -> None:
    url, _, _, answers = served
    answers.refresh("/health")
    port = int(url.rsplit(":", 1)[1])
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    other = b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n"

    got = raw_answers(port, one + other + one + one, 4)

    assert [status for status, _ in got] == ["HTTP/1.1 200 OK"] * 4
    assert [body for _, body in got] == [
        b'{"produced": 1}',
        b'{"other": true}',
        b'{"produced": 1}',
        b'{"produced": 1}',
    ]


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /health HTTP/1.0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ],
)
def test_a_connection_to_close_gets_the_published_answer_and_is_closed(
    served, request_head
) -> None:
    url, board, _, answers = served
    answers.refresh("/health")
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request_head)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes
            received += chunk
    assert received.split(b"\r\n", 1)[0].endswith(b"200 OK")
    assert received.endswith(b'{"produced": 1}')
    assert board.produced == 1


def test_the_thread_publishes_every_interval_and_stops() -> None:
    board = Board()
    answers = PublishedAnswers(interval=0.01, lifetime=1.0, clock=ManualClock().monotonic)
    answers.add("/health", lambda: (200, str(board.read()).encode()))
    answers.start()
    try:
        wait_for(lambda: board.produced >= 3, message="three productions")
    finally:
        answers.stop()
    stopped_at = board.produced
    assert answers.get("/health") is not None
    assert board.produced == stopped_at


def test_the_queue_summary_lets_one_line_a_minute_through_with_the_count() -> None:
    clock = ManualClock()
    summary = QueueDepthSummary(threads=16, clock=clock.monotonic)

    def record(depth: int) -> logging.LogRecord:
        return logging.LogRecord(
            QUEUE_LOGGER, logging.WARNING, __file__, 0, "Task queue depth is %d", (depth,), None
        )

    first = record(1)
    assert summary.filter(first)
    assert first.getMessage().startswith("1 requests waited for a free HTTP worker thread")
    assert not any(summary.filter(record(depth)) for depth in (3, 7, 2))
    clock.advance(60)
    line = record(1)
    assert summary.filter(line)
    assert line.getMessage() == (
        "4 requests waited for a free HTTP worker thread in the last 60 s (deepest queue 7, "
        "HTTP_THREADS=16); at most one such line a minute"
    )


def test_ten_keep_alive_connections_leave_no_queue_warning_but_the_summary(caplog) -> None:
    """Two workers for ten connections: waitress queues nearly every request."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"{}"]

    server = HttpServer(app, host="127.0.0.1", port=0, threads=2).start()
    answered = [0] * 10
    stop = threading.Event()

    def load(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        while not stop.is_set():
            conn.request("GET", "/health")
            conn.getresponse().read()
            answered[index] += 1
        conn.close()

    caplog.set_level(logging.WARNING, logger=QUEUE_LOGGER)
    threads = [threading.Thread(target=load, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: min(answered) >= 200, timeout=30, message="200 answers per connection")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        server.stop()

    queue_lines = [r.getMessage() for r in caplog.records if r.name == QUEUE_LOGGER]
    assert not [line for line in queue_lines if "Task queue depth" in line]
    assert len(queue_lines) <= 1
    assert all("waited for a free HTTP worker thread" in line for line in queue_lines)


def test_plain_gets_are_answered_as_they_arrive_without_a_task() -> None:
    """Plain keep-alive GETs of a published answer are answered from the bytes as they
    arrive; anything else on the same connection still reaches waitress, in order."""
    board, clock = Board(), ManualClock()
    app, answers = published_app(board, clock)
    answers.refresh("/health")
    server = HttpServer(app, host="127.0.0.1", port=0, threads=2, published=answers).start()
    # Any: the listener is waitress's, not in its stubs.
    listener: Any = server._server
    tasks: list[object] = []
    add_task = listener.add_task
    listener.add_task = lambda channel: (tasks.append(channel), add_task(channel))
    one = b"GET /health HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    other = b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        alone = [raw_answers(server.port, one, 1)[0] for _ in range(20)]
        mixed = raw_answers(server.port, one + one + other + one, 4)
    finally:
        server.stop()

    assert alone == [("HTTP/1.1 200 OK", b'{"produced": 1}')] * 20
    assert [body for _, body in mixed] == [
        b'{"produced": 1}',
        b'{"produced": 1}',
        b'{"other": true}',
        b'{"produced": 1}',
    ]
    # Only the mixed connection's /other and the /health behind it went the usual way.
    assert len(tasks) == 2
    assert board.produced == 1
