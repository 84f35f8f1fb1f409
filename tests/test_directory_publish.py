"""Publishing through the directory: each child gets the events of the types it
subscribes to (subclasses included), in the order published, in one batch (one alone as
itself), listeners every event; a child registered later gets the events published
after. Real pykka actors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest

from coordinator.messages.base import Event, EventBatch
from coordinator.supervisor.directory import Directory


@dataclass(frozen=True, slots=True, kw_only=True)
class Moved(Event):
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceMoved(Moved):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Halted(Event):
    n: int


class Recorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "seen":
            return list(self.seen)  # asked after the tells: every tell before it is in
        self.seen.append(message)
        return None


@pytest.fixture
def directory() -> Iterator[tuple[Directory, dict[str, pykka.ActorRef[Any]]]]:
    refs: dict[str, pykka.ActorRef[Any]] = {}
    yield Directory(), refs
    for ref in refs.values():
        ref.stop()


def start(directory: Directory, refs: dict[str, Any], name: str, *kinds: type[Event]) -> None:
    directory.register(name, kinds)
    directory.expect(name, 1)
    refs[name] = Recorder.start()
    assert directory.install(name, refs[name], 1)


def seen(refs: dict[str, Any], name: str) -> list[Any]:
    return refs[name].ask("seen", timeout=5)


def test_each_child_gets_its_kinds_in_order_and_a_later_child_what_follows(directory) -> None:
    directory, refs = directory
    start(directory, refs, "moves", Moved)
    start(directory, refs, "halts", Halted)
    start(directory, refs, "deaf")
    heard: list[Event] = []
    directory.add_listener(heard.append)

    first = [PriceMoved(n=1), Halted(n=2), Moved(n=3)]
    directory.publish_all(first)
    assert seen(refs, "moves") == [EventBatch(events=(PriceMoved(n=1), Moved(n=3)))]
    assert seen(refs, "halts") == [Halted(n=2)]
    assert seen(refs, "deaf") == []
    assert heard == first

    start(directory, refs, "late", PriceMoved, Halted)
    directory.publish(PriceMoved(n=4))
    directory.publish_all([Moved(n=5), Halted(n=6)])
    assert seen(refs, "late") == [PriceMoved(n=4), Halted(n=6)]
    assert seen(refs, "moves")[1:] == [PriceMoved(n=4), Moved(n=5)]
    assert seen(refs, "halts")[1:] == [Halted(n=6)]
    assert heard == [*first, PriceMoved(n=4), Moved(n=5), Halted(n=6)]
