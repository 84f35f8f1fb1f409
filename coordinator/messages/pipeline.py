"""The signal pipeline: intake, validation, execution, storage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coordinator.cluster.fencing import LeaseToken
from coordinator.messages.base import Command, Event, Query

# The Ledger's, the market's and Stats' messages have their own modules; re-exported so imports from
# here work.
from coordinator.messages.ledger import (
    GetLedgerSnapshot,
    LedgerSnapshot,
    PortfolioFetched,
    PositionsSeen,
    RefreshPortfolio,
    Reservation,
    ReservationsExpired,
    Reserve,
    ReserveMany,
    Settle,
)
from coordinator.messages.market import (
    CandlesReceived,
    CandlesWaiting,
    GetMarketSnapshot,
    MarketSnapshot,
    MarketTick,
    PricesUpdated,
    PriceUpdated,
)
from coordinator.messages.stats import (
    GetStats,
    LifetimeFetched,
    RefreshLifetime,
    StatsSnapshot,
)
from coordinator.trading.execution import OrderStatus
from coordinator.trading.signals import Signal, SignalSource
from coordinator.trading.validation import AdmissionStatus, CheckResult, ExitTarget

__all__ = [
    "AckStreamEntry",
    "Admission",
    "CandlesReceived",
    "CandlesWaiting",
    "Decision",
    "GetIntakeSnapshot",
    "GetLedgerSnapshot",
    "GetMarketSnapshot",
    "GetStats",
    "GetStoreSnapshot",
    "GetStoredRecords",
    "GetUndecided",
    "GetValidatorSnapshot",
    "IntakeLink",
    "IntakeLinkChanged",
    "IntakeSnapshot",
    "IntakeTick",
    "LedgerSnapshot",
    "LifetimeFetched",
    "MarketSnapshot",
    "MarketTick",
    "OrderFinished",
    "OrderRecord",
    "PortfolioFetched",
    "PositionsSeen",
    "PriceUpdated",
    "PricesUpdated",
    "RawSignal",
    "RecordDecision",
    "RecordOrder",
    "RecordSignal",
    "RefreshLifetime",
    "RefreshPortfolio",
    "ReleaseSignal",
    "Reservation",
    "ReservationsExpired",
    "Reserve",
    "ReserveMany",
    "Settle",
    "SignalDecided",
    "StatsSnapshot",
    "StopLossRecorded",
    "StoreSnapshot",
    "StoreTick",
    "StoredRecords",
    "SubmitSignal",
    "TraderCallOutcome",
    "UndecidedSignals",
    "ValidatorSnapshot",
    "ValidatorTick",
]


# --- intake ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RawSignal(Command):
    """Bytes as they arrived; asked (HTTP) or told (Redis readers)."""

    payload: bytes
    """The message body, not parsed yet."""
    source: SignalSource
    """``pubsub``, ``stream``, ``http`` or ``database``."""
    received_at: float
    """Wall-clock time of arrival, epoch seconds."""
    received_mono: float
    """Monotonic time of arrival, for latencies."""
    stream_id: str | None = None
    """Redis Stream entry id, acknowledged once the decision is stored."""
    redelivered: bool = False
    """Delivered before, maybe to an earlier process: a stream entry re-read from the
    pending list or taken over from another consumer, a ``trading_signals`` row."""
    total_bytes: int | None = None
    """The size of the whole body when ``payload`` is only its beginning (an HTTP body
    over the size limit is not read further)."""
    partition: int | None = None
    """Cluster mode: the symbol partition whose stream it was read from (``stream_id``
    is then ``<stream>@<entry id>``); None for a signal from outside, which the intake
    routes to the partition's owner instead of deciding it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """The intake's answer to a ``RawSignal`` that was asked."""

    signal_id: str
    """The signal's id."""
    status: AdmissionStatus
    """``accepted`` (sent on for validation), ``rejected`` or ``duplicate``."""
    reason: str | None
    """Reason code when not accepted."""
    errors: tuple[tuple[str, str], ...] = ()
    """(field, problem) for an invalid signal."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSignal(Command):
    """A parsed, fresh, new signal for the Validator of its symbol."""

    signal: Signal
    """The signal."""
    source: SignalSource
    """Where it came from."""
    received_at: float
    """Wall-clock arrival time."""
    received_mono: float
    """Monotonic arrival time."""
    checks: tuple[CheckResult, ...] = ()
    """The intake's steps (parse, freshness, back-pressure), all passed."""
    exit: ExitTarget | None = None
    """Set for a trailing stop's exit: the holding it sells."""
    redelivered: bool = False
    """It may have been seen before, by an earlier process or incarnation (taken in
    again, re-delivered, taken over, sent again from the in-flight table): its intent may
    be in PostgreSQL already, so the local journal may not claim it."""
    fence: LeaseToken | None = None
    """Cluster mode: the lease of the signal's symbol partition as this instance held
    it when the signal was read; its order intent passes that fence, so an instance
    that lost the partition meanwhile stores and sends nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseSignal(Command):
    """A signal not decided here after all: its partition's lease was lost before its
    intent was stored. The intake forgets it; its stream entry stays pending for the
    partition's owner, who takes it over."""

    signal_id: str
    """The signal."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeTick(Command):
    """Time for the intake to forget ids older than the dedup window."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AckStreamEntry(Command):
    """A stream entry whose signal was decided already: acknowledge it at the next flush."""

    stream_id: str
    """The entry."""


class IntakeLink(StrEnum):
    """The intake's Redis readers."""

    PUBSUB = "pubsub"
    STREAM = "stream"
    PARTITIONS = "partitions"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeLinkChanged(Event):
    """A Redis reader of the intake connected or lost its connection."""

    link: IntakeLink
    """Which reader."""
    connected: bool
    """Whether it is connected now."""
    error: str | None
    """Why it was lost."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetIntakeSnapshot(Query):
    """Ask SignalIntake for an ``IntakeSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeSnapshot:
    received: int
    """Messages received since start, valid or not."""
    admitted: int
    """Sent on for validation."""
    rejected: int
    """Rejected at the intake (invalid, stale, overloaded)."""
    duplicates: int
    """Already seen."""
    in_flight: int
    """Sent on and not decided yet."""
    resent: int
    """Sent again after their Validator was replaced."""
    links: tuple[tuple[str, bool], ...]
    """(reader, connected)."""


# --- validation and execution ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StopLossRecorded(Event):
    """A position was closed by a stop-loss: its symbol cools down."""

    symbol: str
    """The symbol."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraderCallOutcome(Event):
    """Validator to ServiceHealth: how a real call to the Trader went (breaker input)."""

    ok: bool
    """Answered (2xx or 4xx: the Trader works)."""
    error: str | None
    """5xx, timeout or connection failure."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorTick(Command):
    """Time to expire signals waiting for the Trader."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetValidatorSnapshot(Query):
    """Ask a Validator for a ``ValidatorSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorSnapshot:
    name: str
    """The Validator."""
    waiting: int
    """Signals waiting for the Trader."""
    trading_state: str
    """The state it last heard of."""
    decided: int
    """Decisions since this incarnation started."""


# --- storage --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    client_order_id: str
    """Derived from the signal id; unique."""
    signal_id: str
    """The signal."""
    symbol: str
    """The symbol."""
    side: str
    """BUY or SELL."""
    quantity: float
    """Quantity sent."""
    reference_price: float
    """Price the order was sized at."""
    state: OrderStatus
    """pending, sent, accepted, rejected or unknown."""
    trader_order_id: str | None = None
    """The Trader's id, when accepted."""
    error: str | None = None
    """The Trader's error or the transport failure."""
    at: float
    """Wall-clock time of this state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    signal_id: str
    """The signal."""
    symbol: str | None
    """Its symbol (None for an unparseable payload)."""
    side: str | None
    """BUY or SELL."""
    outcome: str
    """accepted, rejected, shadow or unknown."""
    reason: str | None
    """Reason code when not accepted."""
    detail: str
    """The reason for a person."""
    checks: tuple[CheckResult, ...]
    """Every step's result, in order."""
    quantity: float | None
    """Order quantity, when an order was planned."""
    decided_at: float
    """Wall-clock time."""
    decided_by: str
    """The actor (and incarnation) that decided."""
    intake_to_decision_ms: float
    """Milliseconds from arrival to decision."""
    intake_to_order_ms: float | None
    """Milliseconds from arrival to the order request leaving, when one was sent."""
    order: OrderRecord | None = None
    """The order, when one was planned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSignal(Command):
    """Store a signal as received (valid or not)."""

    signal_id: str
    """Its id."""
    source: SignalSource
    """Where it came in."""
    received_at: float
    """Wall-clock arrival."""
    received_mono: float
    """Monotonic arrival."""
    signal: Signal | None
    """The parsed signal; None when invalid."""
    payload: str
    """As received."""
    stream_id: str | None = None
    """Redis Stream entry to acknowledge once decided."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDecision(Command):
    """Store a decision; the first one per signal wins, later ones are dropped."""

    decision: Decision
    """The decision."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOrder(Command):
    """Store an order state change (the intent itself is stored before sending)."""

    order: OrderRecord
    """The order in its new state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalDecided(Event):
    """A decision is stored (in PostgreSQL or the local journal)."""

    decision: Decision
    """The decision."""
    source: str
    """Where the signal came from."""
    wire: bytes | None = None
    """The event as JSON for the events channel, when the StoreWriter encoded it with
    the decision's stored row (one encode per decision); None: encoded from the fields."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFinished(Event):
    """An order's attempt ended and its outcome is stored: accepted, rejected or unknown
    (no answer, or held after a 5xx). Published by the StoreWriter after the write, as
    ``SignalDecided`` is; a held order is published again once its Validator decides it.
    On the events channel its ``type`` stays ``OrderSubmitted``."""

    order: OrderRecord
    """The order in its final state."""
    wire: bytes | None = None
    """The event as JSON for the events channel, when the StoreWriter encoded the
    order's fields once for it and the decision's event; None: encoded from the fields."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTick(Command):
    """Time for the store writer to flush its batch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetUndecided(Query):
    """Signals received and not decided (intake rebuilds its in-flight table from them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UndecidedSignals:
    signals: tuple[RecordSignal, ...]
    """Oldest first."""
    unwritten: bytes
    """The digests of the signals received and not in the store yet (batched, or kept
    in the journal while PostgreSQL refused), packed in ascending order
    (``compact_ids.pack_sorted_digests``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStoredRecords(Query):
    """Read from the store for the API: one signal, or a list of decisions."""

    signal_id: str | None = None
    """One signal with its decision and order."""
    symbol: str | None = None
    """Filter of the decision list."""
    outcome: str | None = None
    """Filter of the decision list."""
    limit: int = 50
    """Length of the decision list."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecords:
    signal: Mapping[str, Any] | None = None
    """The signal asked for with its decision and order, as stored (None: not found)."""
    decisions: tuple[Mapping[str, Any], ...] = ()
    """The decisions asked for, newest first, as stored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStoreSnapshot(Query):
    """Ask the store writer for a ``StoreSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSnapshot:
    postgres_ok: bool
    """Whether the last write reached PostgreSQL."""
    pending: int
    """Records waiting for the next flush."""
    journaled: int
    """Records in the local journal, waiting for PostgreSQL."""
    written: int
    """Records written since start."""
    last_error: str | None
    """Last write error."""
    undecided: int
    """Signals received and not decided."""
    unknown_orders: tuple[OrderRecord, ...]
    """Orders whose outcome is unknown (alerts), newest first."""
