"""The Trader client's outcomes and what it sends (the Portfolio client's too) on real
sockets, the intent gate, and the local journal."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from coordinator.infra.embedded import free_port
from coordinator.infra.intent_claims import Claim, ClaimResult, IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.pipeline_store import clean_text
from coordinator.infra.portfolio_client import PortfolioClient, PortfolioError
from coordinator.infra.trader_client import SendResult, TraderClient

ORDER = {"symbol": "BTCUSDC", "side": "BUY", "quantity": 0.01, "price": None, "strategy": "s"}


@pytest.fixture
def paper() -> Iterator[PaperExchange]:
    exchange = PaperExchange().start()
    exchange.set_price("BTCUSDC", 50_000.0)
    yield exchange
    exchange.stop()


def client(url: str, read_timeout: float = 2.0) -> TraderClient:
    return TraderClient(url, connect_timeout=0.5, read_timeout=read_timeout)


def test_accepted_rejected_failed(paper):
    trader = client(paper.url)
    accepted = trader.submit(ORDER)
    assert accepted.result is SendResult.ACCEPTED and accepted.order_id.startswith("order_")
    assert accepted.trader_works
    rejected = trader.submit({**ORDER, "quantity": 100})
    assert rejected.result is SendResult.REJECTED and "400" in rejected.error
    assert rejected.trader_works, "a business refusal is no fault of the Trader"
    paper.knobs.update({"error_rate": 1.0})
    failed = trader.submit({**ORDER, "quantity": 0.02})
    assert failed.result is SendResult.FAILED and not failed.trader_works


def test_a_refused_connection_is_known_not_sent():
    answer = client(f"http://127.0.0.1:{free_port()}").submit(ORDER)
    assert answer.result is SendResult.NOT_SENT


def test_a_read_timeout_is_unknown(paper):
    paper.knobs.update({"timeout": 2.0})
    answer = client(paper.url, read_timeout=0.2).submit(ORDER)
    assert answer.result is SendResult.UNKNOWN
    assert "read timeout" in answer.error


def test_a_connection_closed_after_the_request_is_unknown():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def close_after_reading() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=close_after_reading, daemon=True)
    thread.start()
    try:
        answer = client(f"http://127.0.0.1:{port}").submit(ORDER)
    finally:
        server.close()
    assert answer.result is SendResult.UNKNOWN


class OneConnectionServer:
    """A raw HTTP/1.1 server on one keep-alive connection: records each request as it
    arrived (request line, headers in order, body bytes) and answers the canned
    (status line, JSON body) replies in turn."""

    def __init__(self, replies: list[tuple[str, bytes]]) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.requests: list[tuple[str, list[tuple[str, str]], bytes]] = []
        self._replies = replies
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn, conn.makefile("rb") as reader:
            for status, body in self._replies:
                request_line = reader.readline().decode().strip()
                headers = []
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers.append((name, value.strip()))
                length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
                self.requests.append((request_line, headers, reader.read(length)))
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)


def test_what_reaches_the_trader_on_the_wire():
    """The headers and bodies the Trader receives, byte for byte: those requests sent
    when it was the client (its User-Agent and Accept-Encoding included), the body as
    ``json.dumps`` writes it."""
    order = {**ORDER, "metadata": {"client_order_id": "coord-1", "note": "é"}}
    server = OneConnectionServer(
        [("201 Created", b'{"order_id": "order_1"}'), ("200 OK", b'{"orders": []}')]
    )
    trader = client(server.url)
    try:
        assert trader.submit(order).order_id == "order_1"
        assert trader.orders(limit=0) == []
    finally:
        trader.close()
        server.close()
    host = server.url.removeprefix("http://")
    body = json.dumps(order).encode()
    common = [
        ("Host", host),
        ("User-Agent", f"python-requests/{requests.__version__}"),
        ("Accept-Encoding", requests.utils.DEFAULT_ACCEPT_ENCODING),
        ("Accept", "*/*"),
        ("Connection", "keep-alive"),
    ]
    post, get = server.requests
    assert post[0] == "POST /order HTTP/1.1"
    assert sorted(post[1]) == sorted(
        [*common, ("Content-Length", str(len(body))), ("Content-Type", "application/json")]
    )
    assert post[2] == body
    assert get[0] == "GET /orders?limit=0 HTTP/1.1"
    assert sorted(get[1]) == sorted(common)
    assert get[2] == b""

    portfolio_server = OneConnectionServer([("200 OK", b"[]"), ("200 OK", b"[]")])
    portfolio = PortfolioClient(portfolio_server.url + "/", timeout=2.0)
    try:
        portfolio.fetch(now=0.0)
    finally:
        portfolio.close()
        portfolio_server.close()
    host = portfolio_server.url.removeprefix("http://")
    assert [(line, sorted(headers)) for line, headers, _ in portfolio_server.requests] == [
        (f"GET {path} HTTP/1.1", sorted([("Host", host), *common[1:]]))
        for path in ("/balances", "/positions/active")
    ]


def test_the_portfolio_clients_failures_are_named_as_before():
    """Refused, silent past the timeout, cut off: each a PortfolioError naming the route
    and what happened, in the words it had with requests."""
    refused = PortfolioClient(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(PortfolioError, match=r"^GET /balances: ConnectionError$"):
        refused.fetch(now=0.0)

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    cut = socket.socket()
    cut.bind(("127.0.0.1", 0))
    cut.listen()

    def close_after_reading() -> None:
        conn, _ = cut.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=close_after_reading, daemon=True)
    thread.start()
    try:
        waiting = PortfolioClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        with pytest.raises(PortfolioError, match=r"^GET /balances: timeout after 0.3 s$"):
            waiting.fetch(now=0.0)
        broken = PortfolioClient(f"http://127.0.0.1:{cut.getsockname()[1]}", timeout=2.0)
        with pytest.raises(PortfolioError, match=r"^GET /positions/active: ConnectionError$"):
            broken.held_positions()
    finally:
        silent.close()
        cut.close()


def intent(client_order_id: str) -> dict:
    return {
        "client_order_id": client_order_id,
        "signal_id": "s-" + client_order_id,
        "symbol": "BTCUSDC",
        "side": "BUY",
        "quantity": 0.01,
        "reference_price": 50_000.0,
        "state": "pending",
        "at": 1_800_000_000.0,
    }


def test_an_intent_is_claimed_once(postgres, tmp_path):
    claims = IntentClaims(postgres.dsn, Journal(tmp_path / "journal.jsonl"), timeout=2)
    name = f"test-{free_port()}-{id(claims)}"
    assert claims.claim(intent(name), first_seen=None) == Claim(ClaimResult.CLAIMED, "postgres")
    again = claims.claim(intent(name), first_seen=None)
    assert (again.result, again.where) == (ClaimResult.EXISTS, "postgres")
    claims.close()


def test_intents_go_to_the_journal_while_postgres_is_down(own_postgres, tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    claims = IntentClaims(own_postgres.dsn, journal, timeout=1)
    own_postgres.stop()
    new = 1_800_000_000.0  # first seen now, PostgreSQL never answered this gate
    assert claims.claim(intent("during-outage"), first_seen=new).result is ClaimResult.CLAIMED
    again = claims.claim(intent("during-outage"), first_seen=new)
    assert (again.result, again.where) == (ClaimResult.EXISTS, "journal")
    own_postgres.start()
    # Not replayed yet: the journal still stops a second send.
    again = claims.claim(intent("during-outage"), first_seen=new)
    assert (again.result, again.where) == (ClaimResult.EXISTS, "journal")
    after = claims.claim(intent("after-outage"), first_seen=new)
    assert (after.result, after.where) == (ClaimResult.CLAIMED, "postgres")
    # Survives the process: a new journal on the same file knows it.
    assert Journal(tmp_path / "journal.jsonl").has_intent("during-outage")
    claims.close()


def test_the_trader_connection_is_opened_ahead_and_reused_by_the_order():
    """Warming up sends GET /health on a pooled keep-alive connection; the first order
    then goes on that same connection instead of opening one."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    seen: list[tuple[int, str]] = []
    connections = 0

    def serve() -> None:
        nonlocal connections
        conn, _ = server.accept()
        connections += 1
        with conn, conn.makefile("rb") as reader:
            for body in (b'{"status": "ok"}', b'{"order_id": "t-1", "status": "created"}'):
                request_line = reader.readline().decode().strip()
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reader.read(length)
                seen.append((connections, request_line))
                status = "200 OK" if request_line.startswith("GET") else "201 Created"
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    trader = client(f"http://127.0.0.1:{port}")
    try:
        assert trader.warm() is None
        answer = trader.submit(ORDER)
    finally:
        trader.close()
        server.close()
    thread.join(timeout=5)
    assert answer.result is SendResult.ACCEPTED
    assert seen == [(1, "GET /health HTTP/1.1"), (1, "POST /order HTTP/1.1")]


def test_warming_up_says_why_it_could_not(own_postgres, tmp_path):
    claims = IntentClaims(own_postgres.dsn, Journal(tmp_path / "journal.jsonl"), timeout=1)
    assert claims.warm() is None
    own_postgres.stop()
    try:
        cold = IntentClaims(own_postgres.dsn, Journal(tmp_path / "other.jsonl"), timeout=1)
        assert "cannot connect to PostgreSQL" in (cold.warm() or "")
    finally:
        own_postgres.start()
    refused = client(f"http://127.0.0.1:{free_port()}").warm()
    assert refused is not None and "ConnectionError" in refused
    claims.close()


def test_journal_appends_reads_and_clears(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append([{"kind": "signal", "signal_id": "a"}, {"kind": "signal", "signal_id": "b"}])
    with path.open("a") as handle:
        handle.write('{"kind": "signal", "signal_id"')  # cut short by a crash
    journal = Journal(path)
    assert [r["signal_id"] for r in journal.records()] == ["a", "b"]
    journal.append([{"kind": "signal", "signal_id": "c"}])
    journal.clear(2)
    assert [r["signal_id"] for r in journal.records()] == ["c"]
    assert len(journal) == 1


def test_clean_text_keeps_odd_characters_visible():
    assert clean_text("a\x00b") == "a\\u0000b"
    assert clean_text("x\ud800y") == "x\\ud800y"
    json.dumps(clean_text("\ud83d"))
