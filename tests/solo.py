"""One actor started alone, with a test directory, as pykka's own tests start actors.

The actor under test gets a fresh ``Directory``, a ``ManualClock`` the test advances,
its part of the configuration (or the ``settings`` the test gives it),
and stand-ins under the names of the actors it talks to: each stand-in records what it
is told and answers asks with what the test gave it. Events it publishes land in
``events``; its failure reports in ``reports``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pykka

from coordinator.clock import ManualClock
from coordinator.config.parts import parts_of
from coordinator.messages.base import CommandBatch, Event
from coordinator.supervisor.child import ActorContext, ChildActor, DrillBoard
from coordinator.supervisor.directory import ChildUnavailable, Directory
from tests.waiting import wait_for

__all__ = ["Solo", "StandIn", "solo"]


class TakenSoFar:
    """Asked of a stand-in behind what it was told: answered once it has taken all."""


class StandIn(pykka.ThreadingActor):
    """Takes the place of a named actor: records every message; answers an ask with
    ``answer(message)`` (None without one)."""

    def __init__(self, received: queue.Queue[Any], answer: Callable[[Any], Any] | None) -> None:
        super().__init__()
        self.received = received
        self._answer = answer

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, CommandBatch):
            # Each command as if told alone, as a real child takes them.
            for command in message.commands:
                self.on_receive(command)
            return None
        self.received.put(message)
        if isinstance(message, TakenSoFar):
            return None
        return self._answer(message) if self._answer is not None else None


def settings_for(name: str, services: Any) -> Any:
    """The part of the configuration the tree hands the actor of that name."""
    config = services.config
    parts = parts_of(config)
    if name.startswith("validator"):
        return parts.validator
    return {
        "instance_keeper": config.instance,
        "service_health": parts.health,
        "store_writer": parts.store,
        "market_feed": parts.feed,
        "ledger": config.risk,
        "universe_manager": parts.universe,
        "trailing_stop": parts.stops,
        "reconciler": parts.reconciler,
        "signal_intake": parts.intake,
    }.get(name)


class Solo:
    """The actor under test and what surrounds it."""

    def __init__(
        self,
        actor_class: type[ChildActor],
        name: str,
        services: Any,
        *,
        stand_ins: Mapping[str, Callable[[Any], Any] | None] | None = None,
        clock: ManualClock | None = None,
        settings: Any = None,
    ) -> None:
        self.clock = clock or ManualClock()
        self.directory = Directory()
        self.events: queue.Queue[Event] = queue.Queue()
        self.reports: queue.Queue[Event] = queue.Queue()
        self.directory.add_listener(self.events.put)
        self.received: dict[str, queue.Queue[Any]] = {}
        self._refs: list[pykka.ActorRef[Any]] = []
        for other, answer in (stand_ins or {}).items():
            self.directory.register(other)
            self.directory.expect(other, 1)
            self.received[other] = queue.Queue()
            ref = StandIn.start(self.received[other], answer)
            self._refs.append(ref)
            assert self.directory.install(other, ref, 1)
        self.name = name
        self.directory.register(name, actor_class.subscriptions)
        self.directory.expect(name, 1)
        self.context = ActorContext(
            name=name,
            incarnation=1,
            directory=self.directory,
            clock=self.clock,
            drills=DrillBoard(),
            report=self.reports.put,
            services=services,
        )
        if settings is None:
            settings = settings_for(name, services)
        self.ref = actor_class.start(self.context, settings=settings)
        self._refs.append(self.ref)
        # Ready once its setup has run and it installed itself, as the supervisor waits
        # for before it starts the next child: what setup told itself comes first.
        wait_for(self._installed, message=f"{name} to start")

    def _installed(self) -> bool:
        try:
            self.directory.ref(self.name)
            return True
        except ChildUnavailable:
            if not self.ref.is_alive():
                raise AssertionError(f"{self.name} did not start: see its report") from None
            return False

    def ask(self, message: Any, timeout: float = 5.0) -> Any:
        return self.ref.ask(message, timeout=timeout)

    def tell(self, message: Any) -> None:
        self.ref.tell(message)

    def told(
        self,
        other: str,
        kind: type,
        predicate: Callable[[Any], bool] = lambda _m: True,
        timeout: float = 10.0,
    ) -> Any:
        """The next message of ``kind`` that ``other`` (a stand-in) was told or asked."""
        received = self.received[other]

        def take() -> Any:
            try:
                message = received.get(timeout=0.05)
            except queue.Empty:
                return None
            return message if isinstance(message, kind) and predicate(message) else None

        return wait_for(take, timeout=timeout, message=f"{other} to be sent a {kind.__name__}")

    def taken(self, other: str, timeout: float = 10.0) -> list[Any]:
        """Every message ``other`` (a stand-in) was told or asked, in order, that the
        test has not read yet. The stand-in takes them on its own thread: an ask behind
        them is answered once it has taken every one told before it."""
        marker = TakenSoFar()
        self.directory.ask(other, marker, timeout=timeout)
        received = self.received[other]
        taken = []
        while (message := received.get(timeout=timeout)) is not marker:
            taken.append(message)
        return taken

    def published(
        self, kind: type, predicate: Callable[[Any], bool] = lambda _e: True, timeout: float = 10.0
    ) -> Any:
        """The next event of ``kind`` the actor published."""

        def take() -> Any:
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                return None
            return event if isinstance(event, kind) and predicate(event) else None

        return wait_for(take, timeout=timeout, message=f"a published {kind.__name__}")

    def stop(self) -> None:
        for ref in reversed(self._refs):
            if ref.is_alive():
                ref.stop(timeout=10)


@contextmanager
def solo(actor_class: type[ChildActor], name: str, services: Any, **kwargs: Any) -> Iterator[Solo]:
    started = Solo(actor_class, name, services, **kwargs)
    try:
        yield started
    finally:
        started.stop()
