"""One facade between the HTTP routes and the actors.

Routes never touch an actor or the network themselves: they call this, which asks the
actors for snapshots with a short timeout and shapes the answer. An actor that does not
answer in time, or is restarting, raises ActorUnavailable, which the routes turn into
a 503 that names it.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka
from pykka import ActorRef

from coordinator.http.asking import (
    LEADER_ELECTOR,
    LEDGER,
    MARKET_FEED,
    PARTITION_KEEPER,
    SERVICE_HEALTH,
    SIGNAL_INTAKE,
    STATS,
    STORE_TIMEOUT,
    STORE_WRITER,
    TRAILING_STOP,
    UNIVERSE,
    ActorUnavailable,
    NotLeader,
    NotOnBlacklist,
    UnknownActor,
)
from coordinator.http.facade_metrics import MetricsApi
from coordinator.http.facade_orders import OrdersApi
from coordinator.http.views import (
    About,
    diagnostic_view,
    health_view,
    status_view,
    supervisor_view,
    trading_switch_view,
)
from coordinator.http.views_records import (
    rows_view,
    stats_history_view,
    stats_view,
    trailing_stops_view,
    universe_view,
)
from coordinator.infra.store import StoreError
from coordinator.messages.audit import RecordAudit
from coordinator.messages.health import (
    GetHealthSnapshot,
    HaltTrading,
    HealthSnapshot,
    ResumeTrading,
)
from coordinator.messages.leadership import GetLeadership, LeadershipSnapshot, NotLeading
from coordinator.messages.ledger import GetLedgerSnapshot, LedgerSnapshot
from coordinator.messages.partitions import GetPartitions, PartitionsSnapshot
from coordinator.messages.pipeline import (
    Admission,
    GetIntakeSnapshot,
    GetMarketSnapshot,
    GetStoreSnapshot,
    IntakeSnapshot,
    MarketSnapshot,
    RawSignal,
    StoreSnapshot,
)
from coordinator.messages.stats import GetStats, GetStatsHistory, StatsHistory, StatsSnapshot
from coordinator.messages.stops import GetTrailingStops, TrailingStopsSnapshot
from coordinator.messages.supervision import (
    DrillCrash,
    DrillHang,
    GetSupervisorSnapshot,
    SupervisorSnapshot,
)
from coordinator.messages.universe import (
    BlacklistSymbol,
    GetUniverse,
    GetUniverseHistory,
    NotBlacklisted,
    RotateUniverse,
    UnblacklistSymbol,
    UniverseHistory,
    UniverseSnapshot,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import DrillBoard
from coordinator.supervisor.directory import ChildUnavailable, Directory
from coordinator.trading.signals import SignalSource
from coordinator.trading.trading_state import ExitPolicy

__all__ = ["ActorUnavailable", "CoordinatorApi", "UnknownActor"]

logger = logging.getLogger(__name__)

_ROTATION_TIMEOUT = 15.0  # a rotation over thousands of symbols takes up to a second or two
_MAX_DRILL_HANG = 3600.0


class CoordinatorApi(OrdersApi, MetricsApi):
    def __init__(
        self,
        *,
        services: Services,
        supervisor: ActorRef[Any],
        directory: Directory,
        drills: DrillBoard,
    ) -> None:
        self._services = services
        self._supervisor = supervisor
        self._directory = directory
        self._drills = drills
        self._timeout = services.config.service.ask_timeout

    # --- reads ------------------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        """The old coordinator's /health fields, and the state of every actor."""
        tree = self._tree()
        try:
            health: HealthSnapshot | None = self._health()
        except ActorUnavailable as exc:
            return health_view(self._about(), tree, None, str(exc))
        return health_view(self._about(), tree, health)

    def status(self) -> dict[str, Any]:
        leadership: LeadershipSnapshot | None = self._ask_or_none(LEADER_ELECTOR, GetLeadership())
        partitions: PartitionsSnapshot | None = None
        if self._services.ownership is not None:
            partitions = self._ask_or_none(PARTITION_KEEPER, GetPartitions())
        return status_view(self._about(), self._health(), leadership, partitions)

    def diagnostic(self) -> dict[str, Any]:
        tree = self._tree()
        health = self._health()
        reconciler = self._reconciler()
        config = self._services.config.redacted()
        return diagnostic_view(self._about(), tree, health, reconciler, config)

    def supervisor(self) -> dict[str, Any]:
        return supervisor_view(self._tree())

    def stats(self) -> dict[str, Any]:
        intake: IntakeSnapshot = self._ask(SIGNAL_INTAKE, GetIntakeSnapshot())
        stats: StatsSnapshot = self._ask(STATS, GetStats())
        store: StoreSnapshot = self._ask(STORE_WRITER, GetStoreSnapshot())
        ledger: LedgerSnapshot | None = self._ask_or_none(LEDGER, GetLedgerSnapshot())
        universe: UniverseSnapshot | None = self._ask_or_none(UNIVERSE, GetUniverse())
        stops: TrailingStopsSnapshot | None = self._ask_or_none(
            TRAILING_STOP, GetTrailingStops(rows=False)
        )
        market: MarketSnapshot | None = self._ask_or_none(MARKET_FEED, GetMarketSnapshot())
        tree = self._tree()
        return stats_view(
            self._about(),
            intake=intake,
            stats=stats,
            store=store,
            actor_errors=sum(child.errors for child in tree.children),
            ledger=ledger,
            universe=universe,
            stops=stops,
            market=market,
        )

    def stats_history(self) -> dict[str, Any]:
        history: StatsHistory = self._ask(STATS, GetStatsHistory())
        return stats_history_view(history)

    def universe(self) -> dict[str, Any]:
        return universe_view(self.universe_snapshot())

    def universe_snapshot(self) -> UniverseSnapshot:
        return self._ask(UNIVERSE, GetUniverse())

    def trailing_stops(self) -> dict[str, Any]:
        # A follower reads the leader's stops and name from the database: two reads.
        snapshot: TrailingStopsSnapshot = self._ask(
            TRAILING_STOP, GetTrailingStops(stored_if_following=True), timeout=2 * STORE_TIMEOUT
        )
        return trailing_stops_view(snapshot)

    def universe_history(self, limit: int) -> list[Any]:
        try:
            history: UniverseHistory = self._ask(
                UNIVERSE, GetUniverseHistory(limit=limit), timeout=STORE_TIMEOUT
            )
        except StoreError as exc:
            raise ActorUnavailable(UNIVERSE, str(exc)) from None
        return rows_view(history.rotations)

    # --- commands ---------------------------------------------------------------------

    # The universe's commands are the leader's: a follower answers NotLeading (409).

    def refresh_universe(self) -> dict[str, Any]:
        snapshot = self._ask(UNIVERSE, RotateUniverse(reason="api"), timeout=_ROTATION_TIMEOUT)
        return universe_view(_led(snapshot))

    # A blacklist change is stored before it is answered: it waits as long as a read of
    # the store may, not the actor state's timeout, or a busy store answers 503 for a
    # change that takes effect all the same.

    def blacklist(self, symbol: str, *, reason: str, ttl: float | None) -> dict[str, Any]:
        snapshot = self._ask(
            UNIVERSE,
            BlacklistSymbol(symbol=symbol, reason=reason, source="api", ttl=ttl),
            timeout=STORE_TIMEOUT,
        )
        return universe_view(_led(snapshot))

    def unblacklist(self, symbol: str) -> dict[str, Any]:
        answer = self._ask(UNIVERSE, UnblacklistSymbol(symbol=symbol), timeout=STORE_TIMEOUT)
        if isinstance(answer, NotBlacklisted):
            raise NotOnBlacklist(f"{symbol} is not on the blacklist")
        return universe_view(_led(answer))

    def submit_signal(
        self,
        payload: bytes,
        *,
        received_at: float,
        received_mono: float,
        total_bytes: int | None = None,
    ) -> Admission:
        return self._ask(
            SIGNAL_INTAKE,
            RawSignal(
                payload=payload,
                source=SignalSource.HTTP,
                received_at=received_at,
                received_mono=received_mono,
                total_bytes=total_bytes,
            ),
        )

    def halt(self, *, reason: str, by: str, exits: ExitPolicy = ExitPolicy.ALLOW) -> dict[str, Any]:
        health = self._ask(SERVICE_HEALTH, HaltTrading(reason=reason, by=by, exits=exits))
        return trading_switch_view(health)

    def resume(self, *, by: str) -> dict[str, Any]:
        health = self._ask(SERVICE_HEALTH, ResumeTrading(by=by))
        return trading_switch_view(health)

    def drill(self, actor: str, kind: str, *, seconds: float | None = None) -> dict[str, Any]:
        if actor not in self._directory.names():
            raise UnknownActor(actor)
        match kind:
            case "crash":
                self._tell_drill(actor, DrillCrash())
            case "hang":
                if seconds is None or not 0 < seconds <= _MAX_DRILL_HANG:
                    raise ValueError(f"seconds must be a number > 0 and <= {_MAX_DRILL_HANG:g}")
                self._tell_drill(actor, DrillHang(seconds=seconds))
            case "fail-start":
                self._drills.arm_start_failure(actor)
            case _:
                raise ValueError(f"unknown drill {kind!r}: expected crash, hang or fail-start")
        return {"actor": actor, "drill": kind, "seconds": seconds}

    def record_audit(self, **fields: Any) -> None:
        """Hand a call of a mutating route to the store writer (``RecordAudit``'s fields
        but its time). Kept for its next incarnation while it restarts."""
        entry = RecordAudit(at=self._services.clock.time(), **fields)
        try:
            self._directory.tell(STORE_WRITER, entry)
        except ChildUnavailable as exc:
            # The call is done and answered; what is left is to say so in the log.
            logger.error("ALERT audit entry not recorded (%s): %r", exc, entry)

    # --- helpers ----------------------------------------------------------------------

    def _tell_drill(self, actor: str, drill: DrillCrash | DrillHang) -> None:
        try:
            self._directory.tell(actor, drill)
        except ChildUnavailable as exc:
            # Down, with as many messages kept for its next incarnation as it may hold.
            raise ActorUnavailable(actor, exc.reason) from None

    def _tree(self) -> SupervisorSnapshot:
        try:
            return self._supervisor.ask(GetSupervisorSnapshot(), block=True, timeout=self._timeout)
        except pykka.Timeout:
            raise ActorUnavailable("supervisor", f"no answer within {self._timeout:g} s") from None
        except pykka.ActorDeadError:
            raise ActorUnavailable("supervisor", "stopped") from None

    def _health(self) -> HealthSnapshot:
        return self._ask(SERVICE_HEALTH, GetHealthSnapshot())

    def _ask(self, actor: str, message: Any, *, timeout: float | None = None) -> Any:
        timeout = self._timeout if timeout is None else timeout
        try:
            return self._directory.ask(actor, message, timeout=timeout)
        except pykka.Timeout:
            raise ActorUnavailable(actor, f"no answer within {timeout:g} s") from None
        except (ChildUnavailable, pykka.ActorDeadError) as exc:
            raise ActorUnavailable(actor, "restarting or stopped") from exc

    def _ask_or_none(self, actor: str, message: Any) -> Any:
        """The answer, or None when the actor is unavailable (a part of a view left out)."""
        try:
            return self._ask(actor, message)
        except ActorUnavailable:
            return None

    def _about(self) -> About:
        services = self._services
        return About(
            now=services.clock.time(),
            uptime=services.uptime(),
            version=services.version,
            mode=services.mode,
            paper=services.paper_exchange,
            started_at=services.started_at,
            trading_enabled=services.config.trading.enabled,
            redis_embedded=services.endpoints.redis_embedded,
            database_embedded=services.endpoints.database_embedded,
            instance=services.config.instance.name,
            instances=services.config.instance.mode.value,
        )


def _led(answer: Any) -> UniverseSnapshot:
    """The snapshot of a leader-only command, or NotLeader from a follower."""
    if isinstance(answer, NotLeading):
        raise NotLeader(answer.leader)
    snapshot: UniverseSnapshot = answer
    return snapshot
