"""What an order sends to the Trader and what its answer means, without any I/O.

The Trader's answer to ``POST /order`` is sorted by what the Validator may do next:

accepted   2xx: the Trader took the order
rejected   4xx: a business refusal; the Trader works (not a breaker failure)
failed     5xx: the Trader says it failed, but RootTrading's Trader answers 5xx from
           paths after Binance filled: the order is held until the reconciliation finds
           it or not
not_sent   the connection could not be made: safe to send the same intent later
unknown    sent, no answer in time or the connection broke: it may have been executed;
           it must never be sent again as a new order

The Trader also answers an identical body within ``DEDUP_SECONDS`` of a failed attempt
(a 5xx or a 422) with a 201 carrying the failed attempt's id, which never executed:
``FailedBodies`` remembers the bodies that failed, so such a 201 is looked up first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coordinator.trading.signals import Signal
from coordinator.trading.validation import OrderPlan, Outcome, Reason

__all__ = [
    "DEDUP_SECONDS",
    "FINAL_ORDER_STATES",
    "UNRESOLVED_ORDER_STATES",
    "Disposition",
    "ExecutionOutcome",
    "FailedBodies",
    "NoAnswer",
    "OrderStatus",
    "SendResult",
    "TraderAnswer",
    "body_key",
    "order_body",
    "outcome_of",
    "outcome_of_existing",
    "result_of_status",
    "result_without_answer",
]

DEDUP_SECONDS = 10.0
"""The Trader answers an identical symbol|side|quantity|strategy within this once."""
_FAILED_KEPT = 60.0
"""Seconds a failed body is remembered: far past the Trader's de-duplication."""
_ECHO_SLACK = 1.0
"""Seconds past ``DEDUP_SECONDS`` a 201 is still taken for a possible echo (clock skew
between the two processes, the request's own time)."""


class OrderStatus(StrEnum):
    """An order of ours as ``coordinator_orders`` stores it and the events carry it:
    pending, then sent, then accepted, rejected or unknown; an unknown one may later be
    resolved accepted or rejected. (The Ledger's book has its own ``OrderState``: the
    room it holds for an order.)"""

    PENDING = "pending"
    """Its intent is stored; nothing has left yet."""
    SENT = "sent"
    """``POST /order`` is on its way; no answer yet."""
    ACCEPTED = "accepted"
    """The Trader took it (or the reconciliation found its fill)."""
    REJECTED = "rejected"
    """Refused, never sent, or found not executed."""
    UNKNOWN = "unknown"
    """It may have been executed: never sent again as a new order, reconciled."""


FINAL_ORDER_STATES = frozenset({OrderStatus.ACCEPTED, OrderStatus.REJECTED, OrderStatus.UNKNOWN})
"""The states an attempt ends in (``OrderFinished``)."""
UNRESOLVED_ORDER_STATES = frozenset({OrderStatus.UNKNOWN, OrderStatus.PENDING, OrderStatus.SENT})
"""The states whose outcome at the exchange is not known."""


class SendResult(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


class NoAnswer(StrEnum):
    """Why ``POST /order`` got no HTTP answer."""

    NEVER_CONNECTED = "never_connected"
    """The TCP connection was never made (refused, connect timeout): nothing left."""
    CONNECTION_BROKEN = "connection_broken"
    """The connection broke after it was made: the request may have arrived."""
    READ_TIMEOUT = "read_timeout"
    """Sent, no answer within the read timeout: it may have been executed."""


@dataclass(frozen=True, slots=True)
class TraderAnswer:
    result: SendResult
    order_id: str | None
    status_code: int | None
    error: str | None
    latency: float

    @property
    def trader_works(self) -> bool:
        """For the breaker: a 2xx or 4xx means the Trader is up."""
        return self.result in (SendResult.ACCEPTED, SendResult.REJECTED)


def result_of_status(code: int) -> SendResult:
    """The result of an HTTP answer: only a 2xx took the order, only a 4xx refused it;
    anything else is the Trader failing (which may have filled)."""
    if 200 <= code < 300:
        return SendResult.ACCEPTED
    if 400 <= code < 500:
        return SendResult.REJECTED
    return SendResult.FAILED


def result_without_answer(why: NoAnswer) -> SendResult:
    """Only a connection never made is known not to have left."""
    return SendResult.NOT_SENT if why is NoAnswer.NEVER_CONNECTED else SendResult.UNKNOWN


class Disposition(StrEnum):
    """What the Validator does with an order once the Trader answered (or did not)."""

    ACCEPTED = "accepted"
    """Decided accepted, its reservation settled as filled."""
    REJECTED = "rejected"
    """Decided rejected, its reservation released."""
    HELD = "held"
    """Stored unknown, its reservation kept, until the reconciliation finds it or not."""
    NOT_SENT = "not_sent"
    """Known not to have left: the signal waits for the Trader, then the same intent."""
    UNKNOWN = "unknown"
    """Decided unknown, its reservation counted as filled; never sent again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionOutcome:
    """The meaning of one answer for the order, the Ledger and the decision."""

    disposition: Disposition
    """What the Validator does next."""
    state: OrderStatus
    """The order's state in the store once the answer is known."""
    filled: bool | None
    """What the Ledger's reservation is settled as: None is unknown (counted filled),
    and a held order's reservation is not settled yet."""
    reason: Reason | None
    """The decision's reason code; None when accepted."""
    outcome: Outcome
    """The decision's outcome, once decided."""
    detail: str
    """What the decision (or the wait) says."""

    @property
    def passed(self) -> bool:
        return self.reason is None


# (what the Validator does, the order's state, the reservation settled as, the reason,
# the decision's outcome) for each answer. A 5xx is not a rejection: it may have executed.
_OUTCOMES: dict[
    SendResult, tuple[Disposition, OrderStatus, bool | None, Reason | None, Outcome]
] = {
    SendResult.ACCEPTED: (Disposition.ACCEPTED, OrderStatus.ACCEPTED, True, None, Outcome.ACCEPTED),
    SendResult.REJECTED: (
        Disposition.REJECTED,
        OrderStatus.REJECTED,
        False,
        Reason.TRADER_REJECTED,
        Outcome.REJECTED,
    ),
    SendResult.FAILED: (
        Disposition.HELD,
        OrderStatus.UNKNOWN,
        None,
        Reason.TRADER_ERROR,
        Outcome.UNKNOWN,
    ),
    SendResult.NOT_SENT: (
        Disposition.NOT_SENT,
        OrderStatus.REJECTED,
        False,
        Reason.TRADER_UNAVAILABLE,
        Outcome.REJECTED,
    ),
    SendResult.UNKNOWN: (
        Disposition.UNKNOWN,
        OrderStatus.UNKNOWN,
        None,
        Reason.ORDER_UNKNOWN,
        Outcome.UNKNOWN,
    ),
}


def outcome_of(answer: TraderAnswer) -> ExecutionOutcome:
    """The outcome of the Trader's answer, for every answer."""
    disposition, state, filled, reason, outcome = _OUTCOMES[answer.result]
    return ExecutionOutcome(
        disposition=disposition,
        state=state,
        filled=filled,
        reason=reason,
        outcome=outcome,
        detail=_detail(answer),
    )


def outcome_of_existing(state: str | None, detail: str) -> ExecutionOutcome:
    """An order for the signal exists already (or may): it is never sent again, and
    what this attempt's reservation is settled as follows the order's stored ``state``
    (None: none read). A ``rejected`` one (refused, found not executed, or never sent)
    cannot have executed: the reservation is released and the signal decided rejected,
    so that a stop's next attempt (which reads its earlier orders first) may go; counted
    as filled, a SELL would be laid over the view and hide the holding it did not sell,
    its exits refused ``no_position`` for the whole settle window. Any other state, or
    none read, may have executed: counted as filled, decided unknown."""
    if state == OrderStatus.REJECTED:
        return ExecutionOutcome(
            disposition=Disposition.REJECTED,
            state=OrderStatus.REJECTED,
            filled=False,
            reason=Reason.TRADER_ERROR,
            outcome=Outcome.REJECTED,
            detail=f"{detail}; it did not execute: not sent again",
        )
    try:
        stored = OrderStatus(state) if state is not None else OrderStatus.UNKNOWN
    except ValueError:
        stored = OrderStatus.UNKNOWN
    return ExecutionOutcome(
        disposition=Disposition.UNKNOWN,
        state=stored,
        filled=None,
        reason=Reason.ORDER_UNKNOWN,
        outcome=Outcome.UNKNOWN,
        detail=f"{detail}; not sent again",
    )


def _detail(answer: TraderAnswer) -> str:
    match answer.result:
        case SendResult.ACCEPTED:
            return f"order {answer.order_id} accepted in {answer.latency * 1000:.1f} ms"
        case SendResult.REJECTED:
            return answer.error or ""
        case SendResult.FAILED:
            return answer.error or "5xx"
        case SendResult.NOT_SENT:
            return f"not sent: {answer.error}"
        case _:
            return f"sent, outcome unknown ({answer.error}); not sent again"


def order_body(
    signal: Signal, plan: OrderPlan, *, client_order_id: str, now: float
) -> dict[str, Any]:
    """The body of ``POST /order`` for a planned order (a market order: no price)."""
    return {
        "symbol": plan.symbol,
        "side": plan.side.value,
        "quantity": plan.quantity,
        "price": None,
        "strategy": signal.strategy,
        "timestamp": int(now * 1000),
        "metadata": {
            "client_order_id": client_order_id,
            "signal_id": signal.signal_id,
            "reference_price": plan.reference_price,
            "category": plan.category,
            "source": "coordinator",
        },
    }


def body_key(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """What the Trader de-duplicates on (the quantity as its ``str``)."""
    return (
        str(body.get("symbol")),
        str(body.get("side")),
        str(body.get("quantity")),
        str(body.get("strategy")),
    )


class FailedBodies:
    """The bodies whose last attempt failed (a 5xx or a 422), by monotonic time sent."""

    def __init__(self) -> None:
        self._failed: dict[tuple[str, str, str, str], float] = {}

    def __len__(self) -> int:
        return len(self._failed)

    def note(self, body: dict[str, Any], answer: TraderAnswer, sent_mono: float) -> bool:
        """Remember the body if its answer leaves the Trader's de-duplication entry behind;
        whether it did. A 422 leaves it as a 5xx does (it is written before the executor
        runs)."""
        if answer.result is not SendResult.FAILED and answer.status_code != 422:
            return False
        for stale in [k for k, t in self._failed.items() if sent_mono - t > _FAILED_KEPT]:
            del self._failed[stale]
        self._failed[body_key(body)] = sent_mono
        return True

    def may_echo(self, body: dict[str, Any], answer: TraderAnswer, sent_mono: float) -> bool:
        """Whether a 201 for this body may be the de-duplicated echo of a failed attempt
        (so it must be looked up before it counts)."""
        if answer.result is not SendResult.ACCEPTED or answer.order_id is None:
            return False
        failed_at = self._failed.get(body_key(body))
        return failed_at is not None and sent_mono - failed_at <= DEDUP_SECONDS + _ECHO_SLACK
