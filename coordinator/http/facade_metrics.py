"""The facade's part for the metrics: every snapshot a scrape shows, asked of all the
actors at once and waited for together, so that a scrape takes one ask timeout at worst
however many actors are slow. An actor that does not answer leaves its snapshot None."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykka
from pykka import ActorRef

from coordinator.actors.names import VALIDATOR_PREFIX
from coordinator.http.asking import (
    LEDGER,
    SERVICE_HEALTH,
    SIGNAL_INTAKE,
    STATS,
    STORE_WRITER,
    TRAILING_STOP,
    UNIVERSE,
)
from coordinator.http.views import About
from coordinator.messages.health import GetHealthSnapshot, HealthSnapshot
from coordinator.messages.ledger import GetLedgerSnapshot, LedgerSnapshot
from coordinator.messages.pipeline import (
    GetIntakeSnapshot,
    GetStoreSnapshot,
    GetValidatorSnapshot,
    IntakeSnapshot,
    StoreSnapshot,
    ValidatorSnapshot,
)
from coordinator.messages.stats import GetStats, StatsSnapshot
from coordinator.messages.stops import GetTrailingStops, TrailingStopsSnapshot
from coordinator.messages.supervision import GetSupervisorSnapshot, SupervisorSnapshot
from coordinator.messages.universe import GetUniverse, UniverseSnapshot
from coordinator.supervisor.directory import ChildUnavailable, Directory

__all__ = ["SUPERVISOR", "MetricsApi", "MetricsInputs"]

logger = logging.getLogger(__name__)

SUPERVISOR = "supervisor"

_QUERIES: tuple[tuple[str, Any], ...] = (
    (SERVICE_HEALTH, GetHealthSnapshot()),
    (STATS, GetStats()),
    (SIGNAL_INTAKE, GetIntakeSnapshot()),
    (STORE_WRITER, GetStoreSnapshot()),
    (UNIVERSE, GetUniverse()),
    (TRAILING_STOP, GetTrailingStops(rows=False)),
    (LEDGER, GetLedgerSnapshot()),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsInputs:
    """What one scrape shows: each snapshot, or None when its actor did not answer."""

    about: About
    """The process itself."""
    answered: tuple[tuple[str, bool], ...]
    """(actor, whether it answered) for every actor asked."""
    tree: SupervisorSnapshot | None = None
    """The actor tree."""
    health: HealthSnapshot | None = None
    """Dependencies, breakers, trading state."""
    stats: StatsSnapshot | None = None
    """Counts and latencies of decisions and orders."""
    intake: IntakeSnapshot | None = None
    """The intake's counts."""
    store: StoreSnapshot | None = None
    """The store writer's queue and journal."""
    universe: UniverseSnapshot | None = None
    """The universe of tradable symbols."""
    stops: TrailingStopsSnapshot | None = None
    """The positions the trailing stops watch."""
    ledger: LedgerSnapshot | None = None
    """Positions and reservations."""
    validators: tuple[ValidatorSnapshot, ...] = ()
    """The Validators that answered."""


class MetricsApi:
    """Part of the CoordinatorApi, which provides these."""

    _directory: Directory
    _supervisor: ActorRef[Any]
    _timeout: float
    _about: Callable[[], About]

    def metrics_inputs(self) -> MetricsInputs:
        validators = sorted(n for n in self._directory.names() if n.startswith(VALIDATOR_PREFIX))
        queries = [*_QUERIES, *((name, GetValidatorSnapshot()) for name in validators)]
        futures: dict[str, pykka.Future[Any] | None] = {
            SUPERVISOR: self._send(SUPERVISOR, GetSupervisorSnapshot())
        }
        for name, message in queries:
            futures[name] = self._send(name, message)
        answers = self._gather(futures)
        found: Mapping[str, Any] = answers
        return MetricsInputs(
            about=self._about(),
            answered=tuple((name, name in answers) for name in futures),
            tree=found.get(SUPERVISOR),
            health=found.get(SERVICE_HEALTH),
            stats=found.get(STATS),
            intake=found.get(SIGNAL_INTAKE),
            store=found.get(STORE_WRITER),
            universe=found.get(UNIVERSE),
            stops=found.get(TRAILING_STOP),
            ledger=found.get(LEDGER),
            validators=tuple(answers[n] for n in validators if n in answers),
        )

    def _send(self, name: str, message: Any) -> pykka.Future[Any] | None:
        """The answer to come, or None when the actor is down now."""
        try:
            ref = self._supervisor if name == SUPERVISOR else self._directory.ref(name)
            return ref.ask(message, block=False)
        except (ChildUnavailable, pykka.ActorDeadError):
            return None

    def _gather(self, futures: Mapping[str, pykka.Future[Any] | None]) -> dict[str, Any]:
        """The answers that came within one ask timeout, all actors together."""
        deadline = time.monotonic() + self._timeout
        answers: dict[str, Any] = {}
        for name, future in futures.items():
            if future is None:
                continue
            try:
                answers[name] = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                logger.debug("metrics: %s did not answer within %g s", name, self._timeout)
            except Exception as exc:
                # A scrape never fails on an actor: it shows it as not answering.
                logger.warning("metrics: %s answered with an error: %r", name, exc)
        return answers
