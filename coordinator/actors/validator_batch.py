"""The Validator's signals taken together: those waiting behind the one it takes in
its inbox are checked in order, reserved with one ask of the Ledger, then sent in order.

Under load, waking the Ledger and waking back for its answer cost more than the
checks themselves, once per order. A ``ReserveMany`` pays it once for the signals that
waited together; the Ledger checks and holds each as if it had been asked alone, in the
same order, so the room each one finds is the same. Only plain signals of distinct
symbols go together (a symbol's second signal is checked once its first has been
settled, as when they come alone), and only while nothing else is in between: a change
of the trading state told after a signal is still seen by the signals behind it.

A signal taken out of the inbox is not lost if the Validator crashes or is replaced:
those not begun go to the next incarnation first (``ChildActor.begin_next``), and the
reservations made for them are released, since their orders were not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pykka

from coordinator.actors.names import ActorName
from coordinator.infra.order_gateway import OrderGateway
from coordinator.messages.pipeline import (
    OrderRecord,
    Reservation,
    Reserve,
    ReserveMany,
    SubmitSignal,
)
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.validation import CheckResult, OrderPlan

if TYPE_CHECKING:
    from coordinator.supervisor.child import ActorContext

__all__ = ["BATCH_LIMIT", "LEDGER_UNAVAILABLE", "RESERVE_TIMEOUT", "ReservesTogether"]

BATCH_LIMIT = 16
"""Signals reserved together at most. Each waits for the reservation of all, about
0.1 ms of the Ledger's time apiece, before its order is sent."""

RESERVE_TIMEOUT = 2.0
"""Seconds a Validator waits for the Ledger's answer; each Reserve carries the matching
deadline, past which the Ledger makes no reservation."""

LEDGER_UNAVAILABLE = (ChildUnavailable, pykka.Timeout, pykka.ActorDeadError)
"""What a Reserve may meet while the Ledger is down or being restarted (one that
crashes with the ask in its inbox answers it ActorDeadError): the signal waits."""

T = TypeVar("T")

# The Validator's own logger: these are its lines.
logger = logging.getLogger("coordinator.actors.validator")

Pending = tuple[SubmitSignal, tuple[CheckResult, ...]]
"""A signal that passed the Validator's own checks, and those checks."""


class ReservesTogether:
    """Part of the Validator, which provides the steps of one signal's path."""

    context: ActorContext
    _enabled: bool
    _gateway: OrderGateway
    _reserved: dict[str, OrderPlan]
    _unbegun: dict[str, OrderPlan]
    """Reservations made for signals of a batch whose path has not gone on yet."""

    if TYPE_CHECKING:

        def take_leading(self, accept: Callable[[Any], bool], limit: int) -> list[Any]: ...

        def begin_next(self, message: Any, rest: tuple[Any, ...]) -> bool: ...

        def end_of_batch(self) -> None: ...

        def _skipped(self, message: SubmitSignal) -> bool: ...

        def _partition_lost(self, message: SubmitSignal) -> bool: ...

        def _guarded(
            self, message: SubmitSignal, step: Callable[..., T], *args: Any
        ) -> T | None: ...

        def _internal_error(
            self, message: SubmitSignal, exc: Exception, *, sending: bool
        ) -> None: ...

        def _checks_before_reserve(
            self, message: SubmitSignal
        ) -> tuple[CheckResult, ...] | None: ...

        def _reserve_of(self, message: SubmitSignal) -> Reserve: ...

        def _ledger_unavailable(
            self, message: SubmitSignal, done: tuple[CheckResult, ...], exc: Exception
        ) -> None: ...

        def _with_reservation(
            self, message: SubmitSignal, done: tuple[CheckResult, ...], reservation: Reservation
        ) -> None: ...

        def _settle(self, reservation_id: str | None, filled: bool | None) -> None: ...

        def _intent(self, message: SubmitSignal, plan: OrderPlan) -> OrderRecord: ...

    def _taken_with(self, first: SubmitSignal) -> list[SubmitSignal]:
        """``first`` and the plain signals of other symbols right behind it."""
        if first.exit is not None or self.context.unhandled:
            # A stop's exit goes alone (it is checked against the freshest price when it
            # is sent). Inside a batch handed over, the rest of that batch comes first.
            return [first]
        symbols = {first.signal.symbol}

        def accept(message: Any) -> bool:
            if type(message) is not SubmitSignal or message.exit is not None:
                return False
            if message.signal.symbol in symbols:
                return False
            symbols.add(message.signal.symbol)
            return True

        return [first, *self.take_leading(accept, BATCH_LIMIT - 1)]

    def _on_signals(self, batch: list[SubmitSignal]) -> None:
        pending: list[Pending] = []
        waiting: list[SubmitSignal] = []  # pending's messages, for the hand-over
        for at, message in enumerate(batch):
            if not self.begin_next(message, (*waiting, *batch[at + 1 :])):
                return
            if self._skipped(message) or self._partition_lost(message):
                continue
            done = self._guarded(message, self._checks_before_reserve, message)
            if done is not None:
                pending.append((message, done))
                waiting.append(message)
        if pending and not self._reserve_and_send(pending):
            return  # replaced: what was not begun is the next incarnation's
        self.end_of_batch()

    def _reserve_and_send(self, pending: list[Pending]) -> bool:
        """False when this incarnation was replaced meanwhile and stops."""
        # Sliced for each message begun: what is not begun yet goes to the next
        # incarnation if this one crashes or is replaced.
        messages = tuple(m for m, _ in pending)
        if not self.begin_next(None, messages):
            return False
        try:
            reservations: tuple[Reservation, ...] = self.context.directory.ask(
                ActorName.LEDGER,
                ReserveMany(reserves=tuple(self._reserve_of(m) for m, _ in pending)),
                timeout=RESERVE_TIMEOUT,
            )
        except LEDGER_UNAVAILABLE as exc:
            for at, (message, done) in enumerate(pending):
                if not self.begin_next(message, messages[at + 1 :]):
                    return False
                self._guarded(message, self._ledger_unavailable, message, done, exc)
            return True
        except Exception as exc:
            # The ask itself failed (the Ledger answers a bug on one Reserve as that
            # one's refusal). None of their orders has left, whatever a signal before
            # them did.
            for message, _ in pending:
                self._internal_error(message, exc, sending=False)
            return True
        self._unbegun = {
            r.reservation_id: r.plan
            for r in reservations
            if r.reservation_id is not None and r.plan is not None
        }
        self._reserved.update(self._unbegun)
        self._claim_ahead(pending, reservations)
        for at, ((message, done), reservation) in enumerate(
            zip(pending, reservations, strict=True)
        ):
            if not self.begin_next(message, messages[at + 1 :]):
                self._release_unbegun()
                return False
            if reservation.reservation_id is not None:
                self._unbegun.pop(reservation.reservation_id, None)
            self._guarded(message, self._with_reservation, message, done, reservation)
        return True

    def _claim_ahead(self, pending: list[Pending], reservations: tuple[Reservation, ...]) -> None:
        """The intents of the orders about to be sent, claimed in one durable commit
        rather than one each. Only where nothing else decides first: a plain signal
        with its room reserved, read under no partition lease (an instance that loses a
        partition between the claim and the send would leave an intent its new owner
        must take for an order that may have left). One not claimed here is claimed at
        its send, as a lone signal's is."""
        if not self._enabled or not self._gateway.has_trader:
            return
        orders: list[tuple[SubmitSignal, OrderRecord]] = []
        for (message, _), reservation in zip(pending, reservations, strict=True):
            if (
                reservation.plan is None
                or reservation.reservation_id is None
                or message.exit is not None
                or message.fence is not None
            ):
                continue
            intent = self._intent(message, reservation.plan)
            if not self._gateway.was_not_sent(intent.client_order_id):
                orders.append((message, intent))
        if len(orders) < 2:
            return
        try:
            self._gateway.claim_ahead(orders)
        except Exception:
            logger.exception("intents of %d orders not claimed ahead", len(orders))

    def _release_unbegun(self) -> None:
        """The reservations of signals whose path did not go on here: not sent, so the
        room goes back (the next incarnation reserves for them again)."""
        unbegun, self._unbegun = self._unbegun, {}
        for reservation_id in unbegun:
            self._settle(reservation_id, False)
