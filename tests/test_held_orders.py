"""Orders whose outcome is not known, end to end on the paper exchange: a 5xx is held
and reconciled (found: accepted; not found: the same intent sent again while fresh),
a read timeout is reconciled after the fact, and an operator can settle one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg2
import requests

from coordinator.infra.order_gateway import OrderGateway
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.trader_client import SendResult, TraderClient
from coordinator.messages.reconcile import ReconcileSoon
from coordinator.trading.routing import client_order_id, validator_for
from tests.pipeline import AUTH, signal_payload
from tests.test_order_states import create_trade_executions
from tests.test_pipeline import signal_id
from tests.test_trader_orders import needs_contract
from tests.waiting import wait_for


def knobs(pipe: Any, **values: Any) -> None:
    requests.post(pipe.paper.url + "/_paper/knobs", json=values, timeout=5).raise_for_status()


def order_state(pipe: Any, cid: str) -> tuple[str, str | None, str | None] | None:
    with psycopg2.connect(pipe.config.database.url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT state, trader_order_id, error FROM coordinator_orders"
            " WHERE client_order_id = %s",
            (cid,),
        )
        row = cur.fetchone()
    conn.close()
    return row


def trader_up_a_while(pipe: Any) -> TraderClient:
    """Orders sent within the clock allowance of the Trader's start are not ruled out by
    its list (it may have started after them): wait until this one is up for longer."""
    trader = TraderClient(pipe.paper.url, connect_timeout=1, read_timeout=2)
    wait_for(lambda: trader.status().started_at < time.time() - 2.5, message="Trader up 2.5 s")
    return trader


def unknown_orders(pipe: Any) -> dict[str, Any]:
    return requests.get(pipe.url + "/orders/unknown", timeout=5).json()


def test_a_trader_outage_loses_no_signal_and_fills_no_order_twice(pipelines):
    pipe = pipelines({"SIGNAL_TIMEOUT": "90", "BREAKER_OPEN_SECONDS": "0.5"})
    trader = trader_up_a_while(pipe)
    knobs(pipe, error_rate=1.0, health_status=500)
    symbols = ("BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC", "BNBUSDC", "ADAUSDC")
    payloads = [signal_payload(symbol) for symbol in symbols]
    for payload in payloads:
        pipe.publish(payload)
    # The first ones reach the Trader and fail before its breaker opens; the rest wait.
    # How many get there depends on when the health probe sees the 500s too: one at least.
    wait_for(lambda: pipe.paper.stats()["orders_received"] >= 1, message="failed attempts")
    failed_first = set(pipe.paper.stats()["requests_by_client_order_id"])
    wait_for(
        lambda: requests.get(pipe.url + "/status", timeout=5).json()["trading_state"] == "HALTED",
        message="the Trader's breaker open",
    )
    knobs(pipe, error_rate=0.0, health_status=200)

    records = [pipe.decision(signal_id(p), timeout=60) for p in payloads]

    assert [r["decision"]["outcome"] for r in records] == ["accepted"] * len(payloads)
    assert [r["order"]["state"] for r in records] == ["accepted"] * len(payloads)
    stats = pipe.paper.stats()
    ids = {client_order_id(signal_id(p)) for p in payloads}
    assert stats["fills_by_client_order_id"] == dict.fromkeys(ids, 1)
    assert failed_first and failed_first <= ids
    for cid in failed_first:
        # Held, not found at the Trader, then sent again as the same intent.
        assert stats["requests_by_client_order_id"][cid] == 2
        (record,) = [r for r in records if r["order"]["client_order_id"] == cid]
        assert record["order"]["trader_order_id"].startswith("order_")
        assert order_state(pipe, cid)[0] == "accepted"
    # Every accepted order is one the Trader knows (none is a de-duplicated echo).
    listed = {o.order_id for o in trader.orders()}
    assert {r["order"]["trader_order_id"] for r in records} <= listed


def test_a_held_order_not_found_after_its_signal_expired_is_rejected_and_not_sent_again(
    pipelines,
):
    pipe = pipelines({"SIGNAL_TIMEOUT": "5"})
    trader_up_a_while(pipe)
    knobs(pipe, error_rate=1.0)
    payload = signal_payload("SOLUSDC")
    pipe.publish(payload)
    cid = client_order_id(signal_id(payload))
    wait_for(lambda: (order_state(pipe, cid) or ("",))[0] == "unknown", message="held")
    knobs(pipe, error_rate=0.0)
    # Held: the 5xx alone does not decide it, and its signal expires meanwhile.
    assert pipe.stored(signal_id(payload))["decision"] is None

    decision = pipe.decision(signal_id(payload), timeout=40)["decision"]

    assert (decision["outcome"], decision["reason"]) == ("rejected", "trader_error")
    assert "not found at the Trader" in decision["detail"] and "expired" in decision["detail"]
    assert order_state(pipe, cid)[0] == "rejected"
    assert pipe.paper.stats()["requests_by_client_order_id"] == {cid: 1}
    assert pipe.paper.stats()["fills_by_client_order_id"] == {}


def test_a_signal_held_when_its_validator_crashed_is_held_again_and_not_lost(pipelines):
    pipe = pipelines({"SIGNAL_TIMEOUT": "60"})
    trader_up_a_while(pipe)
    knobs(pipe, error_rate=1.0)
    payload = signal_payload("BNBUSDC")
    pipe.publish(payload)
    cid = client_order_id(signal_id(payload))
    wait_for(lambda: (order_state(pipe, cid) or ("",))[0] == "unknown", message="held")
    knobs(pipe, error_rate=0.0)
    owner = validator_for("BNBUSDC", 4)

    pipe.drill(owner)

    record = pipe.decision(signal_id(payload), timeout=40)
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    stats = pipe.paper.stats()
    assert stats["fills_by_client_order_id"] == {cid: 1}
    assert stats["requests_by_client_order_id"] == {cid: 2}


def test_a_5xx_after_the_fill_is_found_at_the_trader_and_never_sent_again(pipelines):
    pipe = pipelines({"SIGNAL_TIMEOUT": "60"})
    knobs(pipe, fail_after_fill=1)
    payload = signal_payload("LTCUSDC")
    pipe.publish(payload)

    record = pipe.decision(signal_id(payload), timeout=30)

    assert record["decision"]["outcome"] == "accepted"
    assert "found at the Trader" in record["decision"]["detail"]
    cid = client_order_id(signal_id(payload))
    assert pipe.paper.stats()["requests_by_client_order_id"] == {cid: 1}
    state, trader_id, error = order_state(pipe, cid)
    assert state == "accepted" and trader_id.startswith("order_") and "held" in error
    reconciler = unknown_orders(pipe)["reconciler"]
    assert reconciler["reconciled"]["accepted"] >= 1 and reconciler["last_run"]
    diagnostic = requests.get(pipe.url + "/diagnostic", timeout=5).json()
    assert diagnostic["reconciler"]["reconciled"]["accepted"] >= 1


def test_a_read_timeout_is_reconciled_accepted_when_the_trader_filled_it(pipelines):
    pipe = pipelines({"TRADER_READ_TIMEOUT": "0.3"})
    knobs(pipe, timeout=2)
    payload = signal_payload("DOGEUSDC")
    pipe.publish(payload)
    record = pipe.decision(signal_id(payload))
    assert record["decision"]["outcome"] == "unknown"
    cid = client_order_id(signal_id(payload))

    wait_for(lambda: order_state(pipe, cid)[0] == "accepted", timeout=20, message="reconciled")

    assert order_state(pipe, cid)[1].startswith("order_")
    listed = unknown_orders(pipe)
    assert cid not in [o["client_order_id"] for o in listed["orders"]]
    assert pipe.paper.stats()["requests_by_client_order_id"] == {cid: 1}


def test_a_read_timeout_never_executed_is_rejected_once_its_window_passed(pipelines):
    pipe = pipelines({"TRADER_READ_TIMEOUT": "0.3"})
    trader_up_a_while(pipe)
    knobs(pipe, latency=1.0, error_rate=1.0)
    payload = signal_payload("XRPUSDC")
    pipe.publish(payload)
    assert pipe.decision(signal_id(payload))["decision"]["outcome"] == "unknown"
    cid = client_order_id(signal_id(payload))
    knobs(pipe, latency=0.0, error_rate=0.0)
    still = wait_for(
        lambda: [
            s for s in unknown_orders(pipe)["reconciler"]["still_unknown"]
            if s["client_order_id"] == cid
        ],
        message="listed as still unknown while its window is open",
    )  # fmt: skip
    assert still[0]["reason"] == "window_open"

    wait_for(lambda: order_state(pipe, cid)[0] == "rejected", timeout=40, message="rejected")

    assert "not found at the Trader" in order_state(pipe, cid)[2]
    assert pipe.paper.stats()["fills_by_client_order_id"] == {}


def test_an_operator_resolves_an_unknown_order(pipelines):
    pipe = pipelines()
    writer = PipelineStore(pipe.config.database.url, timeout=5)
    cid = f"coord-{uuid.uuid4().hex}"
    # Sent long before this Trader started: its list cannot rule it out.
    base = {
        "kind": "order",
        "client_order_id": cid,
        "signal_id": f"sig-{cid}",
        "symbol": "BNBUSDC",
        "side": "SELL",
        "quantity": 1.0,
        "reference_price": 580.0,
        "at": time.time() - 3600,
    }
    writer.write([{**base, "state": "unknown", "error": "no answer"}])
    writer.close()
    # Written after this process started: its first pass may have run already, and the
    # next is RECONCILE_INTERVAL away. A Validator says so when an order turns unknown.
    pipe.directory.tell("reconciler", ReconcileSoon(client_order_id=cid, sent_at=base["at"]))
    url = f"{pipe.url}/orders/{cid}/resolve"
    still = wait_for(
        lambda: [
            s for s in unknown_orders(pipe)["reconciler"]["still_unknown"]
            if s["client_order_id"] == cid
        ],
        message="the reconciler saw it",
    )  # fmt: skip
    assert still[0]["reason"] == "not_covered"

    assert requests.post(url, json={"state": "accepted", "note": "x"}, timeout=5).status_code == 401
    bad = requests.post(url, json={"state": "done", "note": ""}, headers=AUTH, timeout=5)
    assert bad.status_code == 400
    assert "state" in bad.json()["error"] and "note" in bad.json()["error"]
    odd = requests.post(
        url, json={"state": "rejected", "trader_order_id": "order_1", "note": "x"},
        headers=AUTH, timeout=5,
    )  # fmt: skip
    assert odd.status_code == 400 and "trader_order_id" in odd.json()["error"]
    missing = requests.post(
        f"{pipe.url}/orders/coord-nope/resolve",
        json={"state": "rejected", "note": "checked on Binance"},
        headers=AUTH,
        timeout=5,
    )
    assert missing.status_code == 404

    done = requests.post(
        url,
        json={"state": "accepted", "trader_order_id": "order_0123456789abcdef", "note": "Binance"},
        headers=AUTH,
        timeout=5,
    )

    assert done.status_code == 200, done.text
    assert done.json()["state"] == "accepted"
    assert order_state(pipe, cid)[:2] == ("accepted", "order_0123456789abcdef")
    assert "resolved accepted by" in order_state(pipe, cid)[2]
    again = requests.post(url, json={"state": "rejected", "note": "x"}, headers=AUTH, timeout=5)
    assert again.status_code == 409 and again.json()["state"] == "accepted"
    assert unknown_orders(pipe)["reconciler"]["reconciled"]["by_operator"] == 1


def test_a_201_echoing_a_failed_attempt_is_not_taken_for_a_fill():
    paper = PaperExchange().start()
    paper.set_price("SOLUSDC", 199.91)
    trader = TraderClient(paper.url, connect_timeout=0.5, read_timeout=2)
    verifier = OrderGateway(intents=None, trader=trader)
    body = {"symbol": "SOLUSDC", "side": "SELL", "quantity": 1.105, "strategy": "CONSENSUS"}
    try:
        paper.knobs.update({"error_rate": 1.0})
        failed = verifier.verified(body, trader.submit(body), time.monotonic())
        assert failed.result is SendResult.FAILED
        paper.knobs.update({"error_rate": 0.0})

        echo = trader.submit(body)
        assert echo.result is SendResult.ACCEPTED  # what the Trader says
        checked = verifier.verified(body, echo, time.monotonic())

        assert checked.result is SendResult.FAILED and "de-duplicated" in checked.error
        # A 201 for a body that did not fail here is taken as it is, without a look-up.
        other = {**body, "side": "BUY", "quantity": 0.5}
        real = trader.submit(other)
        assert verifier.verified(other, real, time.monotonic()) is real
    finally:
        paper.stop()


@needs_contract
def test_trade_executions_settle_what_a_restarted_traders_list_cannot(pipelines, own_postgres):
    create_trade_executions(own_postgres.dsn)
    now = time.time()
    writer = PipelineStore(own_postgres.dsn, timeout=5)

    def unknown(symbol: str, quantity: float, at: float) -> str:
        cid = f"coord-{uuid.uuid4().hex}"
        writer.write(
            [
                {
                    "kind": "order",
                    "client_order_id": cid,
                    "signal_id": f"sig-{cid}",
                    "symbol": symbol,
                    "side": "BUY",
                    "quantity": quantity,
                    "reference_price": 100.0,
                    "state": "unknown",
                    "error": "no answer within the read timeout",
                    "at": at,
                }
            ]
        )
        return cid

    # Sent before this Trader started: its list cannot say; the table can.
    filled = unknown("AVAXUSDC", 2.0005, now - 120)
    lost = unknown("AVAXUSDC", 7.5, now - 115)
    with psycopg2.connect(own_postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO trade_executions (order_id, symbol, side, status, price, quantity,
                   quote_quantity, "timestamp", demo)
               VALUES ('3000000001', 'AVAXUSDC', 'BUY', 'FILLED', 100, 2.0, 200,
                       to_timestamp(%s) AT TIME ZONE 'UTC', false)""",
            (now - 119.5,),
        )
    conn.close()
    writer.close()

    pipe = pipelines(database_dsn=own_postgres.dsn)

    wait_for(lambda: order_state(pipe, filled)[0] == "accepted", timeout=20, message="found")
    assert order_state(pipe, filled)[1] == "3000000001"
    wait_for(lambda: order_state(pipe, lost)[0] == "rejected", timeout=20, message="ruled out")
    assert "not found at the Trader" in order_state(pipe, lost)[2]
