"""Routes of the orders whose outcome is unknown, and an operator's resolution of one."""

from __future__ import annotations

from typing import Any

from coordinator.http.endpoints import Endpoints, fail, json_body, operator, unavailable
from coordinator.http.facade import CoordinatorApi

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
        if state not in ("accepted", "rejected"):
            errors.append(f"state must be 'accepted' or 'rejected', got {state!r}")
        if trader_id is not None and (
            not isinstance(trader_id, str) or not trader_id.strip() or len(trader_id) > 100
        ):
            errors.append(f"trader_order_id must be a non-empty string or null, got {trader_id!r}")
        if trader_id is not None and state == "rejected":
            errors.append("trader_order_id is for an accepted order only")
        if not isinstance(note, str) or not note.strip():
            errors.append("note must be a non-empty string saying why")
        if errors:
            raise fail(400, "; ".join(errors))
        assert isinstance(state, str) and isinstance(note, str)  # checked above
        answer = api.resolve_order(
            client_order_id,
            state=state,
            trader_order_id=None if trader_id is None else trader_id.strip(),
            note=note.strip()[:500],
            by=operator(body),
        )
        match answer.status.value:
            case "not_found":
                raise fail(404, answer.detail, client_order_id=client_order_id)
            case "not_unknown":
                raise fail(409, answer.detail, client_order_id=client_order_id, state=answer.state)
            case "store_unavailable":
                raise unavailable(f"PostgreSQL did not answer: {answer.detail}")
        return {"client_order_id": client_order_id, "state": answer.state, "detail": answer.detail}
