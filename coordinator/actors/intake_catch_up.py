"""The intake's catch-up from RootTrading's ``trading_signals``: when it is due, and the
rows turned back into the signals the aggregator published.

The aggregator stores each consensus (``processed = false``) before it publishes it, so
a signal that no subscription heard is still in the table. The catch-up runs on the
leader alone: each instance taking in every row would decide each signal as many
times. It is due

- when this instance is elected: at its start, and when it takes over from a leader
  that may have gone before its own catch-up;
- when the signal subscription connects again while this instance leads: what was
  published while it was down reached nobody (Redis gone, or only the link);
- when the intake starts again while this instance leads: what came while it was down
  waited in the directory up to a limit, past which a pub/sub signal was dropped.

A row taken in twice costs nothing more than a look: an id seen within the dedup window
is a duplicate, and a signal decided earlier is recognised by the Validator.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import pykka

from coordinator.actors.names import ActorName
from coordinator.cluster.fencing import LeaseToken
from coordinator.messages.base import Command, Event
from coordinator.messages.health import GetHealthSnapshot
from coordinator.messages.pipeline import RawSignal
from coordinator.supervisor.directory import ChildUnavailable, Directory
from coordinator.trading.signal_rows import LiftedRow, RowKind, lift_row
from coordinator.trading.signals import FieldError, Signal, SignalSource, parse_signal

__all__ = [
    "CATCH_UP_RETRY",
    "HEALTH_BARRIER",
    "CatchUpCause",
    "CatchUpDue",
    "CatchUpFailed",
    "CatchUpPlan",
    "CatchUpRows",
    "UnliftableRow",
    "catch_up_messages",
    "read_pending_rows",
    "read_pending_rows_for",
    "trading_signal_payload",
]

HEALTH_BARRIER = 5.0
"""Seconds a catch-up's rows wait at most for ServiceHealth (``read_pending_rows_for``)."""

CATCH_UP_RETRY = 5.0
"""Seconds before a catch-up whose read failed is tried again, while this instance
leads: the signals it would find are lost until it is read."""


class CatchUpCause(StrEnum):
    """Why a catch-up runs: said in its log line."""

    ELECTED = "this instance leads"
    RECONNECTED = "the signal subscription is back"
    RETRY = "the last read failed"
    RESTARTED = "the intake was down"


@dataclass
class CatchUpPlan:
    """When a catch-up is due, from what the intake hears: elections, losses of the
    lead, the subscription's link. Each method answers the cause of a catch-up to run
    now, or None."""

    token: LeaseToken | None = None
    """The lease this instance leads under, as last told; None while it follows."""

    @property
    def leading(self) -> bool:
        return self.token is not None

    def elected(self, token: LeaseToken) -> CatchUpCause | None:
        # A replaced elector tells the same election again: nothing new to look for.
        if token == self.token:
            return None
        self.token = token
        return CatchUpCause.ELECTED

    def lost(self, token: LeaseToken) -> None:
        # A loss of an older lead, told late, does not end the current one.
        if token == self.token:
            self.token = None

    def subscription(self, connected: bool) -> CatchUpCause | None:
        return CatchUpCause.RECONNECTED if connected and self.leading else None

    def due(self, cause: CatchUpCause) -> CatchUpCause | None:
        """A catch-up asked for (a retry, a restart) runs only while leading."""
        return cause if self.leading else None


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpDue(Command):
    """Time to read the table again (a retry after a failed read, a restart); to the
    intake itself."""

    cause: CatchUpCause
    """Why the catch-up runs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpRows(Event):
    """The table's unprocessed consensus rows, read by the intake's worker."""

    rows: tuple[dict[str, Any], ...]
    """The rows as read, column name to value, oldest id first."""
    cause: CatchUpCause
    """Why they were read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpFailed(Event):
    """The table could not be read; by the intake's worker."""

    error: str
    """What the store said, on one line."""
    cause: CatchUpCause
    """Why it was read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnliftableRow(Command):
    """A ``trading_signals`` row that cannot be a signal, to be decided invalid; to the
    intake itself."""

    row: LiftedRow
    """The row's id, text and what is wrong with it."""


def read_pending_rows(dsn: str, since: float) -> tuple[dict[str, Any], ...]:
    """Unprocessed consensus rows younger than ``since`` (epoch s), on a connection of
    their own. Raises ``StoreError``."""
    from coordinator.infra.pipeline_store import PipelineStore

    store = PipelineStore(dsn, timeout=5.0)
    try:
        return tuple(store.pending_trading_signals(since))
    finally:
        store.close()


def read_pending_rows_for(
    directory: Directory, dsn: str, since: float, *, barrier: float = HEALTH_BARRIER
) -> tuple[dict[str, Any], ...]:
    """``read_pending_rows``, answered once ServiceHealth has handled what it heard
    before this read began. On a reconnection that is the link's return, heard by
    ServiceHealth and the intake together: Redis is up again and the trading state that
    says so is in the Validators' mailboxes ahead of the rows' signals. Without the
    wait, a BUY caught up from its row could meet the state of the outage and be refused
    ``trading_degraded`` by our own lagging view. ServiceHealth down or silent for
    ``barrier`` seconds holds the rows no longer: they go as they would have."""
    rows = read_pending_rows(dsn, since)
    with contextlib.suppress(ChildUnavailable, pykka.Timeout):
        directory.ask(ActorName.SERVICE_HEALTH, GetHealthSnapshot(), timeout=barrier)
    return rows


def catch_up_messages(
    rows: tuple[dict[str, Any], ...], *, now: float, mono: float
) -> tuple[list[RawSignal | UnliftableRow], int]:
    """What the intake tells itself for ``rows``: each consensus as the signal the
    aggregator published, each row that cannot be one to be decided invalid; and how
    many constituents were left alone."""
    messages: list[RawSignal | UnliftableRow] = []
    skipped = 0
    for row in rows:
        payload = trading_signal_payload(row)
        if isinstance(payload, bytes):
            messages.append(
                RawSignal(
                    payload=payload,
                    source=SignalSource.DATABASE,
                    received_at=now,
                    received_mono=mono,
                    # An earlier process may have taken it in (and sent its order).
                    redelivered=True,
                )
            )
        elif payload.kind is RowKind.INVALID:
            messages.append(UnliftableRow(row=payload))
        else:
            # A constituent the query let through: not a signal, left as it is.
            skipped += 1
    return messages, skipped


def trading_signal_payload(row: dict[str, Any]) -> bytes | LiftedRow:
    """A consensus row as the aggregator published it (JSON bytes, ``db_id`` = its id),
    else what the row is (a constituent, or invalid and why)."""
    lifted = lift_row(row)
    if lifted.kind is not RowKind.CONSENSUS:
        return lifted
    try:
        data = json.dumps(lifted.payload, default=str, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        errors: tuple[FieldError, ...] = (
            FieldError("trading_signals", f"not JSON-serialisable ({exc})"),
        )
    else:
        parsed = parse_signal(data)
        if isinstance(parsed, Signal):
            return data
        # Decided under the row's id all the same, so that the row is marked.
        errors = parsed.errors
    return replace(lifted, kind=RowKind.INVALID, payload=None, errors=errors)
