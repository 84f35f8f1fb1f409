"""Routes of the universe: what it is, its rotations, a rotation now, the blacklist."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from coordinator.http.asking import NotLeader, NotOnBlacklist
from coordinator.http.endpoints import Endpoints, fail, json_body, query_limit
from coordinator.http.facade import CoordinatorApi
from coordinator.trading.symbols import is_symbol

__all__ = ["MAX_BLACKLIST_TTL", "install"]

MAX_BLACKLIST_TTL = 10 * 365 * 86400
"""Ten years: longer is "until removed" (null), and past year 9999 an expiry is no date
that PostgreSQL or a view could write."""


def install(endpoint: Endpoints, api: CoordinatorApi) -> None:
    @endpoint("GET", "/universe", cached=True)
    def universe() -> dict[str, Any]:
        return api.universe()

    @endpoint("GET", "/universe/history")
    def universe_history() -> dict[str, Any]:
        rows = api.universe_history(query_limit(20, 500))
        return {"count": len(rows), "rotations": rows}

    @endpoint("POST", "/universe/refresh", token=True)
    def universe_refresh() -> dict[str, Any]:
        with leader_only():
            return api.refresh_universe()

    @endpoint("POST", "/universe/blacklist", token=True)
    def blacklist_add() -> dict[str, Any]:
        body = json_body()
        symbol, reason, ttl = body.get("symbol"), body.get("reason"), body.get("ttl_s")
        errors = []
        if not is_symbol(symbol):
            errors.append(f"symbol must be a Binance symbol such as BTCUSDC, got {symbol!r}")
        if not isinstance(reason, str) or not reason.strip():
            errors.append("reason must be a non-empty string")
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            # Compared, not converted: NaN fails it, and an integer too large for a
            # float does not raise.
            or not 0 < ttl <= MAX_BLACKLIST_TTL
        ):
            errors.append(
                f"ttl_s must be a number of seconds > 0 and <= {MAX_BLACKLIST_TTL} (ten years)"
                f" or null, got {ttl!r}"
            )
        if errors:
            raise fail(400, "; ".join(errors))
        assert isinstance(symbol, str) and isinstance(reason, str)  # checked above
        with leader_only():
            return api.blacklist(
                symbol, reason=reason.strip()[:500], ttl=None if ttl is None else float(ttl)
            )

    @endpoint("DELETE", "/universe/blacklist/<symbol>", token=True)
    def blacklist_remove(symbol: str) -> dict[str, Any]:
        with leader_only():
            try:
                return api.unblacklist(symbol)
            except NotOnBlacklist as exc:
                raise fail(404, str(exc)) from None


@contextlib.contextmanager
def leader_only() -> Iterator[None]:
    """A command only the leader carries out: 409 naming the leader on a follower."""
    try:
        yield
    except NotLeader as exc:
        raise fail(409, str(exc), leader=exc.leader) from None
