"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Plain data: every route, its parameters and body, and every answer it can give,
errors included. tests/test_openapi.py holds it to the routes Bottle has installed and
runs schemathesis against a live coordinator with it, so that it stays true."""

from __future__ import annotations

import copy
from typing import Any

from coordinator.http.openapi_schemas import SCHEMAS, ref
from coordinator.trading.validation import Outcome

__all__ = ["PATH", "document"]

PATH = "/openapi.json"

Doc = dict[str, Any]

_RETRY_AFTER = {
    "description": "whole seconds to wait before trying again",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _json(description: str, schema: Doc, headers: Doc | None = None) -> Doc:
    answer: Doc = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(description: str, headers: Doc | None = None) -> Doc:
    return _json(description, ref("Error"), headers)


_RESPONSES: Doc = {
    "BadRequest": _error(
        "the request is wrong: the error names every bad field or parameter (a NUL "
        "character in a path parameter or a command's body included: nothing could store it)"
    ),
    "Unauthorized": _error(
        "missing or wrong bearer token",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "Forbidden": _error(
        "commands are disabled: no COORDINATOR_API_TOKEN is configured (the error says how "
        "to set one)"
    ),
    "NotFound": _error("no such resource (the error names it)"),
    "Conflict": _error("not in a state that allows it (the error says which state it is in)"),
    "TooLarge": _error(
        "the body is over the route's limit (HTTP_MAX_BODY_BYTES, 64 KiB by default): "
        "refused on its Content-Length, unread; the error names the size and the limit"
    ),
    "RateLimited": _json(
        "this client is over its rate (HTTP_RATE_LIMIT_MUTATING, or HTTP_RATE_LIMIT_SIGNALS "
        "for POST /signals)",
        ref("RateLimited"),
        {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
    ),
    "Unavailable": _json(
        "an actor (named in `actor`) or the store did not answer in time, or is restarting",
        ref("Unavailable"),
        {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
    ),
}


def _shared(*names: str) -> Doc:
    codes = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "TooLarge": "413",
        "RateLimited": "429",
        "Unavailable": "503",
    }
    return {codes[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


_COMMAND = ("Unauthorized", "Forbidden", "TooLarge", "RateLimited", "Unavailable")
"""What every route that takes the token may answer besides its own."""


def _path_param(name: str, description: str, schema: Doc | None = None) -> Doc:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1},
    }


def _limit(maximum: int, default: int) -> Doc:
    return {
        "name": "limit",
        "in": "query",
        "description": f"how many, newest first (1 to {maximum})",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _body(schema_name: str, *, required: bool = True) -> Doc:
    return {
        "required": required,
        "content": {"application/json": {"schema": ref(schema_name)}},
    }


def _read(summary: str, schema_name: str, *, tag: str, errors: tuple[str, ...] = ()) -> Doc:
    """A read-only route answering ``schema_name``, or 503 when an actor does not answer."""
    return {
        "tags": [tag],
        "summary": summary,
        "responses": {
            "200": _json(summary, ref(schema_name)),
            **_shared(*errors, "TooLarge", "Unavailable"),
        },
    }


def _command(
    summary: str,
    answer: Doc,
    *,
    tag: str,
    body: Doc | None = None,
    errors: tuple[str, ...] = (),
    status: str = "200",
    own: Doc | None = None,
) -> Doc:
    operation: Doc = {
        "tags": [tag],
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {status: answer, **_shared(*errors, *_COMMAND), **(own or {})},
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


_LEADER_ONLY: Doc = {
    "409": _error(
        "this instance follows: only the leader does this (`leader` names the lease's "
        "holder, null when none is known); nothing done"
    )
}
"""What a command of leader-only work answers on a follower."""

_SIGNAL_ANSWERS: Doc = {
    "400": _json(
        "not a valid signal: every field error (stored as rejected)", ref("InvalidSignal")
    ),
    "409": _json("a duplicate of a signal already taken in", ref("Admission")),
    "413": _json(
        "over MAX_SIGNAL_BYTES (1 MiB by default), naming the size and the limit; still "
        "stored as invalid, from its first bytes",
        {"anyOf": [ref("InvalidSignal"), ref("Error")]},
    ),
    "422": _json("stale: older than SIGNAL_TIMEOUT", ref("Admission")),
    "429": _json(
        "overloaded (too many signals in flight), or this client over HTTP_RATE_LIMIT_SIGNALS "
        "(then with Retry-After)",
        {"anyOf": [ref("Admission"), ref("RateLimited")]},
        {"Retry-After": {**_RETRY_AFTER, "required": False}},
    ),
}

_UNIVERSE = _json("the universe after the change, as GET /universe answers it", ref("Universe"))

_PATHS: Doc = {
    "/": {
        "get": {
            "tags": ["service"],
            "summary": "the health dashboard to a browser; the list of routes to API clients",
            "description": (
                "HTML to a client that prefers text/html to application/json (a browser); "
                "JSON to any other (no Accept, */*, application/json, or a tie)."
            ),
            "responses": {
                "200": {
                    "description": "the route list, or the dashboard page",
                    "headers": {"Vary": {"schema": {"type": "string", "const": "Accept"}}},
                    "content": {
                        "application/json": {"schema": ref("Index")},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                **_shared("TooLarge"),
            },
        }
    },
    "/dashboard/{name}": {
        "get": {
            "tags": ["service"],
            "summary": "the dashboard's own files",
            "parameters": [
                _path_param("name", "the file: dashboard.js or dashboard.css"),
            ],
            "responses": {
                "200": {
                    "description": "the file",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                    },
                },
                **_shared("BadRequest", "NotFound", "TooLarge"),
            },
        }
    },
    PATH: {
        "get": {
            "tags": ["service"],
            "summary": "this document",
            "responses": {
                "200": _json("the OpenAPI 3.1 description of the API", ref("OpenApi")),
                **_shared("TooLarge"),
            },
        }
    },
    "/health": {
        "get": {
            "tags": ["service"],
            "summary": "the service's health, its dependencies and actors",
            "responses": {
                "200": _json("healthy or degraded", ref("Health")),
                "503": _json(
                    "unhealthy (the actor tree has failed, an actor is stopped for good), "
                    "or the supervisor did not answer",
                    {"anyOf": [ref("Health"), ref("Unavailable")]},
                    {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
                ),
                **_shared("TooLarge"),
            },
        }
    },
    "/status": {"get": _read("the trading state and the dependencies", "Status", tag="service")},
    "/diagnostic": {
        "get": _read(
            "the actor tree, the last probes, the configuration (redacted)",
            "Diagnostic",
            tag="service",
        )
    },
    "/supervisor": {"get": _read("the supervisor's children", "Supervisor", tag="service")},
    "/stats": {"get": _read("counts and latencies", "Stats", tag="service")},
    "/stats/history": {
        "get": _read("the last hour, minute by minute", "StatsHistory", tag="service")
    },
    "/metrics": {
        "get": {
            "tags": ["service"],
            "summary": "the Prometheus scrape",
            "responses": {
                "200": {
                    "description": "the text exposition format, version 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_shared("TooLarge"),
            },
        }
    },
    "/signals": {
        "post": _command(
            "submit a signal, as it would come on Redis",
            _json("taken in, to be decided", ref("Admission")),
            tag="signals",
            status="202",
            body=_body("Signal"),
            own=_SIGNAL_ANSWERS,
        )
        | {"description": "Every signal is stored with its decision, the refused ones included."}
    },
    "/signals/{signal_id}": {
        "get": {
            **_read(
                "a signal as received, its decision with every check, its order",
                "StoredSignal",
                tag="signals",
                errors=("BadRequest", "NotFound"),
            ),
            "parameters": [_path_param("signal_id", "as POST /signals answered it")],
        }
    },
    "/decisions": {
        "get": {
            **_read("the latest decisions", "Decisions", tag="signals", errors=("BadRequest",)),
            "parameters": [
                {
                    "name": "symbol",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[A-Z0-9]{5,20}$"},
                },
                {
                    "name": "outcome",
                    "in": "query",
                    "schema": {"type": "string", "enum": [str(o) for o in Outcome]},
                },
                _limit(1000, 50),
            ],
        }
    },
    "/orders/unknown": {
        "get": _read(
            "orders whose outcome is unknown, and the reconciler", "UnknownOrders", tag="orders"
        )
    },
    "/orders/{client_order_id}/resolve": {
        "post": {
            **_command(
                "settle an order of unknown outcome by hand",
                _json("settled", ref("Resolved")),
                tag="orders",
                body=_body("Resolve"),
                errors=("BadRequest", "NotFound", "Conflict"),
            ),
            "parameters": [_path_param("client_order_id", "the order's own id")],
        }
    },
    "/trailing-stops": {"get": _read("every watched position", "TrailingStops", tag="stops")},
    "/universe": {"get": _read("the trading universe", "Universe", tag="universe")},
    "/universe/history": {
        "get": {
            **_read(
                "stored universe rotations",
                "UniverseHistory",
                tag="universe",
                errors=("BadRequest",),
            ),
            "parameters": [_limit(500, 20)],
        }
    },
    "/universe/refresh": {
        "post": _command("rotate the universe now", _UNIVERSE, tag="universe", own=_LEADER_ONLY),
    },
    "/universe/blacklist": {
        "post": _command(
            "blacklist a symbol (ttl_s null or absent: until removed)",
            _UNIVERSE,
            tag="universe",
            body=_body("Blacklist"),
            errors=("BadRequest",),
            own=_LEADER_ONLY,
        ),
    },
    "/universe/blacklist/{symbol}": {
        "delete": {
            **_command(
                "take a symbol off the blacklist",
                _UNIVERSE,
                tag="universe",
                errors=("BadRequest", "NotFound"),
                own=_LEADER_ONLY,
            ),
            "parameters": [_path_param("symbol", "a blacklisted symbol")],
        }
    },
    "/trading/halt": {
        "post": _command(
            "kill switch on: no BUY until resumed (exits too with exits=block)",
            _json("the trading state and the kill switch", ref("TradingSwitch")),
            tag="trading",
            body=_body("Halt"),
            errors=("BadRequest",),
        )
    },
    "/trading/resume": {
        "post": _command(
            "kill switch off",
            _json("the trading state and the kill switch", ref("TradingSwitch")),
            tag="trading",
            body=_body("Resume", required=False),
            errors=("BadRequest",),
        )
    },
    "/drills/actors/{name}/{kind}": {
        "post": {
            **_command(
                "make an actor fail on purpose (COORDINATOR_DRILLS=1 only: 403 otherwise)",
                _json("the drill is under way", ref("Drill")),
                tag="trading",
                status="202",
                errors=("BadRequest", "NotFound"),
            ),
            "parameters": [
                _path_param("name", "an actor of the tree, as GET /supervisor names them"),
                _path_param(
                    "kind",
                    "crash: on this message; hang: block `seconds`; fail-start: its next start",
                    {"type": "string", "enum": ["crash", "hang", "fail-start"]},
                ),
                {
                    "name": "seconds",
                    "in": "query",
                    "description": "for hang: how long to block, up to 3600",
                    "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                },
            ],
        }
    },
    "/audit": {
        "get": {
            **_read(
                "the audit trail of the commands, newest first",
                "Audit",
                tag="service",
                errors=("BadRequest",),
            ),
            "parameters": [_limit(1000, 50)],
        }
    },
}

_DOCUMENT: Doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "Coordinator",
        "version": "0.1.0",
        "description": (
            "The RootTrading coordinator's own API. Every answer is JSON, errors included "
            '(`{"error": ..., "status": ...}`), but GET /metrics (Prometheus text), the '
            "dashboard's page and files. Routes that change something take "
            "`Authorization: Bearer $COORDINATOR_API_TOKEN`."
        ),
    },
    "tags": [
        {"name": name} for name in ("service", "signals", "orders", "stops", "universe", "trading")
    ],
    "paths": _PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": _RESPONSES,
        "headers": {"RetryAfter": _RETRY_AFTER},
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "COORDINATOR_API_TOKEN, 16 characters or more",
            }
        },
    },
}


def document() -> Doc:
    """The document, a copy the caller may change."""
    return copy.deepcopy(_DOCUMENT)
