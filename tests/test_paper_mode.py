"""Paper only on purpose: where the orders go is chosen at start, shown in /health,
/status and the log, and stored with every order."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
import pytest
import requests

from coordinator.infra.order_states import OrderStates, paper_dsn
from tests.pipeline import TOKEN, signal_payload
from tests.waiting import wait_for

UNSET_URLS = {"TRADER_API_URL": "", "PORTFOLIO_API_URL": ""}


def signal_id(payload: dict[str, Any]) -> str:
    return "consensus:" + payload["metadata"]["consensus_id"]


def stored_paper(dsn: str, signal: str) -> Any:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT paper FROM coordinator_orders WHERE signal_id = %s", (signal,))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None, f"no order stored for {signal}"
    return row[0]


def banners(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "coordinator.daemon" and r.getMessage().startswith(("PAPER", "LIVE"))
    ]


def test_paper_on_purpose_is_shown_everywhere_and_stored_with_each_order(
    pipelines, postgres, caplog
):
    caplog.set_level(logging.INFO)
    pipe = pipelines({**UNSET_URLS, "PAPER_TRADING": "true"})
    exchange = pipe.coordinator.paper
    assert exchange is not None, "the in-process paper exchange runs"
    assert pipe.coordinator.services is not None
    assert pipe.coordinator.services.endpoints.trader_url == exchange.url

    (banner,) = banners(caplog)
    assert banner.levelno == logging.WARNING
    assert banner.getMessage().startswith(
        "PAPER TRADING: orders go to the in-process paper exchange"
    )
    assert "no real money" in banner.getMessage()
    health = requests.get(pipe.url + "/health", timeout=5).json()
    assert health["paper"] is True and health["mode"] == "paper"
    status = requests.get(pipe.url + "/status", timeout=5).json()
    assert status["paper"] is True and status["mode"] == "paper"

    buy = signal_payload("ETHUSDC", "BUY")
    pipe.publish(buy)
    record = pipe.decision(signal_id(buy))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert record["order"]["paper"] is True
    assert stored_paper(postgres.dsn, signal_id(buy)) is True
    assert exchange.stats()["orders_received"] == 1
    assert pipe.paper.stats()["orders_received"] == 0, "nothing went elsewhere"
    row = OrderStates(postgres.dsn, timeout=5).order(record["order"]["client_order_id"])
    assert row is not None and row.paper is True


def test_a_live_coordinator_stores_its_orders_as_not_paper(pipelines, postgres, caplog):
    caplog.set_level(logging.INFO)
    pipe = pipelines()
    assert pipe.coordinator.paper is None
    (banner,) = banners(caplog)
    assert banner.getMessage().startswith(
        f"LIVE TRADING: orders go to the Trader at {pipe.paper.url}"
    )
    health = requests.get(pipe.url + "/health", timeout=5).json()
    assert health["paper"] is False and health["mode"] == "live"
    status = requests.get(pipe.url + "/status", timeout=5).json()
    assert status["paper"] is False and status["mode"] == "live"

    buy = signal_payload("SOLUSDC", "BUY")
    pipe.publish(buy)
    record = pipe.decision(signal_id(buy))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert record["order"]["paper"] is False
    assert stored_paper(postgres.dsn, signal_id(buy)) is False


def test_shadow_mode_is_shown_as_such(pipelines, caplog):
    caplog.set_level(logging.INFO)
    pipe = pipelines({"TRADING_ENABLED": "false"})
    (banner,) = banners(caplog)
    assert "TRADING_ENABLED=false" in banner.getMessage()
    health = requests.get(pipe.url + "/health", timeout=5).json()
    assert health["mode"] == "shadow" and health["paper"] is False


def test_under_roottradings_compose_env_orders_go_to_its_trader_not_paper(pipelines, caplog):
    # Redis and PostgreSQL configured, the service URLs not: RootTrading's compose.
    caplog.set_level(logging.INFO)
    pipe = pipelines(UNSET_URLS, wait_active=False)
    assert pipe.coordinator.paper is None
    services = pipe.coordinator.services
    assert services is not None
    assert services.endpoints.trader_url == "http://trader:5002"
    assert services.endpoints.portfolio_url == "http://portfolio:8000"
    messages = [r.getMessage() for r in caplog.records]
    assert any("using RootTrading's default http://trader:5002" in m for m in messages)
    assert any(
        m.startswith("LIVE TRADING: orders go to the Trader at http://trader:5002")
        for m in messages
    )
    health = requests.get(pipe.url + "/health", timeout=5).json()
    assert health["paper"] is False and health["mode"] == "live"
    # No Trader answers there: trading halts, it never falls back to paper.
    wait_for(
        lambda: requests.get(pipe.url + "/status", timeout=5).json()["trading_state"] != "ACTIVE",
        message="trading halted without the Trader",
    )
    assert requests.get(pipe.url + "/status", timeout=5).json()["paper"] is False


def test_orders_written_on_a_paper_connection_are_paper_whatever_writes_them(postgres):
    conn = psycopg2.connect(paper_dsn(postgres.dsn))
    plain = psycopg2.connect(postgres.dsn)
    try:
        for connection, order_id in ((conn, "paper-mark-1"), (plain, "paper-mark-2")):
            with connection, connection.cursor() as cur:
                cur.execute(
                    """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side,
                           quantity, state, created_at, updated_at)
                       VALUES (%s, %s, 'BTCUSDC', 'BUY', 1, 'pending', now(), now())
                       ON CONFLICT DO NOTHING""",
                    (order_id, f"signal-{order_id}"),
                )
        with plain, plain.cursor() as cur:
            cur.execute(
                "SELECT client_order_id, paper FROM coordinator_orders"
                " WHERE client_order_id IN ('paper-mark-1', 'paper-mark-2')"
            )
            assert dict(cur.fetchall()) == {"paper-mark-1": True, "paper-mark-2": False}
    finally:
        conn.close()
        plain.close()


def test_the_paper_mark_keeps_the_dsns_own_session_options(postgres):
    from psycopg2.extensions import make_dsn, parse_dsn

    from coordinator.infra.store import connect

    dsn = make_dsn(postgres.dsn, options="-c work_mem=7MB")
    marked = paper_dsn(dsn)
    assert "-c work_mem=7MB" in parse_dsn(marked)["options"]
    conn = connect(marked, timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT current_setting('coordinator.paper'), current_setting('work_mem')")
            assert cur.fetchone() == ("on", "7MB")
    finally:
        conn.close()


def test_no_symbol_listed_with_config_candidates_keeps_the_core_pairs_with_a_warning(
    pipelines, own_postgres, caplog
):
    # A database of its own: the universe starts from the candidates, not a stored one.
    caplog.set_level(logging.INFO)
    pipe = pipelines(
        {"TRADING_SYMBOLS": "[]", "UNIVERSE_CANDIDATES": "config"},
        database_dsn=own_postgres.dsn,
    )
    assert any(
        r.levelno == logging.WARNING and "TRADING_SYMBOLS is empty" in r.getMessage()
        for r in caplog.records
    )
    universe = requests.get(pipe.url + "/universe", timeout=5).json()
    assert universe["selected_symbols"] == ["BTCUSDC", "ETHUSDC"]
    response = requests.post(
        pipe.url + "/universe/refresh",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    assert set(response.json()["selected_symbols"]) <= {"BTCUSDC", "ETHUSDC"}
