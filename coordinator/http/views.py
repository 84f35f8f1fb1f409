"""Views of the service's state: pure functions from the actors' typed snapshots to the
JSON-able bodies of the routes. No actor, no clock, no I/O: what they need is passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.clock import utc_iso
from coordinator.cluster.lease import Role
from coordinator.messages.health import DependencySnapshot, HealthSnapshot
from coordinator.messages.leadership import LeadershipSnapshot
from coordinator.messages.partitions import PartitionsSnapshot
from coordinator.messages.reconcile import ReconcilerSnapshot
from coordinator.messages.supervision import ChildSnapshot, FailureInfo, SupervisorSnapshot
from coordinator.supervisor import ChildState, TreeState
from coordinator.trading.trading_state import DependencyStatus, TradingStatus

__all__ = [
    "About",
    "diagnostic_view",
    "health_view",
    "kill_switch_view",
    "reconciler_view",
    "status_view",
    "supervisor_view",
    "trading_view",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class About:
    """The process itself, as the views show it."""

    now: float
    """Wall-clock time of the answer."""
    uptime: float
    """Seconds since start."""
    version: str
    """The coordinator's version."""
    mode: str
    """``live`` or ``paper``."""
    paper: bool
    """Whether orders go to the paper exchange."""
    started_at: float
    """Wall-clock time of the start."""
    trading_enabled: bool
    """The configured switch of order sending."""
    redis_embedded: bool
    """Whether Redis was started by the coordinator."""
    database_embedded: bool
    """Whether PostgreSQL was started by the coordinator."""
    instance: str = ""
    """This coordinator's identity (COORDINATOR_INSTANCE)."""
    instances: str = "single"
    """COORDINATOR_INSTANCES: ``single`` (alone, always the leader) or ``cluster``."""

    @property
    def timestamp(self) -> str:
        return utc_iso(self.now)

    @property
    def uptime_s(self) -> float:
        return round(self.uptime, 3)


def trading_view(status: TradingStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "buys_allowed": status.buys_allowed,
        "sells_allowed": status.sells_allowed,
        "reasons": [{"code": r.code, "detail": r.detail} for r in status.reasons],
    }


def kill_switch_view(health: HealthSnapshot) -> dict[str, Any]:
    return {
        "halted": health.halted,
        "reason": health.halt_reason,
        "exits": health.halt_exits.value if health.halted else "allow",
        "persisted": health.halt_persisted,
    }


def trading_switch_view(health: HealthSnapshot) -> dict[str, Any]:
    """The answer to a halt or a resume."""
    return {"trading": trading_view(health.trading), "kill_switch": kill_switch_view(health)}


def health_view(
    about: About,
    tree: SupervisorSnapshot,
    health: HealthSnapshot | None,
    unavailable: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """The old coordinator's /health fields, and the state of every actor.

    ``health`` is None when ServiceHealth did not answer; ``unavailable`` says why.
    """
    components: dict[str, Any] = {}
    problems: list[str] = []
    unhealthy: list[str] = []
    if tree.state != TreeState.RUNNING:
        unhealthy.append(f"actor tree is {tree.state}")
    for child in tree.children:
        if child.state in (ChildState.FAILED, ChildState.STOPPED):
            unhealthy.append(f"actor {child.name} is {child.state}")
        elif child.state != ChildState.RUNNING:
            problems.append(f"actor {child.name} is {child.state}")
    trading: dict[str, Any] | None = None
    kill_switch: dict[str, Any] | None = None
    if health is None:
        if unavailable is not None:
            problems.append(unavailable)
    else:
        for dep in health.dependencies:
            components[dep.dependency.value] = {
                "status": dep.status.value,
                "breaker": dep.breaker.value,
            }
            if dep.status != DependencyStatus.UP:
                problems.append(f"{dep.dependency.value} is {dep.status.value}")
        trading = trading_view(health.trading)
        kill_switch = kill_switch_view(health)
        if health.trading.state.value != "ACTIVE":
            problems.append(f"trading is {health.trading.state.value}")
    status = "unhealthy" if unhealthy else "degraded" if problems else "healthy"
    body = {
        "status": status,
        "timestamp": about.timestamp,
        "uptime": about.uptime_s,
        "mode": about.mode,
        "paper": about.paper,
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


def status_view(
    about: About,
    health: HealthSnapshot,
    leadership: LeadershipSnapshot | None = None,
    partitions: PartitionsSnapshot | None = None,
) -> dict[str, Any]:
    """``leadership`` is None when the LeaderElector did not answer (or there is none):
    then the role is follower, as nothing confirmed this instance leads. ``partitions``
    is None in single mode (every symbol is this instance's) or when the keeper did not
    answer."""
    return {
        "running": True,
        "timestamp": about.timestamp,
        "uptime": about.uptime_s,
        "version": about.version,
        "instance": about.instance,
        "instances": about.instances,
        "mode": about.mode,
        "paper": about.paper,
        "trading_state": health.trading.state.value,
        "trading": trading_view(health.trading),
        "trading_enabled": about.trading_enabled,
        "role": (leadership.role if leadership is not None else Role.FOLLOWER).value,
        "partitions": None
        if partitions is None
        else {
            "count": partitions.partitions,
            "held": list(partitions.held),
            "leaving": list(partitions.leaving),
            "members": list(partitions.live),
        },
        "kill_switch": kill_switch_view(health),
        "dependencies": {
            dep.dependency.value: {
                "status": dep.status.value,
                "breaker": dep.breaker.value,
                "target": dep.target,
            }
            for dep in health.dependencies
        },
    }


def diagnostic_view(
    about: About,
    tree: SupervisorSnapshot,
    health: HealthSnapshot,
    reconciler: ReconcilerSnapshot | None,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """``reconciler`` is None when the Reconciler did not answer; ``config`` is the
    configuration with its secrets left out."""
    return {
        "timestamp": about.timestamp,
        "uptime": about.uptime_s,
        "version": about.version,
        "instance": about.instance,
        "instances": about.instances,
        "started_at": utc_iso(about.started_at),
        "mode": about.mode,
        "paper": about.paper,
        "supervisor": supervisor_view(tree),
        "trading": trading_view(health.trading),
        "trading_since": utc_iso(health.trading_since),
        "kill_switch": kill_switch_view(health),
        "intake_links": [
            {"link": link, "connected": up, "error": error}
            for link, up, error in health.intake_links
        ],
        "dependencies": {dep.dependency.value: dependency_view(dep) for dep in health.dependencies},
        "embedded_servers": {
            "redis": about.redis_embedded,
            "postgres": about.database_embedded,
        },
        "reconciler": None if reconciler is None else reconciler_view(reconciler),
        "config": config,
    }


def dependency_view(dep: DependencySnapshot) -> dict[str, Any]:
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


def failure_view(failure: FailureInfo | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "at": utc_iso(failure.at),
        "type": failure.error_type,
        "error": failure.error,
        "phase": failure.phase,
    }


def child_view(child: ChildSnapshot) -> dict[str, Any]:
    return {
        "name": child.name,
        "actor": child.actor,
        "restart": child.restart,
        "state": child.state,
        "incarnation": child.incarnation,
        "restarts": child.restarts,
        "errors": child.errors,
        "last_failure": failure_view(child.last_failure),
        "mailbox_depth": child.mailbox_depth,
        "uptime": None if child.uptime is None else round(child.uptime, 3),
        "restart_in": None if child.restart_in is None else round(child.restart_in, 3),
    }


def supervisor_view(tree: SupervisorSnapshot) -> dict[str, Any]:
    return {
        "state": tree.state,
        "strategy": tree.strategy,
        "restart_intensity": {
            "restarts_in_window": tree.restarts_in_window,
            "max_restarts": tree.max_restarts,
            "window_seconds": tree.restart_window,
        },
        "failure": tree.failure,
        "children": [child_view(child) for child in tree.children],
    }


def reconciler_view(snapshot: ReconcilerSnapshot) -> dict[str, Any]:
    return {
        "reconciled": {
            "accepted": snapshot.accepted,
            "rejected": snapshot.rejected,
            "by_operator": snapshot.resolved_by_operator,
        },
        "still_unknown": [
            {
                "client_order_id": s.client_order_id,
                "symbol": s.symbol,
                "side": s.side,
                "quantity": s.quantity,
                "reason": s.reason,
                "detail": s.detail,
                "held": s.held,
            }
            for s in snapshot.still_unknown
        ],
        "last_run": None if snapshot.last_run is None else utc_iso(snapshot.last_run),
        "last_error": snapshot.last_error,
        "runs": snapshot.runs,
    }
