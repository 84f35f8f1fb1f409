"""Events as JSON for the ``roottrading:coordinator:events`` channel (``type`` field first)."""

from __future__ import annotations

import json
from typing import Any

from coordinator.infra.records import decision_record, order_record
from coordinator.messages.health import DependencyChanged, TradingStateChanged
from coordinator.messages.pipeline import OrderFinished, SignalDecided
from coordinator.messages.stops import StopTriggered
from coordinator.messages.universe import UniverseChanged

__all__ = ["event_json"]


def event_json(event: Any) -> bytes | None:
    """The event as JSON bytes, or None for an event that does not go out."""
    match event:
        case SignalDecided(wire=bytes() as wire):
            return wire
        case SignalDecided(decision=decision, source=source):
            body: dict[str, Any] = {
                "type": "SignalDecided",
                "source": source,
                **decision_record(decision),
                "order": None if decision.order is None else order_record(decision.order),
            }
            del body["kind"]
        case OrderFinished(wire=bytes() as wire):
            return wire
        case OrderFinished(order=order):
            # The channel's subscribers know this event by its first name.
            body = {"type": "OrderSubmitted", **order_record(order)}
            del body["kind"]
        case TradingStateChanged(status=status, previous=previous, at=at):
            body = {
                "type": "TradingStateChanged",
                "state": status.state.value,
                "previous": previous.state.value,
                "reasons": [{"code": r.code, "detail": r.detail} for r in status.reasons],
                "at": at,
            }
        case UniverseChanged():
            body = {
                "type": "UniverseChanged",
                "selected": sorted(event.selected),
                "added": list(event.added),
                "removed": list(event.removed),
                "draining": sorted(event.draining),
                "blacklist": [{"symbol": s, "reason": r} for s, r in event.blacklist],
                "reasons": dict(event.reasons),
                "at": event.at,
            }
        case StopTriggered():
            body = {
                "type": "StopTriggered",
                "position_key": event.position_key,
                "symbol": event.symbol,
                "exit_id": event.exit_id,
                "attempt": event.attempt,
                "price": event.price,
                "stop": event.stop,
                "peak": event.peak,
                "entry": event.entry,
                "rule": event.rule,
                "strategy": event.strategy,
                "at": event.at,
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
