"""The HTTP client of the Trader and Portfolio exchanges against a raw server that
answers each request with the bytes a test gives: framing (length, chunks, the end of
the connection), encodings, informational answers, keep-alive and its end, and which
error says what may have been sent."""

from __future__ import annotations

import gzip
import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from coordinator.infra.http_wire import (
    AnswerTimedOut,
    ConnectionBroken,
    NotConnected,
    Timeouts,
    WirePool,
)
from tests.waiting import wait_for

TIMEOUTS = Timeouts(connect=2.0, read=2.0)


Answer = bytes | tuple[bytes, str] | None


class RawServer:
    """Records each request (connection number, request line, body) and writes the
    next scripted answer for it as raw bytes; ``(bytes, "close")`` ends the connection
    after writing them, ``None`` ends it instead of answering."""

    def __init__(self, answers: list[Answer]) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        self._answers: queue.Queue[Answer] = queue.Queue()
        for answer in answers:
            self._answers.put(answer)
        self.requests: list[tuple[int, str, bytes]] = []
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            number = len(self.connections)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                try:
                    line = reader.readline()
                except ConnectionResetError:
                    return  # the client closed with our bytes unread
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                self.requests.append((number, line.decode().strip(), reader.read(length)))
                try:
                    answer = self._answers.get(timeout=5)
                except queue.Empty:
                    return  # nothing scripted: the client waits for its read timeout
                if answer is None:
                    return
                if isinstance(answer, tuple):
                    conn.sendall(answer[0])
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(answer)

    def close(self) -> None:
        self._listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def serve() -> Iterator[type[RawServer]]:
    servers: list[RawServer] = []

    def make(answers: list[Answer]) -> RawServer:
        server = RawServer(answers)
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in servers:
        server.close()


def ok(body: bytes, *headers: str) -> bytes:
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode() + body


def pool_for(server: RawServer) -> WirePool:
    return WirePool("127.0.0.1", server.port, size=2)


def post(pool: WirePool, body: bytes = b"{}", path: str = "/order") -> tuple[int, bytes]:
    answer = pool.request("POST", path, b"Content-Type: application/json\r\n", body, TIMEOUTS)
    return answer.status, answer.body


def test_a_chunked_answer_is_read_whole_and_the_connection_reused(serve) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"a":\r\n3\r\n 1}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    )
    server = serve([chunked, ok(b"[]")])
    pool = pool_for(server)
    assert post(pool) == (201, b'{"a": 1}')
    assert post(pool) == (200, b"[]")
    assert [number for number, _, _ in server.requests] == [1, 1]


def test_a_gzip_body_is_decoded_and_an_unknown_encoding_kept_as_it_came(serve) -> None:
    packed = gzip.compress(b'{"order_id": "order_1"}')
    server = serve([ok(packed, "Content-Encoding: gzip"), ok(b"\x01\x02", "Content-Encoding: br")])
    pool = pool_for(server)
    assert post(pool) == (200, b'{"order_id": "order_1"}')
    assert post(pool) == (200, b"\x01\x02")


def test_an_answer_without_length_is_read_to_the_end_of_its_connection(serve) -> None:
    server = serve([(b'HTTP/1.1 200 OK\r\n\r\n{"done": true}', "close"), ok(b"{}")])
    pool = pool_for(server)
    assert post(pool) == (200, b'{"done": true}')
    assert post(pool) == (200, b"{}")
    assert [number for number, _, _ in server.requests] == [1, 2]


def test_connection_close_is_honoured_and_an_informational_answer_skipped(serve) -> None:
    server = serve(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"1", "Connection: close"),
            ok(b"2"),
        ]
    )
    pool = pool_for(server)
    assert post(pool) == (200, b"1")
    assert post(pool) == (200, b"2")
    assert [number for number, _, _ in server.requests] == [1, 2]


def test_a_pooled_connection_the_server_closed_is_replaced_before_anything_is_sent(
    serve,
) -> None:
    server = serve([ok(b"1"), ok(b"2")])
    pool = pool_for(server)
    assert post(pool, b'{"n": 1}') == (200, b"1")
    server.connections[0].shutdown(socket.SHUT_RDWR)  # idle keep-alive ended by the server
    wait_for(lambda: _closed_seen(pool), message="the close reached the client")
    assert post(pool, b'{"n": 2}') == (200, b"2")
    assert [(number, body) for number, _, body in server.requests] == [
        (1, b'{"n": 1}'),
        (2, b'{"n": 2}'),
    ]


def test_a_pooled_connection_the_server_wrote_on_unasked_is_replaced(serve) -> None:
    server = serve([ok(b"1"), ok(b"2")])
    pool = pool_for(server)
    assert post(pool) == (200, b"1")
    server.connections[0].sendall(ok(b"late"))  # no request of ours is waiting for it
    wait_for(lambda: _closed_seen(pool), message="the bytes reached the client")
    assert post(pool) == (200, b"2")
    assert [number for number, _, _ in server.requests] == [1, 2]


def test_each_request_waits_its_own_read_timeout_on_a_reused_connection(serve) -> None:
    # The second request is not answered; the server gives up after 5 s and closes.
    server = serve([ok(b"1")])
    pool = pool_for(server)
    patient = Timeouts(connect=2.0, read=30.0)
    assert pool.request("GET", "/", b"", None, patient).status == 200
    with pytest.raises(AnswerTimedOut):
        # Under the first request's 30 s, this would end as the server's close.
        pool.request("GET", "/", b"", None, Timeouts(connect=2.0, read=0.2))
    assert [number for number, _, _ in server.requests] == [1, 1]


def _closed_seen(pool: WirePool) -> bool:
    idle = pool._idle  # the state under test
    return bool(idle) and idle[0].dropped()


def test_each_error_says_what_may_have_been_sent(serve) -> None:
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()
    with pytest.raises(NotConnected):
        post(WirePool("127.0.0.1", port, size=1))

    server = serve([b"SSH-2.0-OpenSSH\r\n\r\n", None])
    with pytest.raises(ConnectionBroken, match="not an HTTP answer"):
        post(pool_for(server))
    with pytest.raises(ConnectionBroken, match="closed the connection"):
        post(pool_for(server))

    silent = serve([])
    slow = Timeouts(connect=2.0, read=0.2)
    with pytest.raises(AnswerTimedOut):
        WirePool("127.0.0.1", silent.port, size=1).request("GET", "/", b"", None, slow)
    assert [line for _, line, _ in silent.requests] == ["GET / HTTP/1.1"]


def test_no_value_put_in_a_path_can_end_the_request_line(serve) -> None:
    server = serve([ok(b"{}")])
    pool_for(server).request("GET", "/order/x HTTP/1.1\r\nX-Injected: 1", b"", None, TIMEOUTS)
    assert [line for _, line, _ in server.requests] == [
        "GET /order/x%20HTTP/1.1%0D%0AX-Injected:%201 HTTP/1.1"
    ]
