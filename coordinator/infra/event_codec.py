"""Events as JSON for the ``roottrading:coordinator:events`` channel (``type`` field first)."""

from __future__ import annotations

import json
from typing import Any

from coordinator.messages.health import DependencyChanged, TradingStateChanged
from coordinator.messages.pipeline import Decision, OrderRecord, OrderSubmitted, SignalDecided

__all__ = ["event_json"]


def _order(order: OrderRecord | None) -> dict[str, Any] | None:
    if order is None:
        return None
    return {name: getattr(order, name) for name in OrderRecord.__slots__}


def _decision(decision: Decision) -> dict[str, Any]:
    return {
        "signal_id": decision.signal_id,
        "symbol": decision.symbol,
        "side": decision.side,
        "outcome": decision.outcome,
        "reason": decision.reason,
        "detail": decision.detail,
        "quantity": decision.quantity,
        "decided_at": decision.decided_at,
        "intake_to_decision_ms": round(decision.intake_to_decision_ms, 3),
        "intake_to_order_ms": None
        if decision.intake_to_order_ms is None
        else round(decision.intake_to_order_ms, 3),
        "checks": [check.as_dict() for check in decision.checks],
        "order": _order(decision.order),
    }


def event_json(event: Any) -> bytes | None:
    """The event as JSON bytes, or None for an event that does not go out."""
    match event:
        case SignalDecided(decision=decision, source=source):
            body: dict[str, Any] = {
                "type": "SignalDecided",
                "source": source,
                **_decision(decision),
            }
        case OrderSubmitted(order=order):
            body = {"type": "OrderSubmitted", **(_order(order) or {})}
        case TradingStateChanged(status=status, previous=previous, at=at):
            body = {
                "type": "TradingStateChanged",
                "state": status.state.value,
                "previous": previous.state.value,
                "reasons": [{"code": r.code, "detail": r.detail} for r in status.reasons],
                "at": at,
            }
        case DependencyChanged():
            body = {
                "type": "DependencyChanged",
                "dependency": event.dependency.value,
                "status": event.status.value,
                "previous": event.previous.value,
                "breaker": event.breaker.value,
                "error": event.error,
                "at": event.at,
            }
        case _:
            return None
    return json.dumps(body, default=str).encode()
