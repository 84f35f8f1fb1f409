"""The Validator's wait queue: signals waiting for the Trader, for PostgreSQL or for
the Ledger (until ``signal_timeout`` after their timestamp), and signals held after a 5xx
(until the reconciliation finds their order or not). A symbol's signals wait in order:
one behind another never overtakes it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from coordinator.actors.held_orders import Held
from coordinator.messages.pipeline import SubmitSignal
from coordinator.trading.trading_state import TradingStatus
from coordinator.trading.validation import CheckResult, Reason, waiting_for_trader

__all__ = ["WaitQueue"]


@dataclass
class _Waiting:
    message: SubmitSignal
    why: Reason
    detail: str
    reservation_id: str | None = None
    held: Held | None = None
    """Held after a 5xx: waits for the reconciliation, not for the Trader."""


class WaitQueue:
    """Part of the Validator, which sets these attributes up and provides ``_decide``,
    ``_process`` and ``_held_too_long``."""

    _waiting: deque[_Waiting]
    _clock: Any
    _timeout: float
    _status: TradingStatus

    def _expired(self, message: SubmitSignal) -> bool:
        return self._clock.time() > message.signal.timestamp + self._timeout

    def _wait(self, message: SubmitSignal, why: Reason, detail: str) -> None:
        self._waiting.append(_Waiting(message, why, detail))

    def _expire_waiting(self) -> None:
        kept: deque[_Waiting] = deque()
        for waiting in self._waiting:
            if waiting.held is not None:
                if not self._held_too_long(waiting):
                    kept.append(waiting)
                continue
            if self._expired(waiting.message):
                failure = CheckResult(
                    "execution",
                    False,
                    waiting.why,
                    f"waited until signal_timeout ({self._timeout:g} s after the signal): "
                    f"{waiting.detail}",
                )
                self._decide(waiting.message, (*waiting.message.checks, failure))
            else:
                kept.append(waiting)
        self._waiting = kept

    def _retry_waiting(self) -> None:
        if not self._waiting or waiting_for_trader(self._status):
            return
        pending, self._waiting = self._waiting, deque()
        for waiting in pending:
            if waiting.held is not None or any(
                w.message.signal.symbol == waiting.message.signal.symbol for w in self._waiting
            ):
                self._waiting.append(waiting)  # its symbol is waiting again: keep the order
                continue
            self._process(waiting.message)

    def _holds(self, reservation_id: str) -> bool:
        return any(
            w.held is not None and w.held.reservation_id == reservation_id for w in self._waiting
        )
