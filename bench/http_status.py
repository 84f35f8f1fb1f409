"""Requests per second and p99 latency of GET /health and GET /status.

Starts ``python -m coordinator run`` with its embedded servers in a temporary data
directory, then loads each route with 10 concurrent keep-alive connections using wrk
(``apt-get install wrk``) when it is installed, else with a Python load generator in
separate processes (which itself costs CPU on a 2-core machine, so its figures are
lower bounds). Prints the figures beside the target.

    python bench/http_status.py [--seconds 10] [--connections 10]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A port outside the kernel's ephemeral range: one found free by binding port 0 may be
# given to an outgoing connection of the starting coordinator before it listens.
from coordinator.infra.ports import free_port  # noqa: E402

TARGET_HEALTH_RPS = 4000


def start_coordinator(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "PG", "DATABASE_"))},
        "COORDINATOR_PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "coordinator", "run", "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            body = conn.getresponse().read()
            if b'"postgres": {"status": "up"' in body:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the coordinator did not come up within 60 s")


def run_wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99[2]]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors[1]} non-2xx answers")
    return rps, float(p99[1]) * scale


def _worker(port: int, path: str, seconds: float, queue: multiprocessing.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        conn.request("GET", path)
        conn.getresponse().read()
        latencies.append(time.perf_counter() - started)
    queue.put(latencies)


def run_python(port: int, path: str, seconds: int, connections: int) -> tuple[float, float]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_worker, args=(port, path, seconds, queue))
        for _ in range(connections)
    ]
    for worker in workers:
        worker.start()
    latencies = sorted(x for _ in workers for x in queue.get())
    for worker in workers:
        worker.join()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / seconds, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    tool = "wrk" if shutil.which("wrk") else "python load generator"
    with tempfile.TemporaryDirectory() as tmp:
        process = start_coordinator(Path(tmp) / "data", port)
        try:
            print(f"load: {tool}, {args.connections} connections, {args.seconds} s per route")
            for path in ("/health", "/status"):
                if tool == "wrk":
                    rps, p99 = run_wrk(
                        f"http://127.0.0.1:{port}{path}", args.seconds, args.connections
                    )
                else:
                    rps, p99 = run_python(port, path, args.seconds, args.connections)
                target = f"(target >= {TARGET_HEALTH_RPS} req/s)" if path == "/health" else ""
                print(f"GET {path:<8} {rps:8.0f} req/s   p99 {p99:7.2f} ms  {target}")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)


if __name__ == "__main__":
    main()
