"""Held orders handed back while their resend is waiting or in flight: stored once, sent once."""

from __future__ import annotations

import time

import psycopg2

from coordinator.actors.held_orders import DEDUP_SECONDS
from coordinator.actors.reconciler import match_policy
from coordinator.infra.order_states import HELD_MARK, RESENT_MARK
from coordinator.messages.pipeline import GetValidatorSnapshot
from coordinator.messages.reconcile import (
    GetReconcilerSnapshot,
    HeldOrderResolved,
    ReconcileSoon,
)
from coordinator.trading.routing import client_order_id, validator_for
from tests.pipeline import signal_payload
from tests.test_held_orders import knobs, order_state, trader_up_a_while
from tests.test_pipeline import signal_id
from tests.waiting import wait_for


def test_a_held_order_handed_back_twice_while_its_resend_waits_is_stored_as_filled(pipelines):
    # Two reconciliation passes can both read the order as held before its re-send is
    # marked (its Validator busy): the second "not found", taken after the re-send, must
    # not close it as rejected, since the re-send fills it.
    pipe = pipelines({"SIGNAL_TIMEOUT": "90", "BREAKER_OPEN_SECONDS": "0.5"})
    trader_up_a_while(pipe)
    knobs(pipe, error_rate=1.0)
    payload = signal_payload("ETHUSDC")
    pipe.publish(payload)
    cid = client_order_id(signal_id(payload))
    wait_for(
        lambda: ((order_state(pipe, cid) or ("", None, None))[2] or "").startswith(HELD_MARK),
        message="held",
    )
    with psycopg2.connect(pipe.config.database.url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT signal_id, symbol, side, quantity, extract(epoch FROM updated_at)"
            " FROM coordinator_orders WHERE client_order_id = %s",
            (cid,),
        )
        sid, symbol, side, quantity, held_at = cur.fetchone()
    conn.close()
    owner = validator_for(symbol, 4)
    # As after the reconciler's window: past the Trader's de-duplication of the body.
    wait_for(
        lambda: time.time() > float(held_at) + DEDUP_SECONDS + 1.5,
        timeout=30,
        message="past the Trader's de-duplication",
    )
    knobs(pipe, error_rate=0.0, latency=0.5)
    for _ in range(2):
        pipe.directory.tell(
            owner,
            HeldOrderResolved(
                client_order_id=cid,
                signal_id=sid,
                symbol=symbol,
                side=side,
                quantity=float(quantity),
                accepted=False,
                trader_order_id=None,
                detail="not found at the Trader",
                by="reconciler",
            ),
        )

    record = pipe.decision(signal_id(payload), timeout=60)

    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert pipe.paper.stats()["fills_by_client_order_id"] == {cid: 1}
    wait_for(lambda: (order_state(pipe, cid) or ("",))[0] != "unknown", message="settled")
    assert order_state(pipe, cid)[0] == "accepted", order_state(pipe, cid)


def test_a_held_order_is_handed_back_once_while_its_validator_is_busy(pipelines, caplog):
    # The Validator is held up by another order's slow answer when the reconciler hands
    # the held order back: a pass meanwhile still reads it held (not yet marked sent
    # again) and must not hand it back a second time, racing the re-send.
    pipe = pipelines({"SIGNAL_TIMEOUT": "90", "SUPERVISOR_LIVENESS_TIMEOUT": "15"})
    trader_up_a_while(pipe)
    knobs(pipe, error_rate=1.0)
    held_payload = signal_payload("ETHUSDC")
    pipe.publish(held_payload)
    cid = client_order_id(signal_id(held_payload))
    wait_for(
        lambda: ((order_state(pipe, cid) or ("", None, None))[2] or "").startswith(HELD_MARK),
        message="held",
    )
    with psycopg2.connect(pipe.config.database.url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM updated_at) FROM coordinator_orders"
            " WHERE client_order_id = %s",
            (cid,),
        )
        (held_at,) = cur.fetchone()
    conn.close()
    window = match_policy(pipe.config.execution.read_timeout).window_after
    knobs(pipe, error_rate=0.0, latency=4.0)
    # Just before the reconciler's own pass at the window's end, the same Validator
    # (SOLUSDC goes to it too) starts a send the Trader answers slowly.
    assert validator_for("SOLUSDC", 4) == validator_for("ETHUSDC", 4)
    wait_for(
        lambda: time.time() > float(held_at) + window - 1.0,
        timeout=40,
        message="the window about to close",
    )
    pipe.publish(signal_payload("SOLUSDC"))
    wait_for(
        lambda: time.time() > float(held_at) + window + 1.5,
        timeout=10,
        message="the reconciler's pass at the window's end",
    )
    runs = pipe.directory.ask("reconciler", GetReconcilerSnapshot(), timeout=5).runs
    pipe.directory.tell("reconciler", ReconcileSoon(client_order_id=cid, sent_at=0.0))
    wait_for(
        lambda: pipe.directory.ask("reconciler", GetReconcilerSnapshot(), timeout=5).runs > runs,
        message="one more pass",
    )

    record = pipe.decision(signal_id(held_payload), timeout=60)

    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert pipe.paper.stats()["fills_by_client_order_id"][cid] == 1
    wait_for(lambda: (order_state(pipe, cid) or ("",))[0] != "unknown", message="settled")
    assert order_state(pipe, cid)[0] == "accepted", order_state(pipe, cid)
    stale = [r for r in caplog.records if "stale 'not executed'" in r.getMessage()]
    assert stale == []


def test_a_not_executed_reaching_a_new_validator_while_the_resend_is_in_flight(pipelines):
    pipe = pipelines({"SIGNAL_TIMEOUT": "90", "SUPERVISOR_LIVENESS_TIMEOUT": "1"})
    trader_up_a_while(pipe)
    knobs(pipe, error_rate=1.0)
    payload = signal_payload("ETHUSDC")
    pipe.publish(payload)
    cid = client_order_id(signal_id(payload))
    wait_for(
        lambda: ((order_state(pipe, cid) or ("", None, None))[2] or "").startswith(HELD_MARK),
        message="held",
    )
    with psycopg2.connect(pipe.config.database.url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT signal_id, symbol, side, quantity, extract(epoch FROM updated_at)"
            " FROM coordinator_orders WHERE client_order_id = %s",
            (cid,),
        )
        sid, symbol, side, quantity, held_at = cur.fetchone()
    conn.close()
    owner = validator_for(symbol, 4)
    wait_for(
        lambda: time.time() > float(held_at) + DEDUP_SECONDS + 1.5,
        timeout=30,
        message="past the Trader's de-duplication",
    )
    knobs(pipe, error_rate=0.0, latency=4.0)
    not_found = HeldOrderResolved(
        client_order_id=cid,
        signal_id=sid,
        symbol=symbol,
        side=side,
        quantity=float(quantity),
        accepted=False,
        trader_order_id=None,
        detail="not found at the Trader",
        by="reconciler",
    )
    pipe.directory.tell(owner, not_found)
    wait_for(
        lambda: (order_state(pipe, cid) or ("", None, ""))[2].startswith(RESENT_MARK),
        message="sent again",
    )

    # The Validator waiting for that answer is replaced; its successor hears "not found".
    def answers() -> bool:
        try:
            return pipe.directory.ask(owner, GetValidatorSnapshot(), timeout=0.5) is not None
        except Exception:  # the hung one does not answer; its successor does
            return False

    wait_for(answers, timeout=20, message="a new validator")
    pipe.directory.tell(owner, not_found)
    wait_for(lambda: pipe.paper.stats()["fills_by_client_order_id"].get(cid) == 1, timeout=20)
    # Left unknown, it is for the reconciler to find the fill.
    pipe.directory.tell("reconciler", ReconcileSoon(client_order_id=cid, sent_at=0.0))
    wait_for(
        lambda: (order_state(pipe, cid) or ("",))[0] != "unknown",
        timeout=45,
        message="settled",
    )
    assert order_state(pipe, cid)[0] == "accepted", order_state(pipe, cid)
