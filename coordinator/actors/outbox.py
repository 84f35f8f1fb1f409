"""What an actor tells others during one turn, kept to go when the turn ends: the
StoreWriter's records in one message (``CommandBatch``), then the other messages in
the order they were made.

A turn may handle many messages (the signals published together, a Validator's batch);
a tell per record is a hand-off between threads each. The StoreWriter's records go
first, so that a signal's record reaches it before anything that signal leads to: a
Validator that takes the signal may decide it at once, and its decision must not be
stored before the signal. An actor flushes at the end of every turn (``after_turn``),
also when the turn raised, and earlier where a record must not wait (an order's "sent"
before its request leaves).
"""

from __future__ import annotations

import logging
from typing import Any

from coordinator.actors.names import ActorName
from coordinator.messages.base import Command, CommandBatch
from coordinator.supervisor.directory import ChildUnavailable, Directory

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)


class Outbox:
    __slots__ = ("_directory", "_records", "_told")

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._records: list[Command] = []
        self._told: list[tuple[str, Any]] = []

    def record(self, message: Command) -> None:
        """A message for the StoreWriter."""
        self._records.append(message)

    def tell(self, name: str, message: Any) -> None:
        """A message for another actor, told after the turn's records."""
        self._told.append((name, message))

    def flush(self) -> None:
        records = self._records
        if records:
            self._records = []
            self._tell(
                ActorName.STORE_WRITER,
                records[0] if len(records) == 1 else CommandBatch(commands=tuple(records)),
                records,
            )
        told = self._told
        if told:
            self._told = []
            for name, message in told:
                self._tell(name, message, (message,))

    def _tell(self, name: str, message: Any, made: list[Any] | tuple[Any, ...]) -> None:
        try:
            self._directory.tell(name, message)
        except ChildUnavailable as exc:
            logger.error("%s refused %s: %s", name, _described(made), exc)


def _described(made: list[Any] | tuple[Any, ...]) -> str:
    """What was refused: its kinds, and the signals it was about."""
    kinds = ", ".join(sorted({type(m).__name__ for m in made}))
    signals = sorted(
        {s.signal_id for m in made if (s := getattr(m, "signal", None)) is not None}
        | {i for m in made if isinstance(i := getattr(m, "signal_id", None), str)}
    )
    about = f" of {', '.join(signals[:5])}{' ...' if len(signals) > 5 else ''}" if signals else ""
    return f"{len(made)} message(s) {kinds}{about}"
