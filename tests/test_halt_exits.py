"""A held symbol is always sellable unless an operator explicitly blocks exits: under a
manual halt (exits allowed, the default) or a kill switch that cannot be read, BUYs are
refused and SELLs, signals and stop exits alike, go."""

from __future__ import annotations

import requests

from tests.pipeline import AUTH, Pipeline, signal_payload
from tests.test_pipeline import signal_id
from tests.test_pipeline_faults import wait_state
from tests.test_trailing_stops import ENV, seed, tick, watched
from tests.waiting import wait_for


def halt(pipe: Pipeline, **body: str) -> dict:
    response = requests.post(
        pipe.url + "/trading/halt", json={"reason": "test", **body}, headers=AUTH, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


def bought(pipe: Pipeline, symbol: str) -> None:
    buy = signal_payload(symbol, "BUY")
    pipe.publish(buy)
    assert pipe.decision(signal_id(buy))["decision"]["outcome"] == "accepted"
    wait_for(lambda: symbol in pipe.positions(), message=f"{symbol} held")


def test_a_manual_halt_refuses_buys_and_sells_what_is_held(pipelines):
    pipe = pipelines(ENV)
    bought(pipe, "SOLUSDC")
    assert halt(pipe)["kill_switch"]["exits"] == "allow"
    wait_state(pipe, "HALTED")

    buy = signal_payload("ETHUSDC", "BUY")
    pipe.publish(buy)
    refused = pipe.decision(signal_id(buy))["decision"]
    assert (refused["outcome"], refused["reason"]) == ("rejected", "trading_halted")

    sell = signal_payload("SOLUSDC", "SELL")
    pipe.publish(sell)
    record = pipe.decision(signal_id(sell))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    state_check = next(c for c in record["decision"]["checks"] if c["step"] == "trading_state")
    assert "exits allowed" in state_check["detail"]
    wait_for(lambda: "SOLUSDC" not in pipe.positions(), message="SOLUSDC sold while halted")

    # A stop's exit goes too.
    seed(pipe, "BTCUSDC", 0.1, 60_000.0)
    view = watched(pipe, "BTCUSDC")
    pipe.paper.set_price("BTCUSDC", view["stop"] * 0.99)
    tick(pipe, "BTCUSDC", view["stop"] * 0.99)
    wait_for(lambda: "BTCUSDC" not in pipe.positions(), message="the stop sold while halted")


def test_a_halt_that_blocks_exits_refuses_sells_too(pipelines):
    pipe = pipelines(ENV)
    bought(pipe, "SOLUSDC")
    assert halt(pipe, exits="block")["kill_switch"]["exits"] == "block"
    wait_state(pipe, "HALTED")
    sell = signal_payload("SOLUSDC", "SELL")
    pipe.publish(sell)
    refused = pipe.decision(signal_id(sell))["decision"]
    assert (refused["outcome"], refused["reason"]) == ("rejected", "trading_halted")
    assert "exits blocked" in refused["detail"]
    assert "SOLUSDC" in pipe.positions()


def test_an_unreadable_kill_switch_refuses_buys_and_sells_what_is_held(pipelines, own_postgres):
    """ServiceHealth restarted during a PostgreSQL outage, not knowing the kill switch,
    cannot read it."""
    # Alone on its own database, in single mode: a cluster decides nothing while
    # PostgreSQL is down (no symbol partition can be held).
    pipe = pipelines({**ENV, "COORDINATOR_INSTANCES": "single"}, database_dsn=own_postgres.dsn)
    bought(pipe, "SOLUSDC")
    own_postgres.stop()
    try:
        wait_state(pipe, "DEGRADED")
        # As if the kill switch had never been read in this process (a restart keeps
        # what the last incarnation knew).
        pipe.coordinator.services.kept_halt.drop("halt")
        pipe.drill("service_health")
        status = wait_for(
            lambda: (
                (r := requests.get(pipe.url + "/status", timeout=5)).status_code == 200
                and r.json()["trading_state"] == "HALTED"
                and r.json()
            ),
            message="HALTED, the kill switch unreadable after the restart",
        )
        codes = [r["code"] for r in status["trading"]["reasons"]]
        assert "halt_state_unknown" in codes, codes
        assert status["kill_switch"]["halted"] is None

        buy = signal_payload("ETHUSDC", "BUY")
        pipe.publish(buy)
        sell = signal_payload("SOLUSDC", "SELL")
        pipe.publish(sell)
        # A SELL first seen during the outage is claimed in the journal and sent.
        wait_for(lambda: "SOLUSDC" not in pipe.positions(), message="SOLUSDC sold")
        assert "ETHUSDC" not in pipe.positions()
    finally:
        own_postgres.start()
    assert pipe.decision(signal_id(sell))["decision"]["outcome"] == "accepted"
    refused = pipe.decision(signal_id(buy))["decision"]
    assert refused["outcome"] == "rejected"
