"""The Trader client's outcomes on real sockets, the intent gate, and the local journal."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from coordinator.infra.embedded import free_port
from coordinator.infra.intent_claims import Claim, ClaimResult, IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.pipeline_store import clean_text
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
