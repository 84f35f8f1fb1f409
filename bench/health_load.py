"""GET load on one route over keep-alive connections, started and stopped at will, to run
beside another benchmark (``bench/pipeline.py health``).

Each connection is a process of its own (the clients' GIL is not the server's limit),
and each speaks raw HTTP/1.1 on its socket: http.client would spend more CPU per
request than the route, on the two cores the server shares with it.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event


@dataclass(frozen=True)
class LoadResult:
    requests: int
    """Answers received."""
    seconds: float
    """From the start of the load to its stop."""
    p99_ms: float
    """99th percentile of the answers' latency."""
    failures: int
    """Answers other than 200, and broken connections."""
    client_cpu_seconds: float = 0.0
    """CPU the client processes spent, taken from the same two cores as the server's."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _read_answer(sock: socket.socket, pending: bytes) -> tuple[int, bytes]:
    """One answer's status, and what was read past its end."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        pending += chunk
    head, _, rest = pending.partition(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        rest += chunk
    return status, rest[length:]


def _connection(
    port: int, path: str, interval: float, stop: Event, results: multiprocessing.Queue
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    latencies: list[float] = []
    failures = 0
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    pending = b""
    due = time.perf_counter()
    while not stop.is_set():
        if interval:
            # Paced: each request at its turn, or at once when the answers fell behind.
            due += interval
            ahead = due - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        started = time.perf_counter()
        try:
            sock.sendall(request)
            status, pending = _read_answer(sock, pending)
        except OSError:
            failures += 1
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            pending = b""
            continue
        latencies.append(time.perf_counter() - started)
        if status != 200:
            failures += 1
    sock.close()
    results.put((latencies, failures, time.process_time()))


class HealthLoad:
    """``connections`` clients sending GET ``path`` until ``stop``: back to back, or
    ``rate`` requests a second in all."""

    def __init__(
        self, port: int, *, path: str = "/health", connections: int = 10, rate: float = 0.0
    ) -> None:
        self._stop = multiprocessing.Event()
        self._results: multiprocessing.Queue = multiprocessing.Queue()
        interval = connections / rate if rate > 0 else 0.0
        self._workers = [
            multiprocessing.Process(
                target=_connection,
                args=(port, path, interval, self._stop, self._results),
                daemon=True,
            )
            for _ in range(connections)
        ]
        self._started = 0.0

    def start(self) -> HealthLoad:
        for worker in self._workers:
            worker.start()
        self._started = time.perf_counter()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        seconds = time.perf_counter() - self._started
        latencies: list[float] = []
        failures = 0
        cpu = 0.0
        for _ in self._workers:
            some, failed, spent = self._results.get(timeout=30)
            latencies.extend(some)
            failures += failed
            cpu += spent
        for worker in self._workers:
            worker.join(10)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
        return LoadResult(len(latencies), seconds, p99, failures, cpu)
