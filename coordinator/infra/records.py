"""The pipeline's records as plain dicts: rows for PostgreSQL, lines of the journal,
bodies of the events."""

from __future__ import annotations

from dataclasses import fields
from enum import StrEnum
from typing import Any

from coordinator.messages.audit import RecordAudit
from coordinator.messages.pipeline import Decision, OrderRecord, RecordSignal

__all__ = ["RecordKind", "audit_record", "decision_record", "order_record", "signal_record"]


class RecordKind(StrEnum):
    """A record's ``kind``: which table it goes to, and how."""

    SIGNAL = "signal"
    """A signal as received (``coordinator_signals``)."""
    DECISION = "decision"
    """A signal's decision (``coordinator_decisions``); the first one per signal wins."""
    ORDER = "order"
    """An order's state change (``coordinator_orders``)."""
    INTENT = "intent"
    """An order about to be sent, claimed in the local journal while PostgreSQL is out."""
    PROCESSED = "processed"
    """A RootTrading ``trading_signals`` row to mark processed."""
    AUDIT = "audit"
    """A call of a mutating route (``coordinator_audit``)."""


def signal_record(message: RecordSignal) -> dict[str, Any]:
    signal = message.signal
    return {
        "kind": RecordKind.SIGNAL,
        "signal_id": message.signal_id,
        "source": message.source,
        "received_at": message.received_at,
        "valid": signal is not None,
        "symbol": None if signal is None else signal.symbol,
        "side": None if signal is None else signal.side.value,
        "price": None if signal is None else signal.price,
        "signal_at": None if signal is None else signal.timestamp,
        "strategy": None if signal is None else signal.strategy,
        "db_id": None if signal is None else signal.db_id,
        "stream_id": message.stream_id,
        "payload": message.payload,
    }


def decision_record(decision: Decision) -> dict[str, Any]:
    return {
        "kind": RecordKind.DECISION,
        "signal_id": decision.signal_id,
        "symbol": decision.symbol,
        "side": decision.side,
        "outcome": decision.outcome,
        "reason": decision.reason,
        "detail": decision.detail,
        "checks": [check.as_dict() for check in decision.checks],
        "quantity": decision.quantity,
        "decided_at": decision.decided_at,
        "decided_by": decision.decided_by,
        "intake_to_decision_ms": decision.intake_to_decision_ms,
        "intake_to_order_ms": decision.intake_to_order_ms,
    }


def order_record(order: OrderRecord, kind: RecordKind = RecordKind.ORDER) -> dict[str, Any]:
    return {
        "kind": kind,
        "client_order_id": order.client_order_id,
        "signal_id": order.signal_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
        "reference_price": order.reference_price,
        "state": order.state,
        "trader_order_id": order.trader_order_id,
        "error": order.error,
        "at": order.at,
    }


def audit_record(message: RecordAudit) -> dict[str, Any]:
    # Every field as it is: the message is the row.
    return {"kind": RecordKind.AUDIT, **{f.name: getattr(message, f.name) for f in fields(message)}}
