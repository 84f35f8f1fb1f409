"""The audit trail: the operator's calls of the mutating routes, kept by the store
writer with the pipeline's records (batched, journaled while PostgreSQL is out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.messages.base import Command, Query

__all__ = ["AuditTrail", "GetAuditTrail", "RecordAudit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordAudit(Command):
    """A call of a mutating route, answered (refusals included): keep it."""

    at: float
    """When it was answered, epoch seconds."""
    client: str | None
    """The peer's address, as the socket gave it."""
    token_fingerprint: str | None
    """The first 12 hex digits of the SHA-256 of the token presented (None: none was);
    never the token."""
    method: str
    """The HTTP method."""
    path: str
    """The path, with its query string if it had one."""
    body: Any = None
    """The body parsed as JSON, when it was JSON and within the size limit."""
    body_text: str | None = None
    """Otherwise the body as text, cut at the size limit (None: no body)."""
    status: int
    """The status code answered."""
    result: Any = None
    """The answer's JSON (an error's payload for a refusal), or a summary of it when it
    was over the size limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetAuditTrail(Query):
    """Ask the store writer for the newest entries of the audit trail."""

    limit: int = 50
    """How many entries, newest first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditTrail:
    entries: tuple[Mapping[str, Any], ...]
    """The entries asked for, newest first, as stored."""
