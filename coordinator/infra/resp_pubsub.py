"""A subscribed Redis connection read and parsed here (RESP2), for the readers of market
data and signals.

redis-py parses each message through several layers of Python (its socket buffer, the
RESP3 parser, a push handler, a dict per message): 32 us of CPU per market-data
message on the reader thread at 5,000 a second (bench/stops.py), a sixth of a core.
Here what a ``recv`` brought is split into messages with ``bytes.find`` and slicing,
and a message of the usual shape with one regular expression (``parse_messages``).

What the subscription needs of the protocol is small: AUTH when the URL has a
password, SUBSCRIBE and PSUBSCRIBE, then arrays of bulk strings (``message``,
``pmessage``, the confirmations, ``pong``) and errors. A connection silent for
``HEALTH_EVERY`` seconds is sent a PING, and one that does not answer within
``ANSWER_WITHIN`` is given up (the reader connects again), as redis-py's health check
did. TLS (``rediss://``) is left to redis-py.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import redis
from redis.connection import parse_url

__all__ = [
    "ANSWER_WITHIN",
    "HEALTH_EVERY",
    "RespSubscriber",
    "parse_frames",
    "parse_messages",
    "supports",
]

HEALTH_EVERY = 10.0
"""Seconds of silence after which the connection is asked for a PING."""
ANSWER_WITHIN = 5.0
"""Seconds a PING (or AUTH) may wait for its answer."""
_RECV = 256 * 1024
_MAX_BULK = 512 * 1024 * 1024
"""Redis's own limit of a string."""

_PMESSAGE = re.compile(
    rb"\*4\r\n\$8\r\npmessage\r\n"
    rb"\$(\d{1,9})\r\n([^\r]*)\r\n\$(\d{1,9})\r\n([^\r]*)\r\n\$(\d{1,9})\r\n"
)
"""A pmessage up to its data: the pattern's and the channel's lengths and names, the
data's length."""
_MESSAGE = re.compile(rb"\*3\r\n\$7\r\nmessage\r\n\$(\d{1,9})\r\n([^\r]*)\r\n\$(\d{1,9})\r\n")
"""A message up to its data: the channel's length and name, the data's length."""
_CRLF = b"\r\n"
_CHANNELS_KEPT = 65_536
"""Channel names kept decoded at most (one per symbol and timeframe in practice)."""

Frame = list[bytes | int | None] | bytes | int | redis.exceptions.ResponseError | None


class _Incomplete(Exception):
    """The buffer ends inside a frame."""


def supports(url: str) -> bool:
    """Whether this reader serves ``url``: plain TCP or a Unix socket (TLS is
    redis-py's)."""
    return urlsplit(url).scheme in ("redis", "unix")


def parse_frames(buffer: bytearray) -> tuple[list[Frame], int]:
    """The complete frames at the start of ``buffer`` and the bytes they took; an
    error frame is returned as a ``redis.ResponseError``, never raised, so the frames
    before it are not lost."""
    frames: list[Frame] = []
    position = 0
    while position < len(buffer):
        try:
            frame, position_after = _frame(buffer, position)
        except _Incomplete:
            break
        frames.append(frame)
        position = position_after
    return frames, position


def parse_messages(
    buffer: bytearray,
) -> tuple[list[tuple[bytes, bytes]], int, redis.exceptions.RedisError | None]:
    """The (channel, data) of the messages at the start of ``buffer``, the bytes they
    and the other frames took, and what ended the reading, if anything did: an error
    frame (a ``ResponseError``) or bytes that are no frame (a ``ConnectionError``); the
    bytes after it are left. The same messages as ``parse_frames`` gives; a
    message of the usual shape is read here without building its frame, a quarter of
    the CPU at 20,000 market-data messages a second. Whatever the short way does not
    take as it is (a length not in plain digits, a frame cut short) goes the long way,
    which decides."""
    messages: list[tuple[bytes, bytes]] = []
    position = 0
    size = len(buffer)
    pmessage, message = _PMESSAGE.match, _MESSAGE.match
    while position < size:
        # A name is read up to its first CR: it is the whole name when its length is
        # the one announced.
        head = pmessage(buffer, position)
        if head is not None:
            p_length, pattern, c_length, channel, d_length = head.groups()
            whole = len(pattern) == int(p_length) and len(channel) == int(c_length)
        else:
            head = message(buffer, position)
            if head is not None:
                c_length, channel, d_length = head.groups()
                whole = len(channel) == int(c_length)
        if head is not None and whole:
            start = head.end()
            stop = start + int(d_length)
            if stop - start <= _MAX_BULK and stop + 2 <= size and buffer[stop : stop + 2] == _CRLF:
                messages.append((bytes(channel), bytes(buffer[start:stop])))
                position = stop + 2
                continue
        try:
            frame, position = _frame(buffer, position)
        except _Incomplete:
            break
        except redis.exceptions.ConnectionError as exc:
            return messages, position, exc
        if isinstance(frame, redis.exceptions.ResponseError):
            return messages, position, frame
        found = _message_of(frame)
        if found is not None:
            messages.append(found)
    return messages, position, None


def _message_of(frame: Frame) -> tuple[bytes, bytes] | None:
    """A message's (channel, data); None for a confirmation, a pong or anything else."""
    if not isinstance(frame, list) or not frame:
        return None
    kind = frame[0]
    if kind == b"pmessage" and len(frame) == 4:
        channel, data = frame[2], frame[3]
    elif kind == b"message" and len(frame) == 3:
        channel, data = frame[1], frame[2]
    else:
        return None
    if isinstance(channel, bytes) and isinstance(data, bytes):
        return channel, data
    return None


def _frame(buffer: bytearray, position: int) -> tuple[Frame, int]:
    end = buffer.find(b"\r\n", position)
    if end < 0:
        raise _Incomplete
    kind = buffer[position]
    header = bytes(buffer[position + 1 : end])
    after = end + 2
    if kind == 0x2A:  # '*': an array
        count = _integer(header)
        if count < 0:
            return None, after
        items: list[bytes | int | None] = []
        for _ in range(count):
            item, after = _frame(buffer, after)
            if isinstance(item, list):
                raise redis.exceptions.ConnectionError("nested array in a pub/sub message")
            if isinstance(item, redis.exceptions.ResponseError):
                raise redis.exceptions.ConnectionError(f"error inside an array: {item}")
            items.append(item)
        return items, after
    if kind == 0x24:  # '$': a bulk string
        length = _integer(header)
        if length < 0:
            return None, after
        if length > _MAX_BULK:
            raise redis.exceptions.ConnectionError(f"bulk string of {length} bytes")
        if len(buffer) < after + length + 2:
            raise _Incomplete
        if buffer[after + length : after + length + 2] != b"\r\n":
            raise redis.exceptions.ConnectionError("bulk string not ended by CRLF")
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == 0x3A:  # ':': an integer
        return _integer(header), after
    if kind == 0x2B:  # '+': a simple string
        return header, after
    if kind == 0x2D:  # '-': an error
        return redis.exceptions.ResponseError(header.decode("utf-8", "replace")), after
    raise redis.exceptions.ConnectionError(
        f"not a RESP2 frame: {bytes(buffer[position:end])[:40]!r}"
    )


def _integer(header: bytes) -> int:
    try:
        return int(header)
    except ValueError:
        raise redis.exceptions.ConnectionError(f"not a RESP2 length: {header[:20]!r}") from None


def _command(*words: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode("utf-8") if isinstance(word, str) else word
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespSubscriber:
    """One connection subscribed to ``channels`` and ``patterns``; ``read`` returns the
    (channel, data) of the messages that have arrived. Raises redis-py's
    ``ConnectionError`` / ``AuthenticationError`` / ``TimeoutError`` or an ``OSError``
    when the connection is lost or refused: the reader connects again."""

    def __init__(
        self,
        url: str,
        *,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        connect_timeout: float = 2.0,
        health_every: float = HEALTH_EVERY,
        answer_within: float = ANSWER_WITHIN,
    ) -> None:
        self._url = url
        self._channels = tuple(channels)
        self._patterns = tuple(patterns)
        self._connect_timeout = connect_timeout
        self._health_every = health_every
        self._answer_within = answer_within
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._buffer = bytearray()
        self._last_heard = 0.0
        self._ping_sent: float | None = None
        self._error: Exception | None = None
        """An error answered after messages that were handed over first."""
        self._channel_names: dict[bytes, str] = {}
        """Each channel's name decoded once."""
        self._wake_fds: tuple[int, int] | None = None
        """A pipe in the poll beside the connection: ``wake`` ends a read that waits."""
        self._wake_lock = threading.Lock()
        """``wake`` (another thread) never writes to descriptors ``close`` freed."""

    def open(self) -> None:
        # redis-py's own reading of the URL (its query parameters included).
        options = parse_url(self._url)
        path = options.get("path")
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout)
            try:
                sock.connect(str(path))
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(
                (str(options.get("host") or "localhost"), int(options.get("port") or 6379)),
                timeout=self._connect_timeout,
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        # poll, not select: a daemon with many connections has descriptors past
        # select's limit of 1,024. One for the connection, not one per read.
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        with self._wake_lock:
            self._wake_fds = (wake_read, wake_write)
        self._poller.register(wake_read, select.POLLIN)
        self._last_heard = time.monotonic()
        password = options.get("password")
        if password is not None:
            username = options.get("username")
            self._send(_command("AUTH", *([str(username)] if username else []), str(password)))
            self._auth_answer()
        if self._channels:
            self._send(_command("SUBSCRIBE", *self._channels))
        if self._patterns:
            self._send(_command("PSUBSCRIBE", *self._patterns))

    def read(self, timeout: float) -> list[tuple[str, bytes]]:
        """What has arrived within ``timeout`` seconds (nothing, when nothing did)."""
        sock = self._sock
        if sock is None:
            raise redis.exceptions.ConnectionError("not connected")
        if isinstance(self._error, redis.exceptions.ResponseError):
            raise redis.exceptions.ConnectionError(f"Redis answered an error: {self._error}")
        if self._error is not None:
            raise self._error
        now = time.monotonic()
        if self._ping_sent is None and now - self._last_heard >= self._health_every:
            self._send(_command("PING"))
            self._ping_sent = now
        if self._ping_sent is not None and now - self._ping_sent >= self._answer_within:
            raise redis.exceptions.TimeoutError(
                f"Redis did not answer a PING within {self._answer_within:g} s"
            )
        assert self._poller is not None
        ready = self._poller.poll(timeout * 1000)
        if not ready:
            return []
        wake_fds = self._wake_fds
        # Two descriptors in the poll: more than one ready, or the one not the socket,
        # is a wake.
        if wake_fds is not None and (len(ready) > 1 or ready[0][0] == wake_fds[0]):
            with contextlib.suppress(BlockingIOError):
                os.read(wake_fds[0], 64)
            if len(ready) == 1:
                return []
        chunk = sock.recv(_RECV)
        if not chunk:
            raise redis.exceptions.ConnectionError("Redis closed the connection")
        self._last_heard = time.monotonic()
        self._ping_sent = None
        self._buffer += chunk
        found, used, error = parse_messages(self._buffer)
        del self._buffer[:used]
        if error is not None:
            # Those before it go over first; the connection is given up at the next read.
            self._error = error
        names = self._channel_names
        messages: list[tuple[str, bytes]] = []
        for channel, data in found:
            name = names.get(channel)
            if name is None:
                if len(names) >= _CHANNELS_KEPT:
                    names.clear()
                name = names[channel] = channel.decode("utf-8", "replace")
            messages.append((name, data))
        return messages

    def wake(self) -> None:
        """Ends a ``read`` waiting now, or the next one, at once (it returns nothing):
        from any thread, at any time, open or closed."""
        with self._wake_lock:
            if self._wake_fds is not None:
                with contextlib.suppress(BlockingIOError):  # a wake is pending already
                    os.write(self._wake_fds[1], b"w")

    def close(self) -> None:
        with self._wake_lock:
            fds, self._wake_fds = self._wake_fds, None
        for fd in fds or ():
            os.close(fd)
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._poller = None

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.settimeout(self._answer_within)
        self._sock.sendall(data)

    def _auth_answer(self) -> None:
        assert self._sock is not None
        deadline = time.monotonic() + self._answer_within
        while True:
            try:
                answer, used = _frame(self._buffer, 0) if self._buffer else (None, -1)
            except _Incomplete:
                used = -1
            if used >= 0:
                del self._buffer[:used]
                if isinstance(answer, Exception):
                    raise redis.exceptions.AuthenticationError(str(answer))
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise redis.exceptions.TimeoutError("Redis did not answer AUTH")
            self._sock.settimeout(left)
            chunk = self._sock.recv(_RECV)
            if not chunk:
                raise redis.exceptions.ConnectionError("Redis closed the connection at AUTH")
            self._buffer += chunk
