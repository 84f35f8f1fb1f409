"""The base message types."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Command", "CommandBatch", "Event", "EventBatch", "Message", "Query"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Anything one actor sends another."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Message):
    """Asks the receiver to do something (``SubmitSignal``, ``HaltTrading``); named by a
    verb. Mostly told; a command that changes state may also be asked, and then answers
    with what it did: ``Reserve`` holds an order's room and answers the ``Reservation``,
    ``HaltTrading`` answers the health snapshot after the halt, ``RawSignal`` its
    admission. Such a command is still a command, never a ``Get...``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Message):
    """Says that something happened (``TradingStateChanged``); never answered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Query(Message):
    """Asks for state and changes none; always sent with ``ask`` and a timeout, answered
    by a snapshot. Named ``Get...`` (``GetHealthSnapshot``), but for the supervisor's
    readiness and liveness probe ``Ping``, answered by ``Pong``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventBatch(Message):
    """Events published together (a flush of stored decisions), handed to a child in one
    message instead of one each: one hand-off between threads per child and flush. The
    child handles each in order as if told alone."""

    events: tuple[Event, ...]
    """The events this child subscribes to, in the order they were published."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandBatch(Message):
    """Commands one sender told together (a Validator's records of one turn: an order's
    decision and the next order's sending), handed to a child in one message instead
    of one each: one hand-off between threads. The child handles each in order as if
    told alone, as the events of an ``EventBatch``."""

    commands: tuple[Command, ...]
    """The commands, in the order the sender made them."""
