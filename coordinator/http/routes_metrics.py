"""The Prometheus scrape: read-only, no token, in the text exposition format."""

from __future__ import annotations

from bottle import response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from coordinator.http.endpoints import Endpoints
from coordinator.http.facade import CoordinatorApi
from coordinator.http.views_metrics import metrics_registry

__all__ = ["install"]


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    registry = metrics_registry(api.metrics_inputs)

    @endpoint("GET", "/metrics")
    def metrics() -> bytes:
        body = generate_latest(registry)
        response.content_type = CONTENT_TYPE_PLAIN_0_0_4
        return body
