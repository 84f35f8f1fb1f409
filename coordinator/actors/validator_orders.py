"""The Validator's order path, once the Ledger has reserved the order's room: the
intent claimed (stored before anything is sent, never sent twice), ``POST /order``, and
the outcome of the Trader's answer (accepted, refused, not sent, held after a 5xx, or
unknown), settled with the Ledger."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from coordinator.infra.intent_claims import Claim, ClaimResult, IntentClaims
from coordinator.infra.trader_client import SendResult, TraderAnswer, TraderClient
from coordinator.messages.pipeline import (
    OrderRecord,
    RecordOrder,
    Settle,
    SubmitSignal,
    TraderCallOutcome,
)
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.freshness import exit_price_check
from coordinator.trading.routing import client_order_id
from coordinator.trading.validation import CheckResult, MarketQuote, OrderPlan, Outcome, Reason

__all__ = ["SendsOrders"]

# The Validator's own logger: these are its lines.
logger = logging.getLogger("coordinator.actors.validator")


class SendsOrders:
    """Part of the Validator, which sets these attributes up and provides ``_decide``,
    ``_moved``, ``_store``, ``_expired``, ``_wait``, ``context`` and (from its other
    parts) the holding of orders after a 5xx."""

    _clock: Any
    _trader: TraderClient | None
    _intents: IntentClaims
    _prices: dict[str, MarketQuote]
    _stop_price_max_age: float
    _unsent: set[str]
    _reserved: dict[str, OrderPlan]
    _sending: bool
    _submitted: bool

    def _execute(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        plan: OrderPlan,
        reservation_id: str | None,
    ) -> None:
        signal = message.signal
        order_id = client_order_id(signal.signal_id)
        intent = OrderRecord(
            client_order_id=order_id,
            signal_id=signal.signal_id,
            symbol=plan.symbol,
            side=plan.side.value,
            quantity=plan.quantity,
            reference_price=plan.reference_price,
            state="pending",
            at=self._clock.time(),
        )
        if self._exit_no_longer_due(message, checks, plan, reservation_id):
            return
        self._sending = True
        if order_id not in self._unsent:
            claim = self._claim(message, intent)
            if claim.result is ClaimResult.UNAVAILABLE:
                self._sending = False
                self._claim_unavailable(message, checks, plan, reservation_id, claim)
                return
            if claim.result is not ClaimResult.CLAIMED:
                if self._held_before(message, checks, plan, reservation_id):
                    return  # held by an earlier incarnation: it waits here again
                # An order for this signal exists: it may have been sent. Never again.
                self._settle(reservation_id, None)
                execution = CheckResult(
                    "execution",
                    False,
                    Reason.ORDER_UNKNOWN,
                    f"an order {order_id} for this signal already exists or may "
                    f"({claim.where}: {claim.detail}); not sent again",
                )
                self._decide(message, (*checks, execution), plan=plan, outcome=Outcome.UNKNOWN)
                return
        if self._trader is None:  # HALTED prevents it; kept for safety
            self._settle(reservation_id, False)
            self._decide(message, (*checks, _trader_missing()), plan=plan)
            return
        body = {
            "symbol": plan.symbol,
            "side": plan.side.value,
            "quantity": plan.quantity,
            "price": None,
            "strategy": signal.strategy,
            "timestamp": int(self._clock.time() * 1000),
            "metadata": {
                "client_order_id": order_id,
                "signal_id": signal.signal_id,
                "reference_price": plan.reference_price,
                "category": plan.category,
                "source": "coordinator",
            },
        }
        self._store(RecordOrder(order=self._moved(intent, **self._sent_again_state(order_id))))
        sent_mono = self._clock.monotonic()
        self._submitted = True
        answer = self._verified(body, self._trader.submit(body), sent_mono)
        self._tell_health(answer.trader_works, answer.error)
        order_ms = (sent_mono - message.received_mono) * 1000.0
        match answer.result:
            case SendResult.NOT_SENT:
                # Known not to have left: the same intent may go when the Trader is back.
                self._unsent.add(order_id)
                self._settle(reservation_id, False)
                if not self._expired(message):
                    self._wait(message, Reason.TRADER_UNAVAILABLE, answer.error or "not sent")
                    return
                self._unsent.discard(order_id)
                order = self._moved(intent, state="rejected", error=f"not sent: {answer.error}")
                execution = CheckResult(
                    "execution", False, Reason.TRADER_UNAVAILABLE, order.error or ""
                )
                self._decide(message, (*checks, execution), plan=plan, order=order)
            case SendResult.FAILED:
                # Not a rejection: it may have executed. Held until it is found or not.
                self._hold(message, checks, plan, intent, answer, reservation_id, order_ms)
            case _:
                self._unsent.discard(order_id)
                state, filled, reason, outcome, detail = _sent_outcome(answer)
                order = self._moved(
                    intent, state=state, trader_order_id=answer.order_id, error=answer.error
                )
                self._settle(reservation_id, filled)
                execution = CheckResult("execution", reason is None, reason, detail)
                self._decide(
                    message,
                    (*checks, execution),
                    plan=plan,
                    order=order,
                    order_ms=order_ms,
                    outcome=outcome,
                )
                if state == "unknown":
                    self._reconcile_soon(order_id, intent.at)

    def _exit_no_longer_due(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        plan: OrderPlan,
        reservation_id: str | None,
    ) -> bool:
        """A stop's exit right before it is claimed and sent, however long it queued:
        its deciding price (ours if newer) must be fresh and still at or under the
        stop. If not, it is rejected (not sent) and the TrailingStop tries again."""
        if message.exit is None:
            return False
        check = exit_price_check(
            message.exit,
            self._prices.get(message.signal.symbol),
            now=self._clock.time(),
            max_age=self._stop_price_max_age,
        )
        if check.passed:
            return False
        self._settle(reservation_id, False)
        self._decide(message, (*checks, check), plan=plan)
        return True

    def _claim(self, message: SubmitSignal, intent: OrderRecord) -> Claim:
        """The intent gate. The journal may stand in for PostgreSQL only for a signal
        first seen by this process after PostgreSQL last answered: a re-delivered one,
        or one seen before (its price's time, for an exit), may be there already."""
        first_seen: float | None = None
        if not message.redelivered:
            first_seen = message.received_at
            if message.exit is not None:
                first_seen = min(first_seen, message.exit.price_at)
        return self._intents.claim(_intent_dict(intent), first_seen=first_seen)

    def _claim_unavailable(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        plan: OrderPlan,
        reservation_id: str | None,
        claim: Claim,
    ) -> None:
        """Nothing stored, nothing sent: the signal waits for PostgreSQL (checked again
        from step 4 on each tick) until signal_timeout, then ``store_unavailable``."""
        self._settle(reservation_id, False)
        if not self._expired(message):
            self._wait(message, Reason.STORE_UNAVAILABLE, claim.detail)
            return
        execution = CheckResult("execution", False, Reason.STORE_UNAVAILABLE, claim.detail)
        self._decide(message, (*checks, execution), plan=plan)

    def _settle(self, reservation_id: str | None, filled: bool | None) -> None:
        if reservation_id is None:
            return
        plan = self._reserved.pop(reservation_id, None)
        if plan is None:
            return  # settled already
        try:
            self.context.directory.tell(
                "ledger",
                Settle(
                    reservation_id=reservation_id,
                    filled=filled,
                    symbol=plan.symbol,
                    side=plan.side,
                ),
            )
        except ChildUnavailable as exc:
            logger.error("ledger did not take a settlement: %s", exc)

    def _tell_health(self, ok: bool, error: str | None) -> None:
        with contextlib.suppress(ChildUnavailable):
            self.context.directory.tell("service_health", TraderCallOutcome(ok=ok, error=error))


def _sent_outcome(
    answer: TraderAnswer,
) -> tuple[str, bool | None, Reason | None, Outcome, str]:
    """(order state, filled for the Ledger, reason, decision outcome, detail) of an
    order that left: accepted, refused (4xx), failed (5xx), or unknown."""
    match answer.result:
        case SendResult.ACCEPTED:
            detail = f"order {answer.order_id} accepted in {answer.latency * 1000:.1f} ms"
            return "accepted", True, None, Outcome.ACCEPTED, detail
        case SendResult.REJECTED:
            return "rejected", False, Reason.TRADER_REJECTED, Outcome.REJECTED, answer.error or ""
        case SendResult.FAILED:
            return "rejected", False, Reason.TRADER_ERROR, Outcome.REJECTED, answer.error or ""
        case _:
            detail = f"sent, outcome unknown ({answer.error}); not sent again"
            return "unknown", None, Reason.ORDER_UNKNOWN, Outcome.UNKNOWN, detail


def _intent_dict(order: OrderRecord) -> dict[str, Any]:
    return {name: getattr(order, name) for name in OrderRecord.__slots__}


def _trader_missing() -> CheckResult:
    return CheckResult("execution", False, Reason.TRADER_UNAVAILABLE, "TRADER_API_URL is not set")
