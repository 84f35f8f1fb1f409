"""RootTrading's Trader answers (``trader/*.json``), served by a real HTTP server, read by
our Trader client, our reconciliation's reads and our health probe.

What each ``POST /order`` answer means for us (RootTrading's table: could it have
executed?):

======================  ===========  =====================================================
answer                  ours         why
======================  ===========  =====================================================
201 created             accepted     filled (or partly) at Binance
201 duplicate (10 s)    checked      the id of an earlier attempt that failed here is
                                     looked up (``GET /order/<id>``); a 404 is "not
                                     executed", never a fill
400 missing / null      rejected     refused before the executor: cannot have executed
422 not created         rejected     normally not executed; the body is remembered, so a
                                     201 echo within 10 s is looked up before it counts
500 bad JSON / type     failed       RootTrading says not executed; ours holds the order
                                     as unknown and reconciles it (safe side: a 5xx
                                     elsewhere in its handling may follow a fill)
======================  ===========  =====================================================
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from coordinator.infra.order_gateway import OrderGateway
from coordinator.infra.probes import HttpHealthProbe
from coordinator.infra.trader_client import SendResult, TraderClient, TraderReadError
from tests.contract.fixtures import contract_files, load_json, load_raw, needs_contract
from tests.contract.rt_server import Answer, RootTradingServer
from tests.waiting import wait_for

pytestmark = needs_contract

POST_ANSWERS = {
    "post_order_signal_buy.json": SendResult.ACCEPTED,
    "post_order_signal_sell.json": SendResult.ACCEPTED,
    "post_order_emergency_sell.json": SendResult.ACCEPTED,
    "post_order_auto_liquidation.json": SendResult.ACCEPTED,
    "post_order_400_missing_params.json": SendResult.REJECTED,
    "post_order_400_null_body.json": SendResult.REJECTED,
    "post_order_422_not_created.json": SendResult.REJECTED,
    "post_order_500_bad_json.json": SendResult.FAILED,
    "post_order_500_wrong_content_type.json": SendResult.FAILED,
}
"""Our outcome for each recorded ``POST /order`` answer."""


@pytest.fixture
def trader() -> Iterator[RootTradingServer]:
    server = RootTradingServer(
        {
            ("GET", "/health"): "trader/get_health.json",
            ("GET", "/orders"): "trader/get_orders.json",
            ("GET", "/order/order_53f354c377021b43"): "trader/get_order.json",
            ("GET", "/order/order_5a013c49508291c6"): "trader/get_order_404.json",
        }
    )
    yield server
    server.stop()


def _client(server: RootTradingServer) -> TraderClient:
    return TraderClient(server.url, connect_timeout=1.0, read_timeout=5.0)


def test_every_post_order_answer_of_the_contract_has_an_expected_outcome():
    files = {p.name for p in contract_files("trader", "post_order_*.json")}
    assert files == set(POST_ANSWERS), "a new POST /order answer needs its outcome here"


@pytest.mark.parametrize("fixture", sorted(POST_ANSWERS))
def test_each_post_order_answer_is_understood(trader, fixture):
    exchange = load_json(f"trader/{fixture}")
    trader.answer("POST", "/order", f"trader/{fixture}")
    client = _client(trader)
    try:
        answer = client.submit(exchange["request"].get("body") or {"symbol": "SOLUSDC"})
    finally:
        client.close()

    assert answer.result is POST_ANSWERS[fixture]
    assert answer.status_code == exchange["response"]["status"]
    if answer.result is SendResult.ACCEPTED:
        assert answer.order_id == exchange["response"]["body"]["order_id"]
        assert answer.trader_works
    else:
        assert answer.order_id is None
        # The Trader's own words reach the decision, accents decoded.
        assert exchange["response"]["body"]["error"][:40] in (answer.error or "")
    # A 4xx says the Trader works (no breaker failure); a 5xx does not.
    assert answer.trader_works is (answer.result is not SendResult.FAILED)


def test_a_201_echo_after_a_422_is_looked_up_and_not_taken_for_a_fill(trader):
    # The Trader writes its de-duplication entry before it executes: the same body
    # again within 10 s of a 422 gets a 201 with the refused attempt's id, which
    # GET /order/<id> does not know.
    echo = load_json("trader/post_order_signal_sell.json")["response"]
    never_executed = "order_5a013c49508291c6"
    trader.answer(
        "POST",
        "/order",
        "trader/post_order_422_not_created.json",
        Answer(
            201,
            echo["content_type"],
            echo["body_raw"].replace(echo["body"]["order_id"], never_executed),
        ),
    )
    client = _client(trader)
    verifier = OrderGateway(intents=None, trader=client)
    body = load_json("trader/post_order_signal_sell.json")["request"]["body"]
    try:
        refused = verifier.verified(body, client.submit(body), time.monotonic())
        assert refused.result is SendResult.REJECTED
        again = client.submit(body)
        assert again.result is SendResult.ACCEPTED and again.order_id == never_executed
        checked = verifier.verified(body, again, time.monotonic())
    finally:
        client.close()

    assert checked.result is not SendResult.ACCEPTED
    assert "de-duplicated" in (checked.error or "")
    assert trader.requests_to("GET", f"/order/{never_executed}")


def test_get_orders_is_read_by_the_reconciliation_with_every_order(trader):
    client = _client(trader)
    try:
        orders = client.orders(limit=0)
    finally:
        client.close()
    recorded = load_json("trader/get_orders.json")["response"]["body"]["orders"]

    # limit=0 is "everything since the Trader started" (the Trader slices [-limit:]).
    assert trader.requests_to("GET", "/orders")[-1].query == {"limit": ["0"]}
    assert [o.order_id for o in orders] == [r["id"] for r in recorded]
    sol = orders[1]
    assert (sol.symbol, sol.side, sol.status) == ("SOLUSDC", "BUY", "FILLED")
    assert sol.price == pytest.approx(199.91)
    assert sol.quantity == pytest.approx(1.1068501275829288)
    assert sol.binance_order_id == "2281734905"
    assert sol.at == pytest.approx(1761573796.239095)


def test_get_orders_500_is_a_read_error_not_an_empty_list(trader):
    trader.answer("GET", "/orders", "trader/get_orders_500_bad_limit.json")
    client = _client(trader)
    try:
        with pytest.raises(TraderReadError, match="500"):
            client.orders(limit=0)
    finally:
        client.close()


def test_get_order_and_its_404_are_read_by_the_reconciliation(trader):
    client = _client(trader)
    try:
        found = client.order("order_53f354c377021b43")
        missing = client.order("order_5a013c49508291c6")
        with pytest.raises(TraderReadError, match="404"):
            # Flask's HTML 404 (a route it lacks) says nothing about the order.
            client.order("order_0000000000000000")
    finally:
        client.close()

    assert found is not None and found.order_id == "order_53f354c377021b43"
    assert found.symbol == "SOLUSDC" and found.status == "FILLED"
    assert missing is None


def test_trader_health_is_healthy_to_our_probe_and_dates_its_memory(trader):
    body = load_json("trader/get_health.json")["response"]["body"]
    # ``mode`` (live or demo) is the Trader's own TRADING_MODE: the probe does not
    # judge it; a live Trader and a demo Trader are both up.
    assert body["mode"] == "live"
    probe = HttpHealthProbe(trader.url, timeout=2.0)
    client = _client(trader)
    try:
        probe()
        status = client.status()
    finally:
        probe.close()
        client.close()
    assert status.started_at == pytest.approx(body["timestamp"] - body["uptime"])


def test_the_orders_we_send_carry_every_field_rootTradings_trader_reads(
    pipelines, trader, own_postgres
):
    # RootTrading's Trader reads symbol, side, quantity, price (falsy: MARKET) and
    # strategy, from a JSON body. Our coordinator trades here against it and its
    # Portfolio, on the 14:05 snapshot: SOL held (1.106 by the cycle, 1.105747 free).
    portfolio = RootTradingServer(
        {
            ("GET", "/health"): "portfolio/get_health.json",
            ("GET", "/balances"): "portfolio/get_balances.json",
            ("GET", "/positions/active"): "portfolio/get_positions_active.json",
        }
    )
    trader.answer(
        "POST", "/order", "trader/post_order_signal_buy.json", "trader/post_order_signal_sell.json"
    )
    try:
        pipe = pipelines(
            {
                "TRADER_API_URL": trader.url,
                "PORTFOLIO_API_URL": portfolio.url,
                "SIGNALS_CHANNEL": "roottrading:signals:filtered",
                "SIGNAL_TIMEOUT": "1000000000",
            },
            # A database of its own: the signals' db_ids are decided again elsewhere.
            database_dsn=own_postgres.dsn,
        )
        sent = {}
        for fixture, side in (
            ("buy_consensus_no_db_id.json", "BUY"),
            ("sell_consensus.json", "SELL"),
        ):
            raw = load_raw(f"signals/{fixture}")
            wait_for(
                lambda raw=raw: pipe.redis.publish("roottrading:signals:filtered", raw) > 0,
                message="a subscriber",
            )
            posted = wait_for(
                lambda side=side: [
                    r for r in trader.requests_to("POST", "/order") if r.json()["side"] == side
                ],
                timeout=30,
                message=f"a {side} at the Trader",
            )
            assert len(posted) == 1
            sent[side] = posted[0]
            metadata = json.loads(raw)["metadata"]
            signal_id = (
                f"db:{metadata['db_id']}"
                if "db_id" in metadata
                else f"consensus:{metadata['consensus_id']}"
            )
            decided = pipe.decision(signal_id, timeout=30)
            assert decided["decision"]["outcome"] == "accepted", decided["decision"]["detail"]
    finally:
        portfolio.stop()

    for side, fixture in (
        ("BUY", "post_order_signal_buy.json"),
        ("SELL", "post_order_signal_sell.json"),
    ):
        theirs = load_json(f"trader/{fixture}")["request"]
        ours = sent[side]
        assert ours.content_type == theirs["headers"]["Content-Type"]
        body = ours.json()
        read = ("symbol", "side", "quantity", "price", "strategy")
        assert set(read) <= set(body) and set(read) <= set(theirs["body"])
        assert body["strategy"] == theirs["body"]["strategy"] == "CONSENSUS"
        assert not body["price"] and not theirs["body"]["price"]  # a MARKET order
        assert isinstance(body["quantity"], float) and body["quantity"] > 0
    assert sent["BUY"].json()["symbol"] == "ETHUSDC"
    assert sent["SELL"].json()["symbol"] == "SOLUSDC"
    # Binance took the BUY's fee in SOL: only the free SOL can be sold, not the cycle's
    # 1.106 (the Trader would answer 422 for insufficient balance).
    assert sent["SELL"].json()["quantity"] <= 1.105747
