"""The TrailingStop in a whole coordinator, where money goes wrong: a key change must not
reset a stop, our own SELL must end the stops of what it sold, and an exit whose outcome
is unknown must not be sent again before its order is settled."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
import pytest
import requests

from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.pipeline import GetLedgerSnapshot
from coordinator.trading.routing import client_order_id, validator_for
from tests.pipeline import AUTH, Pipeline, signal_payload
from tests.test_pipeline import signal_id
from tests.test_trailing_stops import (
    ENV,
    seed,
    sells,
    stop_of,
    stops,
    tick,
    ticks_seen,
    watched,
)
from tests.waiting import wait_for


def _sql(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def _rows(pipe: Pipeline, symbol: str) -> list[dict[str, Any]]:
    return [p for p in stops(pipe)["positions"] if p["symbol"] == symbol]


# --- item 3: a key change keeps the stop -----------------------------------------------


def _cycle_keyed_position_up_10_percent(pipelines: Any, dsn: str) -> Pipeline:
    """AVAXUSDC held, keyed by its trade cycle, up 10 %: its trail at 22 x 0.98."""
    _sql(
        dsn,
        """CREATE TABLE trade_cycles (id varchar(50) PRIMARY KEY, symbol varchar(20),
               status varchar(20), entry_price numeric(16, 8), quantity numeric(16, 8),
               created_at timestamp)""",
    )
    _sql(dsn, "INSERT INTO trade_cycles VALUES ('cyc-7', 'AVAXUSDC', 'active_buy', 20, 50, now())")
    pipe = pipelines(ENV, database_dsn=dsn)
    seed(pipe, "AVAXUSDC", 50.0, 20.0)
    assert watched(pipe, "AVAXUSDC")["position_key"] == "cycle:cyc-7"
    for price in (21.0, 22.0):
        tick(pipe, "AVAXUSDC", price)
    up = ticks_seen(pipe, "AVAXUSDC", 22.0)
    assert up["peak"] == 22.0 and up["stop"] == pytest.approx(22.0 * 0.98)
    return pipe


def ledger_shows(pipe: Pipeline, symbol: str) -> None:
    """Wait for the Ledger's view to show the holding of ``symbol``. The Ledger fetches
    the Portfolio on its own (about once a second here), and the stop may see the
    holding first: until the view shows it too, an exit is refused ``no_position`` and
    tried again, so exit 1 would not be the one a test makes time out."""
    wait_for(
        lambda: symbol in pipe.directory.ask("ledger", GetLedgerSnapshot(), timeout=5).positions,
        message=f"the Ledger's view shows the holding of {symbol}",
    )


def test_an_unreadable_trade_cycles_table_is_a_failed_fetch(pipelines, own_postgres):
    """Without the cycles every key would change (and every stop restart from its
    entry): the fetch counts as failed and nothing changes."""
    dsn = own_postgres.dsn
    pipe = _cycle_keyed_position_up_10_percent(pipelines, dsn)
    # One transaction: between a rename and a view made apart, the table is absent for
    # a moment, which is another case (the next test).
    _sql(
        dsn,
        """ALTER TABLE trade_cycles RENAME TO trade_cycles_kept;
           CREATE VIEW trade_cycles AS SELECT id, symbol, status, entry_price, quantity,
               created_at FROM trade_cycles_kept WHERE 1 / (SELECT 0) = 1""",
    )
    failed = wait_for(
        lambda: (s := stops(pipe))["trade_cycles_error"] and s, message="the cycles read failing"
    )
    assert "division by zero" in (failed["positions_error"] or "")
    (row,) = _rows(pipe, "AVAXUSDC")
    assert row["position_key"] == "cycle:cyc-7" and row["stop"] == pytest.approx(22.0 * 0.98)
    assert row["state"] == "watching"


def test_a_trade_cycles_table_gone_after_it_was_read_is_a_failed_fetch(pipelines, own_postgres):
    """A table read before and absent now (dropped, or renamed while RootTrading
    migrates it) is not a deployment without cycles: a failed fetch, nothing changes."""
    dsn = own_postgres.dsn
    pipe = _cycle_keyed_position_up_10_percent(pipelines, dsn)
    _sql(dsn, "ALTER TABLE trade_cycles RENAME TO trade_cycles_elsewhere")
    failed = wait_for(
        lambda: (s := stops(pipe))["trade_cycles_error"] and s, message="the cycles read failing"
    )
    assert "trade_cycles" in failed["trade_cycles_error"]
    (row,) = _rows(pipe, "AVAXUSDC")
    assert row["position_key"] == "cycle:cyc-7" and row["stop"] == pytest.approx(22.0 * 0.98)
    _sql(dsn, "ALTER TABLE trade_cycles_elsewhere RENAME TO trade_cycles")
    wait_for(lambda: not stops(pipe)["trade_cycles_error"], message="the cycles read again")
    (row,) = _rows(pipe, "AVAXUSDC")
    assert row["position_key"] == "cycle:cyc-7" and row["stop"] == pytest.approx(22.0 * 0.98)


def test_a_position_up_10_percent_keeps_its_trail_when_its_key_changes(pipelines, own_postgres):
    """The cycle is gone (closed elsewhere) while the Portfolio still shows the holding:
    another key for the same holding, which keeps its peak and stop."""
    dsn = own_postgres.dsn
    pipe = _cycle_keyed_position_up_10_percent(pipelines, dsn)
    _sql(dsn, "UPDATE trade_cycles SET status = 'completed'")
    rekeyed = wait_for(
        lambda: (
            (rows := _rows(pipe, "AVAXUSDC")) and rows[0]["position_key"] != "cycle:cyc-7" and rows
        ),
        message="the holding under its new key",
    )
    (row,) = rekeyed
    assert row["position_key"].startswith("AVAXUSDC@")
    assert row["earlier_keys"] == ["cycle:cyc-7"]
    assert row["peak"] == 22.0 and row["stop"] == pytest.approx(22.0 * 0.98)
    # It still sells at its trail, once.
    pipe.paper.set_price("AVAXUSDC", 21.5)
    tick(pipe, "AVAXUSDC", 21.5)
    wait_for(lambda: "AVAXUSDC" not in pipe.positions(), message="sold at the kept trail")
    (sell,) = sells(pipe, "AVAXUSDC")
    assert sell["client_order_id"] == client_order_id(f"exit:{row['position_key']}:1")


# --- item 4: our own SELL ends the stops of what it sold --------------------------------


def test_our_sell_ends_the_stop_so_it_never_sells_the_next_holding(pipelines):
    """Holding P1 trails high; a SELL signal sells it and a BUY opens P2 on the symbol
    before the Portfolio's view drops P1. A price under P1's stop and above P2's must
    sell nothing: P1's stop ended with our SELL."""
    # P1 is held before the start, so that the first fetches of the Ledger and the
    # TrailingStop show it. Seeded after, each would see it only at its next fetch: the
    # TrailingStop's is a minute away here, and a Ledger whose view lacks P1 rejects the
    # SELL (no_position).
    paper = PaperExchange(redis_url=None).start()
    seed(paper, "ETHUSDC", 1.0, 3_000.0)
    pipe = pipelines({**ENV, "POSITIONS_REFRESH_INTERVAL": "60"}, paper=paper)
    pipe.paper.set_price("ETHUSDC", 3_000.0)  # the pipeline priced it as tests.pipeline does
    first = watched(pipe, "ETHUSDC")["position_key"]
    tick(pipe, "ETHUSDC", 3_300.0)
    assert ticks_seen(pipe, "ETHUSDC", 3_300.0)["stop"] == pytest.approx(3_234.0)
    pipe.paper.set_price("ETHUSDC", 3_300.0)

    # Both before the Portfolio is looked at again (its view then shows P2, not P1).
    sell = signal_payload("ETHUSDC", "SELL", price=3_300.0)
    buy = signal_payload("ETHUSDC", "BUY", price=3_300.0)
    pipe.publish(sell)
    pipe.publish(buy)
    for signal in (sell, buy):
        decision = pipe.decision(signal_id(signal))["decision"]
        assert decision["outcome"] == "accepted", decision

    def both() -> dict[str, dict[str, Any]] | None:
        rows = {p["position_key"]: p for p in _rows(pipe, "ETHUSDC")}
        return rows if len(rows) == 2 else None

    rows = wait_for(both, message="P2 watched while P1 is still listed")
    (second,) = [k for k in rows if k != first]
    assert rows[first]["state"] == "sold", rows[first]
    assert rows[second]["stop"] == pytest.approx(3_300.0 * 0.95)
    # Under P1's stop (3,234), above P2's (3,135).
    tick(pipe, "ETHUSDC", 3_200.0)
    wait_for(
        lambda: (
            (p := {r["position_key"]: r for r in _rows(pipe, "ETHUSDC")}.get(second))
            and p["last_price"] == 3_200.0
        ),
        message="the price seen",
    )
    assert stops(pipe)["exits_triggered"] == 0
    assert [s["client_order_id"] for s in sells(pipe, "ETHUSDC")] == [
        client_order_id(signal_id(sell))
    ]
    assert pipe.positions().get("ETHUSDC", 0) > 0, "P2 still held"


# --- item 10: an unknown exit is not sent again ----------------------------------------


def test_an_unknown_exit_waits_for_its_order_and_is_never_sent_again_blindly(pipelines):
    """The exit's answer is lost (it filled, but the coordinator cannot know) while the
    Portfolio still shows the holding: the stop waits on that order, past the settle
    time, whatever the price does; the reconciler marking it rejected lets it go on."""
    pipe = pipelines(
        {**ENV, "TRADER_READ_TIMEOUT": "0.3", "STOP_EXIT_SETTLE": "0.2", "STOP_EXIT_TIMEOUT": "1"}
    )
    opened = time.time() - 3_600
    holding = {"symbol": "SOLUSDC", "quantity": 10.0, "entry_price": 100.0, "opened_at": opened}
    requests.post(pipe.paper.url + "/_paper/positions", json=[holding], timeout=5)
    pipe.paper.set_price("SOLUSDC", 100.0)
    key = watched(pipe, "SOLUSDC")["position_key"]
    ledger_shows(pipe, "SOLUSDC")
    knobs = pipe.paper.url + "/_paper/knobs"
    # The Trader's order history cannot be read: the reconciler cannot settle the order.
    requests.post(knobs, json={"timeout": 1, "history_status": 500}, timeout=5).raise_for_status()
    pipe.paper.set_price("SOLUSDC", 90.0)
    tick(pipe, "SOLUSDC", 90.0)
    first = f"exit:{key}:1"
    decided = pipe.decision(first)["decision"]
    assert decided["outcome"] == "unknown", decided
    requests.post(knobs, json={"timeout": 0}, timeout=5).raise_for_status()
    # The Portfolio shows it again (its view lags): the same holding, the same key. (A
    # little more of it, so that the next attempt's order is not the Trader's 10 s
    # duplicate of the first.)
    requests.post(
        pipe.paper.url + "/_paper/positions", json=[{**holding, "quantity": 12.0}], timeout=5
    )

    order = client_order_id(first)
    waiting = wait_for(
        lambda: (
            (p := stop_of(pipe, "SOLUSDC"))
            and p["state"] == "awaiting_order"
            and p["waiting_on_order"] == order
            and p
        ),
        message="the stop waiting on the unknown order",
    )
    reads = waiting["exit_order_reads"]
    # Fresh prices under the stop, past the settle time, while the order is read again
    # twice (every few seconds): nothing is sent.
    for _ in range(2):
        wait_for(
            lambda seen=reads: (
                tick(pipe, "SOLUSDC", 89.0)
                or ((p := stop_of(pipe, "SOLUSDC")) and p["exit_order_reads"] > seen and p)
            ),
            interval=0.1,
            message="the order read again",
        )
        reads += 1
    assert stop_of(pipe, "SOLUSDC")["state"] == "awaiting_order"
    assert len(sells(pipe, "SOLUSDC")) == 1, "the unknown exit only"
    assert "SOLUSDC" in pipe.positions()

    # The reconciler finds no such order at the exchange: rejected. The stop, still hit
    # on a fresh price, sends its next attempt.
    _sql(
        pipe.config.database.url,
        "UPDATE coordinator_orders SET state = 'rejected' WHERE client_order_id = %s",
        (order,),
    )
    wait_for(
        lambda: tick(pipe, "SOLUSDC", 89.0) or "SOLUSDC" not in pipe.positions(),
        interval=0.1,
        message="sold by the next attempt",
    )
    second = pipe.decision(f"exit:{key}:2")["decision"]
    assert second["outcome"] == "accepted"
    assert len(sells(pipe, "SOLUSDC")) == 2
    sold = [f.quantity for f in pipe.paper.book.fills if f.symbol == "SOLUSDC"]
    assert sold == [10.0, 12.0]


def test_an_unknown_exit_reconciled_as_filled_ends_the_stop(pipelines):
    pipe = pipelines({**ENV, "TRADER_READ_TIMEOUT": "0.3", "STOP_EXIT_SETTLE": "0.2"})
    holding = {
        "symbol": "ADAUSDC",
        "quantity": 1_000.0,
        "entry_price": 0.5,
        "opened_at": time.time() - 3_600,
    }
    requests.post(pipe.paper.url + "/_paper/positions", json=[holding], timeout=5)
    pipe.paper.set_price("ADAUSDC", 0.5)
    key = watched(pipe, "ADAUSDC")["position_key"]
    ledger_shows(pipe, "ADAUSDC")
    knobs = pipe.paper.url + "/_paper/knobs"
    requests.post(knobs, json={"timeout": 1}, timeout=5).raise_for_status()
    pipe.paper.set_price("ADAUSDC", 0.45)
    tick(pipe, "ADAUSDC", 0.45)
    first = f"exit:{key}:1"
    decided = pipe.decision(first)["decision"]
    assert decided["outcome"] == "unknown", decided
    requests.post(knobs, json={"timeout": 0}, timeout=5).raise_for_status()
    requests.post(pipe.paper.url + "/_paper/positions", json=[holding], timeout=5)
    wait_for(
        lambda: (p := stop_of(pipe, "ADAUSDC")) and p["state"] == "awaiting_order",
        message="waiting on the order",
    )
    _sql(
        pipe.config.database.url,
        "UPDATE coordinator_orders SET state = 'accepted', trader_order_id = 'found'"
        " WHERE client_order_id = %s",
        (client_order_id(first),),
    )
    sold = wait_for(
        lambda: (
            tick(pipe, "ADAUSDC", 0.44)
            or ((p := stop_of(pipe, "ADAUSDC")) and p["state"] == "sold" and p)
        ),
        interval=0.1,
        message="the stop ended by the filled order",
    )
    assert "found filled" in sold["detail"]
    assert len(sells(pipe, "ADAUSDC")) == 1


def test_after_a_crash_an_unknown_exit_order_without_decision_is_not_sent_again(
    pipelines, own_postgres
):
    """The process died after its exit's order was marked unknown and before the exit's
    decision was stored: the restored stop, hit again, reads the order and waits."""
    dsn = own_postgres.dsn
    first = pipelines(ENV, database_dsn=dsn)
    paper = first.paper
    seed(first, "DOTUSDC", 100.0, 5.0)
    key = watched(first, "DOTUSDC")["position_key"]
    wait_for(lambda: _sql(dsn, "SELECT 1 FROM coordinator_stops WHERE position_key = %s", (key,)))
    first.coordinator.stop()
    # What the crash left: the stop exiting its first attempt, whose order is unknown.
    exit_one = f"exit:{key}:1"
    _sql(
        dsn,
        "UPDATE coordinator_stops SET state = 'exiting', attempt = 1 WHERE position_key = %s",
        (key,),
    )
    _sql(
        dsn,
        """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side, quantity,
               reference_price, state, created_at, updated_at)
           VALUES (%s, %s, 'DOTUSDC', 'SELL', 100, 4.7, 'unknown', now(), now())""",
        (client_order_id(exit_one), exit_one),
    )
    second = pipelines({**ENV, "STOP_EXIT_TIMEOUT": "0.5"}, database_dsn=dsn, paper=paper)
    paper.set_price("DOTUSDC", 4.5)
    waiting = wait_for(
        lambda: (
            tick(second, "DOTUSDC", 4.5)
            or ((p := stop_of(second, "DOTUSDC")) and p["state"] == "awaiting_order" and p)
        ),
        interval=0.1,
        message="the restored stop waiting on the unknown order",
    )
    assert waiting["waiting_on_order"] == client_order_id(exit_one)
    assert waiting["exit_attempts"] == 1
    assert sells(second, "DOTUSDC") == []
    assert "DOTUSDC" in second.positions()


def test_an_unknown_exit_found_never_executed_no_longer_hides_the_holding(pipelines):
    """The exit's answer is lost and the order turns out never executed (an operator
    resolves it rejected): the Ledger stops counting it as filled, so the holding it
    did not sell is sellable at once, not refused ``no_position`` for the settle window."""
    pipe = pipelines({**ENV, "TRADER_READ_TIMEOUT": "0.3", "STOP_EXIT_SETTLE": "0.2"})
    holding = {
        "symbol": "DOTUSDC",
        "quantity": 100.0,
        "entry_price": 5.0,
        "opened_at": time.time() - 3_600,
    }
    requests.post(pipe.paper.url + "/_paper/positions", json=[holding], timeout=5)
    pipe.paper.set_price("DOTUSDC", 5.0)
    key = watched(pipe, "DOTUSDC")["position_key"]
    ledger_shows(pipe, "DOTUSDC")
    knobs = pipe.paper.url + "/_paper/knobs"
    # The exit is answered too late, and then refused: never executed. Nothing settles
    # it by itself: the Trader's history cannot be read.
    requests.post(
        knobs, json={"latency": 1, "reject_next": 1, "history_status": 500}, timeout=5
    ).raise_for_status()
    pipe.paper.set_price("DOTUSDC", 4.5)
    tick(pipe, "DOTUSDC", 4.5)
    first = f"exit:{key}:1"
    assert pipe.decision(first)["decision"]["outcome"] == "unknown"
    requests.post(knobs, json={"latency": 0}, timeout=5).raise_for_status()
    # The exchange refuses exit 1 only after its latency: a next exit sent before that
    # would take the refusal meant for it (and exit 1 would then fill).
    wait_for(
        lambda: pipe.paper.stats()["knobs"]["reject_next"] == 0,
        message="exit 1 refused by the exchange",
    )
    wait_for(
        lambda: (p := stop_of(pipe, "DOTUSDC")) and p["state"] == "awaiting_order",
        message="waiting on the order",
    )
    resolved = requests.post(
        f"{pipe.url}/orders/{client_order_id(first)}/resolve",
        json={"state": "rejected", "note": "not on Binance"},
        headers=AUTH,
        timeout=5,
    )
    assert resolved.status_code == 200, resolved.text
    wait_for(
        lambda: tick(pipe, "DOTUSDC", 4.4) or "DOTUSDC" not in pipe.positions(),
        interval=0.1,
        message="sold by the next attempt",
    )
    assert pipe.decision(f"exit:{key}:2")["decision"]["outcome"] == "accepted"


def test_an_exit_lost_with_its_crashed_validator_is_sent_again_under_its_own_id(pipelines):
    """The exit waits at its Validator for the Trader to come back, and the Validator
    crashes: its wait queue is gone and no decision comes. The stop sends the same
    exit again (its id: never an order twice) and it is decided; no stored exit is left
    undecided and no second attempt is made."""
    from tests.test_held_orders import knobs

    pipe = pipelines({**ENV, "STOP_EXIT_TIMEOUT": "3", "BREAKER_OPEN_SECONDS": "0.5"})
    seed(pipe, "NEARUSDC", 100.0, 5.0)
    key = watched(pipe, "NEARUSDC")["position_key"]
    knobs(pipe, health_status=500)
    wait_for(
        lambda: requests.get(pipe.url + "/status", timeout=5).json()["trading_state"] == "HALTED",
        message="the Trader down",
    )
    pipe.paper.set_price("NEARUSDC", 4.5)
    # Ticked until it fires: a tick that falls while the lease lapses (a loaded
    # machine) reaches no leader, and the next leader's restored stop waits for the
    # next price. One exit in flight per holding: the ticks after it send none.
    wait_for(
        lambda: tick(pipe, "NEARUSDC", 4.5) or stops(pipe)["exits_triggered"] == 1,
        interval=0.2,
        message="exit 1 sent",
    )
    pipe.drill(validator_for("NEARUSDC", 4))
    knobs(pipe, health_status=200)
    record = wait_for(
        lambda: (
            tick(pipe, "NEARUSDC", 4.5)
            or ((r := pipe.stored(f"exit:{key}:1")) and r["decision"] and r)
        ),
        interval=0.2,
        timeout=40,
        message="the lost exit decided",
    )
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert pipe.stored(f"exit:{key}:2") is None, "a second attempt was made"
    assert len(sells(pipe, "NEARUSDC")) == 1
