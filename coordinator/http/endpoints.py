"""What every route shares: the one decorator that holds a client to its rate and a
body to its size, checks the token, records each call of a mutating route in the
audit trail, turns an actor that does not answer into a 503
naming it, and reuses the answers of the read-only routes; and the JSON errors, bodies
and operator names the routes use."""

from __future__ import annotations

import functools
import hmac
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import bottle
from bottle import HTTPError, HTTPResponse, request, response

from coordinator.http.asking import ActorUnavailable
from coordinator.http.audit import call_fields
from coordinator.http.limits import Limits, RateClass, RateLimits, body_of, read_body
from coordinator.http.published import PublishedAnswers

__all__ = [
    "AnswerCache",
    "ApiError",
    "Endpoints",
    "error_payload",
    "fail",
    "json_body",
    "json_error",
    "operator",
    "query_limit",
    "unavailable",
]

logger = logging.getLogger(__name__)

_TOKEN_HELP = (
    "set COORDINATOR_API_TOKEN (16 characters or more) in the coordinator's environment "
    "and send it as 'Authorization: Bearer <token>'"
)

Route = Callable[..., Any]
"""A route answers a dict (its status set on ``response`` or 200), or for a cached
route a (status, dict) pair."""
Audit = Callable[..., None]
"""Takes ``RecordAudit``'s fields but its time: a mutating call, answered."""


class ApiError(HTTPError):
    """An error answer with a JSON payload: ``error`` says what is wrong."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status, payload["error"])
        self.payload = payload


def fail(status: int, message: str, **extra: Any) -> ApiError:
    return ApiError(status, {"error": message, **extra})


def unavailable(message: str, **extra: Any) -> ApiError:
    """A 503 that tells the client to try again in a second."""
    error = fail(503, message, **extra)
    error.set_header("Retry-After", "1")
    return error


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


class Endpoints:
    """Registers the routes on the app, each through the same checks."""

    def __init__(
        self,
        app: bottle.Bottle,
        *,
        api_token: str | None,
        snapshot_ttl: float,
        clock: Callable[[], float],
        audit: Audit | None = None,
        limits: Limits | None = None,
        published: PublishedAnswers | None = None,
    ) -> None:
        self.app = app
        self._token = api_token
        self._answers = AnswerCache(snapshot_ttl, clock)
        self._audit = audit
        self._limits = limits or Limits()
        self._rates = RateLimits(self._limits, clock)
        self._published = published

    def __call__(
        self,
        method: str,
        rule: str,
        *,
        token: bool = False,
        cached: bool = False,
        audited: bool | None = None,
        rate: RateClass | None = None,
        max_body: int | None = None,
        keeps_oversize: bool = False,
        published: bool = False,
    ) -> Callable[[Route], Route]:
        """``token``: a command, bearer token required, and every cached answer dropped
        after it. ``cached``: a read reused for the snapshot TTL, a 503 included.
        ``rate``: the allowance the route spends per client (commands by default for a
        ``token`` route, none otherwise). ``max_body``: its body limit (the default of
        every route otherwise); ``keeps_oversize``: a body over it still reaches the
        route, cut one byte past the limit, for the route to record and refuse.
        ``audited`` (default: ``token``): every call past the limits, refusals included,
        goes to the audit trail with its answer. ``published``: a read of no parameter
        whose answer is produced off the request path (see PublishedAnswers), when the
        endpoints have a publisher; as ``cached`` otherwise."""
        rate_class = rate if rate is not None else RateClass.MUTATING if token else None
        cached = cached or published
        body_limit = self._limits.max_body if max_body is None else max_body

        def decorate(route: Route) -> Route:
            @functools.wraps(route)
            def handle(*args: Any, **kwargs: Any) -> Any:
                def call() -> Any:
                    _check_path(kwargs)
                    return route(*args, **kwargs)

                # Refused by the limits: neither read nor recorded (a flood must not turn
                # into a flood of audit rows).
                self._hold_to_limits(rate_class, body_limit, keeps_oversize)
                if not token:
                    return self._answer(rule, cached, call)
                if token if audited is None else audited:
                    return self._audited(rule, cached, call)
                return self._command(rule, cached, call)

            self.app.route(rule, method, handle)
            if published and self._published is not None:
                self._published.add(rule, lambda: _render(route))
            return route

        return decorate

    def _command(self, rule: str, cached: bool, produce: Callable[[], Any]) -> Any:
        self._authorize()
        try:
            return self._answer(rule, cached, produce)
        finally:
            self._answers.clear()
            if self._published is not None:
                self._published.invalidate()

    def _audited(self, rule: str, cached: bool, produce: Callable[[], Any]) -> Any:
        """Answer, then record the call with its answer: a refusal (a wrong token, a bad
        body) is an attempt worth keeping too."""
        try:
            answer = self._command(rule, cached, produce)
        except HTTPResponse as refusal:
            self._record(refusal.status_code, error_payload(refusal))
            raise
        except Exception as exc:
            self._record(500, {"error": f"internal error ({type(exc).__name__})", "status": 500})
            raise
        self._record(response.status_code, answer)
        return answer

    def _record(self, status: int, result: Any) -> None:
        if self._audit is None:
            return
        try:
            self._audit(**call_fields(configured_token=self._token, status=status, result=result))
        except Exception:
            # The call is answered whatever happens here; the log says what was lost.
            logger.exception(
                "could not record %s %s in the audit trail", request.method, request.path
            )

    def _hold_to_limits(
        self, rate_class: RateClass | None, body_limit: int, keeps_oversize: bool
    ) -> None:
        """429 for a client over its rate, 413 for a body over its size (declared: before
        a byte of it is read). The socket's address, not a forwarded one a client could
        make up, names the client."""
        environ = request.environ
        if rate_class is not None:
            refusal = self._rates.check(rate_class, environ.get("REMOTE_ADDR") or "unknown")
            if refusal is not None:
                error = fail(
                    429, refusal.message, limit=refusal.limit, retry_after=refusal.retry_after
                )
                error.set_header("Retry-After", str(refusal.retry_after))
                raise error
        body = read_body(environ, body_limit, read_over=keeps_oversize)
        if body.over and not keeps_oversize:
            raise fail(
                413,
                f"body of {body.size} bytes is over the limit of {body_limit} bytes",
                limit=body_limit,
            )

    def _authorize(self) -> None:
        """Bearer token required, compared in constant time."""
        if self._token is None:
            raise fail(403, f"mutating endpoints are disabled: {_TOKEN_HELP}")
        scheme, _, given = request.get_header("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token.encode()
        ):
            error = fail(401, f"missing or wrong bearer token: {_TOKEN_HELP}")
            error.set_header("WWW-Authenticate", 'Bearer realm="coordinator"')
            raise error

    def _answer(self, key: str, cached: bool, produce: Callable[[], Any]) -> Any:
        if not cached:
            try:
                return produce()
            except ActorUnavailable as exc:
                raise unavailable(str(exc), actor=exc.actor) from None
        published = None if self._published is None else self._published.get(key)
        status, body = published or self._answers.get(key, lambda: _render(produce))
        response.status = status
        response.content_type = "application/json"
        if status == 503:
            response.set_header("Retry-After", "1")
        return body


def _render(produce: Callable[[], Any]) -> tuple[int, bytes]:
    try:
        answer = produce()
    except ActorUnavailable as exc:
        answer = 503, {"error": str(exc), "actor": exc.actor, "status": 503}
    status, body = answer if isinstance(answer, tuple) else (200, answer)
    return status, json.dumps(body).encode()


def _check_path(parameters: dict[str, Any]) -> None:
    """400 for a path parameter no store could hold: PostgreSQL's text takes no NUL."""
    for name, value in parameters.items():
        if isinstance(value, str) and "\x00" in value:
            raise fail(400, f"path parameter {name!r} must not contain NUL characters")


def _nul_at(value: Any, where: str = "") -> str | None:
    """Where in a JSON value a string (a key included) holds a NUL; None if none does."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{key}" if where else str(key)
            found = at if "\x00" in str(key) else _nul_at(item, at)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def json_body() -> dict[str, Any]:
    """The body as a JSON object, {} when empty (its size already held to the limit)."""
    raw = body_of(request.environ).data
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: arrays nested thousands deep, well within the size limit.
        raise fail(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise fail(400, f"body must be a JSON object, got {type(body).__name__}")
    # A command's fields are stored (the kill switch, the blacklist, an order's note):
    # PostgreSQL would refuse a NUL after the command had taken effect in memory.
    nul = _nul_at(body)
    if nul is not None:
        raise fail(400, f"body field {nul!r} must not contain NUL characters (\\u0000)")
    return body


def query_limit(default: int, maximum: int) -> int:
    """The ``limit`` query parameter, ``default`` when absent: 400 unless from 1 to
    ``maximum``."""
    raw = request.query.get("limit") or str(default)
    # isdigit() takes "²" and digit strings too long for int(): ASCII digits, few of them.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= maximum:
        raise fail(400, f"limit {raw!r} must be an integer from 1 to {maximum}")
    return int(raw)


def operator(body: dict[str, Any]) -> str:
    """Who sent a command, as the logs and the store name them."""
    name = body.get("operator")
    client = f"api client {request.remote_addr or 'unknown'}"
    if isinstance(name, str) and name.strip():
        return f"{name.strip()[:100]} ({client})"
    return client


def error_payload(error: HTTPResponse) -> dict[str, Any]:
    """The JSON body of an error answer."""
    payload = dict(error.payload) if isinstance(error, ApiError) else {"error": str(error.body)}
    payload["status"] = error.status_code
    return payload


def json_error(error: HTTPError) -> str:
    if error.status_code == 500 and not isinstance(error, ApiError):
        logger.error(
            "unhandled error in %s %s: %r\n%s",
            request.method,
            request.path,
            error.exception,
            error.traceback or "",
        )
        payload = {"error": "internal error; it has been logged", "status": 500}
    else:
        payload = error_payload(error)
    response.content_type = "application/json"
    return json.dumps(payload)
