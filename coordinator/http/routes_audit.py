"""Route of the audit trail: the operator's calls of the mutating routes, newest first."""

from __future__ import annotations

from typing import Any

from coordinator.http.endpoints import Endpoints, query_limit
from coordinator.http.facade import CoordinatorApi

__all__ = ["install"]

_MAX_LIMIT = 1000


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    @endpoint("GET", "/audit")
    def audit() -> dict[str, Any]:
        rows = api.audit(query_limit(50, _MAX_LIMIT))
        return {"count": len(rows), "entries": rows}
