"""RootTrading's ``trade_cycles`` rows (``trade_cycles/*.json``), inserted into a real
PostgreSQL table made like RootTrading's, and read by the trailing stops' cycles reader
(``StopStore.open_cycles``): an open cycle is one holding with its entry and quantity;
a completed or orphan cycle is not open."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from psycopg2.extras import Json

from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.stop_store import StopStore
from tests.contract.fixtures import contract_files, load_json, needs_contract
from tests.contract.rt_server import RootTradingServer
from tests.waiting import wait_for

pytestmark = needs_contract

# RootTrading's database/schema.sql:274-297, as its deployments create it.
TRADE_CYCLES = """
CREATE TABLE IF NOT EXISTS trade_cycles (
    id VARCHAR(50) PRIMARY KEY,
    symbol VARCHAR(20) NOT NULL,
    strategy VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL CHECK (status IN ('initiating', 'waiting_buy', 'active_buy',
        'waiting_sell', 'active_sell', 'completed', 'canceled', 'failed')),
    side VARCHAR(4) NOT NULL CHECK (side IN ('BUY', 'SELL')),
    entry_order_id VARCHAR(50),
    exit_order_id VARCHAR(50),
    entry_price NUMERIC(20, 12),
    exit_price NUMERIC(20, 12),
    quantity NUMERIC(20, 8),
    stop_price NUMERIC(20, 12),
    trailing_delta NUMERIC(16, 8),
    min_price NUMERIC(20, 12),
    max_price NUMERIC(20, 12),
    profit_loss NUMERIC(16, 8),
    profit_loss_percent NUMERIC(16, 8),
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMP,
    confirmed BOOLEAN NOT NULL DEFAULT FALSE,
    metadata JSONB,
    demo BOOLEAN NOT NULL DEFAULT FALSE
)
"""

OPEN = {
    "active_buy_cycle.json": True,
    "active_buy_cycle_averaged.json": True,
    "completed_cycle.json": False,
    "orphan_sell_cycle.json": False,
}
"""Whether the stops see each row as an open holding."""


@pytest.fixture(scope="module")
def rt_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of RootTrading's own (``trade_cycles`` is not one of our tables)."""
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("rt-pg")), durable=False).start()
    with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
        cur.execute(TRADE_CYCLES)
    conn.close()
    yield server.dsn
    server.stop()


def _insert(dsn: str, *rows: dict[str, Any]) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE trade_cycles")
        for row in rows:
            columns = list(row)
            values = [
                Json(row[c]) if c == "metadata" and row[c] is not None else row[c] for c in columns
            ]
            cur.execute(
                f"INSERT INTO trade_cycles ({', '.join(columns)})"
                f" VALUES ({', '.join(['%s'] * len(columns))})",
                values,
            )
    conn.close()


def _open_cycles(dsn: str) -> dict[str, tuple[str, float | None, float | None, float | None]]:
    store = StopStore(dsn, timeout=5.0)
    try:
        return {cycle: rest for cycle, *rest in store.open_cycles() or []}  # type: ignore[misc]
    finally:
        store.close()


def _epoch(naive_utc: str) -> float:
    return datetime.fromisoformat(naive_utc).replace(tzinfo=UTC).timestamp()


def test_every_trade_cycles_row_has_an_expected_reading():
    assert {p.name for p in contract_files("trade_cycles")} - {"columns.json"} == set(OPEN)


def test_the_table_is_made_with_every_column_of_the_contract(rt_database):
    listed = [c["name"] for c in load_json("trade_cycles/columns.json")["columns"]]
    with psycopg2.connect(rt_database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'trade_cycles' ORDER BY ordinal_position"
        )
        made = [r[0] for r in cur.fetchall()]
    conn.close()
    assert made == listed


@pytest.mark.parametrize("fixture", sorted(OPEN))
def test_each_row_is_read_by_the_stops_as_open_or_not(rt_database, fixture):
    row = load_json(f"trade_cycles/{fixture}")
    _insert(rt_database, row)

    cycles = _open_cycles(rt_database)

    if not OPEN[fixture]:
        assert cycles == {}
        return
    assert set(cycles) == {row["id"]}
    symbol, entry, quantity, created = cycles[row["id"]]
    assert symbol == row["symbol"]
    assert entry == pytest.approx(float(row["entry_price"]))
    assert quantity == pytest.approx(float(row["quantity"]))
    # A naive TIMESTAMP holds UTC wall-clock time.
    assert created == pytest.approx(_epoch(row["created_at"]))


def test_an_averaged_cycle_is_one_holding_at_its_average_entry(rt_database):
    row = load_json("trade_cycles/active_buy_cycle_averaged.json")
    _insert(rt_database, row)

    cycles = _open_cycles(rt_database)

    # Two BUYs merged into one cycle: one holding, the merged quantity, the average.
    assert list(cycles) == ["cycle_61c520d816ca119e"]
    _, entry, quantity, _ = cycles["cycle_61c520d816ca119e"]
    assert quantity == pytest.approx(1848.0)
    assert entry == pytest.approx(0.199990757576)


def test_open_cycles_of_several_symbols_next_to_closed_ones(rt_database):
    _insert(
        rt_database,
        load_json("trade_cycles/active_buy_cycle.json"),
        load_json("trade_cycles/active_buy_cycle_averaged.json"),
        load_json("trade_cycles/orphan_sell_cycle.json"),
    )
    cycles = _open_cycles(rt_database)
    assert {c: s for c, (s, *_) in cycles.items()} == {
        "cycle_de195abdcd1ba2d5": "SOLUSDC",
        "cycle_61c520d816ca119e": "DOGEUSDC",
    }

    # The SELL completes the SOL cycle in place: it is no longer a holding.
    _insert(
        rt_database,
        load_json("trade_cycles/completed_cycle.json"),
        load_json("trade_cycles/active_buy_cycle_averaged.json"),
        load_json("trade_cycles/orphan_sell_cycle.json"),
    )
    assert list(_open_cycles(rt_database)) == ["cycle_61c520d816ca119e"]


def test_the_stops_key_the_portfolios_positions_by_their_open_cycles(pipelines, own_postgres):
    # RootTrading's 14:05 state: the Portfolio shows SOL, BTC and DOGE; trade_cycles
    # holds the SOL and DOGE cycles (and an orphan SELL). Each watched SOL/DOGE
    # position carries its cycle's id; BTC, with no cycle here, is watched all the same.
    with psycopg2.connect(own_postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(TRADE_CYCLES)
    conn.close()
    _insert(
        own_postgres.dsn,
        load_json("trade_cycles/active_buy_cycle.json"),
        load_json("trade_cycles/active_buy_cycle_averaged.json"),
        load_json("trade_cycles/orphan_sell_cycle.json"),
    )
    portfolio = RootTradingServer(
        {
            ("GET", "/health"): "portfolio/get_health.json",
            ("GET", "/balances"): "portfolio/get_balances.json",
            ("GET", "/positions/active"): "portfolio/get_positions_active.json",
        }
    )
    trader = RootTradingServer(
        {
            ("GET", "/health"): "trader/get_health.json",
            ("GET", "/orders"): "trader/get_orders.json",
        }
    )
    try:
        pipe = pipelines(
            {
                "TRADER_API_URL": trader.url,
                "PORTFOLIO_API_URL": portfolio.url,
                "POSITIONS_REFRESH_INTERVAL": "1",
            },
            database_dsn=own_postgres.dsn,
        )
        watched = wait_for(
            lambda: (
                (rows := requests.get(pipe.url + "/trailing-stops", timeout=5).json()["positions"])
                and len(rows) == 3
                and rows
            ),
            timeout=30,
            message="three positions watched",
        )
    finally:
        portfolio.stop()
        trader.stop()

    by_symbol = {row["symbol"]: row for row in watched}
    assert set(by_symbol) == {"SOLUSDC", "BTCUSDC", "DOGEUSDC"}
    assert by_symbol["SOLUSDC"]["cycle_id"] == "cycle_de195abdcd1ba2d5"
    assert by_symbol["DOGEUSDC"]["cycle_id"] == "cycle_61c520d816ca119e"
    assert by_symbol["BTCUSDC"]["cycle_id"] is None
    assert by_symbol["SOLUSDC"]["quantity"] == pytest.approx(1.106)
    assert by_symbol["SOLUSDC"]["entry_price"] == pytest.approx(199.91)
    assert by_symbol["DOGEUSDC"]["quantity"] == pytest.approx(1848.0)
