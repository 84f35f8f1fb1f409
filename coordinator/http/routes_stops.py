"""Routes of the trailing stops."""

from __future__ import annotations

from typing import Any

from coordinator.http.endpoints import Endpoints
from coordinator.http.facade import CoordinatorApi

__all__ = ["install"]


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    @endpoint("GET", "/trailing-stops", cached=True)
    def trailing_stops() -> dict[str, Any]:
        return api.trailing_stops()
