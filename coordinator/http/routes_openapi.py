"""The route of the API's own description."""

from __future__ import annotations

from typing import Any

from coordinator.http.endpoints import Endpoints
from coordinator.http.openapi import PATH, document

__all__ = ["install"]


def install(endpoint: Endpoints) -> None:
    described = document()

    @endpoint("GET", PATH, cached=True)
    def openapi() -> dict[str, Any]:
        return described
