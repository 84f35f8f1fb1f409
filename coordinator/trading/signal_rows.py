"""Rows of RootTrading's ``trading_signals`` table, turned back into the signal published.

The aggregator stores a consensus as a row whose metadata is wrapped
(``{"original_metadata": <the published metadata without db_id>}``, beside a few
promoted keys), and publishes it with ``metadata.db_id`` = the row's id. It also stores
each constituent strategy signal of that consensus, with the strategy's own metadata
nested one level deeper and the markers ``part_of_consensus`` / ``consensus_id``; those
were never published and are never to be traded.

``lift_row`` undoes the wrapping: the payload it gives is the one Redis carried (same
metadata, ``db_id`` = the row id), so both ways in have the same ``db:<id>`` signal id
and the same signal. Pure: no I/O, never raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from coordinator.trading.signals import FieldError

__all__ = [
    "CONSENSUS_STRATEGY",
    "LiftedRow",
    "RowKind",
    "db_id_of",
    "lift_row",
]

CONSENSUS_STRATEGY = "CONSENSUS"
"""The ``strategy`` of every signal the aggregator publishes (and of its row)."""

WRAPPER = "original_metadata"
"""The key under which the aggregator stores the metadata it was given."""

# Row columns that are not part of the published signal.
_ROW_ONLY = frozenset({"id", "metadata", "processed", "created_at"})


class RowKind(StrEnum):
    CONSENSUS = "consensus"
    """A consensus as published: to be taken in."""
    CONSTITUENT = "constituent"
    """One strategy's signal stored beside its consensus: never traded, never decided."""
    INVALID = "invalid"
    """A row that cannot be turned back into a signal: decided invalid, naming why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiftedRow:
    """What one ``trading_signals`` row is, and the signal it stands for."""

    kind: RowKind
    """Consensus, constituent or invalid."""
    row_id: str
    """The row's id as text (``db_id``); empty when the row has none."""
    signal_id: str
    """``db:<row id>``: the id the published signal has too."""
    payload: dict[str, Any] | None
    """The signal as published (JSON-ready), for a consensus; else None."""
    errors: tuple[FieldError, ...] = ()
    """What is wrong, for an invalid row."""
    text: str = ""
    """The row as JSON text, for the record of an invalid row."""

    def describe(self) -> str:
        return "; ".join(f"{e.field}: {e.problem}" for e in self.errors)


def db_id_of(signal_id: str) -> str | None:
    """The ``trading_signals`` id a signal id names (``db:<id>``), else None."""
    if signal_id.startswith("db:") and len(signal_id) > 3:
        return signal_id[3:]
    return None


def plain(value: Any) -> Any:
    """A column value as JSON has it: psycopg2 gives datetimes and Decimals."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    return value


def lift_row(row: dict[str, Any]) -> LiftedRow:
    """Tell a row's kind and, for a consensus, give back the signal as published."""
    row_id = row.get("id")
    row_text = "" if row_id is None or isinstance(row_id, bool) else str(row_id).strip()
    signal_id = f"db:{row_text}"

    def invalid(field: str, problem: str) -> LiftedRow:
        return LiftedRow(
            kind=RowKind.INVALID,
            row_id=row_text,
            signal_id=signal_id,
            payload=None,
            errors=(FieldError(field, problem),),
            text=_row_text(row),
        )

    if not row_text:
        return invalid("trading_signals.id", f"missing or empty (got {row_id!r})")
    metadata = row.get("metadata")
    if isinstance(metadata, str | bytes):
        try:
            metadata = json.loads(metadata)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return invalid("trading_signals.metadata", f"not valid JSON ({_short(exc)})")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return invalid(
            "trading_signals.metadata", f"must be an object or null, got {type(metadata).__name__}"
        )
    if _is_constituent(row, metadata):
        return LiftedRow(
            kind=RowKind.CONSTITUENT, row_id=row_text, signal_id=signal_id, payload=None
        )
    if WRAPPER in metadata:
        inner = metadata[WRAPPER]
        if not isinstance(inner, dict):
            return invalid(
                f"trading_signals.metadata.{WRAPPER}",
                f"must be an object (the published metadata), got {_type(inner)}",
            )
        lifted = dict(inner)
    else:
        # Not the aggregator's wrapping (another writer): its metadata is the signal's.
        lifted = dict(metadata)
    # The row id is the truth: the published copy had it under this key.
    lifted["db_id"] = _db_id_value(row_id)
    payload = {key: plain(value) for key, value in row.items() if key not in _ROW_ONLY}
    if "timestamp" not in payload and row.get("created_at") is not None:
        payload["timestamp"] = plain(row["created_at"])
    if WRAPPER in metadata and isinstance(metadata.get("strength"), str):
        # A top-level strength is kept by the wrapper beside the metadata.
        payload.setdefault("strength", metadata["strength"])
    payload["metadata"] = lifted
    return LiftedRow(kind=RowKind.CONSENSUS, row_id=row_text, signal_id=signal_id, payload=payload)


def _is_constituent(row: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """A strategy signal stored as part of a consensus.

    Two independent marks: the aggregator publishes (and stores as the consensus) only
    ``strategy = "CONSENSUS"``, and a constituent's wrapped metadata says
    ``part_of_consensus``. Either one is enough to leave a row alone, so neither a
    renamed strategy nor a change of the markers can put a constituent up for trading.
    """
    if row.get("strategy") != CONSENSUS_STRATEGY:
        return True
    inner = metadata.get(WRAPPER)
    for level in (metadata, inner if isinstance(inner, dict) else {}):
        if level.get("part_of_consensus") is True:
            return True
    return False


def _db_id_value(row_id: Any) -> Any:
    # The aggregator publishes the SERIAL id as a JSON integer.
    if isinstance(row_id, int) and not isinstance(row_id, bool):
        return row_id
    text = str(row_id).strip()
    return int(text) if text.isdigit() else text


def _row_text(row: dict[str, Any]) -> str:
    try:
        return json.dumps({k: plain(v) for k, v in row.items()}, default=str, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return repr(row)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
