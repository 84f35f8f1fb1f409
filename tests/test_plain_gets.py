"""The plain GETs the listener answers without waitress's parser: recognised strictly,
and never one that waitress would read otherwise."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser

from coordinator.http.plain_gets import PlainGet, plain_gets

PATHS = frozenset({"/health", "/status"})
ONE = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:5003\r\nAccept: */*\r\n\r\n"


def test_a_plain_get_is_recognised_with_where_it_ends() -> None:
    assert plain_gets(ONE, PATHS) == [PlainGet("/health", 0, len(ONE))]
    bare = b"GET /status HTTP/1.1\r\n\r\n"
    assert plain_gets(bare, PATHS) == [PlainGet("/status", 0, len(bare))]


def test_pipelined_gets_are_taken_up_to_the_first_that_is_not_plain() -> None:
    other = b"GET /other HTTP/1.1\r\n\r\n"
    found = plain_gets(ONE + ONE + other + ONE, PATHS)
    assert found == [PlainGet("/health", 0, len(ONE)), PlainGet("/health", len(ONE), 2 * len(ONE))]


def test_a_request_not_whole_yet_is_left() -> None:
    assert plain_gets(ONE[:-2], PATHS) == []
    assert plain_gets(ONE + ONE[:10], PATHS) == [PlainGet("/health", 0, len(ONE))]


def test_keep_alive_said_aloud_is_still_plain() -> None:
    data = b"GET /health HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n"
    assert [g.path for g in plain_gets(data, PATHS)] == ["/health"]


@pytest.mark.parametrize(
    "data",
    [
        b"HEAD /health HTTP/1.1\r\n\r\n",
        b"POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
        b"GET /health?full=1 HTTP/1.1\r\n\r\n",
        b"GET /%68ealth HTTP/1.1\r\n\r\n",
        b"GET /other HTTP/1.1\r\n\r\n",
        b"GET /health  HTTP/1.1\r\n\r\n",
        b"GET http://x/health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /health HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.1\r\nconnection: keep-alive, CLOSE\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
        b"GET /health HTTP/1.1\nHost: x\n\n",
        b"GET /health HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    ],
)
def test_anything_but_a_plain_get_is_left_to_waitress(data: bytes) -> None:
    assert plain_gets(data, PATHS) == []


def _waitress(data: bytes) -> tuple[HTTPRequestParser, int]:
    parser = HTTPRequestParser(Adjustments())
    return parser, parser.received(data)


_NAMES = st.sampled_from(
    [
        "Host",
        "Accept",
        "User-Agent",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
        "Expect",
        "X-Request-Id",
        "Upgrade",
    ]
)
_VALUES = st.sampled_from(
    ["x", "*/*", "keep-alive", "close", "0", "5", "chunked", "100-continue", "", "a b\tc"]
)
_HEADERS = st.builds(
    lambda n, v, gap: f"{n}:{gap}{v}".encode(), _NAMES, _VALUES, st.sampled_from(["", " ", "\t"])
)
_LINES = st.one_of(_HEADERS, _HEADERS, _HEADERS, st.binary(max_size=12))


@settings(max_examples=1000)
@given(
    # Weighted towards plain GETs, so that many examples are recognised.
    method=st.sampled_from([b"GET", b"GET", b"GET", b"HEAD", b"POST", b"get"]),
    target=st.sampled_from([b"/health", b"/health", b"/status", b"/other", b"/health?x=1"]),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2"]),
    lines=st.lists(_LINES, max_size=4),
)
def test_what_is_recognised_is_what_waitress_reads_as_a_plain_get(
    method: bytes, target: bytes, version: bytes, lines: list[bytes]
) -> None:
    data = b"\r\n".join([method + b" " + target + b" " + version, *lines]) + b"\r\n\r\n"
    found = plain_gets(data, PATHS)
    event("recognised" if found else "left to waitress")
    for get in found:
        parser, used = _waitress(data[get.start :])
        assert parser.error is None
        assert parser.completed
        assert used == get.end - get.start
        assert (parser.command, parser.path, parser.version) == ("GET", get.path, "1.1")
        assert parser.content_length == 0
        assert not parser.chunked
        assert not parser.expect_continue
        assert "close" not in parser.headers.get("CONNECTION", "").lower()
