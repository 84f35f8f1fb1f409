"""What the audit trail keeps of a call of a mutating route: who (address, a fingerprint
of the token presented, never the token), what (method, path, body) and the answer
(status, result), each bounded in size."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bottle import request

__all__ = ["MAX_AUDIT_BYTES", "call_fields", "fingerprint", "presented_token"]

MAX_AUDIT_BYTES = 8 * 1024
"""The most of a body, or of an answer, the trail keeps."""
_MAX_PATH = 2000
_REDACTED = "[token]"
_MIN_REDACTED = 8
"""A presented credential shorter than this is not looked for in the body: replacing
every "ab" would garble the record more than it protects."""


def fingerprint(token: str | None) -> str | None:
    """The first 12 hex digits of the token's SHA-256: tells tokens apart, opens nothing."""
    if not token:
        return None
    return hashlib.sha256(token.encode("utf-8", "backslashreplace")).hexdigest()[:12]


def presented_token() -> str | None:
    """The credential of the Authorization header, whatever its scheme."""
    header = request.get_header("Authorization", "") or ""
    scheme, _, given = header.strip().partition(" ")
    return (given or scheme).strip() or None


def _redact(text: str, secrets: tuple[str | None, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= _MIN_REDACTED:
            text = text.replace(secret, _REDACTED)
    return text


def _body(secrets: tuple[str | None, ...]) -> tuple[Any, str | None]:
    """(the body as JSON, None) when it is JSON within the limit, else (None, its text cut
    at the limit); (None, None) without a body."""
    raw = request.body.read(MAX_AUDIT_BYTES + 1)
    if not raw.strip():
        return None, None
    text = _redact(raw[:MAX_AUDIT_BYTES].decode("utf-8", "backslashreplace"), secrets)
    if len(raw) > MAX_AUDIT_BYTES:
        return None, text
    try:
        return json.loads(text), None
    except ValueError:
        return None, text


def _bounded(result: Any, secrets: tuple[str | None, ...]) -> Any:
    """The answer as is when small (a token it quotes hidden); else its scalar fields and
    the size of the others."""
    try:
        text = json.dumps(result, default=str)
    except (TypeError, ValueError):
        return {"unreadable": type(result).__name__}
    redacted = _redact(text, secrets)
    try:
        shown = result if redacted == text else json.loads(redacted)
    except ValueError:
        shown = redacted
    if len(redacted) <= MAX_AUDIT_BYTES:
        return shown
    summary: Any = None
    if isinstance(shown, dict):
        summary = {str(k): _brief(v) for k, v in shown.items()}
    return {"truncated": True, "bytes": len(redacted), "summary": summary}


def _brief(value: Any) -> Any:
    if isinstance(value, list | dict):
        return {"items": len(value)}
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value


def call_fields(*, configured_token: str | None, status: int, result: Any) -> dict[str, Any]:
    """The fields of ``RecordAudit`` (its time aside) for the request being answered."""
    given = presented_token()
    secrets = (configured_token, given)
    path = request.path
    if request.query_string:
        path += "?" + request.query_string
    body, body_text = _body(secrets)
    return {
        "client": request.environ.get("REMOTE_ADDR"),
        "token_fingerprint": fingerprint(given),
        "method": request.method,
        "path": _redact(path, secrets)[:_MAX_PATH],
        "body": body,
        "body_text": body_text,
        "status": status,
        "result": _bounded(result, secrets),
    }
