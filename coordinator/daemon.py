"""The coordinator process: start everything in order, stop it in reverse.

Start: data-directory lock → embedded Redis and PostgreSQL (when not configured) →
schema migrations → the supervised actor tree, each child ready before the next →
the HTTP frontend last, so it never serves a half-built tree. Stop runs the same
list backwards.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from coordinator.actors.service_health import ServiceHealth
from coordinator.clock import Clock, SystemClock
from coordinator.config import Config
from coordinator.http.app import create_app
from coordinator.http.facade import CoordinatorApi
from coordinator.http.server import HttpServer
from coordinator.infra.embedded import DataDirLock, EmbeddedPostgres, EmbeddedRedis
from coordinator.infra.store import apply_migrations
from coordinator.messages.supervision import StopTree
from coordinator.runtime import Endpoints, Services
from coordinator.supervisor import (
    ChildSpec,
    Directory,
    DrillBoard,
    Restart,
    Supervisor,
    TreeOutcome,
)

__all__ = ["EXIT_ESCALATED", "EXIT_START_FAILED", "Coordinator", "StartupError", "build_tree"]

logger = logging.getLogger(__name__)

EXIT_START_FAILED = 1
EXIT_ESCALATED = 3


class StartupError(Exception):
    """The coordinator could not start; the message says which step and why."""


def build_tree(config: Config) -> list[ChildSpec]:
    """The children, in start order (stopped in reverse)."""
    return [
        ChildSpec("service_health", ServiceHealth, Restart.PERMANENT),
    ]


class Coordinator:
    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.outcome = TreeOutcome()
        self.directory = Directory()
        self.drills = DrillBoard()
        self.services: Services | None = None
        self.http: HttpServer | None = None
        self._lock: DataDirLock | None = None
        self._redis: EmbeddedRedis | None = None
        self._postgres: EmbeddedPostgres | None = None
        self._supervisor: Any = None
        self._stopped = threading.Event()

    def start(self) -> None:
        """Bring everything up, or undo what was started and raise StartupError."""
        try:
            self._start()
        except Exception:
            self.stop()
            raise

    def _start(self) -> None:
        config = self.config
        started_at, started_monotonic = self.clock.time(), self.clock.monotonic()
        redis_url = config.redis.connection_url()
        dsn = config.database.dsn()
        if redis_url is None or dsn is None:
            data_dir = config.service.data_dir.resolve()
            self._lock = DataDirLock(data_dir)
            self._lock.acquire()
            logger.info("data directory %s", data_dir)
            if redis_url is None:
                self._redis = EmbeddedRedis(data_dir).start()
                redis_url = self._redis.url
            if dsn is None:
                self._postgres = EmbeddedPostgres(data_dir).start()
                dsn = self._postgres.dsn
        applied = apply_migrations(dsn)
        logger.info("schema up to date (%d migration(s) applied now)", len(applied))
        if config.trader.url is None:
            logger.warning("TRADER_API_URL is not set: no order can be sent, trading stays HALTED")
        self.services = Services(
            config=config,
            endpoints=Endpoints(
                redis_url=redis_url,
                database_dsn=dsn,
                trader_url=config.trader.url,
                portfolio_url=config.portfolio.url,
                redis_embedded=self._redis is not None,
                database_embedded=self._postgres is not None,
            ),
            clock=self.clock,
            started_at=started_at,
            started_monotonic=started_monotonic,
        )
        specs = build_tree(config)
        self._supervisor = Supervisor.start(
            specs,
            config.supervisor,
            directory=self.directory,
            clock=self.clock,
            outcome=self.outcome,
            drills=self.drills,
            services=self.services,
        )
        # Each child gets its start timeout plus its backoff before the tree gives up.
        budget = len(specs) * (config.supervisor.start_timeout + config.supervisor.backoff_max) + 5
        waiter = threading.Event()
        threading.Thread(
            target=lambda: (self.outcome.finished.wait(), waiter.set()),
            name="tree-finished",
            daemon=True,
        ).start()
        threading.Thread(
            target=lambda: (self.outcome.ready.wait(), waiter.set()),
            name="tree-ready",
            daemon=True,
        ).start()
        if not waiter.wait(budget) or not self.outcome.ready.is_set():
            why = self.outcome.failure or f"not ready within {budget:g} s"
            raise StartupError(f"the actor tree did not start: {why}")
        api = CoordinatorApi(
            services=self.services,
            supervisor=self._supervisor,
            directory=self.directory,
            drills=self.drills,
        )
        app = create_app(
            api,
            api_token=config.service.api_token,
            drills_enabled=config.service.drills,
            snapshot_ttl=config.service.snapshot_ttl,
            clock=self.clock.monotonic,
        )
        self.http = HttpServer(
            app,
            host=config.service.host,
            port=config.service.port,
            threads=config.service.http_threads,
        ).start()
        logger.info("coordinator running; API on %s", self.http.url)

    def stop(self) -> None:
        """Stop in reverse order; safe to call more than once and after a failed start."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.http is not None:
            self.http.stop()
        if self._supervisor is not None and self._supervisor.is_alive():
            config = self.config.supervisor
            budget = (len(self.directory.names()) + 1) * config.stop_timeout
            try:
                self._supervisor.ask(StopTree(reason="coordinator stopping"), timeout=budget)
                self._supervisor.stop(timeout=budget)
            except Exception:
                logger.exception("the actor tree did not stop cleanly")
        for server in (self._postgres, self._redis):
            if server is not None:
                try:
                    server.stop()
                except Exception:
                    logger.exception("embedded %s did not stop cleanly", server.name)
        if self._lock is not None:
            self._lock.release()
        logger.info("coordinator stopped")
