"""Trailing stops across a restart of the process: the peaks resumed from the store, and a
stop restored for a position closed meanwhile sells nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.test_trailing_stops import (
    ENV,
    fills,
    seed,
    sells,
    stops,
    stored_stop,
    tick,
    ticks_seen,
    watched,
)
from tests.waiting import wait_for


def test_a_restarted_process_resumes_with_the_same_peaks(pipelines, own_postgres):
    first = pipelines(ENV, database_dsn=own_postgres.dsn)
    paper = first.paper
    seed(first, "DOGEUSDC", 1_000.0, 0.2)
    key = watched(first, "DOGEUSDC")["position_key"]
    for price in (0.205, 0.21, 0.215):
        tick(first, "DOGEUSDC", price)
    ticks_seen(first, "DOGEUSDC", 0.215)
    wait_for(lambda: stored_stop(own_postgres.dsn, key)[0] == 0.215, message="the peak stored")
    first.coordinator.stop()
    second = pipelines(ENV, database_dsn=own_postgres.dsn, paper=paper)
    resumed = watched(second, "DOGEUSDC")
    assert resumed["position_key"] == key
    assert resumed["peak"] == 0.215 and resumed["stop"] == pytest.approx(0.215 * 0.98)
    paper.set_price("DOGEUSDC", 0.2)
    tick(second, "DOGEUSDC", 0.2)
    wait_for(lambda: "DOGEUSDC" not in second.positions(), message="sold after the restart")
    assert len(sells(second, "DOGEUSDC")) == 1


def test_a_stop_restored_for_a_position_closed_meanwhile_sells_nothing(pipelines, own_postgres):
    """While the coordinator was down its position was sold elsewhere and a new one of
    the same symbol bought: the old position's stop, restored from the store, must not
    sell the new one (the Ledger sells what the symbol holds)."""
    first = pipelines(ENV, database_dsn=own_postgres.dsn)
    paper = first.paper
    seed(first, "LTCUSDC", 2.0, 80.0)
    old_key = watched(first, "LTCUSDC")["position_key"]
    tick(first, "LTCUSDC", 85.0)
    assert ticks_seen(first, "LTCUSDC", 85.0)["stop"] == pytest.approx(83.3)
    wait_for(
        lambda: stored_stop(own_postgres.dsn, old_key)[1] == pytest.approx(83.3),
        message="the stop stored",
    )
    first.coordinator.stop()
    # Elsewhere: the position sold, another bought at 80 a moment ago.
    sold = requests.post(
        paper.url + "/order",
        json={
            "symbol": "LTCUSDC",
            "side": "SELL",
            "quantity": 2.0,
            "price": None,
            "strategy": "manual",
            "timestamp": int(time.time() * 1000),
            "metadata": {"client_order_id": "manual-sell", "reference_price": 85.0},
        },
        timeout=5,
    )
    assert sold.status_code == 201, sold.text
    requests.post(
        paper.url + "/_paper/positions",
        json=[
            {"symbol": "LTCUSDC", "quantity": 3.0, "entry_price": 80.0, "opened_at": time.time()}
        ],
        timeout=5,
    ).raise_for_status()
    # A slow reconciliation (one fetch now, the next in a minute) leaves the old stop
    # listed, unconfirmed, long enough for a price under it.
    second = pipelines(
        {**ENV, "POSITIONS_REFRESH_INTERVAL": "60"}, database_dsn=own_postgres.dsn, paper=paper
    )

    def by_key() -> dict[str, dict[str, Any]]:
        return {p["position_key"]: p for p in stops(second)["positions"]}

    new_key = wait_for(
        lambda: next((k for k in by_key() if k != old_key), None), message="the new position"
    )
    assert old_key in by_key(), "the old stop restored"
    paper.set_price("LTCUSDC", 82.0)
    tick(second, "LTCUSDC", 82.0)
    old = wait_for(
        lambda: (p := by_key().get(old_key)) and p["last_price"] == 82.0 and p,
        message="the price under the old stop seen",
    )
    assert old["state"] == "watching" and "not confirmed" in old["detail"]
    new = by_key()[new_key]
    assert new["stop"] == pytest.approx(82.0 * 0.98) and new["state"] == "watching"
    assert [s for s in sells(second, "LTCUSDC") if s["client_order_id"] != "manual-sell"] == []
    # The new position's own stop still works.
    paper.set_price("LTCUSDC", 75.0)
    tick(second, "LTCUSDC", 75.0)
    wait_for(lambda: "LTCUSDC" not in second.positions(), message="the new position sold")
    exits = [s for s in sells(second, "LTCUSDC") if s["client_order_id"] != "manual-sell"]
    assert len(exits) == 1
    sold_quantities = [f.quantity for f in fills(second, "LTCUSDC") if f.side.value == "SELL"]
    assert sold_quantities == [2.0, 3.0], "the manual sale, then the new position whole"
