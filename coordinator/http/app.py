"""The Bottle application: thin routes over the facade, JSON for everything, errors included."""

from __future__ import annotations

import functools
import hmac
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import bottle
from bottle import HTTPError, request, response

from coordinator.http.facade import ActorUnavailable, CoordinatorApi, UnknownActor
from coordinator.trading.signals import MAX_PAYLOAD_BYTES
from coordinator.trading.trading_state import ExitPolicy

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024
_OUTCOMES = ("accepted", "rejected", "shadow", "unknown")
_ADMISSION_STATUS = {
    ("duplicate", "duplicate_signal"): 409,
    ("rejected", "stale_signal"): 422,
    ("rejected", "overloaded"): 429,
}
_TOKEN_HELP = (
    "set COORDINATOR_API_TOKEN (16 characters or more) in the coordinator's environment "
    "and send it as 'Authorization: Bearer <token>'"
)


class ApiError(HTTPError):
    """An error answer with a JSON payload: ``error`` says what is wrong."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status, payload["error"])
        self.payload = payload


def _fail(status: int, message: str, **extra: Any) -> ApiError:
    return ApiError(status, {"error": message, **extra})


class AnswerCache:
    """Answers of the read-only routes, reused for ``ttl`` seconds.

    Load balancers and health checks poll these routes hard; without reuse each poll
    would be two actor round trips. An answer is at most ``ttl`` old, and one request
    at a time per route refreshes it while the others wait for it.
    """

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[str, tuple[float, tuple[int, bytes]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def clear(self) -> None:
        """Forget every answer: after a command, reads must show its effect."""
        self._answers.clear()

    def get(self, key: str, produce: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        entry = self._answers.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._answers.get(key)
            if entry is not None and entry[0] > self._clock():
                return entry[1]
            answer = produce()
            if self._ttl > 0:
                self._answers[key] = (self._clock() + self._ttl, answer)
            return answer


def _render(produce: Callable[[], tuple[int, dict[str, Any]]]) -> tuple[int, bytes]:
    try:
        status, body = produce()
    except ActorUnavailable as exc:
        status, body = 503, {"error": str(exc), "actor": exc.actor, "status": 503}
    return status, json.dumps(body).encode()


def create_app(
    api: CoordinatorApi,
    *,
    api_token: str | None,
    drills_enabled: bool,
    snapshot_ttl: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    max_signal_bytes: int = MAX_PAYLOAD_BYTES,
) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True, autojson=True)
    app.default_error_handler = _json_error  # type: ignore[method-assign]
    answers = AnswerCache(snapshot_ttl, clock)

    def read_only(key: str, produce: Callable[[], tuple[int, dict[str, Any]]]) -> bytes:
        status, body = answers.get(key, lambda: _render(produce))
        response.status = status
        response.content_type = "application/json"
        if status == 503:
            response.set_header("Retry-After", "1")
        return body

    def guarded(route: Callable[..., Any]) -> Callable[..., Any]:
        """Turn the facade's errors into HTTP answers."""

        @functools.wraps(route)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return route(*args, **kwargs)
            except ActorUnavailable as exc:
                error = _fail(503, str(exc), actor=exc.actor)
                error.set_header("Retry-After", "1")
                raise error from None

        return wrapper

    def mutating(route: Callable[..., Any]) -> Callable[..., Any]:
        """Bearer token required, compared in constant time."""

        @functools.wraps(route)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if api_token is None:
                raise _fail(403, f"mutating endpoints are disabled: {_TOKEN_HELP}")
            scheme, _, given = request.get_header("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), api_token.encode()
            ):
                error = _fail(401, f"missing or wrong bearer token: {_TOKEN_HELP}")
                error.set_header("WWW-Authenticate", 'Bearer realm="coordinator"')
                raise error
            try:
                return route(*args, **kwargs)
            finally:
                answers.clear()

        return wrapper

    @app.get("/")
    def index() -> dict[str, Any]:
        return {
            "service": "coordinator",
            "endpoints": sorted(
                {f"{r.method} {r.rule}" for r in app.routes if r.rule != "/"},
            ),
        }

    @app.get("/health")
    def health() -> bytes:
        return read_only("health", api.health)

    @app.get("/status")
    def status() -> bytes:
        return read_only("status", lambda: (200, api.status()))

    @app.get("/diagnostic")
    def diagnostic() -> bytes:
        return read_only("diagnostic", lambda: (200, api.diagnostic()))

    @app.get("/supervisor")
    def supervisor() -> bytes:
        return read_only("supervisor", lambda: (200, api.supervisor()))

    @app.post("/signals")
    @mutating
    @guarded
    def submit_signal() -> dict[str, Any]:
        received_at, received_mono = time.time(), time.monotonic()
        declared = request.content_length
        # No more than one byte over the limit is read: enough for the intake to record
        # the signal as invalid, with the size the body declared.
        if declared > max_signal_bytes:
            payload = request.environ["wsgi.input"].read(max_signal_bytes + 1)
        else:
            payload = request.body.read(max_signal_bytes + 1)
        size = max(declared, len(payload))
        admission = api.submit_signal(
            payload,
            received_at=received_at,
            received_mono=received_mono,
            total_bytes=size if size > max_signal_bytes else None,
        )
        body: dict[str, Any] = {
            "signal_id": admission.signal_id,
            "status": admission.status,
            "reason": admission.reason,
        }
        if admission.errors:
            raise _fail(
                413 if size > max_signal_bytes else 400,
                "invalid signal: " + "; ".join(f"{f}: {p}" for f, p in admission.errors),
                signal_id=admission.signal_id,
                errors=[{"field": f, "problem": p} for f, p in admission.errors],
            )
        response.status = _ADMISSION_STATUS.get((admission.status, admission.reason), 202)
        return body

    @app.get("/signals/<signal_id>")
    @guarded
    def stored_signal(signal_id: str) -> dict[str, Any]:
        record = api.signal(signal_id)
        if record is None:
            raise _fail(404, f"no signal {signal_id!r} is stored")
        return record

    @app.get("/decisions")
    @guarded
    def decisions() -> dict[str, Any]:
        symbol = request.query.get("symbol") or None
        outcome = request.query.get("outcome") or None
        raw_limit = request.query.get("limit") or "50"
        if symbol is not None and not re.fullmatch(r"[A-Z0-9]{5,20}", symbol):
            raise _fail(400, f"symbol {symbol!r} is not a Binance symbol such as BTCUSDC")
        if outcome is not None and outcome not in _OUTCOMES:
            raise _fail(400, f"outcome {outcome!r} is not one of {', '.join(_OUTCOMES)}")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise _fail(400, f"limit {raw_limit!r} must be an integer from 1 to 1000")
        rows = api.decisions(symbol=symbol, outcome=outcome, limit=int(raw_limit))
        return {"count": len(rows), "decisions": rows}

    @app.get("/stats")
    def stats() -> bytes:
        return read_only("stats", lambda: (200, api.stats()))

    @app.get("/orders/unknown")
    @guarded
    def unknown_orders() -> dict[str, Any]:
        return api.unknown_orders()

    @app.post("/orders/<client_order_id>/resolve")
    @mutating
    @guarded
    def resolve_order(client_order_id: str) -> dict[str, Any]:
        body = _json_body()
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
            raise _fail(400, "; ".join(errors))
        answer = api.resolve_order(
            client_order_id,
            state=state,
            trader_order_id=None if trader_id is None else trader_id.strip(),
            note=note.strip()[:500],
            by=_operator(body),
        )
        body = {"client_order_id": client_order_id, "state": answer.state, "detail": answer.detail}
        match answer.status.value:
            case "not_found":
                raise _fail(404, answer.detail, client_order_id=client_order_id)
            case "not_unknown":
                raise _fail(409, answer.detail, client_order_id=client_order_id, state=answer.state)
            case "store_unavailable":
                error = _fail(503, f"PostgreSQL did not answer: {answer.detail}")
                error.set_header("Retry-After", "1")
                raise error
        return body

    @app.get("/trailing-stops")
    def trailing_stops() -> bytes:
        return read_only("trailing-stops", lambda: (200, api.trailing_stops()))

    @app.get("/universe")
    def universe() -> bytes:
        return read_only("universe", lambda: (200, api.universe()))

    @app.get("/universe/history")
    @guarded
    def universe_history() -> dict[str, Any]:
        raw_limit = request.query.get("limit") or "20"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
            raise _fail(400, f"limit {raw_limit!r} must be an integer from 1 to 500")
        rows = api.universe_history(int(raw_limit))
        return {"count": len(rows), "rotations": rows}

    @app.post("/universe/refresh")
    @mutating
    @guarded
    def universe_refresh() -> dict[str, Any]:
        return api.refresh_universe()

    @app.post("/universe/blacklist")
    @mutating
    @guarded
    def blacklist_add() -> dict[str, Any]:
        body = _json_body()
        symbol, reason, ttl = body.get("symbol"), body.get("reason"), body.get("ttl_s")
        errors = []
        if not isinstance(symbol, str) or not re.fullmatch(r"[A-Z0-9]{5,20}", symbol):
            errors.append(f"symbol must be a Binance symbol such as BTCUSDC, got {symbol!r}")
        if not isinstance(reason, str) or not reason.strip():
            errors.append("reason must be a non-empty string")
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or ttl <= 0
        ):
            errors.append(f"ttl_s must be a number of seconds > 0 or null, got {ttl!r}")
        if errors:
            raise _fail(400, "; ".join(errors))
        return api.blacklist(
            symbol, reason=reason.strip()[:500], ttl=None if ttl is None else float(ttl)
        )

    @app.delete("/universe/blacklist/<symbol>")
    @mutating
    @guarded
    def blacklist_remove(symbol: str) -> dict[str, Any]:
        universe = api.universe()
        if symbol not in {e["symbol"] for e in universe["blacklist"]}:
            raise _fail(404, f"{symbol} is not on the blacklist")
        return api.unblacklist(symbol)

    @app.post("/trading/halt")
    @mutating
    @guarded
    def halt() -> dict[str, Any]:
        body = _json_body()
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise _fail(400, "body field 'reason' is required: a non-empty string saying why")
        exits = body.get("exits", ExitPolicy.ALLOW.value)
        allowed = [policy.value for policy in ExitPolicy]
        if not isinstance(exits, str) or exits not in allowed:
            raise _fail(
                400,
                f"body field 'exits' must be one of {', '.join(map(repr, allowed))} "
                f"(default 'allow'), got {exits!r}",
            )
        return api.halt(reason=reason.strip()[:500], by=_operator(body), exits=ExitPolicy(exits))

    @app.post("/trading/resume")
    @mutating
    @guarded
    def resume() -> dict[str, Any]:
        return api.resume(by=_operator(_json_body()))

    @app.post("/drills/actors/<name>/<kind>")
    @mutating
    @guarded
    def drill(name: str, kind: str) -> dict[str, Any]:
        if not drills_enabled:
            raise _fail(403, "drills are disabled: set COORDINATOR_DRILLS=1 to enable them")
        seconds: float | None = None
        if kind == "hang":
            raw = request.query.get("seconds")
            try:
                seconds = float(raw) if raw is not None else math.nan
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):
                raise _fail(400, f"query parameter 'seconds' must be a number, got {raw!r}")
        try:
            result = api.drill(name, kind, seconds=seconds)
        except UnknownActor:
            raise _fail(404, f"no actor named {name!r}") from None
        except ValueError as exc:
            raise _fail(400, str(exc)) from None
        response.status = 202
        return result

    return app


def _json_body() -> dict[str, Any]:
    length = request.content_length
    if length > _MAX_BODY:
        raise _fail(413, f"body of {length} bytes is over the limit of {_MAX_BODY}")
    raw = request.body.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise _fail(413, f"body is over the limit of {_MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _fail(400, f"body must be a JSON object, got {type(body).__name__}")
    return body


def _operator(body: dict[str, Any]) -> str:
    operator = body.get("operator")
    client = f"api client {request.remote_addr or 'unknown'}"
    if isinstance(operator, str) and operator.strip():
        return f"{operator.strip()[:100]} ({client})"
    return client


def _json_error(error: HTTPError) -> str:
    if isinstance(error, ApiError):
        payload = dict(error.payload)
    elif error.status_code == 500:
        logger.error(
            "unhandled error in %s %s: %r\n%s",
            request.method,
            request.path,
            error.exception,
            error.traceback or "",
        )
        payload = {"error": "internal error; it has been logged"}
    else:
        payload = {"error": str(error.body)}
    payload["status"] = error.status_code
    response.content_type = "application/json"
    return json.dumps(payload)
