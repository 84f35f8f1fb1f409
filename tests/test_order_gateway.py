"""The Validator's order gateway alone, on a real PostgreSQL and a paper exchange."""

from __future__ import annotations

import itertools
import time

import pytest

from coordinator.infra.intent_claims import ClaimResult, IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.order_gateway import OrderGateway
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.trader_client import SendResult, TraderClient
from coordinator.messages.pipeline import OrderRecord, SubmitSignal
from coordinator.trading.execution import body_key
from tests.test_validation import make_signal

_ids = itertools.count()


def _message(signal_id: str) -> SubmitSignal:
    return SubmitSignal(
        signal=make_signal(signal_id=signal_id),
        source="test",
        received_at=time.time(),
        received_mono=time.monotonic(),
    )


def _intent(message: SubmitSignal) -> OrderRecord:
    return OrderRecord(
        client_order_id="coord-gw-" + message.signal.signal_id,
        signal_id=message.signal.signal_id,
        symbol=message.signal.symbol,
        side=message.signal.side.value,
        quantity=0.01,
        reference_price=message.signal.price,
        state="pending",
        at=message.received_at,
    )


def test_an_intent_is_claimed_once_through_the_gateway(postgres, tmp_path):
    claims = IntentClaims(postgres.dsn, Journal(tmp_path / "journal.jsonl"), timeout=2)
    gateway = OrderGateway(intents=claims, trader=None)
    assert gateway.warm() == []
    message = _message(f"db:gw-{time.time_ns()}-{next(_ids)}")
    intent = _intent(message)
    assert gateway.claim(message, intent).result is ClaimResult.CLAIMED
    again = gateway.claim(message, intent)
    assert again.result is ClaimResult.EXISTS and again.where == "postgres"


def test_what_was_not_sent_is_remembered_until_forgotten():
    gateway = OrderGateway(intents=None, trader=None)
    assert not gateway.was_not_sent("coord-1")
    assert not gateway.forget("coord-1")
    gateway.not_sent("coord-1")
    assert gateway.was_not_sent("coord-1") and not gateway.was_not_sent("coord-2")
    assert gateway.forget("coord-1")
    assert not gateway.was_not_sent("coord-1") and not gateway.forget("coord-1")


def test_without_a_trader_nothing_is_sent_nor_claimed():
    gateway = OrderGateway(intents=None, trader=None)
    assert not gateway.has_trader
    message = _message("db:nothing")
    with pytest.raises(RuntimeError, match="TRADER_API_URL"):
        gateway.submit({"symbol": "BTCUSDC"}, time.monotonic())
    with pytest.raises(RuntimeError, match="intent store"):
        gateway.claim(message, _intent(message))


def test_a_submitted_order_comes_back_with_its_answer():
    paper = PaperExchange().start()
    paper.set_price("SOLUSDC", 199.91)
    trader = TraderClient(paper.url, connect_timeout=0.5, read_timeout=2)
    gateway = OrderGateway(intents=None, trader=trader)
    body = {"symbol": "SOLUSDC", "side": "BUY", "quantity": 0.5, "strategy": "CONSENSUS"}
    try:
        assert gateway.has_trader and gateway.warm() == []
        answer = gateway.submit(body, time.monotonic())
        assert answer.result is SendResult.ACCEPTED and answer.order_id
        assert body_key(body) == ("SOLUSDC", "BUY", "0.5", "CONSENSUS")
    finally:
        gateway.close()
        paper.stop()
