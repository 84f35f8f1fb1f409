"""The market-data load of bench/stops.py: candles published on Redis from processes of
their own, so that the publisher is never what limits the rate.

Each background process sends its share of the ticks as raw RESP ``PUBLISH`` commands,
a few milliseconds of them per write (pipelined: the replies are read after each write),
the bodies prepared before the clock starts. Redis-py builds each command in Python,
about 15 us a tick, which at 20,000 ticks/s is most of a core on a two-core machine;
the raw commands cost a fraction of that. The crossing ticks are sent by the probe,
alone, each timed just before its write.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Background", "Probe", "candle", "channel_of"]


def candle(symbol: str, price: float, time_ms: int) -> bytes:
    return json.dumps(
        {
            "symbol": symbol,
            "timeframe": "1m",
            "time": time_ms // 60_000 * 60_000,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 1.0,
            "is_closed": False,
        }
    ).encode()


def channel_of(symbol: str) -> bytes:
    return f"roottrading:market:data:{symbol.lower()}:1m".encode()


def _publish_command(channel: bytes, body: bytes) -> bytes:
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(body),
        body,
    )


class _Connection:
    """One raw connection to Redis: commands written together, each reply an integer
    line (``:N\\r\\n``) counted off."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.password:
            self.send(
                [
                    b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n"
                    % (len(parts.password), parts.password.encode())
                ]
            )
        self._pending = b""

    def send(self, commands: list[bytes]) -> None:
        self._sock.sendall(b"".join(commands))
        self._read_replies(len(commands))

    def _read_replies(self, count: int) -> None:
        buffer = b""
        while buffer.count(b"\r\n") < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            buffer += chunk
        if buffer.startswith(b"-") or b"\r\n-" in buffer:
            raise RuntimeError(f"Redis refused a command: {buffer[:200]!r}")

    def close(self) -> None:
        self._sock.close()


def _background(
    url: str,
    symbols: list[str],
    rate: float,
    seconds: float,
    start_at: float,
    seed: int,
    results: multiprocessing.Queue,
) -> None:
    """Ticks at ``rate`` over ``symbols``, never near a stop, from ``start_at`` (host
    monotonic clock) for ``seconds``; puts (ticks sent, seconds taken) on ``results``."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    channels = {s: channel_of(s) for s in symbols}
    # A pool of prepared commands, drawn at random: the JSON is not what is measured.
    pool = [
        _publish_command(channels[s], candle(s, round(100.0 + rng.random() * 0.9, 4), now_ms))
        for s in (symbols[rng.randrange(len(symbols))] for _ in range(max(4096, len(symbols) * 4)))
    ]
    connection = _Connection(url)
    total = int(rate * seconds)
    per_write = max(1, int(rate / 500))  # 2 ms of ticks per write
    while time.monotonic() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.monotonic())))
    started = time.monotonic()
    sent = 0
    index = rng.randrange(len(pool))
    while sent < total:
        count = min(per_write, total - sent)
        batch = [pool[(index + i) % len(pool)] for i in range(count)]
        index = (index + count * 7919) % len(pool)
        connection.send(batch)
        sent += count
        pause = started + sent / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - started
    connection.close()
    results.put((sent, elapsed))


@dataclass
class Background:
    """``processes`` publishers sharing ``rate`` ticks/s over ``symbols``."""

    url: str
    symbols: list[str]
    rate: float
    seconds: float
    processes: int

    def start(self, start_at: float) -> None:
        context = multiprocessing.get_context("fork")
        self._results: multiprocessing.Queue = context.Queue()
        self._workers = [
            context.Process(
                target=_background,
                args=(
                    self.url,
                    self.symbols,
                    self.rate / self.processes,
                    self.seconds,
                    start_at,
                    1000 + n,
                    self._results,
                ),
                daemon=True,
            )
            for n in range(self.processes)
        ]
        for worker in self._workers:
            worker.start()

    def join(self) -> tuple[int, float]:
        """Ticks sent by all, and the longest any took."""
        outcomes = [self._results.get(timeout=self.seconds + 120) for _ in self._workers]
        for worker in self._workers:
            worker.join(10)
        return sum(n for n, _ in outcomes), max(s for _, s in outcomes)


class Probe:
    """The crossing ticks: each alone on its own connection, its time taken (host
    monotonic clock) just before the write."""

    def __init__(self, url: str) -> None:
        self._connection = _Connection(url)
        self.crossings: dict[str, float] = {}

    def cross(self, symbol: str, price: float) -> None:
        command = _publish_command(
            channel_of(symbol), candle(symbol, price, int(time.time() * 1000))
        )
        self.crossings[symbol] = time.monotonic()
        self._connection.send([command])

    def close(self) -> None:
        self._connection.close()
