"""What every route shares: the one decorator that checks the token, records each call
of a mutating route in the audit trail, turns an actor that does not answer into a 503
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

__all__ = [
    "AnswerCache",
    "ApiError",
    "Endpoints",
    "error_payload",
    "fail",
    "json_body",
    "json_error",
    "operator",
    "unavailable",
]

logger = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024
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
    ) -> None:
        self.app = app
        self._token = api_token
        self._answers = AnswerCache(snapshot_ttl, clock)
        self._audit = audit

    def __call__(
        self,
        method: str,
        rule: str,
        *,
        token: bool = False,
        cached: bool = False,
        audited: bool | None = None,
    ) -> Callable[[Route], Route]:
        """``token``: a command, bearer token required, and every cached answer dropped
        after it. ``cached``: a read reused for the snapshot TTL, a 503 included.
        ``audited`` (default: ``token``): every call, refusals included, goes to the
        audit trail with its answer."""

        def decorate(route: Route) -> Route:
            @functools.wraps(route)
            def handle(*args: Any, **kwargs: Any) -> Any:
                def call() -> Any:
                    return route(*args, **kwargs)

                if not token:
                    return self._answer(rule, cached, call)
                if token if audited is None else audited:
                    return self._audited(rule, cached, call)
                return self._command(rule, cached, call)

            self.app.route(rule, method, handle)
            return route

        return decorate

    def _command(self, rule: str, cached: bool, produce: Callable[[], Any]) -> Any:
        self._authorize()
        try:
            return self._answer(rule, cached, produce)
        finally:
            self._answers.clear()

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
        status, body = self._answers.get(key, lambda: _render(produce))
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


def json_body() -> dict[str, Any]:
    length = request.content_length
    if length > _MAX_BODY:
        raise fail(413, f"body of {length} bytes is over the limit of {_MAX_BODY}")
    raw = request.body.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise fail(413, f"body is over the limit of {_MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise fail(400, f"body must be a JSON object, got {type(body).__name__}")
    return body


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
