"""RootTrading's Portfolio answers (``portfolio/*.json``), served by a real HTTP server and
read into our view (``PortfolioClient``) or refused with an error, which never produces
an order (a view that cannot be fetched leaves the BUY checks without a portfolio:
``portfolio_unavailable``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from coordinator.infra.portfolio_client import PortfolioClient, PortfolioError
from coordinator.infra.probes import HttpHealthProbe, ProbeFailed
from tests.contract.fixtures import contract_files, load_json, load_raw, needs_contract
from tests.contract.rt_server import Answer, RootTradingServer
from tests.waiting import wait_for

pytestmark = needs_contract

NOW = 1761574000.0


@pytest.fixture
def portfolio() -> Iterator[RootTradingServer]:
    server = RootTradingServer(
        {
            ("GET", "/health"): "portfolio/get_health.json",
            ("GET", "/balances"): "portfolio/get_balances.json",
            ("GET", "/positions/active"): "portfolio/get_positions_active.json",
        }
    )
    yield server
    server.stop()


@pytest.fixture
def client(portfolio: RootTradingServer) -> Iterator[PortfolioClient]:
    reader = PortfolioClient(portfolio.url, timeout=2.0)
    yield reader
    reader.close()


def test_every_portfolio_file_is_covered_here():
    covered = {
        "get_balances.json",
        "get_balances_404_empty.json",
        "get_balances_500.json",
        "get_balances_with_null_value_usdc.json",
        "get_positions_active.json",
        "get_positions_active_empty.json",
        "get_health.json",
        "get_health_db_error.json",
    }
    assert {p.name for p in contract_files("portfolio")} == covered


def test_balances_and_positions_are_read_into_our_view(client):
    view = client.fetch(NOW)

    assert view.fetched_at == NOW
    assert view.balances["USDC"].free == pytest.approx(1622.450665)
    assert view.balances["SOL"].free == pytest.approx(1.105747)
    # Exponent notation is a number like any other.
    assert view.balances["ETH"].free == pytest.approx(4.87e-05)
    # The stale XRP row (gone from Binance, all zero) is no holding.
    xrp = view.balances["XRP"]
    assert (xrp.free, xrp.total, xrp.value) == (0.0, 0.0, 0.0)
    assert "XRPUSDC" not in view.positions
    assert set(view.positions) == {"SOLUSDC", "BTCUSDC", "DOGEUSDC"}
    sol = view.positions["SOLUSDC"]
    # The cycle's gross quantity: more than the free SOL (the BUY's fee was in SOL).
    assert sol.quantity == pytest.approx(1.106) and sol.quantity > view.balances["SOL"].free
    assert sol.entry_price == pytest.approx(199.91)
    # The cycle's creation, naive ISO read as UTC: what tells one holding from another.
    assert sol.opened_at == (pytest.approx(1761573796.273095),)
    assert sol.value == pytest.approx(221.33272)
    assert view.equity("USDC") == pytest.approx(
        sum(
            row["value_usdc"]
            for row in load_json("portfolio/get_balances.json")["response"]["body"]
        )
    )


def test_positions_are_read_for_the_stops_with_their_naive_utc_entry_time(client):
    held = {p.symbol: p for p in client.held_positions()}

    assert set(held) == {"SOLUSDC", "BTCUSDC", "DOGEUSDC"}
    sol = held["SOLUSDC"]
    assert sol.quantity == pytest.approx(1.106)
    assert sol.entry_price == pytest.approx(199.91)
    # "2025-10-27T14:03:16.273095" has no offset: the wall-clock time of UTC.
    assert sol.opened_at == pytest.approx(1761573796.273095)
    assert sol.cycle_id is None  # the Portfolio shows none; trade_cycles gives it


def test_a_position_whose_time_cannot_be_read_is_a_holding_opened_when_unknown(portfolio, client):
    """The Ledger's view is not refused for it: its exit checks lean on entry price and
    quantity alone, as for a Portfolio that gives no time."""
    rows = load_json("portfolio/get_positions_active.json")["response"]["body"]
    rows[0]["timestamp"] = "yesterday at noon"
    del rows[1]["timestamp"]
    portfolio.answer("GET", "/positions/active", Answer(200, "application/json", json.dumps(rows)))

    view = client.fetch(NOW)

    assert view.positions["SOLUSDC"].opened_at == ()
    assert view.positions["BTCUSDC"].opened_at == ()
    assert view.positions["DOGEUSDC"].opened_at == (pytest.approx(1761507737.309114),)


def test_a_null_value_usdc_is_unpriced_not_zero_and_not_an_error(portfolio, client):
    # LDUSDC (Binance Earn) has no USDC value: RootTrading's own coordinator summed it
    # and rejected every BUY. Ours keeps the row, unpriced: its free amount is known,
    # its value is not counted (no position shows it either), nothing is refused.
    portfolio.answer("GET", "/balances", "portfolio/get_balances_with_null_value_usdc.json")
    view = client.fetch(NOW)

    assert view.balances["LDUSDC"].value is None
    assert view.balances["LDUSDC"].free == pytest.approx(25.01342)
    assert view.balances["USDC"].free == pytest.approx(1622.450665)
    priced = load_json("portfolio/get_balances.json")["response"]["body"]
    assert view.equity("USDC") == pytest.approx(sum(row["value_usdc"] for row in priced))


def test_no_balances_at_all_is_an_empty_view_with_no_cash(portfolio, client):
    # 404 {"detail": "Aucun solde trouvé"} is RootTrading's "no rows", not a failure.
    portfolio.answer("GET", "/balances", "portfolio/get_balances_404_empty.json")
    portfolio.answer("GET", "/positions/active", "portfolio/get_positions_active_empty.json")
    view = client.fetch(NOW)

    assert dict(view.balances) == {} and dict(view.positions) == {}
    assert view.equity("USDC") == 0.0
    assert client.held_positions() == []


def compact(rows: list[dict]) -> Answer:
    """Rows written as RootTrading's Portfolio writes them (Starlette: compact)."""
    return Answer(200, "application/json", json.dumps(rows, separators=(",", ":")))


def test_each_fetch_shows_the_rows_of_its_own_answer(portfolio, client):
    """Rows unchanged since the last answer are not read again; the changed, the new
    and the gone ones are what this answer says, for the Ledger and for the stops."""
    client.fetch(NOW)
    client.held_positions()
    positions = load_json("portfolio/get_positions_active.json")["response"]["body"]
    positions[0] = {**positions[0], "quantity": 2.5, "current_price": 201.0, "value": 502.5}
    del positions[1]  # BTCUSDC sold
    positions.append({**positions[1], "symbol": "ETHUSDC", "entry_price": 4100.0})
    balances = load_json("portfolio/get_balances.json")["response"]["body"]
    balances[0] = {**balances[0], "free": 10.0}
    portfolio.answer("GET", "/positions/active", compact(positions))
    portfolio.answer("GET", "/balances", compact(balances))

    view = client.fetch(NOW + 1)
    held = {p.symbol: p for p in client.held_positions()}

    assert set(view.positions) == set(held) == {"SOLUSDC", "DOGEUSDC", "ETHUSDC"}
    assert view.positions["SOLUSDC"].quantity == held["SOLUSDC"].quantity == 2.5
    assert view.positions["SOLUSDC"].value == 502.5
    assert view.positions["ETHUSDC"].entry_price == held["ETHUSDC"].entry_price == 4100.0
    assert view.balances[balances[0]["asset"]].free == 10.0
    assert view.fetched_at == NOW + 1


def test_two_open_cycles_of_one_symbol_are_one_position_with_both_opening_times(portfolio, client):
    """One row per open cycle: the Ledger's position has the last row's numbers (as
    before) and every cycle's opening time; the stops watch each cycle."""
    positions = load_json("portfolio/get_positions_active.json")["response"]["body"]
    second = {**positions[0], "quantity": 0.5, "timestamp": "2025-10-27T15:00:00"}
    positions.append(second)
    portfolio.answer("GET", "/positions/active", compact(positions))
    for _ in range(2):  # read, then read again from what was kept
        view = client.fetch(NOW)
        sol = view.positions["SOLUSDC"]
        assert sol.quantity == 0.5
        assert sol.opened_at == (pytest.approx(1761573796.273095), 1761577200.0)
        held = [p for p in client.held_positions() if p.symbol == "SOLUSDC"]
        assert [p.quantity for p in held] == [1.106, 0.5]


def test_a_row_that_cannot_be_read_refuses_the_answer_until_it_is_fixed(portfolio, client):
    client.fetch(NOW)
    positions = load_json("portfolio/get_positions_active.json")["response"]["body"]
    broken = [{**positions[0], "quantity": "lots"}, *positions[1:]]
    portfolio.answer("GET", "/positions/active", compact(broken))
    with pytest.raises(PortfolioError, match=r"^unusable answer: ValueError: .*'lots'"):
        client.fetch(NOW + 1)
    with pytest.raises(PortfolioError, match=r"^unusable answer: ValueError: .*'lots'"):
        client.held_positions()
    portfolio.answer("GET", "/positions/active", compact(positions))
    assert client.fetch(NOW + 2).positions["SOLUSDC"].quantity == pytest.approx(1.106)


def test_a_body_that_is_no_list_of_objects_is_refused_by_name(portfolio, client):
    portfolio.answer("GET", "/balances", Answer(200, "application/json", '{"USDC": 1}'))
    with pytest.raises(PortfolioError, match=r"^GET /balances: expected a list of objects$"):
        client.fetch(NOW)
    portfolio.answer("GET", "/positions/active", Answer(200, "application/json", "[{"))
    with pytest.raises(PortfolioError, match=r"^GET /positions/active: not JSON$"):
        client.held_positions()


def test_a_balances_500_is_refused_with_the_status(portfolio, client):
    portfolio.answer("GET", "/balances", "portfolio/get_balances_500.json")
    with pytest.raises(PortfolioError, match="GET /balances answered 500"):
        client.fetch(NOW)


def test_portfolio_health_ok_is_healthy(portfolio):
    probe = HttpHealthProbe(portfolio.url, timeout=2.0)
    try:
        probe()
    finally:
        probe.close()


def test_portfolio_health_with_its_database_down_is_unhealthy(portfolio):
    # RootTrading answers 200 {"status": "ok", "database": "error: ..."}: its balances
    # are then whatever it cached last, or a 500.
    portfolio.answer("GET", "/health", "portfolio/get_health_db_error.json")
    probe = HttpHealthProbe(portfolio.url, timeout=2.0)
    try:
        with pytest.raises(ProbeFailed, match="database: error: connection to server"):
            probe()
    finally:
        probe.close()


BALANCES_DECIDE = {
    "get_balances_with_null_value_usdc.json": ("accepted", None),
    "get_balances_500.json": ("rejected", "portfolio_unavailable"),
    "get_balances_404_empty.json": ("rejected", "portfolio_unavailable"),
}
"""What a coordinator decides for RootTrading's XRP BUY with each ``GET /balances``."""


@pytest.mark.parametrize("balances", sorted(BALANCES_DECIDE))
def test_a_buy_is_decided_on_each_balances_answer_and_only_a_usable_one_orders(
    pipelines, own_postgres, balances
):
    portfolio = RootTradingServer(
        {
            ("GET", "/health"): "portfolio/get_health.json",
            ("GET", "/balances"): f"portfolio/{balances}",
            ("GET", "/positions/active"): "portfolio/get_positions_active.json",
        }
    )
    trader = RootTradingServer(
        {
            ("GET", "/health"): "trader/get_health.json",
            ("GET", "/orders"): "trader/get_orders.json",
            ("POST", "/order"): "trader/post_order_signal_buy.json",
        }
    )
    channel = "roottrading:signals:filtered"
    raw = load_raw("signals/buy_consensus_failsafe.json")
    try:
        pipe = pipelines(
            {
                "TRADER_API_URL": trader.url,
                "PORTFOLIO_API_URL": portfolio.url,
                "SIGNALS_CHANNEL": channel,
                "SIGNAL_TIMEOUT": "1000000000",
            },
            database_dsn=own_postgres.dsn,
        )
        wait_for(lambda: pipe.redis.publish(channel, raw) > 0, message="a subscriber")
        record = pipe.decision("db:48262", timeout=30)
    finally:
        portfolio.stop()
        trader.stop()

    decision = record["decision"]
    outcome, reason = BALANCES_DECIDE[balances]
    assert (decision["outcome"], decision["reason"]) == (outcome, reason), decision["detail"]
    orders = [r.json() for r in trader.requests_to("POST", "/order")]
    if outcome == "accepted":
        assert [(o["symbol"], o["side"]) for o in orders] == [("XRPUSDC", "BUY")]
    else:
        assert orders == []
