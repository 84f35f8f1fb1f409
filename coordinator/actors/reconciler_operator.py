"""The Reconciler's operator resolutions: one unknown order settled by a person
(``ResolveOrder``), in the store, or handed back to the Validator holding it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from coordinator.infra.order_states import OrderRow, OrderStates
from coordinator.infra.store import StoreError
from coordinator.messages.reconcile import OrderResolution, ResolveOrder, ResolveStatus
from coordinator.trading.execution import OrderStatus

if TYPE_CHECKING:
    from coordinator.clock import Clock
    from coordinator.supervisor.child import ChildActor

    _Host = ChildActor
else:
    _Host = object

__all__ = ["OperatorResolutions"]

logger = logging.getLogger("coordinator.actors.reconciler")


class OperatorResolutions(_Host):
    """Part of the Reconciler (its attributes are set up there)."""

    _operator_store: OrderStates
    _clock: Clock
    _by_operator: int
    _resolved: set[str]

    if TYPE_CHECKING:

        def _hand_back(
            self, row: OrderRow, *, accepted: bool, trader_id: str | None, detail: str
        ) -> None: ...

        def _tell_ledger(self, row: OrderRow) -> None: ...

    def _resolve(self, message: ResolveOrder) -> OrderResolution:
        store = self._operator_store
        cid = message.client_order_id
        try:
            row = store.order(cid)
            if row is None:
                return OrderResolution(
                    status=ResolveStatus.NOT_FOUND, state=None, detail=f"no order {cid}"
                )
            if row.state != OrderStatus.UNKNOWN:
                return OrderResolution(
                    status=ResolveStatus.NOT_UNKNOWN,
                    state=row.state,
                    detail=f"order {cid} is {row.state}, not unknown",
                )
            note = f"resolved {message.state} by {message.by}: {message.note}"
            if row.held and message.state == OrderStatus.REJECTED:
                # Its Validator records it (or sends it again while the signal is fresh).
                result_state = OrderStatus.UNKNOWN
                self._hand_back(row, accepted=False, trader_id=None, detail=note)
            else:
                result = store.resolve(
                    cid,
                    state=message.state,
                    trader_order_id=message.trader_order_id,
                    note=note,
                    at=self._clock.time(),
                )
                if not result.resolved:
                    return OrderResolution(
                        status=ResolveStatus.NOT_UNKNOWN,
                        state=result.state,
                        detail=f"order {cid} is {result.state}, not unknown",
                    )
                result_state = message.state
                if message.state == OrderStatus.REJECTED:
                    self._tell_ledger(row)
                if row.held:
                    self._hand_back(
                        row, accepted=True, trader_id=message.trader_order_id, detail=note
                    )
        except StoreError as exc:
            return OrderResolution(
                status=ResolveStatus.STORE_UNAVAILABLE, state=None, detail=str(exc)
            )
        self._by_operator += 1
        self._resolved.add(cid)
        logger.warning("order %s %s", cid, note)
        return OrderResolution(status=ResolveStatus.RESOLVED, state=result_state, detail=note)
