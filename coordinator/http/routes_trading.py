"""Routes of the kill switch, and the drills that make an actor fail on purpose."""

from __future__ import annotations

import math
from typing import Any

from bottle import request, response

from coordinator.http.asking import UnknownActor
from coordinator.http.endpoints import Endpoints, fail, json_body, operator
from coordinator.http.facade import CoordinatorApi
from coordinator.trading.trading_state import ExitPolicy

__all__ = ["install"]


def install(endpoint: Endpoints, api: CoordinatorApi, *, drills_enabled: bool) -> None:
    @endpoint("POST", "/trading/halt", token=True)
    def halt() -> dict[str, Any]:
        body = json_body()
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise fail(400, "body field 'reason' is required: a non-empty string saying why")
        exits = body.get("exits", ExitPolicy.ALLOW.value)
        allowed = [policy.value for policy in ExitPolicy]
        if not isinstance(exits, str) or exits not in allowed:
            raise fail(
                400,
                f"body field 'exits' must be one of {', '.join(map(repr, allowed))} "
                f"(default 'allow'), got {exits!r}",
            )
        return api.halt(reason=reason.strip()[:500], by=operator(body), exits=ExitPolicy(exits))

    @endpoint("POST", "/trading/resume", token=True)
    def resume() -> dict[str, Any]:
        return api.resume(by=operator(json_body()))

    @endpoint("POST", "/drills/actors/<name>/<kind>", token=True)
    def drill(name: str, kind: str) -> dict[str, Any]:
        if not drills_enabled:
            raise fail(403, "drills are disabled: set COORDINATOR_DRILLS=1 to enable them")
        seconds: float | None = None
        if kind == "hang":
            raw = request.query.get("seconds")
            try:
                seconds = float(raw) if raw is not None else math.nan
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds):
                raise fail(400, f"query parameter 'seconds' must be a number, got {raw!r}")
        try:
            result = api.drill(name, kind, seconds=seconds)
        except UnknownActor:
            raise fail(404, f"no actor named {name!r}") from None
        except ValueError as exc:
            raise fail(400, str(exc)) from None
        response.status = 202
        return result
