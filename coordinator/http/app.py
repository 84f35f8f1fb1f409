"""The Bottle application: thin routes over the facade, one module per resource, JSON
for everything, errors included."""

from __future__ import annotations

import time
from collections.abc import Callable

import bottle

from coordinator.http import (
    routes_audit,
    routes_dashboard,
    routes_health,
    routes_metrics,
    routes_openapi,
    routes_orders,
    routes_signals,
    routes_stops,
    routes_trading,
    routes_universe,
)
from coordinator.http.endpoints import Endpoints, json_error
from coordinator.http.facade import CoordinatorApi
from coordinator.http.limits import Limits
from coordinator.http.published import PublishedAnswers
from coordinator.trading.signals import MAX_PAYLOAD_BYTES

__all__ = ["create_app"]


def create_app(
    api: CoordinatorApi,
    *,
    api_token: str | None,
    drills_enabled: bool,
    snapshot_ttl: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    max_signal_bytes: int = MAX_PAYLOAD_BYTES,
    limits: Limits | None = None,
    published: PublishedAnswers | None = None,
) -> bottle.Bottle:
    """``published``: where /health and /status are produced off the request path;
    without it they are produced by the requests, reused for ``snapshot_ttl``."""
    app = bottle.Bottle(catchall=True, autojson=True)
    app.default_error_handler = json_error
    endpoint = Endpoints(
        app,
        api_token=api_token,
        snapshot_ttl=snapshot_ttl,
        clock=clock,
        audit=api.record_audit,
        limits=limits,
        published=published,
    )

    routes_dashboard.install(endpoint)
    routes_health.install(endpoint, api)
    routes_signals.install(endpoint, api, max_signal_bytes=max_signal_bytes)
    routes_orders.install(endpoint, api)
    routes_stops.install(endpoint, api)
    routes_universe.install(endpoint, api)
    routes_trading.install(endpoint, api, drills_enabled=drills_enabled)
    routes_metrics.install(endpoint, api)
    routes_audit.install(endpoint, api)
    routes_openapi.install(endpoint)
    return app
