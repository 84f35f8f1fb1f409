"""The Portfolio service: balances and active positions (DESIGN section 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from coordinator.errors import CoordinatorError
from coordinator.infra.http_wire import AnswerTimedOut, ConnectTimedOut, HttpError, Timeouts
from coordinator.infra.json_http import JsonHttp, error_kind
from coordinator.infra.json_rows import NotRows, RowReader
from coordinator.messages.stops import HeldPosition
from coordinator.trading.validation import Balance, PortfolioView, PositionView

__all__ = ["PortfolioClient", "PortfolioError"]

T = TypeVar("T")


class PortfolioError(CoordinatorError):
    """The Portfolio did not answer, or answered something unusable."""


class PortfolioClient:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self._timeout = timeout
        self._http = JsonHttp(base_url.rstrip("/"), pool_size=2)
        self._http_timeout = Timeouts(connect=timeout, read=timeout)
        # One reader per use: each keeps what it built of the last answer's rows.
        self._balances = RowReader(_balance_entry)
        self._positions = RowReader(_position_entry)
        self._held = RowReader(_held_position)

    def fetch(self, now: float) -> PortfolioView:
        balances = self._get("/balances", self._balances)
        entries = [e for e in self._get("/positions/active", self._positions) if e is not None]
        positions = {entry.symbol: entry.view for entry in entries}
        if len(positions) != len(entries):
            # Several open cycles of one symbol: the last row's numbers (as a dict
            # built from the rows keeps them), with every cycle's opening time.
            opened: dict[str, list[float | None]] = {}
            for entry in entries:
                opened.setdefault(entry.symbol, []).append(entry.opened_at)
            for symbol, times in opened.items():
                if len(times) > 1:
                    known = tuple(t for t in times if t is not None)
                    positions[symbol] = replace(positions[symbol], opened_at=known)
        return PortfolioView(balances=dict(balances), positions=positions, fetched_at=now)

    def held_positions(self) -> list[HeldPosition]:
        """``GET /positions/active`` with entry times, for the trailing stops."""
        return [p for p in self._get("/positions/active", self._held) if p is not None]

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, reader: RowReader[T]) -> list[T]:
        try:
            response = self._http.get(path, timeout=self._http_timeout)
        except (ConnectTimedOut, AnswerTimedOut) as exc:
            raise PortfolioError(f"GET {path}: timeout after {self._timeout:g} s") from exc
        except HttpError as exc:
            raise PortfolioError(f"GET {path}: {error_kind(exc)}") from exc
        if response.status == 404:
            return []  # what RootTrading's /balances answers when it has no row
        if response.status != 200:
            raise PortfolioError(f"GET {path} answered {response.status}")
        try:
            return reader.read(response.data)
        except NotRows as exc:
            raise PortfolioError(f"GET {path}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise PortfolioError(f"unusable answer: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _PositionEntry:
    """One open position row of ``/positions/active``, as the Ledger's view takes it."""

    symbol: str
    """As the Portfolio writes it."""
    opened_at: float | None
    """Its ``timestamp``; None when it has none, or one that cannot be read."""
    view: PositionView
    """The position as this row alone shows it."""


def _balance_entry(row: dict[str, Any]) -> tuple[str, Balance]:
    return str(row["asset"]), _balance(row)


def _position_entry(row: dict[str, Any]) -> _PositionEntry | None:
    if not _is_open(row):
        return None
    opened = _opened(row)
    return _PositionEntry(
        str(row["symbol"]), opened, _position(row, () if opened is None else (opened,))
    )


def _held_position(row: dict[str, Any]) -> HeldPosition | None:
    if not _is_open(row):
        return None
    return HeldPosition(
        symbol=str(row["symbol"]).upper(),
        quantity=_number(row["quantity"]) or 0.0,
        entry_price=_number(row.get("entry_price"), 0.0) or 0.0,
        opened_at=_epoch(row.get("timestamp")),
    )


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


def _is_open(row: dict[str, Any]) -> bool:
    """Whether the row is an open position's (RootTrading's say ``ACTIVE``; none: open)."""
    return str(row.get("status", "OPEN")).upper() in ("OPEN", "ACTIVE", "")


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
