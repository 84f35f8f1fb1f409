"""The pipeline's rows as PostgreSQL takes them: the batch statement of the store writer
(signals, order states and decisions in one statement) and the intent's row."""

from __future__ import annotations

import functools
import json
from typing import Any

from coordinator.infra.records import order_record
from coordinator.infra.store import clean_text
from coordinator.messages.pipeline import OrderRecord
from coordinator.trading import json_text

__all__ = [
    "ORDER_TEMPLATE",
    "WRITE_ROWS",
    "decided_event",
    "decision_row",
    "encode_row",
    "finished_event",
    "insert_intents",
    "json_rows",
    "order_event_json",
    "order_json_row",
    "order_row",
    "signal_row",
]

# An unknown order may still be resolved (by the reconciler, or by the Validator that
# held it and sent it again); an outcome, once known, is never overwritten.
_ORDER_RANK = (
    "CASE {0}.state WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'unknown' THEN 2 ELSE 3 END"
)
_ORDER_ROWS = """
    SELECT client_order_id, signal_id, symbol, side, quantity, reference_price, state,
           trader_order_id, error, to_timestamp(at), to_timestamp(at)
    FROM json_to_recordset(%(orders)s::json) AS r(client_order_id text, signal_id text,
        symbol text, side text, quantity float8, reference_price float8, state text,
        trader_order_id text, error text, at float8)"""

WRITE_ROWS = f"""
WITH signals AS (
    INSERT INTO coordinator_signals (signal_id, source, received_at, valid, symbol, side,
        price, signal_at, strategy, db_id, stream_id, payload)
    SELECT signal_id, source, to_timestamp(received_at), valid, symbol, side, price,
           to_timestamp(signal_at), strategy, db_id, stream_id, payload
    FROM json_to_recordset(%(signals)s::json) AS r(signal_id text, source text,
        received_at float8, valid boolean, symbol text, side text, price float8,
        signal_at float8, strategy text, db_id text, stream_id text, payload text)
    ON CONFLICT (signal_id) DO NOTHING
), orders AS (
    INSERT INTO coordinator_orders AS o (client_order_id, signal_id, symbol, side, quantity,
        reference_price, state, trader_order_id, error, created_at, updated_at)
    {_ORDER_ROWS}
    ON CONFLICT (client_order_id) DO UPDATE SET
        state = EXCLUDED.state,
        -- a held order is sized again before it is sent again: the row keeps what went
        quantity = CASE WHEN EXCLUDED.state IN ('sent', 'unknown') AND EXCLUDED.quantity > 0
                        THEN EXCLUDED.quantity ELSE o.quantity END,
        reference_price = CASE WHEN EXCLUDED.state IN ('sent', 'unknown')
                               THEN COALESCE(EXCLUDED.reference_price, o.reference_price)
                               ELSE o.reference_price END,
        trader_order_id = COALESCE(EXCLUDED.trader_order_id, o.trader_order_id),
        error = COALESCE(EXCLUDED.error, o.error),
        updated_at = EXCLUDED.updated_at
    WHERE {_ORDER_RANK.format("o")} < {_ORDER_RANK.format("EXCLUDED")}
       -- an unknown order sent again: its new time and note
       OR (o.state = 'unknown' AND EXCLUDED.state = 'unknown')
       -- the Trader took it (its id): a fill wins over a rejection written meanwhile
       OR (o.state = 'rejected' AND EXCLUDED.state = 'accepted'
           AND EXCLUDED.trader_order_id IS NOT NULL)
), decisions AS (
    INSERT INTO coordinator_decisions (signal_id, symbol, side, outcome, reason, detail,
        checks, quantity, decided_at, decided_by, intake_to_decision_ms, intake_to_order_ms)
    SELECT signal_id, symbol, side, outcome, reason, detail, checks, quantity,
           to_timestamp(decided_at), decided_by, intake_to_decision_ms, intake_to_order_ms
    FROM json_to_recordset(%(decisions)s::json) AS r(signal_id text, symbol text,
        side text, outcome text, reason text, detail text, checks jsonb, quantity float8,
        decided_at float8, decided_by text, intake_to_decision_ms float8,
        intake_to_order_ms float8)
    ON CONFLICT (signal_id) DO NOTHING RETURNING signal_id
)
SELECT signal_id FROM decisions
"""
"""Signals, order states and decisions of a batch in one statement (the tables are
independent: no statement of it needs another's rows); the decisions stored now."""

ORDER_TEMPLATE = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))"
_INSERT_INTENTS = """INSERT INTO coordinator_orders (client_order_id, signal_id, symbol, side,
        quantity, reference_price, state, trader_order_id, error, created_at, updated_at)
    VALUES {values} ON CONFLICT DO NOTHING RETURNING client_order_id"""


@functools.lru_cache(maxsize=256)
def insert_intents(count: int) -> str:
    """The INSERT of ``count`` intents claimed together (``order_row`` each, flattened):
    the ids stored now, each row on its own (one that exists is left as it is). The
    placeholders are written out once per count, so psycopg2 fills them in C; its
    ``execute_values`` splits the statement and formats each row in Python at every
    call, most of a claim's CPU in the client at a batch of a row or two."""
    return _INSERT_INTENTS.format(values=", ".join([ORDER_TEMPLATE] * count))


def _text(value: str | None) -> str | None:
    # Most text is plain ASCII: nothing to clean, and checked at C speed.
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return clean_text(value)


def _checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        # Every detail looked at once: most are plain ASCII, with nothing to clean (ten
        # checks per order, each looked at alone was 2.5 us).
        joined = "".join([c["detail"] for c in checks])
    except (KeyError, TypeError):
        pass  # one missing, or not text: each on its own below
    else:
        if joined.isascii() and "\x00" not in joined:
            return checks
    return [
        c
        if isinstance(detail := c.get("detail"), str) and _text(detail) is detail
        else {**c, "detail": clean_text(str(c.get("detail", "")))}
        for c in checks
    ]


# Built once: json.dumps makes a new encoder at every call given options. NaN and
# infinities are no JSON: refused here (a ValueError, then a RecordError, the batch split).
_ROWS = json_text.encoder_of(json.JSONEncoder(allow_nan=False, separators=(",", ":")))


def json_rows(rows: list[dict[str, Any]]) -> str:
    return _ROWS(rows)


def encode_row(row: dict[str, Any]) -> str:
    """One row as JSON (ValueError for a NaN or an infinity, which PostgreSQL refuses)."""
    return _ROWS(row)


# The events' encoding (``event_codec``'s: ``json.dumps(body, default=str)``), built once.
_EVENTS = json_text.encoder_of(json.JSONEncoder(default=str))


def order_event_json(order: OrderRecord) -> str:
    """An order's fields as both events of a finished order carry them (``order_record``
    without its kind): encoded once, for ``decided_event`` and ``finished_event``."""
    body = order_record(order)
    del body["kind"]
    return _EVENTS(body)


def decided_event(row_json: str, source: str, order_json: str | None) -> bytes:
    """``SignalDecided`` as it goes out on the events channel, made of the decision's
    row as stored (``decision_row``, encoded once for both) and its order's fields
    (``order_event_json``): the fields of ``event_codec``'s, ``type`` first, the text as
    stored."""
    head = '{"type":"SignalDecided","source":' + json.dumps(source) + ","
    order = "null" if order_json is None else '{"kind": "order", ' + order_json[1:]
    return (head + row_json[1:-1] + ',"order":' + order + "}").encode()


def finished_event(order_json: str) -> bytes:
    """``OrderFinished`` as it goes out on the events channel (``type``
    ``OrderSubmitted``), made of its order's fields (``order_event_json``)."""
    return ('{"type": "OrderSubmitted", ' + order_json[1:]).encode()


def signal_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "signal_id": r["signal_id"],
        "source": r["source"],
        "received_at": r["received_at"],
        "valid": r["valid"],
        "symbol": r.get("symbol"),
        "side": r.get("side"),
        "price": r.get("price"),
        "signal_at": r.get("signal_at"),
        "strategy": _text(r.get("strategy")),
        "db_id": r.get("db_id"),
        "stream_id": r.get("stream_id"),
        "payload": _text(r["payload"]),
    }


def order_json_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_order_id": r["client_order_id"],
        "signal_id": r["signal_id"],
        "symbol": r["symbol"],
        "side": r["side"],
        "quantity": r["quantity"],
        "reference_price": r.get("reference_price"),
        "state": r["state"],
        "trader_order_id": r.get("trader_order_id"),
        "error": _text(r.get("error")),
        "at": r["at"],
    }


def decision_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "signal_id": r["signal_id"],
        "symbol": r.get("symbol"),
        "side": r.get("side"),
        "outcome": r["outcome"],
        "reason": r.get("reason"),
        "detail": _text(r.get("detail")) or "",
        "checks": _checks(r["checks"]),
        "quantity": r.get("quantity"),
        "decided_at": r["decided_at"],
        "decided_by": r["decided_by"],
        "intake_to_decision_ms": r.get("intake_to_decision_ms"),
        "intake_to_order_ms": r.get("intake_to_order_ms"),
    }


def order_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """An order's values for ``ORDER_TEMPLATE``."""
    return (
        r["client_order_id"],
        r["signal_id"],
        r["symbol"],
        r["side"],
        r["quantity"],
        r.get("reference_price"),
        r["state"],
        r.get("trader_order_id"),
        clean_text(r.get("error")),
        r["at"],
        r["at"],
    )
