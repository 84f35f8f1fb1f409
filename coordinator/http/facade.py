"""One facade between the HTTP routes and the actors.

Routes never touch an actor or the network themselves: they call this, which asks the
actors for snapshots with a short timeout and shapes the answer. An actor that does not
answer in time, or is restarting, raises ActorUnavailable, which the routes turn into
a 503 that names it.
"""

from __future__ import annotations

import json
from typing import Any

import pykka
from pykka import ActorRef

from coordinator.clock import utc_iso
from coordinator.http.asking import (
    LEDGER,
    MARKET_FEED,
    SERVICE_HEALTH,
    SIGNAL_INTAKE,
    STATS,
    STORE_TIMEOUT,
    STORE_WRITER,
    TRAILING_STOP,
    UNIVERSE,
    ActorUnavailable,
    UnknownActor,
)
from coordinator.http.facade_orders import OrdersApi
from coordinator.infra.store import StoreError
from coordinator.messages.health import (
    DependencySnapshot,
    GetHealthSnapshot,
    HaltTrading,
    HealthSnapshot,
    ResumeTrading,
)
from coordinator.messages.pipeline import (
    Admission,
    GetIntakeSnapshot,
    GetLedgerSnapshot,
    GetMarketSnapshot,
    GetStats,
    GetStoreSnapshot,
    IntakeSnapshot,
    MarketSnapshot,
    RawSignal,
    StatsSnapshot,
    StoreSnapshot,
)
from coordinator.messages.stops import GetTrailingStops, TrailingStopsSnapshot
from coordinator.messages.supervision import (
    ChildSnapshot,
    DrillCrash,
    DrillHang,
    FailureInfo,
    GetSupervisorSnapshot,
    SupervisorSnapshot,
)
from coordinator.messages.universe import (
    BlacklistSymbol,
    GetUniverse,
    GetUniverseHistory,
    RotateUniverse,
    UnblacklistSymbol,
    UniverseHistory,
    UniverseSnapshot,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import DrillBoard
from coordinator.supervisor.directory import ChildUnavailable, Directory
from coordinator.trading.trading_state import ExitPolicy, TradingStatus

__all__ = ["ActorUnavailable", "CoordinatorApi", "UnknownActor"]

_ROTATION_TIMEOUT = 15.0  # a rotation over thousands of symbols takes up to a second or two
_MAX_DRILL_HANG = 3600.0


class CoordinatorApi(OrdersApi):
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
        components: dict[str, Any] = {}
        problems: list[str] = []
        unhealthy: list[str] = []
        if tree.state != "running":
            unhealthy.append(f"actor tree is {tree.state}")
        for child in tree.children:
            if child.state in ("failed", "stopped"):
                unhealthy.append(f"actor {child.name} is {child.state}")
            elif child.state != "running":
                problems.append(f"actor {child.name} is {child.state}")
        try:
            health = self._health()
        except ActorUnavailable as exc:
            problems.append(str(exc))
            trading: dict[str, Any] | None = None
            kill_switch: dict[str, Any] | None = None
        else:
            for dep in health.dependencies:
                components[dep.dependency.value] = {
                    "status": dep.status.value,
                    "breaker": dep.breaker.value,
                }
                if dep.status.value != "up":
                    problems.append(f"{dep.dependency.value} is {dep.status.value}")
            trading = _trading(health.trading)
            kill_switch = _kill_switch(health)
            if health.trading.state.value != "ACTIVE":
                problems.append(f"trading is {health.trading.state.value}")
        status = "unhealthy" if unhealthy else "degraded" if problems else "healthy"
        body = {
            "status": status,
            "timestamp": self._now(),
            "uptime": round(self._services.uptime(), 3),
            "mode": self._services.mode,
            "paper": self._services.paper_exchange,
            "components": components,
            "trading": trading,
            "kill_switch": kill_switch,
            "problems": unhealthy + problems,
            "actors": {
                child.name: {
                    "state": child.state,
                    "incarnation": child.incarnation,
                    "restarts": child.restarts,
                }
                for child in tree.children
            },
        }
        return (503 if unhealthy else 200), body

    def status(self) -> dict[str, Any]:
        health = self._health()
        return {
            "running": True,
            "timestamp": self._now(),
            "uptime": round(self._services.uptime(), 3),
            "version": self._services.version,
            "mode": self._services.mode,
            "paper": self._services.paper_exchange,
            "trading_state": health.trading.state.value,
            "trading": _trading(health.trading),
            "trading_enabled": self._services.config.trading.enabled,
            "kill_switch": _kill_switch(health),
            "dependencies": {
                dep.dependency.value: {
                    "status": dep.status.value,
                    "breaker": dep.breaker.value,
                    "target": dep.target,
                }
                for dep in health.dependencies
            },
        }

    def diagnostic(self) -> dict[str, Any]:
        tree = self._tree()
        health = self._health()
        return {
            "timestamp": self._now(),
            "uptime": round(self._services.uptime(), 3),
            "version": self._services.version,
            "started_at": utc_iso(self._services.started_at),
            "mode": self._services.mode,
            "paper": self._services.paper_exchange,
            "supervisor": _supervisor(tree),
            "trading": _trading(health.trading),
            "trading_since": utc_iso(health.trading_since),
            "kill_switch": _kill_switch(health),
            "intake_links": [
                {"link": link, "connected": up, "error": error}
                for link, up, error in health.intake_links
            ],
            "dependencies": {dep.dependency.value: _dependency(dep) for dep in health.dependencies},
            "embedded_servers": {
                "redis": self._services.endpoints.redis_embedded,
                "postgres": self._services.endpoints.database_embedded,
            },
            "reconciler": self._reconciler_view(),
            "config": self._services.config.redacted(),
        }

    def supervisor(self) -> dict[str, Any]:
        return _supervisor(self._tree())

    def stats(self) -> dict[str, Any]:
        intake: IntakeSnapshot = self._ask(SIGNAL_INTAKE, GetIntakeSnapshot())
        stats: StatsSnapshot = self._ask(STATS, GetStats())
        store: StoreSnapshot = self._ask(STORE_WRITER, GetStoreSnapshot())
        try:
            ledger = self._ask(LEDGER, GetLedgerSnapshot())
            positions: int | None = len(ledger.positions)
            reservations: int | None = ledger.reservations
        except ActorUnavailable:
            positions = reservations = None
        try:
            universe_size: int | None = len(self._ask(UNIVERSE, GetUniverse()).selected)
        except ActorUnavailable:
            universe_size = None
        try:
            stops_active: int | None = self._ask(TRAILING_STOP, GetTrailingStops()).active
        except ActorUnavailable:
            stops_active = None
        try:
            market: MarketSnapshot | None = self._ask(MARKET_FEED, GetMarketSnapshot())
        except ActorUnavailable:
            market = None
        tree = self._tree()
        since = json.loads(stats.since_start)
        return {
            "timestamp": self._now(),
            "uptime": round(self._services.uptime(), 3),
            "signals_received": intake.received,
            "signals_processed": since["signals_processed"],
            "signals_rejected": since["signals_rejected"],
            "orders_sent": since["orders_sent"],
            "errors": since["errors"] + sum(child.errors for child in tree.children),
            "signals_validated": since["signals_validated"],
            "validation_success_rate": since["validation_success_rate"],
            "active_positions": positions,
            "universe_size": universe_size,
            "trailing_stops_active": stops_active,
            "signals_in_flight": intake.in_flight,
            "duplicates": intake.duplicates,
            "resent_after_restart": intake.resent,
            "orders_unknown": len(store.unknown_orders),
            "reservations_open": reservations,
            "reservations_expired": since.get("reservations_expired", 0),
            "store": {
                "postgres_ok": store.postgres_ok,
                "pending": store.pending,
                "journaled": store.journaled,
                "last_error": store.last_error,
            },
            "market_data": None
            if market is None
            else {
                "connected": market.connected,
                "read": market.read,
                "duplicates": market.duplicates,
                "stale": market.stale,
                "malformed": dict(market.malformed),
            },
            "rejections_by_reason": since["rejections_by_reason"],
            "latency_ms": since["latency_ms"],
            "since_start": since,
            "lifetime": json.loads(stats.lifetime),
        }

    def universe(self) -> dict[str, Any]:
        snapshot: UniverseSnapshot = self._ask(UNIVERSE, GetUniverse())
        return json.loads(snapshot.json)

    def trailing_stops(self) -> dict[str, Any]:
        snapshot: TrailingStopsSnapshot = self._ask(TRAILING_STOP, GetTrailingStops())
        return json.loads(snapshot.json)

    def universe_history(self, limit: int) -> list[Any]:
        try:
            history: UniverseHistory = self._ask(
                UNIVERSE, GetUniverseHistory(limit=limit), timeout=STORE_TIMEOUT
            )
        except StoreError as exc:
            raise ActorUnavailable(UNIVERSE, str(exc)) from None
        return json.loads(history.json)

    # --- commands ---------------------------------------------------------------------

    def refresh_universe(self) -> dict[str, Any]:
        snapshot: UniverseSnapshot = self._ask(
            UNIVERSE, RotateUniverse(reason="api"), timeout=_ROTATION_TIMEOUT
        )
        return json.loads(snapshot.json)

    def blacklist(self, symbol: str, *, reason: str, ttl: float | None) -> dict[str, Any]:
        snapshot: UniverseSnapshot = self._ask(
            UNIVERSE, BlacklistSymbol(symbol=symbol, reason=reason, source="api", ttl=ttl)
        )
        return json.loads(snapshot.json)

    def unblacklist(self, symbol: str) -> dict[str, Any]:
        snapshot: UniverseSnapshot = self._ask(UNIVERSE, UnblacklistSymbol(symbol=symbol))
        return json.loads(snapshot.json)

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
                source="http",
                received_at=received_at,
                received_mono=received_mono,
                total_bytes=total_bytes,
            ),
        )

    def halt(self, *, reason: str, by: str, exits: ExitPolicy = ExitPolicy.ALLOW) -> dict[str, Any]:
        health = self._ask(SERVICE_HEALTH, HaltTrading(reason=reason, by=by, exits=exits))
        return {"trading": _trading(health.trading), "kill_switch": _kill_switch(health)}

    def resume(self, *, by: str) -> dict[str, Any]:
        health = self._ask(SERVICE_HEALTH, ResumeTrading(by=by))
        return {"trading": _trading(health.trading), "kill_switch": _kill_switch(health)}

    def drill(self, actor: str, kind: str, *, seconds: float | None = None) -> dict[str, Any]:
        if actor not in self._directory.names():
            raise UnknownActor(actor)
        match kind:
            case "crash":
                self._directory.tell(actor, DrillCrash())
            case "hang":
                if seconds is None or not 0 < seconds <= _MAX_DRILL_HANG:
                    raise ValueError(f"seconds must be a number > 0 and <= {_MAX_DRILL_HANG:g}")
                self._directory.tell(actor, DrillHang(seconds=seconds))
            case "fail-start":
                self._drills.arm_start_failure(actor)
            case _:
                raise ValueError(f"unknown drill {kind!r}: expected crash, hang or fail-start")
        return {"actor": actor, "drill": kind, "seconds": seconds}

    # --- helpers ----------------------------------------------------------------------

    def _tree(self) -> SupervisorSnapshot:
        try:
            return self._supervisor.ask(GetSupervisorSnapshot(), timeout=self._timeout)
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

    def _now(self) -> str:
        return utc_iso(self._services.clock.time())


def _trading(status: TradingStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "buys_allowed": status.buys_allowed,
        "sells_allowed": status.sells_allowed,
        "reasons": [{"code": r.code, "detail": r.detail} for r in status.reasons],
    }


def _kill_switch(health: HealthSnapshot) -> dict[str, Any]:
    return {
        "halted": health.halted,
        "reason": health.halt_reason,
        "exits": health.halt_exits.value if health.halted else "allow",
        "persisted": health.halt_persisted,
    }


def _dependency(dep: DependencySnapshot) -> dict[str, Any]:
    return {
        "status": dep.status.value,
        "target": dep.target,
        "breaker": {
            "state": dep.breaker.value,
            "consecutive_failures": dep.consecutive_failures,
            "retry_in": None if dep.retry_in is None else round(dep.retry_in, 3),
        },
        "last_probe": {
            "at": None if dep.last_probe_at is None else utc_iso(dep.last_probe_at),
            "latency_ms": None if dep.last_latency is None else round(dep.last_latency * 1000, 3),
            "in_flight": dep.probe_in_flight,
        },
        "last_error": (
            None
            if dep.last_error is None
            else {
                "error": dep.last_error,
                "at": None if dep.last_error_at is None else utc_iso(dep.last_error_at),
            }
        ),
    }


def _failure(failure: FailureInfo | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "at": utc_iso(failure.at),
        "type": failure.error_type,
        "error": failure.error,
        "phase": failure.phase,
    }


def _child(child: ChildSnapshot) -> dict[str, Any]:
    return {
        "name": child.name,
        "actor": child.actor,
        "restart": child.restart,
        "state": child.state,
        "incarnation": child.incarnation,
        "restarts": child.restarts,
        "errors": child.errors,
        "last_failure": _failure(child.last_failure),
        "mailbox_depth": child.mailbox_depth,
        "uptime": None if child.uptime is None else round(child.uptime, 3),
        "restart_in": None if child.restart_in is None else round(child.restart_in, 3),
    }


def _supervisor(tree: SupervisorSnapshot) -> dict[str, Any]:
    return {
        "state": tree.state,
        "strategy": tree.strategy,
        "restart_intensity": {
            "restarts_in_window": tree.restarts_in_window,
            "max_restarts": tree.max_restarts,
            "window_seconds": tree.restart_window,
        },
        "failure": tree.failure,
        "children": [_child(child) for child in tree.children],
    }
