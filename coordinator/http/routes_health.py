"""Routes of the service's own state: health, status, diagnostic, supervisor, stats."""

from __future__ import annotations

from typing import Any

from coordinator.http.endpoints import Endpoints
from coordinator.http.facade import CoordinatorApi

__all__ = ["install"]


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    @endpoint("GET", "/health", published=True)
    def health() -> tuple[int, dict[str, Any]]:
        return api.health()

    @endpoint("GET", "/status", published=True)
    def status() -> dict[str, Any]:
        return api.status()

    @endpoint("GET", "/diagnostic", cached=True)
    def diagnostic() -> dict[str, Any]:
        return api.diagnostic()

    @endpoint("GET", "/supervisor", cached=True)
    def supervisor() -> dict[str, Any]:
        return api.supervisor()

    @endpoint("GET", "/stats", cached=True)
    def stats() -> dict[str, Any]:
        return api.stats()

    @endpoint("GET", "/stats/history", cached=True)
    def stats_history() -> dict[str, Any]:
        return api.stats_history()
