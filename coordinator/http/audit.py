"""What the audit trail keeps of a call of a mutating route: who (address, a fingerprint
of the token presented, never the token), what (method, path, body) and the answer
(status, result), each bounded in size."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote, quote_plus

from bottle import request

__all__ = [
    "MAX_AUDIT_BYTES",
    "REDACTED",
    "body_fields",
    "bounded_result",
    "call_fields",
    "fingerprint",
    "presented_token",
    "read_size",
    "redact",
    "scrub",
]

MAX_AUDIT_BYTES = 8 * 1024
"""The most of a body, or of an answer, the trail keeps."""
REDACTED = "[token]"
"""What stands where a token was quoted."""
_MAX_PATH = 2000
_MIN_REDACTED = len(REDACTED) + 1
"""A presented credential shorter than this is not looked for: replacing every "ab" would
garble the record more than it protects (and only a longer one shrinks the text on each
replacement, so that replacing until none is left ends)."""

Secrets = tuple[str | None, ...]


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


def redact(text: str, secrets: Secrets) -> str:
    """``text`` with every secret replaced, including those a replacement brings
    together ("[token]x" in "[token]xx")."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_REDACTED:
            while secret in text:
                text = text.replace(secret, REDACTED)
    return text


def scrub(value: Any, secrets: Secrets) -> Any:
    """A JSON value with every secret replaced in its strings, keys included."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


def body_fields(raw: bytes, secrets: Secrets) -> tuple[Any, str | None]:
    """(the body as JSON, None) when it is JSON within the limit, else (None, its text cut
    at the limit); (None, None) without a body. ``raw``: the body, or its first
    ``read_size(secrets)`` bytes."""
    if not raw.strip():
        return None, None
    text = redact(raw.decode("utf-8", "backslashreplace"), secrets)
    if len(raw) > MAX_AUDIT_BYTES:
        return None, _cut(text, secrets)
    try:
        return scrub(json.loads(raw), secrets), None
    except ValueError:
        return None, text


def _cut(text: str, secrets: Secrets) -> str:
    """``text`` (hidden already) cut at the limit, less any start of a token the cut left
    at its end."""
    kept = text.encode()[:MAX_AUDIT_BYTES].decode("utf-8", "ignore")
    cutting = True
    while cutting:
        cutting = False
        for secret in secrets:
            if not secret or len(secret) < _MIN_REDACTED:
                continue
            start = next((k for k in range(len(secret) - 1, 0, -1) if kept.endswith(secret[:k])), 0)
            if start:
                kept, cutting = kept[:-start], True
    return kept


def read_size(secrets: Secrets) -> int:
    """How much of a body to read: the limit, and enough past it to see whole any token
    that begins before it."""
    longest = max((len(s.encode("utf-8", "backslashreplace")) for s in secrets if s), default=0)
    return MAX_AUDIT_BYTES + max(longest, 1)


def bounded_result(result: Any, secrets: Secrets) -> Any:
    """The answer (a token it quotes hidden) when small; else its scalar fields and the
    size of the others."""
    shown = scrub(result, secrets)
    try:
        size = len(json.dumps(shown, default=str))
    except (TypeError, ValueError):
        return {"unreadable": type(result).__name__}
    if size <= MAX_AUDIT_BYTES:
        return shown
    summary: Any = None
    if isinstance(shown, dict):
        summary = {k: _brief(v) for k, v in shown.items()}
    return {"truncated": True, "bytes": size, "summary": summary}


def _brief(value: Any) -> Any:
    if isinstance(value, list | dict):
        return {"items": len(value)}
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value


def _path(secrets: Secrets) -> str:
    path = request.path
    if request.query_string:
        path += "?" + request.query_string
    # A query string holds a token as sent: percent-encoded, perhaps.
    encoded = tuple(form(s) for s in secrets if s for form in (quote, quote_plus))
    return redact(path, secrets + encoded)[:_MAX_PATH]


def call_fields(*, configured_token: str | None, status: int, result: Any) -> dict[str, Any]:
    """The fields of ``RecordAudit`` (its time aside) for the request being answered."""
    given = presented_token()
    secrets = (configured_token, given)
    body, body_text = body_fields(request.body.read(read_size(secrets)), secrets)
    return {
        "client": request.environ.get("REMOTE_ADDR"),
        "token_fingerprint": fingerprint(given),
        "method": request.method,
        "path": _path(secrets),
        "body": body,
        "body_text": body_text,
        "status": status,
        "result": bounded_result(result, secrets),
    }
