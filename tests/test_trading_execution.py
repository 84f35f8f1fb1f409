"""The order body and the meaning of every Trader answer, without a Trader."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.trading.execution import (
    DEDUP_SECONDS,
    Disposition,
    FailedBodies,
    NoAnswer,
    SendResult,
    TraderAnswer,
    body_key,
    order_body,
    outcome_of,
    outcome_of_existing,
    result_of_status,
    result_without_answer,
)
from coordinator.trading.signals import Side
from coordinator.trading.validation import OrderPlan, Outcome, Reason
from tests.test_validation import make_signal


def _answer(result: SendResult, code: int | None = None, **kw: object) -> TraderAnswer:
    return TraderAnswer(
        result,
        kw.get("order_id"),  # type: ignore[arg-type]
        code,
        kw.get("error"),  # type: ignore[arg-type]
        0.012,
    )


def _http(code: int, order_id: str | None = None, error: str | None = None) -> TraderAnswer:
    return _answer(result_of_status(code), code, order_id=order_id, error=error)


def _silent(why: NoAnswer, error: str) -> TraderAnswer:
    return _answer(result_without_answer(why), None, error=error)


# Every answer the Trader gives, or the lack of one: what the order becomes, what the
# Ledger's reservation is settled as, and the decision.
ANSWERS = {
    "201": (
        _http(201, order_id="order_0123456789abcdef"),
        Disposition.ACCEPTED,
        "accepted",
        True,
        None,
        Outcome.ACCEPTED,
    ),
    "400": (
        _http(400, error="400: missing quantity"),
        Disposition.REJECTED,
        "rejected",
        False,
        Reason.TRADER_REJECTED,
        Outcome.REJECTED,
    ),
    "422": (
        _http(422, error="422: order not created"),
        Disposition.REJECTED,
        "rejected",
        False,
        Reason.TRADER_REJECTED,
        Outcome.REJECTED,
    ),
    "500": (
        _http(500, error="500: internal error"),
        Disposition.HELD,
        "unknown",
        None,
        Reason.TRADER_ERROR,
        Outcome.UNKNOWN,
    ),
    "read timeout": (
        _silent(NoAnswer.READ_TIMEOUT, "no answer within the read timeout of 5 s"),
        Disposition.UNKNOWN,
        "unknown",
        None,
        Reason.ORDER_UNKNOWN,
        Outcome.UNKNOWN,
    ),
    "connection broken": (
        _silent(NoAnswer.CONNECTION_BROKEN, "ConnectionError: reset by peer"),
        Disposition.UNKNOWN,
        "unknown",
        None,
        Reason.ORDER_UNKNOWN,
        Outcome.UNKNOWN,
    ),
    "connection refused": (
        _silent(NoAnswer.NEVER_CONNECTED, "ConnectionError: refused"),
        Disposition.NOT_SENT,
        "rejected",
        False,
        Reason.TRADER_UNAVAILABLE,
        Outcome.REJECTED,
    ),
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_each_trader_answer_has_one_outcome(case):
    answer, disposition, state, filled, reason, outcome = ANSWERS[case]
    result = outcome_of(answer)
    assert result.disposition is disposition
    assert result.state == state
    assert result.filled is filled
    assert result.reason is reason
    assert result.outcome is outcome
    assert result.passed is (reason is None)
    assert result.detail


def test_only_a_2xx_or_4xx_says_the_trader_works():
    works = {case for case, (answer, *_) in ANSWERS.items() if answer.trader_works}
    assert works == {"201", "400", "422"}


@pytest.mark.parametrize("code", [100, 204, 299, 302, 399, 404, 499, 500, 503, 599])
def test_every_status_code_is_sorted(code):
    result = result_of_status(code)
    if 200 <= code < 300:
        assert result is SendResult.ACCEPTED
    elif 400 <= code < 500:
        assert result is SendResult.REJECTED
    else:
        # Never taken for "not sent": whatever else the Trader says, it may have filled.
        assert result is SendResult.FAILED


def test_only_a_connection_never_made_is_not_sent():
    assert {why: result_without_answer(why) for why in NoAnswer} == {
        NoAnswer.NEVER_CONNECTED: SendResult.NOT_SENT,
        NoAnswer.CONNECTION_BROKEN: SendResult.UNKNOWN,
        NoAnswer.READ_TIMEOUT: SendResult.UNKNOWN,
    }


def test_the_outcome_names_what_was_said():
    assert outcome_of(_http(201, order_id="order_1")).detail == "order order_1 accepted in 12.0 ms"
    assert outcome_of(_http(500)).detail == "5xx"
    refused = _silent(NoAnswer.NEVER_CONNECTED, "refused")
    assert outcome_of(refused).detail == "not sent: refused"
    assert "not sent again" in outcome_of(_silent(NoAnswer.READ_TIMEOUT, "t")).detail


@pytest.mark.parametrize("state", [None, "pending", "sent", "unknown", "accepted"])
def test_an_existing_order_that_may_have_executed_is_counted_filled_and_decided_unknown(state):
    result = outcome_of_existing(state, "exists")
    assert (result.filled, result.outcome, result.reason) == (
        None,
        Outcome.UNKNOWN,
        Reason.ORDER_UNKNOWN,
    )


def test_an_existing_order_stored_rejected_releases_the_room_and_is_decided_rejected():
    result = outcome_of_existing("rejected", "exists")
    assert result.disposition is Disposition.REJECTED
    assert (result.filled, result.outcome, result.reason) == (
        False,
        Outcome.REJECTED,
        Reason.TRADER_ERROR,
    )


def test_the_order_body_is_a_market_order_under_its_client_order_id():
    signal = make_signal(side="SELL", symbol="SOLUSDC", signal_id="db:42", strategy="CONSENSUS")
    plan = OrderPlan(
        symbol="SOLUSDC",
        side=Side.SELL,
        quantity=1.105,
        reference_price=199.91,
        notional=220.9,
        category=None,
    )
    body = order_body(signal, plan, client_order_id="coord-db-42", now=1_700_000_001.2345)
    assert body == {
        "symbol": "SOLUSDC",
        "side": "SELL",
        "quantity": 1.105,
        "price": None,
        "strategy": "CONSENSUS",
        "timestamp": 1_700_000_001_234,
        "metadata": {
            "client_order_id": "coord-db-42",
            "signal_id": "db:42",
            "reference_price": 199.91,
            "category": None,
            "source": "coordinator",
        },
    }
    assert body_key(body) == ("SOLUSDC", "SELL", "1.105", "CONSENSUS")


_BODIES = [
    {"symbol": "SOLUSDC", "side": side, "quantity": quantity, "strategy": "CONSENSUS"}
    for side in ("BUY", "SELL")
    for quantity in (1.105, 0.5)
]
_SENT = [
    _http(201, order_id="order_0123456789abcdef"),
    _http(201),  # no id: nothing to look up
    _http(400, error="400"),
    _http(422, error="422"),
    _http(500, error="500"),
    _silent(NoAnswer.READ_TIMEOUT, "t"),
]


class FailedBodiesMachine(RuleBasedStateMachine):
    """A 201 is looked up exactly when the same body's last 5xx or 422 was within the
    Trader's de-duplication (with its slack), whatever came in between."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies = FailedBodies()
        self.failed_at: dict[tuple[str, str, str, str], float] = {}
        self.now = 0.0

    @rule(seconds=st.floats(min_value=0.0, max_value=30.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(body=st.sampled_from(_BODIES), answer=st.sampled_from(_SENT))
    def answered(self, body: dict[str, object], answer: TraderAnswer) -> None:
        key = body_key(body)
        echo = self.bodies.may_echo(body, answer, self.now)
        failed_at = self.failed_at.get(key)
        expected = (
            answer.result is SendResult.ACCEPTED
            and answer.order_id is not None
            and failed_at is not None
            and self.now - failed_at <= DEDUP_SECONDS + 1.0
        )
        assert echo is expected
        noted = self.bodies.note(body, answer, self.now)
        leaves_entry = answer.result is SendResult.FAILED or answer.status_code == 422
        assert noted is leaves_entry
        if leaves_entry:
            self.failed_at = {k: t for k, t in self.failed_at.items() if self.now - t <= 60.0}
            self.failed_at[key] = self.now

    @precondition(lambda self: bool(self.failed_at))
    @invariant()
    def remembers_no_more_than_it_must(self) -> None:
        assert len(self.bodies) == len(self.failed_at)


TestFailedBodies = FailedBodiesMachine.TestCase
