"""Free TCP ports for servers this process is about to start.

A port the kernel hands out for ``bind(("", 0))`` comes from its ephemeral range: the
same range it takes the local port of every outgoing connection from. Between the
moment such a port is found free and the moment a server listens on it, any
connection made meanwhile (to Redis, PostgreSQL, the Trader: a starting coordinator
makes dozens) may be given it, and the server then fails with "Address already in
use". So a port is drawn here from outside that range, where the kernel never puts an
outgoing connection, and checked free by binding it.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections import deque
from pathlib import Path

__all__ = ["ephemeral_range", "free_port"]

_LOWEST = 10_000
"""Below this sit the well-known and registered ports of common servers."""
_HIGHEST = 65_535
_ATTEMPTS = 200

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_DEFAULT_EPHEMERAL = (32_768, 60_999)

# Its own generator, seeded from the OS: property-based tests reseed the global one the
# same way in every process, and processes started together would then draw the same.
_draw = random.Random(os.urandom(16))
_lock = threading.Lock()
# Ports given out lately, not drawn again: found free, they may not be listened on yet.
_recent: deque[int] = deque(maxlen=512)


def ephemeral_range(path: Path = _EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports, both ends included."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return _LINUX_DEFAULT_EPHEMERAL
    return low, high


def _candidates(ephemeral: tuple[int, int]) -> list[range]:
    low, high = ephemeral
    spans = [range(_LOWEST, min(low, _HIGHEST + 1)), range(max(high + 1, _LOWEST), _HIGHEST + 1)]
    return [span for span in spans if len(span) > 0]


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", *, ephemeral: tuple[int, int] | None = None) -> int:
    """A port free on ``host`` now, outside the ephemeral range.

    ``ephemeral``: the range to stay out of; the kernel's when None. Where it leaves no
    room (a range set to cover nearly every port), the kernel's choice is taken.
    """
    spans = _candidates(ephemeral or ephemeral_range())
    total = sum(len(span) for span in spans)
    with _lock:
        for _ in range(_ATTEMPTS if total else 0):
            index = _draw.randrange(total)
            for span in spans:
                if index < len(span):
                    port = span[index]
                    break
                index -= len(span)
            if port in _recent or not _bindable(host, port):
                continue
            _recent.append(port)
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return int(port)
