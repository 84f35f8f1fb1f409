"""The Validator's order path, once the Ledger has reserved the order's room: the
intent claimed (stored before anything is sent, never sent twice), ``POST /order``, and
the outcome of the Trader's answer (accepted, refused, not sent, held after a 5xx, or
unknown), settled with the Ledger."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from coordinator.actors.names import ActorName
from coordinator.infra.intent_claims import Claim, ClaimResult
from coordinator.infra.order_gateway import OrderGateway
from coordinator.infra.order_states import OrderStates
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import (
    OrderRecord,
    RecordOrder,
    ReleaseSignal,
    Settle,
    SubmitSignal,
    TraderCallOutcome,
)
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.execution import (
    Disposition,
    OrderStatus,
    order_body,
    outcome_of,
    outcome_of_existing,
)
from coordinator.trading.freshness import exit_price_check
from coordinator.trading.routing import client_order_id
from coordinator.trading.validation import CheckResult, MarketQuote, OrderPlan, Reason

if TYPE_CHECKING:
    from coordinator.actors.validator_waiting import WaitQueue
    from coordinator.clock import Clock
    from coordinator.infra.trader_client import TraderAnswer
    from coordinator.runtime import Services

    _Host = WaitQueue
else:
    _Host = object

__all__ = ["SendsOrders"]

# The Validator's own logger: these are its lines.
logger = logging.getLogger("coordinator.actors.validator")


class SendsOrders(_Host):
    """Part of the Validator, which sets these attributes up and provides ``_decide``,
    ``_moved``, ``_store``, ``_expired``, ``_wait``, ``context`` and (from its other
    parts) the holding of orders after a 5xx."""

    _clock: Clock
    _gateway: OrderGateway
    _prices: dict[str, MarketQuote]
    _stop_price_max_age: float
    _reserved: dict[str, OrderPlan]
    _sending: bool
    _submitted: bool
    _trader_failed: bool
    """The last call this Validator made to the Trader failed."""
    _order_states: Callable[[], OrderStates]
    _services: Services

    if TYPE_CHECKING:

        def _moved(self, order: OrderRecord, **changes: Any) -> OrderRecord: ...

        def _store(self, message: Any) -> None: ...

        def _flush_store(self) -> None: ...

        def _hold(
            self,
            message: SubmitSignal,
            checks: tuple[CheckResult, ...],
            plan: OrderPlan,
            intent: OrderRecord,
            answer: TraderAnswer,
            reservation_id: str | None,
            order_ms: float | None,
        ) -> None: ...

        def _held_before(
            self,
            message: SubmitSignal,
            checks: tuple[CheckResult, ...],
            plan: OrderPlan | None = None,
            reservation_id: str | None = None,
        ) -> bool: ...

        def _reconcile_soon(self, order_id: str, sent_at: float) -> None: ...

        def _sent_again_state(self, order_id: str) -> dict[str, Any]: ...

    def _execute(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        plan: OrderPlan,
        reservation_id: str | None,
    ) -> None:
        signal = message.signal
        intent = self._intent(message, plan)
        order_id = intent.client_order_id
        if self._exit_no_longer_due(message, checks, plan, reservation_id):
            return
        self._sending = True
        if not self._gateway.was_not_sent(order_id) and not self._gateway.take_claimed_ahead(
            order_id
        ):
            claim = self._gateway.claim(message, intent)
            if claim.result is ClaimResult.UNAVAILABLE:
                self._sending = False
                self._claim_unavailable(message, checks, plan, reservation_id, claim)
                return
            if claim.result is ClaimResult.FENCED:
                # A stale leader's exit: nothing stored, nothing sent. No decision either:
                # the leader now may ask for this very exit id, and its decision must be
                # the first one stored.
                self._sending = False
                self._settle(reservation_id, False)
                if message.exit is None:
                    # The partition's new owner takes its stream entry over and decides.
                    self._tell_intake(ReleaseSignal(signal_id=signal.signal_id))
                logger.warning(
                    "%s %s dropped: %s (%s)",
                    "order" if message.exit is None else "exit",
                    signal.signal_id,
                    "its symbol's partition is no longer held here"
                    if message.exit is None
                    else "its leader no longer leads",
                    claim.detail,
                )
                return
            if claim.result is not ClaimResult.CLAIMED:
                if self._held_before(message, checks, plan, reservation_id):
                    return  # held by an earlier incarnation: it waits here again
                # An order for this signal exists: it may have been sent. Never again.
                # Only PostgreSQL's row tells what became of it (the journal's may not
                # be written there yet).
                result = outcome_of_existing(
                    self._stored_state(order_id) if claim.where == "postgres" else None,
                    f"an order {order_id} for this signal already exists or may "
                    f"({claim.where}: {claim.detail})",
                )
                self._settle(reservation_id, result.filled)
                execution = CheckResult("execution", False, result.reason, result.detail)
                self._decide(message, (*checks, execution), plan=plan, outcome=result.outcome)
                return
        if not self._gateway.has_trader:  # HALTED prevents it; kept for safety
            self._settle(reservation_id, False)
            self._decide(message, (*checks, _trader_missing()), plan=plan)
            return
        body = order_body(signal, plan, client_order_id=order_id, now=self._clock.time())
        self._store(RecordOrder(order=self._moved(intent, **self._sent_again_state(order_id))))
        self._flush_store()
        sent_mono = self._clock.monotonic()
        self._submitted = True
        answer = self._gateway.submit(body, sent_mono)
        self._tell_health(answer.trader_works, answer.error)
        order_ms = (sent_mono - message.received_mono) * 1000.0
        result = outcome_of(answer)
        match result.disposition:
            case Disposition.NOT_SENT:
                # Known not to have left: the same intent may go when the Trader is back.
                self._gateway.not_sent(order_id)
                self._settle(reservation_id, result.filled)
                if not self._expired(message):
                    self._wait(message, Reason.TRADER_UNAVAILABLE, answer.error or "not sent")
                    return
                self._gateway.forget(order_id)
                order = self._moved(intent, state=result.state, error=result.detail)
                execution = CheckResult("execution", False, result.reason, result.detail)
                self._decide(message, (*checks, execution), plan=plan, order=order)
            case Disposition.HELD:
                self._hold(message, checks, plan, intent, answer, reservation_id, order_ms)
            case _:
                self._gateway.forget(order_id)
                order = self._moved(
                    intent, state=result.state, trader_order_id=answer.order_id, error=answer.error
                )
                self._settle(reservation_id, result.filled)
                execution = CheckResult("execution", result.passed, result.reason, result.detail)
                self._decide(
                    message,
                    (*checks, execution),
                    plan=plan,
                    order=order,
                    order_ms=order_ms,
                    outcome=result.outcome,
                )
                if result.disposition is Disposition.UNKNOWN:
                    self._reconcile_soon(order_id, intent.at)

    def _intent(self, message: SubmitSignal, plan: OrderPlan) -> OrderRecord:
        """The order's intent, as claimed before it is sent."""
        signal_id = message.signal.signal_id
        return OrderRecord(
            client_order_id=client_order_id(signal_id),
            signal_id=signal_id,
            symbol=plan.symbol,
            side=plan.side.value,
            quantity=plan.quantity,
            reference_price=plan.reference_price,
            state=OrderStatus.PENDING,
            at=self._clock.time(),
        )

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

    def _stored_state(self, order_id: str) -> str | None:
        """The stored state of an order; None when there is none or it cannot be read."""
        try:
            row = self._order_states().order(order_id)
        except StoreError as exc:
            logger.warning("could not read order %s: %s", order_id, exc)
            return None
        return None if row is None else row.state

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
                ActorName.LEDGER,
                Settle(
                    reservation_id=reservation_id,
                    filled=filled,
                    symbol=plan.symbol,
                    side=plan.side,
                    at=self._clock.time(),
                ),
            )
        except ChildUnavailable as exc:
            logger.error("ledger did not take a settlement: %s", exc)

    def _partition_lost(self, message: SubmitSignal) -> bool:
        """Whether a signal read under its symbol partition's lease is no longer this
        instance's to decide (the lease lapsed or changed hands since: a process paused
        with signals waiting here, say). It is then left to the partition's owner,
        which takes its stream entry over; deciding it here, even a rejection, would
        decide it twice."""
        ownership = self._services.ownership
        if message.fence is None or message.exit is not None or ownership is None:
            return False
        signal = message.signal
        if ownership.token(ownership.partition_of(signal.symbol)) == message.fence:
            return False
        self._tell_intake(ReleaseSignal(signal_id=signal.signal_id))
        logger.warning(
            "%s left to the owner of its symbol's partition: the lease it was read under "
            "is no longer held here",
            signal.signal_id,
        )
        return True

    def _tell_intake(self, message: ReleaseSignal) -> None:
        try:
            self.context.directory.tell(ActorName.SIGNAL_INTAKE, message)
        except ChildUnavailable as exc:
            # Its in-flight entry goes with it; the stream entry stays for the owner.
            logger.error("intake did not take %s: %s", type(message).__name__, exc)

    def _tell_health(self, ok: bool, error: str | None) -> None:
        # A success on a breaker with nothing counted changes nothing: not told (a
        # hand-off per order saved). This Validator's own failure told before is
        # followed by its success whatever the flag says, so the two arrive in order.
        failed_before, self._trader_failed = self._trader_failed, not ok
        if ok and not failed_before and self._services.trader_calls_clean.is_set():
            return
        with contextlib.suppress(ChildUnavailable):
            self.context.directory.tell(
                ActorName.SERVICE_HEALTH, TraderCallOutcome(ok=ok, error=error)
            )


def _trader_missing() -> CheckResult:
    return CheckResult("execution", False, Reason.TRADER_UNAVAILABLE, "TRADER_API_URL is not set")
