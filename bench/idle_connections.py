"""GET /health latency while 1,000 idle connections are open (slow or hostile clients:
half connected and silent, half stalled in the middle of a request line).

Starts ``python -m coordinator run`` with its embedded servers in a temporary data
directory, opens the idle connections, then times ``--requests`` health checks, each on
a new connection (as an orchestrator's probe makes them). Prints p50 / p99 / max beside
the target, and the same without the idle connections for comparison.

    python bench/idle_connections.py [--idle 1000] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_status import free_port, start_coordinator  # noqa: E402

TARGET_MS = 100.0


def open_idle(port: int, count: int) -> list[socket.socket]:
    idle = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if index % 2:
            sock.sendall(b"GET /hea")
        idle.append(sock)
    return idle


def health_latencies(port: int, requests: int) -> tuple[list[float], int]:
    """Milliseconds per check, sorted, and how many did not answer 200."""
    latencies, failed = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/health")
            answer = conn.getresponse()
            answer.read()
            failed += answer.status != 200
        except OSError:
            failed += 1
        finally:
            conn.close()
        latencies.append((time.perf_counter() - started) * 1000)
    return sorted(latencies), failed


def report(label: str, latencies: list[float], failed: int) -> None:
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    verdict = "met" if p99 <= TARGET_MS and not failed else "NOT met"
    print(
        f"{label:<28} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {latencies[-1]:7.2f} ms  "
        f"failed {failed}  (target p99 <= {TARGET_MS:g} ms: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = start_coordinator(Path(tmp) / "data", port)
        try:
            report("no idle connections", *health_latencies(port, args.requests))
            idle = open_idle(port, args.idle)
            try:
                report(f"{args.idle} idle connections", *health_latencies(port, args.requests))
            finally:
                for sock in idle:
                    sock.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)


if __name__ == "__main__":
    main()
