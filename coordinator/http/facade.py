"""One facade between the HTTP routes and the actors.

Routes never touch an actor or the network themselves: they call this, which asks the
actors for snapshots with a short timeout and shapes the answer. An actor that does not
answer in time, or is restarting, raises ActorUnavailable, which the routes turn into
a 503 that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka
from pykka import ActorRef

from coordinator.clock import utc_iso
from coordinator.messages.health import (
    DependencySnapshot,
    GetHealthSnapshot,
    HaltTrading,
    HealthSnapshot,
    ResumeTrading,
)
from coordinator.messages.supervision import (
    ChildSnapshot,
    DrillCrash,
    DrillHang,
    FailureInfo,
    GetSupervisorSnapshot,
    SupervisorSnapshot,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import DrillBoard
from coordinator.supervisor.directory import ChildUnavailable, Directory
from coordinator.trading.trading_state import TradingStatus

__all__ = ["ActorUnavailable", "CoordinatorApi", "UnknownActor"]

SERVICE_HEALTH = "service_health"
_MAX_DRILL_HANG = 3600.0


class ActorUnavailable(Exception):
    """An actor did not answer in time or is restarting: answer 503 naming it."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(f"actor {actor} is unavailable: {reason}")
        self.actor = actor
        self.reason = reason


class UnknownActor(LookupError):
    """No actor of that name in the tree."""


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: dict[str, Any]


class CoordinatorApi:
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
        else:
            for dep in health.dependencies:
                components[dep.dependency.value] = {
                    "status": dep.status.value,
                    "breaker": dep.breaker.value,
                }
                if dep.status.value != "up":
                    problems.append(f"{dep.dependency.value} is {dep.status.value}")
            trading = _trading(health.trading)
            if health.trading.state.value != "ACTIVE":
                problems.append(f"trading is {health.trading.state.value}")
        status = "unhealthy" if unhealthy else "degraded" if problems else "healthy"
        body = {
            "status": status,
            "timestamp": self._now(),
            "uptime": round(self._services.uptime(), 3),
            "components": components,
            "trading": trading,
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
            "trading_state": health.trading.state.value,
            "trading": _trading(health.trading),
            "trading_enabled": self._services.config.trading.enabled,
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
            "supervisor": _supervisor(tree),
            "trading": _trading(health.trading),
            "trading_since": utc_iso(health.trading_since),
            "kill_switch": _kill_switch(health),
            "dependencies": {dep.dependency.value: _dependency(dep) for dep in health.dependencies},
            "embedded_servers": {
                "redis": self._services.endpoints.redis_embedded,
                "postgres": self._services.endpoints.database_embedded,
            },
            "config": self._services.config.redacted(),
        }

    def supervisor(self) -> dict[str, Any]:
        return _supervisor(self._tree())

    # --- commands ---------------------------------------------------------------------

    def halt(self, *, reason: str, by: str) -> dict[str, Any]:
        health = self._ask(SERVICE_HEALTH, HaltTrading(reason=reason, by=by))
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

    def _ask(self, actor: str, message: Any) -> Any:
        try:
            return self._directory.ask(actor, message, timeout=self._timeout)
        except pykka.Timeout:
            raise ActorUnavailable(actor, f"no answer within {self._timeout:g} s") from None
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
