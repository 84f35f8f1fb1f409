"""What happens to a stop (events) and what the TrailingStop does about it (actions):
the vocabulary of ``coordinator.trading.stop_lifecycle``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Action",
    "Alert",
    "Decided",
    "DecisionMissing",
    "ExitOutcome",
    "FetchPositions",
    "LookUpDecision",
    "OrderSeen",
    "OrdersRead",
    "OwnSellFilled",
    "PositionsSeen",
    "ReadOrders",
    "RecordStopLoss",
    "SendExit",
    "StopEvent",
    "Tick",
    "Timer",
]


class ExitOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    SHADOW = "shadow"


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """A new price was applied to the stop."""


@dataclass(frozen=True, slots=True)
class Timer:
    """Time passed (the actor's periodic tick)."""


@dataclass(frozen=True, slots=True)
class Decided:
    """An exit's stored decision."""

    attempt: int
    outcome: ExitOutcome
    reason: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class DecisionMissing:
    """The current exit has no decision long after it was sent (looked up: none)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class PositionsSeen:
    """A successful positions fetch, with or without this holding."""

    held: bool


@dataclass(frozen=True, slots=True)
class OwnSellFilled:
    """One of our SELLs on this symbol filled, after this holding was known."""

    detail: str


@dataclass(frozen=True, slots=True)
class OrderSeen:
    """One stored exit order of the symbol."""

    client_order_id: str
    state: str
    attempt: int | None
    """Its attempt when it is this holding's, else None (another holding's)."""


@dataclass(frozen=True, slots=True)
class OrdersRead:
    """The stored exit orders of the symbol (unresolved ones, and every one of this
    holding), or why they could not be read. An operator's resolution or the
    reconciler's answer arrives the same way: as the order's stored state."""

    orders: tuple[OrderSeen, ...]
    error: str | None = None


StopEvent = Tick | Timer | Decided | DecisionMissing | PositionsSeen | OwnSellFilled | OrdersRead


# --- actions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendExit:
    attempt: int
    price: float


@dataclass(frozen=True, slots=True)
class ReadOrders:
    """Read the stored exit orders of the symbol."""


@dataclass(frozen=True, slots=True)
class LookUpDecision:
    attempt: int


@dataclass(frozen=True, slots=True)
class FetchPositions:
    """Fetch the positions now."""


@dataclass(frozen=True, slots=True)
class Alert:
    text: str


@dataclass(frozen=True, slots=True)
class RecordStopLoss:
    """A sale below the entry: the loss limits count it."""


Action = SendExit | ReadOrders | LookUpDecision | FetchPositions | Alert | RecordStopLoss
