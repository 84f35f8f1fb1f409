"""HTTP/1.1 over keep-alive sockets, for the few JSON exchanges with the Trader and the
Portfolio: a request written in one ``sendall``, its answer read and framed here.

urllib3 (and ``http.client`` under it) spent 240 us of CPU per ``POST /order``, most
of it parsing the answer's headers with the ``email`` package and building objects the
order path never reads; this costs 80 (bench/http_client.py). What a request needs is
kept: connect and read timeouts apart, a pooled connection the server has closed seen
before it is used again (and replaced), the answer framed by ``Content-Length``, by
chunks, or by the end of the connection, informational (1xx) answers skipped,
``gzip`` and ``deflate`` bodies decoded, ``Connection: close`` honoured.

Nothing is retried: a request is on the wire at most once. The errors say what may have
happened, which is what the caller needs to sort an order's outcome:

- ``NotConnected`` (``ConnectTimedOut``): no connection was made (nor, for https, its
  TLS session), nothing was sent;
- ``AnswerTimedOut``: sent, no answer within the read timeout;
- ``ConnectionBroken``: the connection broke, or the answer was not HTTP, once the
  request had begun to go out (it may have been received).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import zlib
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "AnswerTimedOut",
    "ConnectTimedOut",
    "ConnectionBroken",
    "HttpError",
    "NotConnected",
    "Timeouts",
    "WireAnswer",
    "WirePool",
]

_MAX_HEAD = 64 * 1024
"""Bytes of a status line and headers at most."""
_MAX_BODY = 256 * 1024 * 1024
"""Bytes of a body at most (``GET /orders`` of a long-running Trader is the largest)."""
_RECV = 65536
_PATH_SAFE = ":/?#[]@!$&'()*+,;=%-._~"
"""Kept as written in a path; anything else (a space, a control character) is quoted,
so that no value put in a path can end the request line."""


class HttpError(Exception):
    """The exchange failed before an answer was read whole."""


class NotConnected(HttpError):
    """No connection could be made (refused, unreachable, a name not known): nothing was
    sent."""


class ConnectTimedOut(NotConnected):
    """The connection was not made within the connect timeout: nothing was sent."""


class AnswerTimedOut(HttpError):
    """Sent; no answer within the read timeout."""


class ConnectionBroken(HttpError):
    """The connection broke, or what came back was not HTTP, after the request began to
    go out: it may have been received."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    """Seconds to make a connection."""
    read: float
    """Seconds to wait for each part of the answer."""


@dataclass(frozen=True, slots=True)
class WireAnswer:
    status: int
    """The HTTP status code."""
    reason: str
    """The status line's reason phrase."""
    body: bytes
    """The body, decoded from its content encoding (kept as received when the encoding
    is not one asked for)."""


class _Connection:
    __slots__ = ("buffer", "poller", "sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.timeout: float | None = None
        """The read timeout the socket has now: set again only when it changes (each
        set is two system calls)."""
        # poll, not select: descriptors past 1,024 are beyond select. One per
        # connection, registered once: the check before each request is one call.
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)

    def dropped(self) -> bool:
        """The server closed it, or sent something unasked for: not to be used again.
        Anything readable is one or the other (a close reads as b"", and no answer is
        owed on an idle connection); through TLS, a record such as a late session
        ticket retires it too, the cautious side."""
        if self.buffer:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            return bool(self.poller.poll(0))
        except (OSError, ValueError):
            return True

    def settimeout(self, timeout: float) -> None:
        if timeout != self.timeout:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class WirePool:
    """Keep-alive connections to one host and port; safe to share between threads
    (a request takes a connection of its own)."""

    def __init__(self, host: str, port: int, *, size: int, tls: bool = False) -> None:
        self._address = (host, port)
        self._tls = ssl.create_default_context() if tls else None
        default_port = 443 if tls else 80
        named = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed
        self._host_header = (named if port == default_port else f"{named}:{port}").encode("idna")
        self._size = size
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        path: str,
        headers: bytes,
        body: bytes | None,
        timeouts: Timeouts,
    ) -> WireAnswer:
        """``headers``: header lines, each ending in CRLF, written as they are."""
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (
            method.encode("ascii"),
            quote(path, safe=_PATH_SAFE).encode("ascii"),
            self._host_header,
            headers,
        )
        if body is not None:
            head += b"Content-Length: %d\r\n" % len(body)
        message = head + b"\r\n" + (body or b"")
        connection = self._take(timeouts.connect)
        reusable = False
        try:
            connection.settimeout(timeouts.read)
            try:
                connection.sock.sendall(message)
            except OSError as exc:
                raise ConnectionBroken(f"connection broken while sending: {exc}") from exc
            answer, reusable = _read_answer(connection, method)
            return answer
        finally:
            if reusable:
                self._give(connection)
            else:
                connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for connection in idle:
            connection.close()

    def _take(self, connect_timeout: float) -> _Connection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect(connect_timeout)
            if not connection.dropped():
                return connection
            connection.close()

    def _give(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self, timeout: float) -> _Connection:
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
            if self._tls is not None:
                try:
                    sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise ConnectTimedOut(
                f"no connection to {self._address[0]}:{self._address[1]} within {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise NotConnected(
                f"no connection to {self._address[0]}:{self._address[1]}: {exc}"
            ) from exc
        # Small requests answered at once: Nagle would hold the second write of a body.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(sock)


def _read_answer(connection: _Connection, method: str) -> tuple[WireAnswer, bool]:
    """The answer, and whether the connection may carry another request."""
    try:
        while True:
            version, status, reason, headers = _read_head(connection)
            if 100 <= status < 200 and status != 101:
                continue  # informational: the answer follows
            break
        connection_tokens = _tokens(headers.get(b"connection", b""))
        if version == b"HTTP/1.1":
            keep = b"close" not in connection_tokens
        else:
            keep = b"keep-alive" in connection_tokens
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif b"chunked" in _tokens(headers.get(b"transfer-encoding", b"")):
            body = _read_chunked(connection)
        elif b"content-length" in headers:
            try:
                length = int(headers[b"content-length"].split(b",")[0])
            except ValueError:
                raise ConnectionBroken("the answer's Content-Length is not a number") from None
            if length < 0 or length > _MAX_BODY:
                raise ConnectionBroken(f"the answer's Content-Length {length} is out of bounds")
            body = _read_exactly(connection, length)
        else:
            body = _read_to_end(connection)
            keep = False
    except TimeoutError as exc:
        raise AnswerTimedOut("no answer within the read timeout") from exc
    except OSError as exc:
        raise ConnectionBroken(f"connection broken while reading the answer: {exc}") from exc
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    answer = WireAnswer(status, reason.decode("latin-1"), _decoded(body, encoding))
    return answer, keep and not connection.buffer


def _read_head(connection: _Connection) -> tuple[bytes, int, bytes, dict[bytes, bytes]]:
    buffer = connection.buffer
    end = buffer.find(b"\r\n\r\n")
    while end < 0:
        if len(buffer) > _MAX_HEAD:
            raise ConnectionBroken(f"the answer's headers exceed {_MAX_HEAD} bytes")
        _receive(connection, "before the answer's headers ended")
        end = buffer.find(b"\r\n\r\n", max(0, len(buffer) - _RECV - 3))
    lines = bytes(buffer[:end]).split(b"\r\n")
    del buffer[: end + 4]
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectionBroken(f"not an HTTP answer: {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise ConnectionBroken(f"not an HTTP header: {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = headers[key] + b", " + value if key in headers else value
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else b"", headers


def _read_chunked(connection: _Connection) -> bytes:
    body = bytearray()
    while True:
        size_line = _read_line(connection)
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ConnectionBroken(f"not a chunk size: {size_line[:40]!r}") from None
        if size == 0:
            while _read_line(connection):  # the trailer, up to an empty line
                pass
            return bytes(body)
        if len(body) + size > _MAX_BODY:
            raise ConnectionBroken(f"the answer's body exceeds {_MAX_BODY} bytes")
        body += _read_exactly(connection, size)
        if _read_line(connection):
            raise ConnectionBroken("a chunk is not followed by CRLF")


def _read_line(connection: _Connection) -> bytes:
    buffer = connection.buffer
    end = buffer.find(b"\r\n")
    while end < 0:
        if len(buffer) > _MAX_HEAD:
            raise ConnectionBroken("a line of the answer is too long")
        _receive(connection, "in the middle of the answer's body")
        end = buffer.find(b"\r\n")
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


def _read_exactly(connection: _Connection, length: int) -> bytes:
    buffer = connection.buffer
    while len(buffer) < length:
        _receive(connection, f"after {len(buffer)} of the body's {length} bytes")
    data = bytes(buffer[:length])
    del buffer[:length]
    return data


def _read_to_end(connection: _Connection) -> bytes:
    buffer = connection.buffer
    while True:
        chunk = connection.sock.recv(_RECV)
        if not chunk:
            data = bytes(buffer)
            buffer.clear()
            return data
        buffer += chunk
        if len(buffer) > _MAX_BODY:
            raise ConnectionBroken(f"the answer's body exceeds {_MAX_BODY} bytes")


def _receive(connection: _Connection, where: str) -> None:
    chunk = connection.sock.recv(_RECV)
    if not chunk:
        raise ConnectionBroken(f"the server closed the connection {where}")
    connection.buffer += chunk


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",")}


def _decoded(body: bytes, encoding: bytes) -> bytes:
    if not body or encoding in (b"", b"identity"):
        return body
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some send
    except zlib.error:
        pass
    # Not decodable: the status is known all the same, and the body is kept as it came
    # (an order's answer read as JSON then fails alone, not the order's outcome).
    return body
