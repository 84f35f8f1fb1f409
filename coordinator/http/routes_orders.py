"""Routes of the orders whose outcome is unknown, and an operator's resolution of one."""

from __future__ import annotations

from typing import Any

from coordinator.http.endpoints import Endpoints, fail, json_body, operator, unavailable
from coordinator.http.facade import CoordinatorApi
from coordinator.messages.reconcile import ResolveStatus
from coordinator.trading.execution import OrderStatus

__all__ = ["install"]


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    @endpoint("GET", "/orders/unknown")
    def unknown_orders() -> dict[str, Any]:
        return api.unknown_orders()

    @endpoint("POST", "/orders/<client_order_id>/resolve", token=True)
    def resolve_order(client_order_id: str) -> dict[str, Any]:
        body = json_body()
        state, trader_id, note = body.get("state"), body.get("trader_order_id"), body.get("note")
        errors = []
        if state not in (OrderStatus.ACCEPTED, OrderStatus.REJECTED):
            errors.append(f"state must be 'accepted' or 'rejected', got {state!r}")
        if trader_id is not None and (
            not isinstance(trader_id, str) or not trader_id.strip() or len(trader_id) > 100
        ):
            errors.append(f"trader_order_id must be a non-empty string or null, got {trader_id!r}")
        if trader_id is not None and state == OrderStatus.REJECTED:
            errors.append("trader_order_id is for an accepted order only")
        if not isinstance(note, str) or not note.strip():
            errors.append("note must be a non-empty string saying why")
        if errors:
            raise fail(400, "; ".join(errors))
        assert isinstance(state, str) and isinstance(note, str)  # checked above
        answer = api.resolve_order(
            client_order_id,
            state=OrderStatus(state),
            trader_order_id=None if trader_id is None else trader_id.strip(),
            note=note.strip()[:500],
            by=operator(body),
        )
        match answer.status:
            case ResolveStatus.NOT_FOUND:
                raise fail(404, answer.detail, client_order_id=client_order_id)
            case ResolveStatus.NOT_UNKNOWN:
                raise fail(409, answer.detail, client_order_id=client_order_id, state=answer.state)
            case ResolveStatus.STORE_UNAVAILABLE:
                raise unavailable(f"PostgreSQL did not answer: {answer.detail}")
        return {"client_order_id": client_order_id, "state": answer.state, "detail": answer.detail}
