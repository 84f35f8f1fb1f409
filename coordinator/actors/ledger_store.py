"""The Ledger's read of our recent orders from the store (run on its worker thread)."""

from __future__ import annotations

import logging

from coordinator.infra.order_states import OrderStates
from coordinator.trading.execution import OrderStatus
from coordinator.trading.ledger_restore import StoredOrder
from coordinator.trading.signals import Side

__all__ = ["read_recent_orders"]

logger = logging.getLogger(__name__)


def read_recent_orders(dsn: str, since: float, timeout: float) -> list[StoredOrder]:
    """Our orders created since ``since`` that filled or may have; StoreError when
    PostgreSQL cannot answer."""
    store = OrderStates(dsn, timeout=timeout)
    try:
        rows = store.recent(since)
    finally:
        store.close()
    orders = []
    for row in rows:
        try:
            side = Side(row.side)
        except ValueError:
            logger.error("stored order %s has side %r; not counted", row.client_order_id, row.side)
            continue
        orders.append(
            StoredOrder(
                client_order_id=row.client_order_id,
                signal_id=row.signal_id,
                symbol=row.symbol,
                side=side,
                quantity=row.quantity,
                reference_price=row.reference_price,
                created_at=row.created_at,
                accepted=row.state == OrderStatus.ACCEPTED,
            )
        )
    return orders
