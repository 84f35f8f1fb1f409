"""Route of the audit trail: the operator's calls of the mutating routes, newest first."""

from __future__ import annotations

from typing import Any

from bottle import request

from coordinator.http.endpoints import Endpoints, fail
from coordinator.http.facade import CoordinatorApi

__all__ = ["install"]

_MAX_LIMIT = 1000


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    @endpoint("GET", "/audit")
    def audit() -> dict[str, Any]:
        raw_limit = request.query.get("limit") or "50"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
            raise fail(400, f"limit {raw_limit!r} must be an integer from 1 to {_MAX_LIMIT}")
        rows = api.audit(int(raw_limit))
        return {"count": len(rows), "entries": rows}
