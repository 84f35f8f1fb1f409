"""What an actor tells during a turn goes when it ends: the StoreWriter's records in one
message and first, then the other messages in the order they were made; a refusal
loses only what it refused. On real pykka actors behind a real Directory."""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any

import pykka
import pytest

from coordinator.actors.names import ActorName
from coordinator.actors.outbox import Outbox
from coordinator.messages.base import Command, CommandBatch
from coordinator.supervisor.directory import Directory


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(Command):
    n: int


class Recorder(pykka.ThreadingActor):
    def __init__(self, name: str, heard: queue.Queue[tuple[str, Any]]) -> None:
        super().__init__()
        self.name = name
        self.heard = heard

    def on_receive(self, message: Any) -> None:
        self.heard.put((self.name, message))


class InOrder(Directory):
    """A Directory that also notes the order of the tells made through it."""

    def __init__(self) -> None:
        super().__init__(buffer_limit=1)
        self.tells: list[str] = []

    def tell(self, name: str, message: Any) -> None:
        self.tells.append(name)
        super().tell(name, message)


@pytest.fixture
def actors() -> Any:
    directory = InOrder()
    heard: queue.Queue[tuple[str, Any]] = queue.Queue()
    refs = []
    for name in (ActorName.STORE_WRITER, "validator-0", "validator-1", "down"):
        directory.register(name, ())
        if name != "down":
            directory.expect(name, 1)
            refs.append(Recorder.start(name, heard))
            assert directory.install(name, refs[-1], 1)
    yield directory, heard
    for ref in refs:
        ref.stop()


def drain(heard: queue.Queue[tuple[str, Any]], count: int) -> list[tuple[str, Any]]:
    return [heard.get(timeout=5) for _ in range(count)]


def test_the_records_of_a_turn_go_first_and_in_one_message(actors: Any) -> None:
    directory, heard = actors
    outbox = Outbox(directory)
    outbox.record(Note(n=1))
    outbox.tell("validator-1", Note(n=2))
    outbox.record(Note(n=3))
    outbox.tell("validator-0", Note(n=4))
    outbox.tell("validator-1", Note(n=5))
    assert directory.tells == [] and heard.empty(), "nothing goes before the flush"
    outbox.flush()
    assert directory.tells == [ActorName.STORE_WRITER, "validator-1", "validator-0", "validator-1"]
    got = sorted(drain(heard, 4), key=lambda h: h[0])
    assert got == [
        (ActorName.STORE_WRITER, CommandBatch(commands=(Note(n=1), Note(n=3)))),
        ("validator-0", Note(n=4)),
        ("validator-1", Note(n=2)),
        ("validator-1", Note(n=5)),
    ]
    outbox.flush()
    assert len(directory.tells) == 4, "a flush sends each message once"


def test_a_lone_record_goes_as_itself(actors: Any) -> None:
    directory, heard = actors
    outbox = Outbox(directory)
    outbox.record(Note(n=1))
    outbox.flush()
    assert drain(heard, 1) == [(ActorName.STORE_WRITER, Note(n=1))]


def test_a_refusal_loses_only_what_was_refused_and_is_logged(actors: Any, caplog: Any) -> None:
    directory, heard = actors
    outbox = Outbox(directory)
    outbox.tell("down", Note(n=1))  # buffered for its next incarnation: the limit is one
    outbox.tell("down", Note(n=2))  # refused
    outbox.tell("validator-0", Note(n=3))
    outbox.flush()
    assert drain(heard, 1) == [("validator-0", Note(n=3))]
    assert "down refused 1 message(s) Note" in caplog.text
