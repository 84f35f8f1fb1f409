"""The Portfolio service: balances and active positions (DESIGN section 3)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.infra.http_wire import AnswerTimedOut, ConnectTimedOut, HttpError, Timeouts
from coordinator.infra.json_http import JsonHttp, error_kind
from coordinator.messages.stops import HeldPosition
from coordinator.trading.validation import Balance, PortfolioView, PositionView

__all__ = ["PortfolioClient", "PortfolioError"]


class PortfolioError(CoordinatorError):
    """The Portfolio did not answer, or answered something unusable."""


class PortfolioClient:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self._timeout = timeout
        self._http = JsonHttp(base_url.rstrip("/"), pool_size=2)
        self._http_timeout = Timeouts(connect=timeout, read=timeout)

    def fetch(self, now: float) -> PortfolioView:
        balances = self._get("/balances", empty_on_404=True)
        positions = self._get("/positions/active", empty_on_404=True)
        try:
            open_rows = _open(positions)
            opened: dict[str, list[float]] = {}
            for row in open_rows:
                at = _opened(row)
                if at is not None:
                    opened.setdefault(str(row["symbol"]), []).append(at)
            return PortfolioView(
                balances={str(row["asset"]): _balance(row) for row in balances},
                positions={
                    str(row["symbol"]): _position(row, tuple(opened.get(str(row["symbol"]), ())))
                    for row in open_rows
                },
                fetched_at=now,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PortfolioError(f"unusable answer: {type(exc).__name__}: {exc}") from exc

    def held_positions(self) -> list[HeldPosition]:
        """``GET /positions/active`` with entry times, for the trailing stops."""
        rows = self._get("/positions/active", empty_on_404=True)
        try:
            return [
                HeldPosition(
                    symbol=str(row["symbol"]).upper(),
                    quantity=_number(row["quantity"]) or 0.0,
                    entry_price=_number(row.get("entry_price"), 0.0) or 0.0,
                    opened_at=_epoch(row.get("timestamp")),
                )
                for row in _open(rows)
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise PortfolioError(f"unusable answer: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, *, empty_on_404: bool) -> list[dict[str, Any]]:
        try:
            response = self._http.get(path, timeout=self._http_timeout)
        except (ConnectTimedOut, AnswerTimedOut) as exc:
            raise PortfolioError(f"GET {path}: timeout after {self._timeout:g} s") from exc
        except HttpError as exc:
            raise PortfolioError(f"GET {path}: {error_kind(exc)}") from exc
        if response.status == 404 and empty_on_404:
            return []
        if response.status != 200:
            raise PortfolioError(f"GET {path} answered {response.status}")
        try:
            body = response.json()
        except ValueError as exc:
            raise PortfolioError(f"GET {path}: not JSON") from exc
        if not isinstance(body, list) or not all(isinstance(row, dict) for row in body):
            raise PortfolioError(f"GET {path}: expected a list of objects")
        return body


def _number(value: Any, default: float | None = None) -> float | None:
    if value is None:
        return default
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    return number


def _epoch(value: Any) -> float | None:
    """Epoch seconds from epoch seconds, epoch milliseconds or ISO-8601 (naive = UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number / 1000.0 if number > 1e11 else number
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return number / 1000.0 if number > 1e11 else number


def _open(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of open positions (RootTrading's say ``ACTIVE``; none: open)."""
    return [r for r in rows if str(r.get("status", "OPEN")).upper() in ("OPEN", "ACTIVE", "")]


def _opened(row: dict[str, Any]) -> float | None:
    """A position's ``timestamp`` for the Ledger: one it cannot read is unknown, not a
    view refused (the exit checks then lean on entry price and quantity alone)."""
    try:
        return _epoch(row.get("timestamp"))
    except (TypeError, ValueError):
        return None


def _balance(row: dict[str, Any]) -> Balance:
    return Balance(
        free=_number(row.get("free"), 0.0) or 0.0,
        total=_number(row.get("total"), 0.0) or 0.0,
        value=_number(row.get("value_usdc")),
    )


def _position(row: dict[str, Any], opened_at: tuple[float, ...]) -> PositionView:
    quantity = _number(row["quantity"]) or 0.0
    entry = _number(row.get("entry_price"), 0.0) or 0.0
    current = _number(row.get("current_price"), entry) or entry
    return PositionView(
        symbol=str(row["symbol"]),
        quantity=quantity,
        entry_price=entry,
        value=_number(row.get("value"), current * quantity) or 0.0,
        pnl=_number(row.get("pnl"), 0.0) or 0.0,
        opened_at=opened_at,
    )
