"""The facade's stored records and orders: signals and their decisions as stored,
orders whose outcome is unknown, and their reconciliation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from coordinator.clock import utc_iso
from coordinator.http.asking import RECONCILER, STORE_TIMEOUT, STORE_WRITER, ActorUnavailable
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import (
    GetStoredRecords,
    GetStoreSnapshot,
    OrderRecord,
    StoredRecords,
    StoreSnapshot,
)
from coordinator.messages.reconcile import (
    GetReconcilerSnapshot,
    OrderResolution,
    ReconcilerSnapshot,
    ResolveOrder,
)

__all__ = ["OrdersApi"]


class OrdersApi:
    """Part of the CoordinatorApi, which provides ``_ask``."""

    _ask: Callable[..., Any]

    def signal(self, signal_id: str) -> dict[str, Any] | None:
        return self._stored(GetStoredRecords(signal_id=signal_id))

    def decisions(self, *, symbol: str | None, outcome: str | None, limit: int) -> list[Any]:
        return self._stored(GetStoredRecords(symbol=symbol, outcome=outcome, limit=limit))

    def _stored(self, query: GetStoredRecords) -> Any:
        try:
            records: StoredRecords = self._ask(STORE_WRITER, query, timeout=STORE_TIMEOUT)
        except StoreError as exc:
            raise ActorUnavailable(STORE_WRITER, str(exc)) from None
        return json.loads(records.json)

    def unknown_orders(self) -> dict[str, Any]:
        store: StoreSnapshot = self._ask(STORE_WRITER, GetStoreSnapshot())
        try:
            reconciler: ReconcilerSnapshot | None = self._ask(RECONCILER, GetReconcilerSnapshot())
        except ActorUnavailable:
            reconciler = None
        resolved = reconciler.resolved if reconciler is not None else frozenset()
        orders = [o for o in store.unknown_orders if o.client_order_id not in resolved]
        return {
            "count": len(orders),
            "orders": [
                {**{name: getattr(o, name) for name in OrderRecord.__slots__}, "at": utc_iso(o.at)}
                for o in orders
            ],
            "reconciler": None if reconciler is None else _reconciler(reconciler),
        }

    def _reconciler_view(self) -> dict[str, Any] | None:
        try:
            return _reconciler(self._ask(RECONCILER, GetReconcilerSnapshot()))
        except ActorUnavailable:
            return None

    def resolve_order(
        self, client_order_id: str, *, state: str, trader_order_id: str | None, note: str, by: str
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


def _reconciler(snapshot: ReconcilerSnapshot) -> dict[str, Any]:
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
