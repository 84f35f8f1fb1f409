"""Two coordinators on one database and one lease: the leader rotates the universe and
keeps the blacklist, the follower serves what the leader stored and answers the
operator's universe commands 409 naming the leader; the catch-up of trading_signals
runs on the leader alone. Once the follower leads, all of it is its work."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from coordinator.infra.lease_store import LeaseStore
from coordinator.messages.pipeline import GetIntakeSnapshot
from tests.aggregator_table import create_trading_signals, insert_consensus_row
from tests.pipeline import AUTH, Pipeline
from tests.test_pipeline_faults import db_rows
from tests.waiting import wait_for

ENV = {"UNIVERSE_UPDATE_INTERVAL": "1", "CORE_PAIRS": "BTCUSDC"}


def universe(pipe: Pipeline) -> dict[str, Any]:
    response = requests.get(pipe.url + "/universe", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def blacklist(pipe: Pipeline, symbol: str) -> requests.Response:
    return requests.post(
        pipe.url + "/universe/blacklist",
        json={"symbol": symbol, "reason": "exchange incident"},
        headers=AUTH,
        timeout=5,
    )


def refresh(pipe: Pipeline) -> requests.Response:
    return requests.post(pipe.url + "/universe/refresh", headers=AUTH, timeout=20)


def test_the_leader_rotates_and_the_follower_serves_its_universe(pipelines, own_postgres):
    lease = f"leader-{uuid.uuid4().hex[:8]}"
    first = pipelines(ENV, database_dsn=own_postgres.dsn, lease=lease)
    second = pipelines(ENV, database_dsn=own_postgres.dsn, lease=lease, lead=False)
    store = LeaseStore(own_postgres.dsn, timeout=5)
    try:
        row = store.read(lease)
    finally:
        store.close()
    assert row is not None

    for refused in (refresh(second), blacklist(second, "ETHUSDC")):
        assert refused.status_code == 409, refused.text
        assert refused.json()["leader"] == row.holder
        assert row.holder in refused.json()["error"]
    assert blacklist(first, "ETHUSDC").status_code == 200
    # The follower takes the leader's rotations and blacklist from the store.
    followed = wait_for(
        lambda: (u := universe(second))["blacklist"] and u,
        message="the follower to see the blacklist",
    )
    assert [e["symbol"] for e in followed["blacklist"]] == ["ETHUSDC"]
    assert "ETHUSDC" not in followed["selected_symbols"]
    wait_for(
        lambda: universe(second)["last_update"] is not None,
        message="the follower to serve a rotation of the leader",
    )

    first.coordinator.stop()
    wait_for(lambda: second.role() == "leader", timeout=10, message="the second to lead")
    rotated = refresh(second)
    assert rotated.status_code == 200, rotated.text
    assert [e["symbol"] for e in rotated.json()["blacklist"]] == ["ETHUSDC"]


def test_the_catch_up_of_trading_signals_runs_on_the_leader_alone(pipelines, own_postgres):
    dsn = own_postgres.dsn
    lease = f"leader-{uuid.uuid4().hex[:8]}"
    create_trading_signals(dsn)
    first = pipelines(database_dsn=dsn, lease=lease)
    # Written while the leader runs: a follower starting now must not take it in. (The
    # leader may, at its subscription's first connection, which can come late.)
    row_id = insert_consensus_row(dsn, "ETHUSDC")
    second = pipelines(database_dsn=dsn, lease=lease, lead=False)
    assert second.role() == "follower"
    follower_intake = second.directory.ask("signal_intake", GetIntakeSnapshot(), timeout=5)
    assert follower_intake.received == 0
    first.coordinator.stop()
    wait_for(lambda: second.role() == "leader", timeout=10, message="the second to lead")
    record = second.decision(f"db:{row_id}")
    assert record["signal"]["source"] == "database"
    # Decided once: by the first leader's late catch-up, or by the second once it leads.
    deciders = db_rows(
        dsn, "SELECT instance FROM coordinator_decisions WHERE signal_id = %s", (f"db:{row_id}",)
    )
    assert deciders in ([(first.config.instance.name,)], [(second.config.instance.name,)])
    wait_for(
        lambda: db_rows(dsn, "SELECT processed FROM trading_signals") == [(True,)],
        message="the row marked processed",
    )
