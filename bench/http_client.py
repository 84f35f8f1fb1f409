"""What one ``POST /order`` costs the client, by HTTP client, against the Trader stub.

    python bench/http_client.py [--orders 3000] [--rounds 3]

The stub (bench/trader_stub.py) runs in a process of its own, so this process's CPU is
the client's alone: for each client, ``--orders`` orders one after another on one
keep-alive connection, BUY then SELL of one symbol (each fills), timed by the CPU time
of this thread and by the wall clock per request. Clients:

requests     a ``requests.Session`` set up as the TraderClient was (no proxy lookups,
             one pool, retries off), ``session.post(url, json=order)``
urllib3      urllib3's pool directly (requests' own engine, and the TraderClient's
             until it had its own): the headers built once, the body encoded with
             ``json.dumps``, retries off, Nagle off
TraderClient the coordinator's own client as it is now (``submit``, over
             ``coordinator/infra/http_wire.py``)
http.client  the standard library's connection alone, the same request: no pool, no
             checks of the connection, for reference

Rounds alternate the clients, so a change of the machine's speed meanwhile hits each
alike; the figure is the median of the rounds. Target: the coordinator's whole CPU per
order <= 0.35 ms, of which the HTTP client is one part.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordinator.infra.embedded import free_port  # noqa: E402
from coordinator.infra.trader_client import TraderClient  # noqa: E402


def order(index: int) -> dict[str, Any]:
    """An order body of the coordinator's shape (trading.execution.order_body)."""
    return {
        "symbol": "BENCHUSDC",
        "side": "BUY" if index % 2 == 0 else "SELL",
        "quantity": 1.5,
        "price": None,
        "strategy": "CONSENSUS",
        "timestamp": int(time.time() * 1000),
        "metadata": {
            "client_order_id": f"coord-{index:064d}",
            "signal_id": f"consensus:{index:032x}",
            "reference_price": 10.0,
            "category": "signal",
            "source": "coordinator",
        },
    }


def requests_client(url: str) -> Callable[[dict[str, Any]], int]:
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(
        pool_connections=1,
        pool_maxsize=8,
        max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0),
    )
    session.mount("http://", adapter)

    def post(body: dict[str, Any]) -> int:
        response = session.post(url + "/order", json=body, timeout=(2.0, 15.0))
        response.json()
        return response.status_code

    return post


def urllib3_client(url: str) -> Callable[[dict[str, Any]], int]:
    pool = urllib3.connection_from_url(url, maxsize=8, block=False, retries=False)
    headers = {**requests.utils.default_headers(), "Content-Type": "application/json"}
    timeout = urllib3.Timeout(connect=2.0, read=15.0)

    def post(body: dict[str, Any]) -> int:
        response = pool.urlopen(
            "POST",
            "/order",
            body=json.dumps(body, allow_nan=False).encode(),
            headers=headers,
            timeout=timeout,
            retries=False,
            redirect=False,
        )
        json.loads(response.data)
        return response.status

    return post


def http_client(url: str) -> Callable[[dict[str, Any]], int]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15.0)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {**requests.utils.default_headers(), "Content-Type": "application/json"}

    def post(body: dict[str, Any]) -> int:
        connection.request("POST", "/order", json.dumps(body, allow_nan=False).encode(), headers)
        response = connection.getresponse()
        json.loads(response.read())
        return response.status

    return post


def trader_client(url: str) -> Callable[[dict[str, Any]], int]:
    client = TraderClient(url, connect_timeout=2.0, read_timeout=15.0)

    def post(body: dict[str, Any]) -> int:
        return client.submit(body).status_code or 0

    return post


CLIENTS = {
    "requests": requests_client,
    "urllib3": urllib3_client,
    "TraderClient": trader_client,
    "http.client": http_client,
}


def run(post: Callable[[dict[str, Any]], int], count: int, start: int) -> tuple[float, list[float]]:
    """CPU seconds of this thread for ``count`` orders, and each order's wall time."""
    bodies = [order(start + index) for index in range(count)]
    walls = []
    cpu = time.thread_time()
    for body in bodies:
        began = time.perf_counter()
        status = post(body)
        walls.append(time.perf_counter() - began)
        if status != 201 and status != 200:
            raise SystemExit(f"the stub answered {status}")
    return time.thread_time() - cpu, walls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=3000, help="orders per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "trader_stub.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/health", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise SystemExit("the stub did not start") from None
                time.sleep(0.1)
        posts = {name: make(url) for name, make in CLIENTS.items()}
        cpu: dict[str, list[float]] = {name: [] for name in CLIENTS}
        walls: dict[str, list[float]] = {name: [] for name in CLIENTS}
        sent = 0
        for post in posts.values():  # warm: connections open, code paths loaded
            run(post, 50, sent)
            sent += 50
        for _ in range(args.rounds):
            for name, post in posts.items():
                seconds, times = run(post, args.orders, sent)
                sent += args.orders
                cpu[name].append(seconds / args.orders)
                walls[name].extend(times)
        print(f"{args.orders} orders x {args.rounds} rounds per client, POST /order to the stub")
        print(f"{'client':<14}{'CPU/order':>12}{'rounds':>24}{'wall p50':>11}{'wall p99':>11}")
        for name in CLIENTS:
            per_round = ", ".join(f"{value * 1e6:.0f}" for value in cpu[name])
            ordered = sorted(walls[name])
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[int(len(ordered) * 0.99)]
            print(
                f"{name:<14}{statistics.median(cpu[name]) * 1e6:>9.0f} us"
                f"{per_round:>24}{p50 * 1e3:>8.3f} ms{p99 * 1e3:>8.3f} ms"
            )
    finally:
        stub.terminate()
        stub.wait(10)


if __name__ == "__main__":
    main()
