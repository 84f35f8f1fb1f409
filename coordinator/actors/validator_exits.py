"""The Validator's stop exits: a triggered stop, asked by the TrailingStop, goes into
the same path as a SELL signal. The Ledger sizes it from the position, holds one exit
per symbol in flight, and the exit id makes one order at most. Each is stored as a
signal of source ``trailing_stop``, and kept outside the Validator until decided, so
that a next incarnation decides one its crashed predecessor had taken in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.messages.pipeline import RecordSignal, SubmitSignal
from coordinator.messages.stops import ExitPosition
from coordinator.trading.stops import EXIT_SOURCE, exit_signal
from coordinator.trading.validation import CheckResult, ExitTarget

if TYPE_CHECKING:
    from coordinator.clock import Clock
    from coordinator.runtime import KeptRecords, Services

__all__ = ["TakesExits"]


class TakesExits:
    """Part of the Validator, which sets these attributes up and provides the path."""

    name: str
    _services: Services
    _clock: Clock
    _kept_exits: KeptRecords

    if TYPE_CHECKING:

        def _store(self, message: Any) -> None: ...

        def _on_signal(self, message: SubmitSignal) -> None: ...

    def _on_exit(self, message: ExitPosition) -> None:
        """A triggered stop, into the same path as a SELL signal: the Ledger sizes it
        from the position, holds one exit per symbol in flight, and the exit id makes
        one order at most. Stored as a signal of source ``trailing_stop``."""
        signal = exit_signal(
            exit_id=message.exit_id,
            position_key=message.position_key,
            symbol=message.symbol,
            price=message.price,
            stop=message.stop,
            rule=message.rule,
            strategy=message.strategy,
            triggered_at=message.triggered_at,
            tick_mono=message.tick_mono,
        )
        now = self._clock.time()
        if signal.signal_id not in self._services.decided:
            self._store(
                RecordSignal(
                    signal_id=signal.signal_id,
                    source=EXIT_SOURCE,
                    received_at=now,
                    received_mono=message.tick_mono,
                    signal=signal,
                    payload=signal.payload,
                )
            )
        trigger = CheckResult(
            "trigger",
            True,
            None,
            f"{message.rule} stop {message.stop:.8g} hit at {message.price:.8g} "
            f"({message.strategy}), position {message.position_key}",
        )
        submitted = SubmitSignal(
            signal=signal,
            source=EXIT_SOURCE,
            received_at=now,
            received_mono=message.tick_mono or self._clock.monotonic(),
            checks=(trigger,),
            exit=ExitTarget(
                position_key=message.position_key,
                entry_price=message.entry_price,
                quantity=message.quantity,
                opened_at=message.opened_at,
                stop=message.stop,
                price=message.price,
                price_at=message.price_at,
                fence=message.fence,
            ),
        )
        if signal.signal_id not in self._services.decided:
            self._kept_exits.put(signal.signal_id, {"validator": self.name, "message": submitted})
        self._on_signal(submitted)
