"""The base message types."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Command", "Event", "Message", "Query"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Anything one actor sends another."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Message):
    """Asks the receiver to do something (``SubmitSignal``, ``HaltTrading``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Message):
    """Says that something happened (``TradingStateChanged``); never answered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Query(Message):
    """Asks for state; always sent with ``ask`` and a timeout, answered by a snapshot."""
