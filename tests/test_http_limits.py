"""What one client may ask of the API: a rate per client address (429 with
Retry-After), a body size on every route (413), and idle connections that cannot crowd
out a health check. Whole coordinators over real sockets."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from coordinator.config import ConfigError, load_config
from tests.pipeline import AUTH, signal_payload

OTHER_CLIENT = "127.0.0.2"
# A rate so slow that no token comes back while a test runs: the burst is all a client
# gets, whatever the machine's speed.
SLOW = "0.001/s burst 3"

# Every route that changes something, with a path that reaches it.
MUTATING = {
    "POST /signals": "/signals",
    "POST /trading/halt": "/trading/halt",
    "POST /trading/resume": "/trading/resume",
    "POST /drills/actors/<name>/<kind>": "/drills/actors/stats/crash",
    "POST /orders/<client_order_id>/resolve": "/orders/no-such-order/resolve",
    "POST /universe/refresh": "/universe/refresh",
    "POST /universe/blacklist": "/universe/blacklist",
    "DELETE /universe/blacklist/<symbol>": "/universe/blacklist/BTCUSDC",
}


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request from ``source`` (a loopback address of the client's choosing)."""
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    conn = http.client.HTTPConnection(
        url.hostname, url.port, timeout=10, source_address=(source, 0)
    )
    try:
        conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        answer = conn.getresponse()
        payload = json.loads(answer.read() or b"{}")
        return answer.status, dict(answer.getheaders()), payload
    finally:
        conn.close()


def signal() -> bytes:
    return json.dumps(signal_payload("ETHUSDC")).encode()


def test_a_burst_of_commands_then_429_with_retry_after_and_the_limit_named(pipelines):
    pipe = pipelines({"HTTP_RATE_LIMIT_MUTATING": SLOW})
    answers = [request(pipe.url, "POST", "/trading/resume", b"{}") for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200], answers

    status, headers, body = request(pipe.url, "POST", "/trading/resume", b"{}")
    assert status == 429, body
    assert int(headers["Retry-After"]) >= 1
    assert body["retry_after"] == int(headers["Retry-After"])
    assert body["limit"] == "0.001/s burst 3"
    assert "HTTP_RATE_LIMIT_MUTATING" in body["error"] and body["status"] == 429
    # Every command spends the same allowance, a wrong token too.
    status, _, _ = request(pipe.url, "POST", "/universe/refresh")
    assert status == 429
    status, _, _ = request(pipe.url, "POST", "/trading/halt", b"{}", headers={"Authorization": ""})
    assert status == 429

    # Another client is not held back by the first, and reads are never limited.
    status, _, body = request(pipe.url, "POST", "/trading/resume", b"{}", source=OTHER_CLIENT)
    assert status == 200, body
    assert request(pipe.url, "GET", "/status")[0] == 200
    # Signals have their own allowance.
    status, _, body = request(pipe.url, "POST", "/signals", signal())
    assert status == 202, body


def test_a_burst_of_signals_then_429_and_another_client_still_sends(pipelines):
    pipe = pipelines({"HTTP_RATE_LIMIT_SIGNALS": SLOW})
    statuses = [request(pipe.url, "POST", "/signals", signal())[0] for _ in range(3)]
    assert statuses == [202, 202, 202]

    refused = json.dumps(signal_payload("SOLUSDC")).encode()
    status, headers, body = request(pipe.url, "POST", "/signals", refused)
    assert status == 429, body
    assert int(headers["Retry-After"]) >= 1
    assert "HTTP_RATE_LIMIT_SIGNALS" in body["error"]
    consensus_id = json.loads(refused)["metadata"]["consensus_id"]
    status, _, _ = request(pipe.url, "GET", f"/signals/consensus:{consensus_id}")
    assert status == 404, "a refused request is not taken in"

    status, _, body = request(pipe.url, "POST", "/signals", refused, source=OTHER_CLIENT)
    assert status == 202, body
    # Commands have their own allowance.
    assert request(pipe.url, "POST", "/trading/resume", b"{}")[0] == 200


@pytest.fixture
def unlimited(pipelines) -> Any:
    """A coordinator whose rates do not get in the way of the body tests."""
    return pipelines(
        {
            "HTTP_RATE_LIMIT_MUTATING": "off",
            "HTTP_RATE_LIMIT_SIGNALS": "off",
            "MAX_SIGNAL_BYTES": "4096",
        }
    )


def test_every_mutating_route_is_checked_here(unlimited):
    listed = requests.get(
        unlimited.url + "/", headers={"Accept": "application/json"}, timeout=10
    ).json()["endpoints"]
    changing = {route for route in listed if not route.startswith("GET ")}
    assert changing == set(MUTATING)


@pytest.mark.parametrize("route", sorted(MUTATING))
def test_a_body_over_the_limit_is_413_in_json_on_every_mutating_route(unlimited, route):
    method, _ = route.split(" ", 1)
    limit = 4096 if route == "POST /signals" else 64 * 1024
    status, _, body = request(unlimited.url, method, MUTATING[route], b"{" + b" " * limit + b"}")
    assert status == 413, body
    assert body["status"] == 413
    assert f"{limit + 2} bytes is over the limit of {limit} bytes" in body["error"]


def chunks(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        piece = min(8192, size - sent)
        sent += piece
        yield b" " * piece


def test_a_chunked_body_over_the_limit_is_413_too(unlimited):
    answer = requests.post(
        unlimited.url + "/trading/halt", data=chunks(200_000), headers=AUTH, timeout=10
    )
    assert answer.status_code == 413, answer.text
    assert "over the limit of 65536 bytes" in answer.json()["error"]
    # Within the limit, a chunked body is read as any other.
    halt = json.dumps({"reason": "chunked"}).encode()
    answer = requests.post(
        unlimited.url + "/trading/halt", data=iter([halt[:5], halt[5:]]), headers=AUTH, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert requests.post(unlimited.url + "/trading/resume", headers=AUTH, timeout=10).ok


def test_reads_are_held_to_the_limit_and_a_huge_declared_body_is_refused_unread(unlimited):
    status, _, body = request(unlimited.url, "GET", "/status", b" " * (64 * 1024 + 1))
    assert status == 413, body

    # Far past what the server buffers: refused on the headers, in JSON, nothing sent.
    url = urlsplit(unlimited.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /trading/halt HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
        )
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 413
        assert answer.getheader("Content-Type") == "application/json"
        assert json.loads(answer.read())["status"] == 413


def test_health_answers_with_1000_idle_connections_open(pipelines):
    pipe = pipelines()
    url = urlsplit(pipe.url)
    idle: list[socket.socket] = []
    try:
        for index in range(1000):
            sock = socket.create_connection((url.hostname, url.port), timeout=10)
            if index % 2:
                # Half of them stall in the middle of a request line.
                sock.sendall(b"GET /hea")
            idle.append(sock)
        answer = requests.get(pipe.url + "/health", timeout=5)
        assert answer.status_code == 200, answer.text
    finally:
        for sock in idle:
            sock.close()


def test_a_request_trickling_in_is_cut_off_after_the_request_timeout(pipelines):
    # Never idle for the idle timeout, so only the request timeout can close it.
    pipe = pipelines({"HTTP_REQUEST_TIMEOUT": "1", "HTTP_CLEANUP_INTERVAL": "1"})
    url = urlsplit(pipe.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.settimeout(0.2)
        request_line = b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 200
        closed = False
        for byte in request_line:
            try:
                sock.sendall(bytes([byte]))
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed, "the connection was still open after 40 s of trickle"
    assert requests.get(pipe.url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("10/s burst 20", (10.0, 20)), ("0.5 / s  BURST 1", (0.5, 1)), ("off", None)],
)
def test_a_rate_limit_setting_reads_a_rate_and_a_burst(raw, expected):
    rate = load_config({"HTTP_RATE_LIMIT_MUTATING": raw}).http.rate_limit_mutating
    assert (rate and (rate.per_second, rate.burst)) == expected


@pytest.mark.parametrize("raw", ["10", "10/s", "0/s burst 5", "10/s burst 0", "ten/s burst 2"])
def test_a_bad_rate_limit_is_refused_naming_the_setting_and_the_form(raw):
    with pytest.raises(ConfigError) as caught:
        load_config({"HTTP_RATE_LIMIT_SIGNALS": raw})
    assert f"HTTP_RATE_LIMIT_SIGNALS={raw!r}" in str(caught.value)
    assert "'10/s burst 20'" in str(caught.value)


OPEN_FILES = """
import json, resource, sys
from coordinator.http import server
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
raised = server.raise_open_files_limit()
after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))
sized = [server._connection_limit(2000), server._connection_limit(100)]
print(json.dumps([hard, raised, after, *sized]))
"""


def test_start_up_raises_the_open_files_limit_and_sizes_connections_under_it():
    # In a process of its own: a limit once lowered cannot be raised back past it.
    out = subprocess.run(
        [sys.executable, "-c", OPEN_FILES], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    hard, raised, after, sized, small = json.loads(out)
    assert raised == after == hard
    assert sized == 512 - 256, "2,000 connections do not fit under 512 open files"
    assert small == 100
