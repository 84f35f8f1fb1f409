"""The ChildActor base alone: work on its pools told back, and what it owns released."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from coordinator.clock import SystemClock
from coordinator.messages.supervision import ChildExited
from coordinator.supervisor import NOT_HANDLED, ChildActor, Directory, DrillBoard
from coordinator.supervisor.child import ActorContext
from coordinator.supervisor.ticker import Ticker
from tests.waiting import wait_for


class Refused(Exception):
    """A failure the work hands back as a message."""


@dataclass
class Journal:
    """What the actor did, shared with the test (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    told: list[Any] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    pools: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    ticker: Ticker | None = None

    def add(self, kind: list[Any], item: Any) -> None:
        with self.lock:
            kind.append(item)


@dataclass(frozen=True, slots=True)
class Run:
    work: Callable[[], Any]
    on_error: Callable[[Exception], Any] | None = None
    errors: tuple[type[Exception], ...] = (Exception,)
    pool: str = "work"


@dataclass(frozen=True, slots=True)
class Done:
    value: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: str


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class AddPool:
    purpose: str
    finish_queued: bool = False


@dataclass(frozen=True, slots=True)
class Submit:
    pool: str
    work: Callable[[], Any]


class Helper(ChildActor):
    def setup(self) -> None:
        journal: Journal = self.context.services
        journal.pools["work"] = self.worker_pool("work")
        self.on_cleanup(lambda: journal.add(journal.released, "first"), what="first")
        journal.ticker = self.ticker(0.01, Tick)
        self.on_cleanup(lambda: journal.add(journal.released, "last"), what="last")

    def handle(self, message: Any) -> Any:
        journal: Journal = self.context.services
        match message:
            case Run(work=work, on_error=on_error, errors=errors, pool=pool):
                return self.run_then_tell(
                    work,
                    lambda value: None if value is None else Done(value),
                    on_error=on_error,
                    errors=errors,
                    pool=pool,
                )
            case Done() | Failed():
                journal.add(journal.told, message)
                return None
            case Tick():
                journal.add(journal.told, message)
                return None
            case AddPool(purpose=purpose, finish_queued=finish_queued):
                journal.pools[purpose] = self.worker_pool(purpose, finish_queued=finish_queued)
                return None
            case Submit(pool=pool, work=work):
                return journal.pools[pool].submit(work)
        return NOT_HANDLED

    def cleanup(self) -> None:
        journal: Journal = self.context.services
        journal.add(journal.released, "cleanup")


@pytest.fixture
def started() -> Iterator[tuple[pykka.ActorRef[Any], Journal, list[Any]]]:
    journal = Journal()
    reports: list[Any] = []
    directory = Directory()
    directory.register("helper")
    directory.expect("helper", 1)
    context = ActorContext(
        name="helper",
        incarnation=1,
        directory=directory,
        clock=SystemClock(),
        drills=DrillBoard(),
        report=reports.append,
        services=journal,
    )
    ref = Helper.start(context)
    yield ref, journal, reports
    if ref.is_alive():
        ref.stop(timeout=5)


def told(journal: Journal, kind: type) -> list[Any]:
    with journal.lock:
        return [m for m in journal.told if isinstance(m, kind)]


def test_the_message_made_from_the_result_is_told_to_the_actor(started):
    ref, journal, _ = started
    ref.ask(Run(lambda: 42), timeout=5).result(timeout=5)
    assert wait_for(lambda: told(journal, Done)) == [Done(42)]


def test_an_error_it_lists_is_told_as_the_message_made_from_it(started):
    ref, journal, _ = started

    def refuse() -> Any:
        raise Refused("no")

    ref.ask(
        Run(refuse, on_error=lambda exc: Failed(str(exc)), errors=(Refused,)), timeout=5
    ).result(timeout=5)
    assert wait_for(lambda: told(journal, Failed)) == [Failed("no")]


def test_an_error_it_does_not_list_stays_in_the_future_and_nothing_is_told(started):
    ref, journal, _ = started

    def broken() -> Any:
        raise KeyError("bug")

    future: Future[None] = ref.ask(
        Run(broken, on_error=lambda exc: Failed(str(exc)), errors=(Refused,)), timeout=5
    )
    with pytest.raises(KeyError):
        future.result(timeout=5)
    # A message told after the failure arrives after anything the failure told.
    ref.ask(Run(lambda: "after"), timeout=5).result(timeout=5)
    wait_for(lambda: told(journal, Done))
    assert told(journal, Failed) == []


def test_no_message_is_told_for_none(started):
    ref, journal, _ = started
    ref.ask(Run(lambda: None), timeout=5).result(timeout=5)
    ref.ask(Run(lambda: "marker"), timeout=5).result(timeout=5)
    assert wait_for(lambda: told(journal, Done)) == [Done("marker")]


def test_a_result_after_the_actor_ended_is_dropped_quietly(started):
    ref, journal, _ = started
    ref.ask(AddPool("slow", finish_queued=True), timeout=5)
    gate = threading.Event()

    def slow() -> str:
        gate.wait(5)
        return "late"

    future: Future[None] = ref.ask(Run(slow, pool="slow"), timeout=5)
    ref.stop(timeout=5)
    gate.set()
    assert future.result(timeout=5) is None
    assert told(journal, Done) == []


def test_an_unknown_pool_is_refused(started):
    ref, _, _ = started
    with pytest.raises(KeyError):
        ref.ask(Run(lambda: 1, pool="nowhere"), timeout=5)


def test_a_second_pool_of_the_same_purpose_is_refused(started):
    ref, _, _ = started
    with pytest.raises(ValueError, match="already has a worker pool 'work'"):
        ref.ask(AddPool("work"), timeout=5)


def test_the_ticker_tells_its_message_until_the_actor_ends(started):
    ref, journal, reports = started
    wait_for(lambda: told(journal, Tick))
    assert journal.ticker is not None and journal.ticker.running
    ref.stop(timeout=5)
    wait_for(lambda: not journal.ticker.running, message="the ticker's thread to end")
    assert any(isinstance(r, ChildExited) for r in reports)


def test_what_it_owns_is_released_after_cleanup_last_registered_first(started):
    ref, journal, _ = started
    ref.stop(timeout=5)
    assert journal.released == ["cleanup", "last", "first"]
    with pytest.raises(RuntimeError):
        journal.pools["work"].submit(lambda: None)


def test_queued_work_is_dropped_at_the_end_unless_the_pool_finishes_it(started):
    ref, _, _ = started
    ref.ask(AddPool("dropping"), timeout=5)
    ref.ask(AddPool("finishing", finish_queued=True), timeout=5)
    gate = threading.Event()
    ran: list[str] = []
    queued = {}
    for pool in ("dropping", "finishing"):
        ref.ask(Submit(pool, lambda: gate.wait(5)), timeout=5)
        queued[pool] = ref.ask(Submit(pool, lambda pool=pool: ran.append(pool)), timeout=5)
    ref.stop(timeout=5)
    gate.set()
    queued["finishing"].result(timeout=5)
    assert queued["dropping"].cancelled()
    assert ran == ["finishing"]


def test_a_release_that_fails_does_not_keep_the_others_from_running():
    journal = Journal()
    directory = Directory()
    directory.register("helper")
    directory.expect("helper", 1)

    class FailingRelease(Helper):
        def setup(self) -> None:
            super().setup()

            def fail() -> None:
                raise OSError("cannot close")

            self.on_cleanup(fail, what="failing")

    context = ActorContext(
        name="helper",
        incarnation=1,
        directory=directory,
        clock=SystemClock(),
        drills=DrillBoard(),
        report=lambda _event: None,
        services=journal,
    )
    ref = FailingRelease.start(context)
    ref.stop(timeout=5)
    assert journal.released == ["cleanup", "last", "first"]
