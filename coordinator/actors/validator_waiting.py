"""The Validator's wait queue (``coordinator.trading.wait_queue``), bound to its
decisions: a signal that waited past ``signal_timeout`` is decided with why it waited;
a held one is decided by the holding of orders; the others are checked again from the
trading state on once the Trader answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.messages.pipeline import SubmitSignal
from coordinator.trading.trading_state import TradingStatus
from coordinator.trading.validation import (
    CheckResult,
    Reason,
    waiting_for_portfolio,
    waiting_for_trader,
)
from coordinator.trading.wait_queue import SignalQueue, Waiting, expired

if TYPE_CHECKING:
    from coordinator.clock import Clock
    from coordinator.messages.pipeline import OrderRecord
    from coordinator.supervisor.child import ChildActor
    from coordinator.trading.validation import OrderPlan, Outcome

    _Host = ChildActor
else:
    _Host = object

__all__ = ["WaitQueue"]


class WaitQueue(_Host):
    """Part of the Validator, which sets these attributes up and provides ``_decide``,
    ``_process`` and ``_held_too_long``."""

    _waiting: SignalQueue[SubmitSignal]
    _clock: Clock
    _timeout: float
    _status: TradingStatus

    if TYPE_CHECKING:

        def _decide(
            self,
            message: SubmitSignal,
            checks: tuple[CheckResult, ...],
            *,
            plan: OrderPlan | None = None,
            order: OrderRecord | None = None,
            order_ms: float | None = None,
            outcome: Outcome | None = None,
            shadow: bool = False,
        ) -> None: ...

        def _process(self, message: SubmitSignal) -> None: ...

        def _held_too_long(self, waiting: Waiting[SubmitSignal]) -> bool: ...

    def _expired(self, message: SubmitSignal) -> bool:
        return expired(message.signal, self._clock.time(), self._timeout)

    def _wait(self, message: SubmitSignal, why: Reason, detail: str) -> None:
        self._waiting.add(Waiting(message, message.signal, why, detail))

    def _expire_waiting(self) -> None:
        self._waiting.expire(
            self._clock.time(),
            self._timeout,
            timed_out=self._timed_out,
            held_too_long=self._held_too_long,
        )

    def _timed_out(self, waiting: Waiting[SubmitSignal]) -> None:
        failure = CheckResult(
            "execution",
            False,
            waiting.why,
            f"waited until signal_timeout ({self._timeout:g} s after the signal): {waiting.detail}",
        )
        self._decide(waiting.message, (*waiting.message.checks, failure))

    def _retry_waiting(self) -> None:
        if not len(self._waiting) or waiting_for_trader(self._status):
            return
        self._waiting.retry(self._retry_one)

    def _retry_one(self, waiting: Waiting[SubmitSignal]) -> None:
        message = waiting.message
        if waiting_for_portfolio(self._status, message.signal.side) and not self._expired(message):
            # The Trader is back, the Portfolio not yet: it waits on, as it waited.
            self._waiting.add(waiting)
            return
        self._process(message)

    def _holds(self, reservation_id: str) -> bool:
        return self._waiting.holds(reservation_id)
