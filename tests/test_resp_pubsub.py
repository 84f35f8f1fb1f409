"""The subscribed connection parsed by the coordinator itself: frames split anywhere
come out whole and the same; against a real Redis, AUTH, channels and patterns; a
wrong password refused; an error after a message hands the message over first; a
silent server is sent a PING and given up when it does not answer."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.infra.embedded import EmbeddedRedis
from coordinator.infra.resp_pubsub import RespSubscriber, parse_frames, parse_messages, supports

STREAM = (
    b"*3\r\n$10\r\npsubscribe\r\n$3\r\nm:*\r\n:1\r\n"
    b'*4\r\n$8\r\npmessage\r\n$3\r\nm:*\r\n$7\r\nm:BTC:1\r\n$11\r\n{"close":1}\r\n'
    b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$0\r\n\r\n"
    b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    b"+OK\r\n:42\r\n$-1\r\n"
    b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$6\r\na\r\nb\r\n\r\n"
    b"-ERR something\r\n"
)


def test_frames_split_at_any_byte_come_out_whole_and_the_same() -> None:
    whole, used = parse_frames(bytearray(STREAM))
    assert used == len(STREAM)
    assert whole[1] == [b"pmessage", b"m:*", b"m:BTC:1", b'{"close":1}']
    assert whole[2] == [b"message", b"sigs", b""]
    assert whole[4:7] == [b"OK", 42, None]
    assert whole[7] == [b"message", b"sigs", b"a\r\nb\r\n"]  # CRLF inside a body
    assert isinstance(whole[8], redis.exceptions.ResponseError)
    for cut in range(len(STREAM) + 1):
        buffer = bytearray(STREAM[:cut])
        first, used = parse_frames(buffer)
        del buffer[:used]
        buffer += STREAM[cut:]
        rest, _ = parse_frames(buffer)
        got = [str(f) if isinstance(f, Exception) else f for f in first + rest]
        assert got == [str(f) if isinstance(f, Exception) else f for f in whole], cut


def _bulk(data: bytes, declared: int | None = None) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data) if declared is None else declared, data)


# Names and bodies with what a short reading could trip on: CR, LF, CRLF, '$', digits.
_TEXT = st.binary(max_size=12) | st.sampled_from(
    [b"", b"\r", b"\n", b"\r\n", b"a\r\n$3\r\nabc", b"m:BTC:1", b"{}\r\n"]
)
_FRAME = st.one_of(
    st.builds(lambda c, d: b"*3\r\n$7\r\nmessage\r\n" + _bulk(c) + _bulk(d), _TEXT, _TEXT),
    st.builds(
        lambda p, c, d: b"*4\r\n$8\r\npmessage\r\n" + _bulk(p) + _bulk(c) + _bulk(d),
        _TEXT,
        _TEXT,
        _TEXT,
    ),
    # Lengths written otherwise than in plain digits, and null strings: the long way.
    st.builds(lambda c: b"*3\r\n$7\r\nmessage\r\n" + _bulk(c) + b"$-1\r\n", _TEXT),
    st.builds(lambda c: b"*3\r\n$7\r\nmessage\r\n$-1\r\n" + _bulk(c), _TEXT),
    st.builds(lambda d: b"*3\r\n$7\r\nmessage\r\n$04\r\nsigs\r\n" + _bulk(d), _TEXT),
    st.just(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nsigs\r\n:1\r\n"),
    st.just(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
    st.just(b"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"),
    st.just(b"+OK\r\n:42\r\n$-1\r\n*-1\r\n"),
    st.just(b"-ERR something\r\n"),
    # A body announced shorter than it is: the connection is given up.
    st.builds(lambda d: b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n" + _bulk(d + b"xy", len(d)), _TEXT),
)


def _messages_of_frames(frames: list[bytes]) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """What the frames parsed one by one give: the messages up to the first error frame
    or the first bytes that are no frame, and that error."""
    messages: list[tuple[bytes, bytes]] = []
    for stream in frames:
        try:
            parsed, _ = parse_frames(bytearray(stream))
        except redis.exceptions.ConnectionError as exc:
            return messages, f"lost: {exc}"
        for frame in parsed:
            if isinstance(frame, Exception):
                return messages, str(frame)
            if isinstance(frame, list) and len(frame) == 4 and frame[0] == b"pmessage":
                channel, body = frame[2], frame[3]
            elif isinstance(frame, list) and len(frame) == 3 and frame[0] == b"message":
                channel, body = frame[1], frame[2]
            else:
                continue
            if isinstance(channel, bytes) and isinstance(body, bytes):
                messages.append((channel, body))
    return messages, None


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAME, max_size=8), st.data())
def test_messages_read_the_short_way_are_those_of_the_frames(
    frames: list[bytes], data: st.DataObject
) -> None:
    """The short reading of the usual messages gives what the frames give, whole and
    with the stream cut anywhere, up to an error frame or bytes that are no frame."""
    stream = b"".join(frames)
    expected, error = _messages_of_frames(frames)
    cut = data.draw(st.integers(0, len(stream)))
    buffer = bytearray(stream[:cut])
    first, used, got_error = parse_messages(buffer)
    del buffer[:used]
    buffer += stream[cut:]
    rest, _, rest_error = parse_messages(buffer) if got_error is None else ([], 0, None)
    got_error = got_error or rest_error
    if isinstance(got_error, redis.exceptions.ResponseError) or got_error is None:
        got = (first + rest, str(got_error) if got_error is not None else None)
    else:
        got = (first + rest, f"lost: {got_error}")
    assert got == (expected, error)


def test_a_name_announced_longer_than_read_is_not_cut_at_its_cr() -> None:
    stream = b"*3\r\n$7\r\nmessage\r\n" + _bulk(b"a\rb") + _bulk(b"x")
    assert parse_messages(bytearray(stream)) == ([(b"a\rb", b"x")], len(stream), None)


def test_only_plain_and_unix_urls_are_read_here() -> None:
    assert supports("redis://:pw@127.0.0.1:6379/0") and supports("unix:///run/redis.sock")
    assert not supports("rediss://redis.example:6380/0")


def read_until(subscriber: RespSubscriber, count: int) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        got += subscriber.read(timeout=0.2)
    return got


def test_a_real_redis_with_a_password_gives_channels_and_patterns(
    redis_server: EmbeddedRedis,
) -> None:
    subscriber = RespSubscriber(
        redis_server.url, channels=("wire:signals",), patterns=("wire:market:*",)
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        subscriber.open()
        deadline = time.monotonic() + 10
        # Published once both subscriptions are in place (each publish says to how many).
        while client.publish("wire:market:BTC", b"probe") < 1 and time.monotonic() < deadline:
            subscriber.read(timeout=0.05)
        while client.publish("wire:signals", b"probe") < 1 and time.monotonic() < deadline:
            subscriber.read(timeout=0.05)
        big = b"x" * 300_000  # more than one recv
        client.publish("wire:market:ETH", b'{"close": 2}')
        client.publish("wire:signals", big)
        client.publish("elsewhere", b"not ours")
        got = [m for m in read_until(subscriber, 4) if m[1] != b"probe"]
        assert got == [("wire:market:ETH", b'{"close": 2}'), ("wire:signals", big)]
    finally:
        subscriber.close()
        client.close()


def test_a_wrong_password_is_refused(redis_server: EmbeddedRedis) -> None:
    wrong = redis_server.url.replace(f":{redis_server.password}@", ":not-it@")
    subscriber = RespSubscriber(wrong, channels=("wire:signals",))
    with pytest.raises(redis.exceptions.AuthenticationError):
        subscriber.open()
    subscriber.close()


class SilentServer:
    """Accepts one connection, writes what it is given, answers nothing else."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"
        self.received = bytearray()
        self.connected = threading.Event()
        self.conn: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.conn, _ = self._listener.accept()
        self.connected.set()
        try:
            while chunk := self.conn.recv(65536):
                self.received += chunk
        except OSError:
            return  # closed by the test's end while reading

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)  # ends the reader's recv first
            self.conn.close()
        self._listener.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_an_error_after_a_message_hands_the_message_over_first(silent: SilentServer) -> None:
    subscriber = RespSubscriber(silent.url, channels=("sigs",))
    subscriber.open()
    assert silent.connected.wait(5) and silent.conn is not None
    silent.conn.sendall(b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$2\r\nhi\r\n-ERR gone\r\n")
    assert read_until(subscriber, 1) == [("sigs", b"hi")]
    with pytest.raises(redis.exceptions.ConnectionError, match="ERR gone"):
        subscriber.read(timeout=0.2)
    subscriber.close()


def test_bytes_that_are_no_frame_hand_the_messages_before_them_over_first(
    silent: SilentServer,
) -> None:
    subscriber = RespSubscriber(silent.url, channels=("sigs",))
    subscriber.open()
    assert silent.connected.wait(5) and silent.conn is not None
    silent.conn.sendall(
        b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$2\r\nhi\r\n"
        b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$1\r\nlong\r\n"
    )
    assert read_until(subscriber, 1) == [("sigs", b"hi")]
    with pytest.raises(redis.exceptions.ConnectionError, match="not ended by CRLF"):
        subscriber.read(timeout=0.2)
    subscriber.close()


def test_a_silent_server_is_pinged_and_given_up(silent: SilentServer) -> None:
    subscriber = RespSubscriber(silent.url, channels=("sigs",), health_every=0.3, answer_within=0.3)
    subscriber.open()
    deadline = time.monotonic() + 10
    with pytest.raises(redis.exceptions.TimeoutError, match="PING"):
        while time.monotonic() < deadline:
            subscriber.read(timeout=0.1)
    assert b"PING" in silent.received
    subscriber.close()


def test_a_connection_past_select_s_descriptor_limit_is_read(silent: SilentServer) -> None:
    """A daemon with many connections opens its subscription on a descriptor past
    1,024, where select() cannot wait."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"at most {hard} descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    subscriber = RespSubscriber(silent.url, channels=("sigs",))
    try:
        subscriber.open()
        assert subscriber._sock is not None and subscriber._sock.fileno() > 1024
        assert silent.connected.wait(5) and silent.conn is not None
        silent.conn.sendall(b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$2\r\nhi\r\n")
        assert read_until(subscriber, 1) == [("sigs", b"hi")]
    finally:
        subscriber.close()
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_wake_ends_a_read_that_waits_and_the_messages_after_it_still_come(
    silent: SilentServer,
) -> None:
    """A stop must not wait out the read's timeout: ``wake`` (another thread) ends it
    with nothing read, and the connection reads on as before."""
    subscriber = RespSubscriber(silent.url, channels=("sigs",))
    subscriber.open()
    try:
        assert silent.connected.wait(5) and silent.conn is not None
        answer: Future[list[tuple[str, bytes]]] = Future()

        def read() -> None:
            try:
                answer.set_result(subscriber.read(timeout=60))
            except BaseException as exc:
                answer.set_exception(exc)

        threading.Thread(target=read, daemon=True).start()
        subscriber.wake()
        assert answer.result(timeout=10) == []
        silent.conn.sendall(b"*3\r\n$7\r\nmessage\r\n$4\r\nsigs\r\n$2\r\nhi\r\n")
        assert read_until(subscriber, 1) == [("sigs", b"hi")]
    finally:
        subscriber.close()


def test_wakes_never_block_the_waker_open_or_closed(silent: SilentServer) -> None:
    """More wakes than the pipe holds, then after the close: none blocks or raises."""
    subscriber = RespSubscriber(silent.url, channels=("sigs",))
    subscriber.wake()  # before it is open: nothing to wake
    subscriber.open()
    for _ in range(70_000):
        subscriber.wake()
    assert subscriber.read(timeout=60) == []
    subscriber.close()
    subscriber.wake()
