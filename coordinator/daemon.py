"""The coordinator process: start everything in order, stop it in reverse.

Start: data-directory lock → embedded Redis and PostgreSQL (when not configured) →
schema migrations → the supervised actor tree, each child ready before the next →
the HTTP frontend last, so it never serves a half-built tree. Stop runs the same
list backwards.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

from coordinator.actors.instance_keeper import InstanceKeeper
from coordinator.actors.leader_elector import LeaderElector
from coordinator.actors.ledger import Ledger
from coordinator.actors.market_feed import MarketFeed
from coordinator.actors.names import ActorName, validator_name
from coordinator.actors.partition_keeper import PartitionKeeper, PartitionSettings
from coordinator.actors.reconciler import Reconciler
from coordinator.actors.service_health import ServiceHealth
from coordinator.actors.signal_intake import SignalIntake
from coordinator.actors.stats import Stats
from coordinator.actors.store_writer import StoreWriter
from coordinator.actors.trailing_stop import TrailingStop
from coordinator.actors.universe_manager import UniverseManager
from coordinator.actors.validator import Validator
from coordinator.clock import Clock, SystemClock
from coordinator.cluster.lease import LeaseTimings
from coordinator.cluster.ownership import PartitionOwnership
from coordinator.config import Config
from coordinator.config.identity import InstanceMode
from coordinator.config.parts import LEADER_LEASE, ElectorSettings, parts_of
from coordinator.errors import CoordinatorError
from coordinator.http.app import create_app
from coordinator.http.facade import CoordinatorApi
from coordinator.http.limits import Limits
from coordinator.http.published import PublishedAnswers, published_answers
from coordinator.http.server import HttpServer, raise_open_files_limit
from coordinator.infra.embedded import DataDirLock, EmbeddedPostgres, EmbeddedRedis
from coordinator.infra.event_codec import event_json
from coordinator.infra.instances import IdentityLost, InstanceRegistry, instance_dsn
from coordinator.infra.intake_readers import IntakeReaders
from coordinator.infra.intent_claims import IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.order_states import paper_dsn
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.redis_bus import EventPublisher
from coordinator.infra.store import StoreError, apply_migrations
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

__all__ = [
    "EXIT_ESCALATED",
    "EXIT_IDENTITY_LOST",
    "EXIT_START_FAILED",
    "Coordinator",
    "StartupError",
    "build_tree",
    "lease_holder_name",
    "set_after",
]

logger = logging.getLogger(__name__)

EXIT_START_FAILED = 1
EXIT_ESCALATED = 3
EXIT_IDENTITY_LOST = 4


class StartupError(CoordinatorError):
    """The coordinator could not start; the message says which step and why."""


def mode_banner(config: Config, trader_url: str, portfolio_url: str) -> tuple[int, str]:
    """The start-up line that says where orders go (level and text)."""
    if config.paper_trading:
        text = (
            "PAPER TRADING: orders go to the in-process paper exchange at "
            f"{trader_url}, no real money ({_paper_why(config)})"
        )
    else:
        text = (
            f"LIVE TRADING: orders go to the Trader at {trader_url}, real money on its "
            f"exchange; balances and positions from the Portfolio at {portfolio_url}"
        )
    if not config.trading.enabled:
        text += "; TRADING_ENABLED=false: signals are decided and recorded, no order is sent"
    # Above INFO, so that no log level hides where the orders go.
    return logging.WARNING, text


def _paper_why(config: Config) -> str:
    source = dict(config.sources).get("PAPER_TRADING", "")
    if source.startswith("derived"):
        return "nothing configured: everything embedded"
    return f"PAPER_TRADING=true from {source}"


def set_after(event: threading.Event, then: threading.Event) -> None:
    """Waits for ``event``, then sets ``then``: the body of a thread that relays it."""
    event.wait()
    then.set()


def lease_holder_name(identity: InstanceRegistry | None = None) -> str:
    """This coordinator's name in the leader lease: its instance and this process's
    incarnation of it (unique among the live instances, which the registry ensures, and
    told apart from an earlier process of the same instance); without a claimed
    identity, host, process id and a random part for each start."""
    if identity is not None:
        return f"{identity.instance}:{identity.incarnation[:8]}"
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def partition_timings(config: Config) -> LeaseTimings:
    """The partitions' leases last as long as a silent member stays listed
    (INSTANCE_LIVENESS), and are renewed at each heartbeat: a dead instance's
    partitions move no later than its membership lapses anyway, and a leader-length
    lease would change hands at every stall of a loaded machine (a clean stop or a
    handover releases them at once whatever their length)."""
    leader = config.leader_lease
    duration = max(leader.duration, config.instance.liveness)
    return LeaseTimings(duration, min(config.instance.heartbeat, duration / 3))


def build_tree(
    config: Config,
    *,
    holder: str | None = None,
    lease: str = LEADER_LEASE,
    partitioned: bool = False,
) -> list[ChildSpec]:
    """The children, in start order (stopped in reverse).

    Producers start after their consumers: the store writer before anything that
    records, the Validators before the intake that feeds them, so the intake (stopped
    first) stops taking signals before anything downstream goes. The LeaderElector
    starts last, once every child that may subscribe to its news runs, and stops first,
    releasing the lease for another instance. ``partitioned`` (a cluster): the
    PartitionKeeper starts before the Validators and stops after them, so that a
    partition is given up only once nothing here decides its signals any more.
    """
    # Each child is handed its own part of the configuration.
    parts = parts_of(config)
    validator = {"settings": parts.validator}
    validators = [
        ChildSpec(validator_name(index), Validator, kwargs=validator)
        for index in range(config.coordination.validation_threads)
    ]
    elector = ElectorSettings(
        config.leader_lease, holder or lease_holder_name(), lease, config.instance.mode
    )
    keeper = [
        ChildSpec(
            ActorName.PARTITION_KEEPER,
            PartitionKeeper,
            kwargs={
                "settings": PartitionSettings(
                    partition_timings(config),
                    config.instance.name,
                    elector.holder,
                    config.instance.liveness,
                    config.instance.heartbeat,
                )
            },
        )
    ]
    return [
        # First: it beats the identity from before the first actor that trades until
        # after the last one has stopped.
        ChildSpec(ActorName.INSTANCE_KEEPER, InstanceKeeper, kwargs={"settings": config.instance}),
        ChildSpec(ActorName.SERVICE_HEALTH, ServiceHealth, kwargs={"settings": parts.health}),
        ChildSpec(
            ActorName.STORE_WRITER,
            StoreWriter,
            kwargs={"settings": dataclasses.replace(parts.store, lease=lease)},
        ),
        ChildSpec(ActorName.STATS, Stats, Restart.PERMANENT),
        ChildSpec(ActorName.MARKET_FEED, MarketFeed, kwargs={"settings": parts.feed}),
        ChildSpec(ActorName.LEDGER, Ledger, kwargs={"settings": config.risk}),
        ChildSpec(ActorName.UNIVERSE_MANAGER, UniverseManager, kwargs={"settings": parts.universe}),
        ChildSpec(ActorName.TRAILING_STOP, TrailingStop, kwargs={"settings": parts.stops}),
        # Before the Validators, which hand it the orders they hold after a 5xx.
        ChildSpec(ActorName.RECONCILER, Reconciler, kwargs={"settings": parts.reconciler}),
        *(keeper if partitioned else []),
        *validators,
        ChildSpec(ActorName.SIGNAL_INTAKE, SignalIntake, kwargs={"settings": parts.intake}),
        ChildSpec(ActorName.LEADER_ELECTOR, LeaderElector, kwargs={"settings": elector}),
    ]


class Coordinator:
    def __init__(
        self, config: Config, *, clock: Clock | None = None, lease: str = LEADER_LEASE
    ) -> None:
        # ``lease``: the instances that share leader-only work contend for one lease;
        # tests running several coordinators on one database give each its own.
        self._lease = lease
        self.config = config
        self.clock = clock or SystemClock()
        self.outcome = TreeOutcome()
        self.directory = Directory()
        self.drills = DrillBoard()
        self.services: Services | None = None
        self.http: HttpServer | None = None
        self._published: PublishedAnswers | None = None
        self._lock: DataDirLock | None = None
        self._redis: EmbeddedRedis | None = None
        self._postgres: EmbeddedPostgres | None = None
        self.paper: PaperExchange | None = None
        self._events: EventPublisher | None = None
        self._readers: IntakeReaders | None = None
        self._supervisor: Any = None
        self._identity: InstanceRegistry | None = None
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
        # The data directory holds the local journal even with external servers.
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
        for note in config.notes:
            logger.log(note.level, "%s", note.text)
        self._identity = self._claim_identity(dsn, data_dir)
        # Every decision and order this process writes records its instance.
        dsn = instance_dsn(dsn, config.instance.name)
        trader_url, portfolio_url = config.trader.url, config.portfolio.url
        if config.paper_trading:
            self.paper = PaperExchange(
                starting_balance=config.paper.starting_balance,
                fee_rate=config.paper.fee_percent / 100.0,
                quote_asset=config.risk.quote_asset,
                redis_url=redis_url,
            ).start()
            trader_url = portfolio_url = self.paper.url
            # Every order this process writes is recorded as a paper order.
            dsn = paper_dsn(dsn)
        elif trader_url is None or portfolio_url is None:
            raise StartupError("live trading needs TRADER_API_URL and PORTFOLIO_API_URL")
        logger.log(*mode_banner(config, trader_url, portfolio_url))
        journal = Journal(data_dir / "journal.jsonl")
        if len(journal):
            logger.warning("%d record(s) in the local journal wait for PostgreSQL", len(journal))
        self.services = Services(
            config=config,
            endpoints=Endpoints(
                redis_url=redis_url,
                database_dsn=dsn,
                trader_url=trader_url,
                portfolio_url=portfolio_url,
                redis_embedded=self._redis is not None,
                database_embedded=self._postgres is not None,
            ),
            clock=self.clock,
            started_at=started_at,
            started_monotonic=started_monotonic,
            journal=journal,
            intents=IntentClaims(
                dsn,
                journal,
                timeout=2.0,
                clock=self.clock,
                group_wait=config.execution.intent_group_wait,
            ),
            paper_exchange=self.paper is not None,
            identity=self._identity,
            ownership=(
                PartitionOwnership(
                    config.intake.partitions,
                    config.intake.partition_stream,
                    self.clock.monotonic,
                )
                if config.instance.mode is InstanceMode.CLUSTER
                else None
            ),
        )
        self._events = EventPublisher(redis_url, config.intake.events_channel).start()
        self.directory.add_listener(self._publish_event)
        specs = build_tree(
            config,
            holder=lease_holder_name(self._identity),
            lease=self._lease,
            partitioned=self.services.ownership is not None,
        )
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
            target=set_after,
            args=(self.outcome.finished, waiter),
            name="tree-finished",
            daemon=True,
        ).start()
        threading.Thread(
            target=set_after,
            args=(self.outcome.ready, waiter),
            name="tree-ready",
            daemon=True,
        ).start()
        if not waiter.wait(budget) or not self.outcome.ready.is_set():
            why = self.outcome.failure or f"not ready within {budget:g} s"
            raise StartupError(f"the actor tree did not start: {why}")
        # Signals flow in only once every actor that handles them is up.
        self._readers = IntakeReaders(
            config.intake,
            self.services.endpoints.redis_url,
            self.directory,
            ownership=self.services.ownership,
            database_dsn=self.services.endpoints.database_dsn,
        ).start()
        api = CoordinatorApi(
            services=self.services,
            supervisor=self._supervisor,
            directory=self.directory,
            drills=self.drills,
        )
        self._published = published_answers(config.service, self.clock.monotonic)
        app = create_app(
            api,
            api_token=config.service.api_token,
            drills_enabled=config.service.drills,
            snapshot_ttl=config.service.snapshot_ttl,
            clock=self.clock.monotonic,
            max_signal_bytes=config.intake.max_signal_bytes,
            limits=Limits(
                mutating=config.http.rate_limit_mutating,
                signals=config.http.rate_limit_signals,
                max_clients=config.http.rate_limit_clients,
                max_body=config.http.max_body_bytes,
            ),
            published=self._published,
        )
        raise_open_files_limit()
        self.http = HttpServer(
            app,
            host=config.service.host,
            port=config.service.port,
            threads=config.service.http_threads,
            # A signal somewhat over its limit still reaches the intake, to be recorded
            # as invalid; far beyond it (and beyond what any other route takes) waitress
            # answers 413 itself.
            max_request_body_size=max(
                4 * config.intake.max_signal_bytes, 4 * config.http.max_body_bytes
            ),
            channel_timeout=config.http.channel_timeout,
            connection_limit=config.http.connection_limit,
            cleanup_interval=config.http.cleanup_interval,
            request_timeout=config.http.request_timeout,
            published=self._published,
        ).start()
        if self._published is not None:
            self._published.start()
        logger.info("coordinator running; API on %s", self.http.url)

    def _claim_identity(self, dsn: str, data_dir: Path) -> InstanceRegistry:
        """Take this instance's row before any actor that trades starts; refused
        (IdentityInUse) while another live process holds it, and (InstanceBeside) beside
        any other live instance when this one runs alone, or beside one that runs alone."""
        settings = self.config.instance
        registry = InstanceRegistry(
            dsn,
            instance=settings.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            data_dir=str(data_dir),
            liveness=settings.liveness,
            timeout=max(1.0, min(5.0, settings.liveness / 2)),
            database_in_data_dir=self._postgres is not None,
            mode=settings.mode,
        )
        try:
            earlier = registry.claim()
        finally:
            registry.close()
        if earlier is not None and earlier.stopped_at is None:
            logger.warning(
                "instance %s taken over from a coordinator that did not stop cleanly (%s)",
                settings.name,
                earlier.describe(),
            )
        logger.info("instance %s, incarnation %s", settings.name, registry.incarnation)
        return registry

    @property
    def identity_lost(self) -> IdentityLost | None:
        """How the identity was lost while running (another incarnation holds it), else
        None."""
        return None if self._identity is None else self._identity.lost

    def _release_identity(self) -> None:
        registry = self._identity
        if registry is None or registry.lost is not None:
            return
        try:
            if not registry.release():
                logger.warning("instance %s was no longer held at stop", registry.instance)
        except StoreError as exc:
            logger.warning(
                "instance %s not marked stopped (%s): a restart waits INSTANCE_LIVENESS "
                "for its last heartbeat to age",
                registry.instance,
                exc,
            )
        finally:
            registry.close()

    def _publish_event(self, event: Any) -> None:
        payload = event_json(event)
        if payload is not None and self._events is not None:
            self._events.publish(payload)

    def stop(self) -> None:
        """Stop in reverse order; safe to call more than once and after a failed start."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.http is not None:
            self.http.stop()
        if self._published is not None:
            self._published.stop()
        if self._readers is not None:
            self._readers.stop()
        if self._supervisor is not None and self._supervisor.is_alive():
            config = self.config.supervisor
            budget = (len(self.directory.names()) + 1) * config.stop_timeout
            try:
                self._supervisor.ask(StopTree(reason="coordinator stopping"), timeout=budget)
                self._supervisor.stop(timeout=budget)
            except Exception:
                logger.exception("the actor tree did not stop cleanly")
        for component in (self._events, self.paper):
            if component is not None:
                try:
                    component.stop()
                except Exception:
                    logger.exception("%s did not stop cleanly", type(component).__name__)
        # Before the embedded PostgreSQL goes: the row says the identity is free.
        self._release_identity()
        for server in (self._postgres, self._redis):
            if server is not None:
                try:
                    server.stop()
                except Exception:
                    logger.exception("embedded %s did not stop cleanly", server.name)
        if self._lock is not None:
            self._lock.release()
        logger.info("coordinator stopped")
