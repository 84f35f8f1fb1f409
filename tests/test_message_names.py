"""The protocol's names say what each message is: queries ``Get...``, commands verbs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import coordinator.messages
from coordinator.messages.base import Command, Event, Message, Query


def _messages() -> list[type[Message]]:
    found: dict[str, type[Message]] = {}
    for module in pkgutil.iter_modules(coordinator.messages.__path__):
        loaded = importlib.import_module(f"coordinator.messages.{module.name}")
        for _, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, Message) and value not in (Message, Command, Event, Query):
                found[value.__qualname__] = value
    return list(found.values())


def test_the_protocol_has_messages_of_each_kind() -> None:
    kinds = {base for m in _messages() for base in (Command, Event, Query) if issubclass(m, base)}
    assert kinds == {Command, Event, Query}


def test_every_query_is_named_get_but_the_probe() -> None:
    misnamed = [
        m.__name__
        for m in _messages()
        if issubclass(m, Query) and not m.__name__.startswith("Get") and m.__name__ != "Ping"
    ]
    assert misnamed == []


def test_no_command_or_event_is_named_like_a_query() -> None:
    misnamed = [
        m.__name__ for m in _messages() if not issubclass(m, Query) and m.__name__.startswith("Get")
    ]
    assert misnamed == []


def test_reserve_is_a_command_that_answers() -> None:
    from coordinator.messages.ledger import Reserve

    assert issubclass(Reserve, Command)
    assert not issubclass(Reserve, Query)
