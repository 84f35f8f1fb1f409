"""Reconciliation of orders whose outcome is unknown, and of orders held after a 5xx."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from coordinator.cluster.fencing import LeaseToken
from coordinator.messages.base import Command, Event, Query
from coordinator.trading.execution import OrderStatus

__all__ = [
    "GetReconcilerSnapshot",
    "HeldOrderResolved",
    "OrderResolution",
    "ReconcilePassDone",
    "ReconcileSoon",
    "ReconcileTick",
    "ReconcilerSnapshot",
    "ResolveOrder",
    "ResolveStatus",
    "StillUnknown",
]


class ResolveStatus(StrEnum):
    RESOLVED = "resolved"
    NOT_FOUND = "not_found"
    """No order with that client order id."""
    NOT_UNKNOWN = "not_unknown"
    """The order has a known outcome already."""
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileTick(Command):
    """Time for the Reconciler to see whether a pass is due."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileSoon(Command):
    """An order just became unknown (or held): look for it now, and again once its
    window has passed."""

    client_order_id: str
    """The order."""
    sent_at: float
    """When it was sent, epoch seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StillUnknown:
    client_order_id: str
    """The order."""
    symbol: str
    """Its symbol."""
    side: str
    """BUY or SELL."""
    quantity: float
    """The quantity sent."""
    reason: str
    """Why it is still unknown (a ``VerdictReason``)."""
    detail: str
    """The reason for a person."""
    held: bool
    """Held after a 5xx: its signal waits in the Validator."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcilePassDone(Event):
    """The Reconciler's worker finished a pass."""

    accepted: int
    """Orders found at the Trader and marked accepted."""
    rejected: int
    """Orders not found once their window passed, marked rejected (or handed back to
    the Validator holding them)."""
    still_unknown: tuple[StillUnknown, ...]
    """What is left unknown, and why."""
    resolved: tuple[str, ...]
    """Client order ids that left the unknown state in this pass."""
    error: str | None
    """Why a source could not be read (the pass went on with the others)."""
    at: float
    """When the pass started, epoch seconds."""
    lease_lost: LeaseToken | None = None
    """The lease a settlement was refused under by the fence (the pass stopped there,
    nothing written): no longer leader."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldOrderResolved(Command):
    """To the Validator that owns the symbol: the outcome of an order it holds (the
    reconciler's or an operator's). Accepted: decide its signal. Rejected (not executed):
    send it again as the same intent while the signal is fresh, else decide it rejected."""

    client_order_id: str
    """The order."""
    signal_id: str
    """Its signal."""
    symbol: str
    """Its symbol."""
    side: str
    """BUY or SELL."""
    quantity: float
    """The quantity sent."""
    accepted: bool
    """Found at the Trader (True) or known not executed (False)."""
    trader_order_id: str | None
    """The Trader's id, when found."""
    detail: str
    """Where it was found, or why it is taken as not executed."""
    by: str
    """``reconciler`` or the operator."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveOrder(Command):
    """An operator settles one unknown order (asked)."""

    client_order_id: str
    """The order."""
    state: OrderStatus
    """``accepted`` or ``rejected``."""
    trader_order_id: str | None
    """The Trader's id, if known."""
    note: str
    """Why, for the record."""
    by: str
    """Who."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderResolution:
    """The answer to ``ResolveOrder``."""

    status: ResolveStatus
    """What happened."""
    state: str | None
    """The order's state now (None: no such order)."""
    detail: str
    """For a person."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetReconcilerSnapshot(Query):
    """Ask the Reconciler for a ``ReconcilerSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcilerSnapshot:
    accepted: int
    """Orders reconciled as accepted since start."""
    rejected: int
    """Orders reconciled as rejected since start."""
    resolved_by_operator: int
    """Orders an operator settled since start."""
    still_unknown: tuple[StillUnknown, ...]
    """Left unknown by the last pass."""
    resolved: frozenset[str]
    """Client order ids resolved since start (reconciler or operator)."""
    last_run: float | None
    """When the last pass started, epoch seconds."""
    last_error: str | None
    """The last pass's error, if any."""
    runs: int
    """Passes since start."""
