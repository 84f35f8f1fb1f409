"""The Validator's orders held after a 5xx answer: never dropped, never sent blindly.

RootTrading's Trader answers 5xx (and 422) from inside its own error handling, in rare
paths after Binance filled. So a 5xx is not a rejection: the order is stored as unknown
(held), its reservation kept, and its signal waits here while the Reconciler looks for
it at the Trader. Found: the signal is decided accepted. Not found once its window has
passed (longer than the Trader's 10 s de-duplication): the same intent, same client
order id, is sent again if the signal is still fresh, else decided rejected.

The Trader also answers an identical body within 10 s of a failed attempt (a 5xx or a
422) with a 201 carrying the failed attempt's id, which never executed. A 201 for a body
that failed here within that time is checked with ``GET /order/<id>`` before it counts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from coordinator.actors.names import ActorName
from coordinator.infra.order_gateway import OrderGateway
from coordinator.infra.order_states import HELD_MARK, RESENT_MARK, OrderStates
from coordinator.infra.store import StoreError
from coordinator.infra.trader_client import TraderAnswer
from coordinator.messages.ledger import OrderNotExecuted
from coordinator.messages.pipeline import OrderRecord, RecordOrder, SubmitSignal
from coordinator.messages.reconcile import HeldOrderResolved, ReconcileSoon
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.execution import DEDUP_SECONDS, OrderStatus
from coordinator.trading.routing import client_order_id
from coordinator.trading.signals import Side
from coordinator.trading.validation import CheckResult, OrderPlan, Outcome, Reason
from coordinator.trading.wait_queue import Held, SignalQueue, Waiting

if TYPE_CHECKING:
    from coordinator.actors.validator_orders import SendsOrders

    _Host = SendsOrders
else:
    _Host = object

__all__ = ["DEDUP_SECONDS", "Held", "HoldsOrders"]

logger = logging.getLogger(__name__)

_ACTED_ON_KEPT = 900.0
"""Seconds a held order this Validator sent again or decided is remembered: a repeated
"not found" for it (a second pass read it held before its re-send was marked) is stale."""
_GIVE_UP_AFTER = 30.0
"""Seconds a held signal waits past its window before it is decided unknown (within the
TrailingStop's exit timeout, so a held exit gets a decision before the stop looks)."""


class HoldsOrders(_Host):
    """Mixed into the Validator: it provides ``_waiting``, ``_clock``, ``_gateway``,
    ``_decide``, ``_moved``, ``_store``, ``_settle``, ``_expired``,
    ``_retry_waiting`` and ``context``."""

    _gateway: OrderGateway
    _waiting: SignalQueue[SubmitSignal]
    _resending: set[str]
    _resend_plans: dict[str, OrderPlan]
    _held_window: float
    _acted_on: dict[str, float]
    _states: OrderStates | None

    def _init_held(self, window_after: float) -> None:
        self._resending = set()
        self._resend_plans = {}
        self._held_window = window_after
        self._acted_on = {}
        self._states = None

    def _hold(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        plan: OrderPlan,
        intent: OrderRecord,
        answer: TraderAnswer,
        reservation_id: str | None,
        order_ms: float | None,
    ) -> None:
        order_id = intent.client_order_id
        self._resending.discard(order_id)
        self._gateway.forget(order_id)
        error = answer.error or "5xx"
        held = self._moved(intent, state=OrderStatus.UNKNOWN, error=f"{HELD_MARK}{error}")
        self._store(RecordOrder(order=held))
        now = self._clock.time()
        self._wait_held(message, Held(order_id, plan, checks, reservation_id, error, now, order_ms))
        self._reconcile_soon(order_id, intent.at)

    def _held_before(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        plan: OrderPlan | None = None,
        reservation_id: str | None = None,
    ) -> bool:
        """A signal whose order an earlier incarnation (or process) held after a 5xx, met
        again (re-sent by the intake after a restart): it waits for the reconciliation
        again, instead of being decided unknown. Without a plan of this incarnation, the
        held order's own (the Ledger still holds its room)."""
        order_id = client_order_id(message.signal.signal_id)
        try:
            row = self._order_states().order(order_id)
        except StoreError as exc:
            logger.warning("could not read order %s: %s", order_id, exc)
            return False
        if row is None or not row.held:
            return False
        if plan is None:
            price = row.reference_price or message.signal.price
            plan = OrderPlan(
                symbol=row.symbol,
                side=Side(row.side),
                quantity=row.quantity,
                reference_price=price,
                notional=row.quantity * price,
                category=None,
            )
        error = (row.error or "").removeprefix(HELD_MARK)
        now = self._clock.time()
        logger.warning("order %s was held before a restart; held again", row.client_order_id)
        held = Held(row.client_order_id, plan, checks, reservation_id, error, now, None)
        self._wait_held(message, held)
        self._reconcile_soon(row.client_order_id, row.created_at)
        return True

    def _wait_held(self, message: SubmitSignal, held: Held) -> None:
        """The signal waits for the reconciliation of its order, not for the Trader."""
        self._waiting.add(
            Waiting(message, message.signal, Reason.TRADER_ERROR, held.error, held=held)
        )

    def _order_states(self) -> OrderStates:
        states = self._states
        if states is None:
            states = OrderStates(
                self.context.services.endpoints.database_dsn,
                timeout=2.0,
            )
            self.on_cleanup(states.close, what="order states")
            self._states = states
        return states

    def _reconcile_soon(self, order_id: str, sent_at: float) -> None:
        """The Reconciler looks for an order that just became unknown (or held) now, and
        again once its window has passed."""
        try:
            self.context.directory.tell(
                ActorName.RECONCILER, ReconcileSoon(client_order_id=order_id, sent_at=sent_at)
            )
        except ChildUnavailable as exc:
            logger.error("reconciler did not take %s: %s", order_id, exc)

    def _sent_again_state(self, order_id: str) -> dict[str, Any]:
        """The state written just before a held order is sent again: still unknown, with
        the time of this attempt (the reconciler's window follows it)."""
        if order_id in self._resending:
            return {
                "state": OrderStatus.UNKNOWN,
                "error": f"{RESENT_MARK}sent again after the first failed",
            }
        return {"state": OrderStatus.SENT}

    def _held_resolved(self, message: HeldOrderResolved) -> None:
        waiting = self._waiting.held(message.client_order_id)
        now = self._clock.time()
        for stale in [k for k, t in self._acted_on.items() if now - t > _ACTED_ON_KEPT]:
            del self._acted_on[stale]
        if waiting is None:
            if not message.accepted and self._may_be_resent(message.client_order_id):
                # Sent again (or about to be) by this Validator: that attempt's answer,
                # or the reconciliation of it, says what the exchange did.
                logger.warning(
                    "order %s: a stale 'not executed' ignored, it was sent again",
                    message.client_order_id,
                )
            elif not message.accepted:
                # Nobody waits for it here any more (a restart, or it was decided
                # unknown): record that it did not execute, unless an earlier
                # incarnation sent it again meanwhile (its row no longer reads held).
                self._reject_if_held(message, now)
            return
        held = waiting.held
        assert held is not None
        signal = waiting.message
        intent = OrderRecord(
            client_order_id=held.client_order_id,
            signal_id=signal.signal.signal_id,
            symbol=held.plan.symbol,
            side=held.plan.side.value,
            quantity=held.plan.quantity,
            reference_price=held.plan.reference_price,
            state=OrderStatus.UNKNOWN,
            at=now,
        )
        self._acted_on[held.client_order_id] = now
        if message.accepted:
            self._waiting.remove(waiting)
            self._settle(held.reservation_id, True)
            detail = f"answered {held.error}, then {message.detail} ({message.by})"
            self._decide(
                signal,
                (*held.checks, CheckResult("execution", True, None, detail)),
                plan=held.plan,
                order=self._moved(
                    intent, state=OrderStatus.ACCEPTED, trader_order_id=message.trader_order_id
                ),
                order_ms=held.order_ms,
                outcome=Outcome.ACCEPTED,
            )
        else:
            self._settle(held.reservation_id, False)
            if self._expired(signal):
                self._waiting.remove(waiting)
                self._tell_not_executed(message)
                detail = (
                    f"{held.error}; not executed ({message.detail}); the signal expired: "
                    "not sent again"
                )
                self._decide(
                    signal,
                    (*held.checks, CheckResult("execution", False, Reason.TRADER_ERROR, detail)),
                    plan=held.plan,
                    order=self._moved(intent, state=OrderStatus.REJECTED, error=detail),
                )
            else:
                # The same intent goes again, checked again from the trading state on.
                logger.warning(
                    "order %s was not executed (%s); sent again",
                    held.client_order_id,
                    message.detail,
                )
                waiting.held = None
                waiting.detail = f"{held.error}; not executed, to be sent again"
                self._gateway.not_sent(held.client_order_id)
                self._resending.add(held.client_order_id)
                if held.reservation_id is None:
                    self._resend_plans[signal.signal.signal_id] = held.plan
        self._retry_waiting()

    def _reject_if_held(self, message: HeldOrderResolved, now: float) -> None:
        order_id = message.client_order_id
        try:
            result = self._order_states().reject_held(
                order_id, note=f"not executed: {message.detail}", at=now
            )
        except StoreError as exc:
            logger.warning(
                "order %s stays unknown (could not record it rejected: %s)", order_id, exc
            )
            return
        if not result.resolved:
            logger.warning(
                "order %s is %s, no longer held (sent again?): 'not executed' not recorded",
                order_id,
                result.state,
            )
            return
        self._tell_not_executed(message)

    def _tell_not_executed(self, message: HeldOrderResolved) -> None:
        """A held order not executed that will not be sent again, to the Ledger: after a
        restart the copy laid from the store is all it has of it (the Reconciler leaves
        held orders to their Validator, which may send them again under that copy), and
        a SELL laid on would hide the holding it did not sell for the whole settle
        window, its exits refused ``no_position``."""
        try:
            side = Side(message.side)
        except ValueError:
            return  # the Ledger never counted an order of another side
        try:
            self.context.directory.tell(
                ActorName.LEDGER,
                OrderNotExecuted(
                    client_order_id=message.client_order_id,
                    signal_id=message.signal_id,
                    symbol=message.symbol,
                    side=side,
                ),
            )
        except ChildUnavailable as exc:
            logger.error(
                "the ledger did not take %s as not executed: %s", message.client_order_id, exc
            )

    def _may_be_resent(self, order_id: str) -> bool:
        """Whether this Validator sent the held order again, or will: its re-send waits,
        is in flight, or was answered."""
        return (
            order_id in self._acted_on
            or order_id in self._resending
            or self._gateway.was_not_sent(order_id)
            or any(client_order_id(w.message.signal.signal_id) == order_id for w in self._waiting)
        )

    def _held_too_long(self, waiting: Waiting[SubmitSignal]) -> bool:
        """A held signal the reconciler could not settle in time: decided unknown (the
        order stays unknown, listed for an operator)."""
        held = waiting.held
        now = self._clock.time()
        if held is None or now < held.since + self._held_window + _GIVE_UP_AFTER:
            return False
        self._settle(held.reservation_id, None)
        detail = (
            f"{held.error}; not found nor ruled out at the Trader within "
            f"{now - held.since:.0f} s: outcome unknown, not sent again"
        )
        logger.error("ALERT order %s: %s", held.client_order_id, detail)
        self._decide(
            waiting.message,
            (*held.checks, CheckResult("execution", False, Reason.ORDER_UNKNOWN, detail)),
            plan=held.plan,
            outcome=Outcome.UNKNOWN,
        )
        return True
