"""The JSON Schemas of the OpenAPI document (``components.schemas``): the bodies the
routes take and the answers they give, errors included.

The answers name the fields clients rely on (those of the old coordinator, and what the
dashboard reads) and leave room for more: a view may grow a field without breaking the
document, but not drop or retype one."""

from __future__ import annotations

from coordinator.http.openapi_types import (
    BOOLEAN,
    COUNTS,
    INTEGER,
    NUMBER,
    OBJECT,
    STRING,
    STRINGS,
    TIME,
    Schema,
    nullable,
    obj,
    ref,
)
from coordinator.http.routes_universe import MAX_BLACKLIST_TTL

__all__ = ["SCHEMAS", "nullable", "obj", "ref"]


def _list(name: str, items: Schema) -> Schema:
    return obj({"count": INTEGER, name: {"type": "array", "items": items}})


_ERROR = obj(
    {
        "error": {"type": "string", "description": "what is wrong, in words"},
        "status": {"type": "integer", "description": "the HTTP status, repeated"},
    }
)
_ERROR["description"] = "Every error answer; some add fields (an actor's name, a limit)."

_TRADING = obj(
    {
        "state": {"type": "string", "enum": ["ACTIVE", "DEGRADED", "HALTED"]},
        "buys_allowed": BOOLEAN,
        "sells_allowed": BOOLEAN,
        "reasons": {"type": "array", "items": obj({"code": STRING, "detail": STRING})},
    }
)

_KILL_SWITCH = obj(
    {
        "halted": BOOLEAN,
        "reason": nullable(STRING),
        "exits": {"type": "string", "enum": ["allow", "block"]},
        "persisted": BOOLEAN,
    }
)

_RECONCILER = obj(
    {
        "reconciled": COUNTS,
        "still_unknown": {"type": "array", "items": OBJECT},
        "last_run": nullable(TIME),
        "last_error": nullable(STRING),
        "runs": INTEGER,
    }
)

_SUPERVISOR = obj(
    {
        "state": STRING,
        "strategy": STRING,
        "restart_intensity": OBJECT,
        "failure": nullable(OBJECT),
        "children": {
            "type": "array",
            "items": obj(
                {
                    "name": STRING,
                    "actor": STRING,
                    "restart": STRING,
                    "state": STRING,
                    "incarnation": INTEGER,
                    "restarts": INTEGER,
                    "errors": INTEGER,
                    "last_failure": nullable(OBJECT),
                    "mailbox_depth": nullable(INTEGER),
                    "uptime": nullable(NUMBER),
                    "restart_in": nullable(NUMBER),
                }
            ),
        },
    }
)

_HEALTH = obj(
    {
        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
        "timestamp": TIME,
        "uptime": NUMBER,
        "mode": {"type": "string", "enum": ["paper", "live", "shadow"]},
        "paper": BOOLEAN,
        "components": {"type": "object", "additionalProperties": OBJECT},
        "trading": nullable(_TRADING),
        "kill_switch": nullable(_KILL_SWITCH),
        "problems": {"type": "array"},
        "actors": {"type": "object", "additionalProperties": OBJECT},
    },
    required=("status", "timestamp", "uptime", "mode", "paper", "components", "problems"),
)

_INSTANCES = {
    "type": "string",
    "enum": ["single", "cluster"],
    "description": "COORDINATOR_INSTANCES: single (runs alone and always leads) or cluster "
    "(one of several sharing Redis and PostgreSQL; the leader lease says who leads)",
}

_INTS: Schema = {"type": "array", "items": INTEGER}
_PARTITIONS: Schema = nullable(
    obj({"count": INTEGER, "held": _INTS, "leaving": _INTS, "members": STRINGS})
)
_PARTITIONS["description"] = (
    "cluster mode: the symbol partitions held here (their signals are decided here), those "
    "being handed over, the cluster's members; null in single mode or no keeper answer"
)

_STATUS = obj(
    {
        "running": BOOLEAN,
        "timestamp": TIME,
        "uptime": NUMBER,
        "version": STRING,
        "instance": {"type": "string", "description": "this coordinator's COORDINATOR_INSTANCE"},
        "instances": _INSTANCES,
        "mode": STRING,
        "paper": BOOLEAN,
        "trading_state": {"type": "string", "enum": ["ACTIVE", "DEGRADED", "HALTED"]},
        "trading": ref("Trading"),
        "trading_enabled": BOOLEAN,
        "role": {
            "type": "string",
            "enum": ["leader", "follower"],
            "description": "whether this instance holds the leader lease (follower when "
            "its elector does not answer)",
        },
        "partitions": _PARTITIONS,
        "kill_switch": ref("KillSwitch"),
        "dependencies": {"type": "object", "additionalProperties": OBJECT},
    }
)

_DIAGNOSTIC = obj(
    {
        "timestamp": TIME,
        "uptime": NUMBER,
        "version": STRING,
        "instance": STRING,
        "instances": _INSTANCES,
        "started_at": TIME,
        "mode": STRING,
        "paper": BOOLEAN,
        "supervisor": ref("Supervisor"),
        "trading": ref("Trading"),
        "trading_since": TIME,
        "kill_switch": ref("KillSwitch"),
        "intake_links": {"type": "array", "items": OBJECT},
        "dependencies": {"type": "object", "additionalProperties": OBJECT},
        "embedded_servers": obj({"redis": BOOLEAN, "postgres": BOOLEAN}),
        "reconciler": nullable(ref("Reconciler")),
        "config": {
            "type": "object",
            "description": "every setting: its value (secrets redacted) and where it came from",
            "additionalProperties": OBJECT,
        },
    }
)

_LATENCY: Schema = {"type": "object", "additionalProperties": OBJECT}

_STATS = obj(
    {
        "timestamp": TIME,
        "uptime": NUMBER,
        "signals_received": INTEGER,
        "signals_processed": INTEGER,
        "signals_rejected": INTEGER,
        "orders_sent": INTEGER,
        "errors": INTEGER,
        "signals_validated": INTEGER,
        "validation_success_rate": nullable(NUMBER),
        "active_positions": nullable(INTEGER),
        "universe_size": nullable(INTEGER),
        "trailing_stops_active": nullable(INTEGER),
        "signals_in_flight": INTEGER,
        "duplicates": INTEGER,
        "resent_after_restart": INTEGER,
        "orders_unknown": INTEGER,
        "reservations_open": nullable(INTEGER),
        "reservations_expired": INTEGER,
        "cash_held_back": nullable(NUMBER),
        "base_held_back": nullable(OBJECT),
        "store": OBJECT,
        "market_data": nullable(OBJECT),
        "rejections_by_reason": COUNTS,
        "latency_ms": _LATENCY,
        "since_start": OBJECT,
        "lifetime": nullable(OBJECT),
    }
)

_STATS_HISTORY = obj(
    {
        "timestamp": TIME,
        "bucket_seconds": INTEGER,
        "minutes": {
            "type": "array",
            "items": obj(
                {
                    "minute": TIME,
                    "signals": INTEGER,
                    "accepted": INTEGER,
                    "rejected": INTEGER,
                    "orders": INTEGER,
                    "rejections_by_reason": COUNTS,
                    "latency_ms": obj({"p50": nullable(NUMBER), "p99": nullable(NUMBER)}),
                }
            ),
        },
    }
)

_UNIVERSE = obj(
    {
        "selected_symbols": STRINGS,
        "selected_count": INTEGER,
        "core_pairs": STRINGS,
        "last_update": nullable(TIME),
        "next_update": TIME,
        "last_reason": nullable(STRING),
        "scores": OBJECT,
        "verdicts": {"type": "object", "additionalProperties": STRING},
        "excluded": {"type": "object", "additionalProperties": STRING},
        "members": {"type": "object", "additionalProperties": OBJECT},
        "waiting": OBJECT,
        "draining": STRINGS,
        "blacklist": {
            "type": "array",
            "items": obj(
                {
                    "symbol": STRING,
                    "reason": STRING,
                    "source": STRING,
                    "added_at": TIME,
                    "expires_at": nullable(TIME),
                }
            ),
        },
        "last_diff": obj({"added": STRINGS, "removed": STRINGS, "reasons": OBJECT}),
        "last_rotation_ms": nullable(NUMBER),
        "filters": {"type": "array"},
        "symbols_with_data": INTEGER,
        "performance": OBJECT,
    }
)

_TRAILING_STOPS = obj(
    {
        "positions": {"type": "array", "items": OBJECT},
        "count": INTEGER,
        "awaiting_orders": INTEGER,
        "rules": OBJECT,
        "price_max_age_s": NUMBER,
        "positions_fetched_at": nullable(TIME),
        "positions_error": nullable(STRING),
        "trade_cycles_error": nullable(STRING),
        "store_error": nullable(STRING),
        "stale_ticks_ignored": INTEGER,
        "exits_triggered": INTEGER,
        "leading": {
            "type": "boolean",
            "description": "whether this instance leads and so watches the stops",
        },
        "source": {
            "type": "string",
            "enum": ["watching", "store"],
            "description": (
                "watching: the stops this instance watches (it leads); store: a follower's "
                "answer, the leader's open stops as last stored in coordinator_stops (no "
                "price followed: last_price, stale and the like are null; stored_at says "
                "when the leader wrote each)"
            ),
        },
        "leader": {
            **nullable(STRING),
            "description": "the lease's holder: this instance when it leads, else the leader",
        },
    }
)

_SIGNAL_IN = {
    "type": "object",
    "description": (
        "A signal as the Signal Aggregator publishes it on Redis. The intake checks it: "
        "what is wrong is answered 400 with every field error, and stored as rejected."
    ),
    "properties": {
        "strategy": STRING,
        "symbol": {"type": "string", "pattern": "^[A-Z0-9]{5,20}$", "examples": ["BTCUSDC"]},
        "side": {"type": "string", "enum": ["BUY", "SELL"]},
        "timestamp": {
            "anyOf": [{"type": "string"}, {"type": "integer"}],
            "description": "ISO 8601 or epoch milliseconds",
        },
        "price": {"type": "number", "exclusiveMinimum": 0},
        "confidence": nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "strength": nullable(
            {"type": "string", "enum": ["very_weak", "weak", "moderate", "strong", "very_strong"]}
        ),
        "metadata": nullable(OBJECT),
    },
    "required": ["strategy", "symbol", "side", "timestamp", "price"],
}

_ADMISSION = obj(
    {
        "signal_id": STRING,
        "status": {
            "type": "string",
            "description": "what the intake did with it (accepted for a decision, a duplicate...)",
        },
        "reason": nullable(STRING),
    }
)

_INVALID_SIGNAL = {
    "allOf": [
        ref("Error"),
        obj(
            {
                "signal_id": STRING,
                "errors": {"type": "array", "items": obj({"field": STRING, "problem": STRING})},
            }
        ),
    ]
}

_RATE_LIMITED = {
    "allOf": [
        ref("Error"),
        obj(
            {
                "limit": {"type": "string", "examples": ["10/s burst 20"]},
                "retry_after": {"type": "integer", "minimum": 1},
            }
        ),
    ]
}

_UNAVAILABLE = {
    "allOf": [ref("Error")],
    "properties": {"actor": {"type": "string", "description": "the actor that did not answer"}},
}

_STORED_SIGNAL = obj(
    {"signal": OBJECT, "decision": nullable(OBJECT), "order": nullable(OBJECT)},
    required=("signal", "decision"),
)

_DECISION_ROW = obj(
    {
        "signal_id": STRING,
        "symbol": nullable(STRING),
        "side": nullable(STRING),
        "outcome": STRING,
        "reason": nullable(STRING),
        "detail": nullable(STRING),
        "decided_at": TIME,
    },
    required=("signal_id", "outcome", "decided_at"),
)

_AUDIT_ENTRY = obj(
    {
        "id": INTEGER,
        "at": TIME,
        "client": nullable(STRING),
        "token_fingerprint": nullable(STRING),
        "method": STRING,
        "path": STRING,
        "body": {},
        "body_text": nullable(STRING),
        "status": INTEGER,
        "result": {},
        "paper": nullable(BOOLEAN),
    },
    required=("id", "at", "method", "path", "status"),
)

_OPERATOR = {
    "type": "string",
    "description": (
        "who sends the command, for the logs and the store (the client's address is added)"
    ),
}

_HALT = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "exits": {"type": "string", "enum": ["allow", "block"], "default": "allow"},
        "operator": _OPERATOR,
    },
    "required": ["reason"],
}

_RESUME = {"type": "object", "properties": {"operator": _OPERATOR}}

_BLACKLIST = {
    "type": "object",
    "properties": {
        "symbol": {"type": "string", "pattern": "^[A-Z0-9]{5,20}$", "examples": ["BTCUSDC"]},
        "reason": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "ttl_s": nullable({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_BLACKLIST_TTL}),
    },
    "required": ["symbol", "reason"],
}

_RESOLVE = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["accepted", "rejected"]},
        "trader_order_id": nullable({"type": "string", "minLength": 1, "maxLength": 100}),
        "note": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "operator": _OPERATOR,
    },
    "required": ["state", "note"],
}

SCHEMAS: dict[str, Schema] = {
    "Error": _ERROR,
    "RateLimited": _RATE_LIMITED,
    "Unavailable": _UNAVAILABLE,
    "Index": obj({"service": STRING, "endpoints": STRINGS}),
    "Trading": _TRADING,
    "KillSwitch": _KILL_SWITCH,
    "TradingSwitch": obj({"trading": ref("Trading"), "kill_switch": ref("KillSwitch")}),
    "Reconciler": _RECONCILER,
    "Supervisor": _SUPERVISOR,
    "Health": _HEALTH,
    "Status": _STATUS,
    "Diagnostic": _DIAGNOSTIC,
    "Stats": _STATS,
    "StatsHistory": _STATS_HISTORY,
    "Universe": _UNIVERSE,
    "UniverseHistory": _list("rotations", OBJECT),
    "TrailingStops": _TRAILING_STOPS,
    "UnknownOrders": obj(
        {
            "count": INTEGER,
            "orders": {"type": "array", "items": OBJECT},
            "reconciler": nullable(ref("Reconciler")),
        }
    ),
    "Signal": _SIGNAL_IN,
    "Admission": _ADMISSION,
    "InvalidSignal": _INVALID_SIGNAL,
    "StoredSignal": _STORED_SIGNAL,
    "Decisions": _list("decisions", _DECISION_ROW),
    "Audit": _list("entries", _AUDIT_ENTRY),
    "Halt": _HALT,
    "Resume": _RESUME,
    "Blacklist": _BLACKLIST,
    "Resolve": _RESOLVE,
    "Resolved": obj({"client_order_id": STRING, "state": STRING, "detail": nullable(STRING)}),
    "Drill": obj(
        {
            "actor": STRING,
            "drill": {"type": "string", "enum": ["crash", "hang", "fail-start"]},
            "seconds": nullable(NUMBER),
        }
    ),
    "OpenApi": {
        "type": "object",
        "properties": {"openapi": {"const": "3.1.0"}, "info": OBJECT, "paths": OBJECT},
        "required": ["openapi", "info", "paths"],
    },
}
