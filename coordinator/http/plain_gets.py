"""Plain keep-alive GETs of published answers, recognised in the bytes as they arrive.

A health check polling /health costs the listener's thread a request parser, a
request object and two turns of its loop before its answer leaves; under an order run
that thread takes the GIL from the order path at every request. Most such requests
are the same few dozen bytes: ``GET /health HTTP/1.1`` and a handful of ordinary
headers. Those are recognised here, strictly, and anything else (another method or
version, a query, a body announced, ``Expect``, ``Connection: close``, a header line
that is not plainly ``name: value``, a request not whole yet) is left to waitress's
parser, which answers it as before. Pure: bytes in, offsets out.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["PlainGet", "plain_gets"]

_HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x20-\x7e\t]*)")
"""A header line: a token, a colon, a value of visible ASCII, spaces and tabs."""
_LEFT_TO_WAITRESS = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"trailer"}
)
"""Headers that make a request more than a plain GET: a body, an interim answer, a
protocol switch."""
_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class PlainGet:
    path: str
    """The path asked, one of the published ones."""
    start: int
    """Where the request begins in the bytes received."""
    end: int
    """Where it ends (just past its blank line)."""


def _plain(head: bytes, paths: Collection[str]) -> str | None:
    """The path of ``head`` (a request up to, not including, its blank line) when it is
    a plain keep-alive GET of one of ``paths``; None for anything else."""
    line, _, headers = head.partition(b"\r\n")
    if not line.startswith(b"GET /") or not line.endswith(b" HTTP/1.1"):
        return None
    target = line[4:-9]
    if b" " in target or b"?" in target or b"%" in target:
        return None
    path = target.decode("ascii", "replace")
    if path not in paths:
        return None
    if headers:
        for field in headers.split(b"\r\n"):
            match = _HEADER.fullmatch(field)
            if match is None:
                return None
            name = match[1].lower()
            if name in _LEFT_TO_WAITRESS:
                return None
            if name == b"connection" and b"close" in match[2].lower():
                return None
    return path


def plain_gets(data: bytes, paths: Collection[str]) -> list[PlainGet]:
    """The plain GETs of ``paths`` at the front of ``data``, in order; the first
    request that is not one, or not whole, and everything after it, are not."""
    found: list[PlainGet] = []
    start = 0
    while start < len(data):
        end = data.find(_END, start)
        if end < 0:
            break
        path = _plain(data[start:end], paths)
        if path is None:
            break
        found.append(PlainGet(path, start, end + len(_END)))
        start = end + len(_END)
    return found
