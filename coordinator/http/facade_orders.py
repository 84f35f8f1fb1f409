"""The facade's stored records and orders: signals and their decisions as stored, the
audit trail, orders whose outcome is unknown, and their reconciliation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coordinator.http.asking import RECONCILER, STORE_TIMEOUT, STORE_WRITER, ActorUnavailable
from coordinator.http.views_records import plain, rows_view, unknown_orders_view
from coordinator.infra.store import StoreError
from coordinator.messages.audit import AuditTrail, GetAuditTrail
from coordinator.messages.pipeline import (
    GetStoredRecords,
    GetStoreSnapshot,
    StoredRecords,
    StoreSnapshot,
)
from coordinator.messages.reconcile import (
    GetReconcilerSnapshot,
    OrderResolution,
    ReconcilerSnapshot,
    ResolveOrder,
)
from coordinator.trading.execution import OrderStatus

__all__ = ["OrdersApi"]


class OrdersApi:
    """Part of the CoordinatorApi, which provides ``_ask``."""

    _ask: Callable[..., Any]

    def signal(self, signal_id: str) -> dict[str, Any] | None:
        stored: StoredRecords = self._stored(GetStoredRecords(signal_id=signal_id))
        return None if stored.signal is None else plain(stored.signal)

    def decisions(self, *, symbol: str | None, outcome: str | None, limit: int) -> list[Any]:
        query = GetStoredRecords(symbol=symbol, outcome=outcome, limit=limit)
        stored: StoredRecords = self._stored(query)
        return rows_view(stored.decisions)

    def audit(self, limit: int) -> list[Any]:
        """The newest entries of the audit trail, newest first."""
        trail: AuditTrail = self._stored(GetAuditTrail(limit=limit))
        return rows_view(trail.entries)

    def _stored(self, query: GetStoredRecords | GetAuditTrail) -> Any:
        """The store writer's answer to a read of PostgreSQL; a 503 if it has none."""
        try:
            return self._ask(STORE_WRITER, query, timeout=STORE_TIMEOUT)
        except StoreError as exc:
            raise ActorUnavailable(STORE_WRITER, str(exc)) from None

    def unknown_orders(self) -> dict[str, Any]:
        store: StoreSnapshot = self._ask(STORE_WRITER, GetStoreSnapshot())
        return unknown_orders_view(store, self._reconciler())

    def _reconciler(self) -> ReconcilerSnapshot | None:
        """None when the Reconciler does not answer: the views leave it out then."""
        try:
            return self._ask(RECONCILER, GetReconcilerSnapshot())
        except ActorUnavailable:
            return None

    def resolve_order(
        self,
        client_order_id: str,
        *,
        state: OrderStatus,
        trader_order_id: str | None,
        note: str,
        by: str,
    ) -> OrderResolution:
        return self._ask(
            RECONCILER,
            ResolveOrder(
                client_order_id=client_order_id,
                state=state,
                trader_order_id=trader_order_id,
                note=note,
                by=by,
            ),
            timeout=STORE_TIMEOUT,
        )
