"""Building real actor trees for tests, on the real servers of the session."""

from __future__ import annotations

import queue
from collections.abc import Mapping
from typing import Any

from coordinator.actors.service_health import ServiceHealth
from coordinator.clock import Clock, SystemClock
from coordinator.config import Config, load_config
from coordinator.config.parts import parts_of
from coordinator.messages import GetHealthSnapshot, StopTree
from coordinator.messages.base import Event
from coordinator.runtime import Endpoints, Services
from coordinator.supervisor import ChildSpec, Directory, DrillBoard, Supervisor, TreeOutcome
from tests.waiting import wait_for

FAST_HEALTH = {
    "HEALTH_CHECK_INTERVAL": "0.1",
    "HEALTH_PROBE_TIMEOUT": "0.5",
    "BREAKER_FAILURE_THRESHOLD": "2",
    "BREAKER_OPEN_SECONDS": "0.2",
    "BREAKER_OPEN_MAX_SECONDS": "1",
    "SUPERVISOR_BACKOFF_BASE": "0.02",
    "SUPERVISOR_BACKOFF_MAX": "0.2",
    "SUPERVISOR_LIVENESS_INTERVAL": "0.1",
    "SUPERVISOR_LIVENESS_TIMEOUT": "1",
}


def fast_config(extra: Mapping[str, str] | None = None) -> Config:
    return load_config({**FAST_HEALTH, **(extra or {})})


def make_services(
    config: Config,
    *,
    redis_url: str,
    database_dsn: str,
    trader_url: str | None = None,
    portfolio_url: str | None = None,
    clock: Clock | None = None,
) -> Services:
    clock = clock or SystemClock()
    return Services(
        config=config,
        endpoints=Endpoints(
            redis_url=redis_url,
            database_dsn=database_dsn,
            trader_url=trader_url,
            portfolio_url=portfolio_url,
        ),
        clock=clock,
        started_at=clock.time(),
        started_monotonic=clock.monotonic(),
    )


class HealthTree:
    """A supervisor with ServiceHealth; every published event lands in ``events``."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.directory = Directory()
        self.outcome = TreeOutcome()
        self.drills = DrillBoard()
        self.events: queue.Queue[Event] = queue.Queue()
        self.directory.add_listener(self.events.put)
        self.supervisor = Supervisor.start(
            [
                ChildSpec(
                    "service_health",
                    ServiceHealth,
                    kwargs={"settings": parts_of(services.config).health},
                )
            ],
            services.config.supervisor,
            directory=self.directory,
            clock=services.clock,
            outcome=self.outcome,
            drills=self.drills,
            services=services,
        )
        assert self.outcome.ready.wait(10), self.outcome.failure

    def snapshot(self) -> Any:
        return self.directory.ask("service_health", GetHealthSnapshot(), timeout=2)

    def wait(self, predicate: Any, message: str, timeout: float = 15.0) -> Any:
        def check() -> Any:
            try:
                snapshot = self.snapshot()
            except Exception:
                return None
            return snapshot if predicate(snapshot) else None

        return wait_for(check, timeout=timeout, message=message)

    def dependency(self, snapshot: Any, name: str) -> Any:
        return next(d for d in snapshot.dependencies if d.dependency.value == name)

    def next_event(self, kind: type, predicate: Any = lambda _e: True, timeout: float = 15) -> Any:
        """The next published event of ``kind`` that matches; others are skipped."""
        return wait_for(
            lambda: self._take(kind, predicate), timeout=timeout, message=f"a {kind.__name__}"
        )

    def _take(self, kind: type, predicate: Any) -> Any:
        try:
            event = self.events.get(timeout=0.05)
        except queue.Empty:
            return None
        return event if isinstance(event, kind) and predicate(event) else None

    def stop(self) -> None:
        if self.supervisor.is_alive():
            self.supervisor.ask(StopTree(reason="test over"), timeout=10)
            self.supervisor.stop(timeout=10)
