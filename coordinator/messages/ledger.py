"""The Ledger's messages: reservations of an order's room, their settlement, the
Portfolio's view and the Ledger's snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from coordinator.messages.base import Command, Event, Query
from coordinator.trading.signals import Side, Signal
from coordinator.trading.validation import (
    CheckResult,
    ExitTarget,
    MarketQuote,
    OrderPlan,
    PortfolioView,
)

__all__ = [
    "GetLedgerSnapshot",
    "LedgerSnapshot",
    "OrderNotExecuted",
    "PortfolioFetched",
    "PositionsSeen",
    "RefreshPortfolio",
    "Reservation",
    "ReservationsExpired",
    "Reserve",
    "ReserveMany",
    "Settle",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserve(Command):
    """Validator to Ledger: run steps 6-9 and, if they pass, hold the order's room.
    Asked: answered with the ``Reservation`` made (or the check that failed)."""

    signal: Signal
    """The signal."""
    market: MarketQuote | None
    """The latest price the Validator knows."""
    exit: ExitTarget | None = None
    """For a trailing stop's exit: the holding it is for."""
    owner: str = ""
    """Who asks (``validator-2#3``: name and incarnation), named when it leaks."""
    deadline: float | None = None
    """Wall-clock time the asker gives up waiting for the answer: a Reserve still in the
    Ledger's mailbox after it makes no reservation (nobody would settle it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveMany(Command):
    """Validator to Ledger: the ``Reserve``s of signals that waited together in the
    Validator's inbox, one ask for them all. Each is checked and held as if asked alone,
    in order, each on the book the ones before it left. Asked: answered with a tuple of
    their ``Reservation``s, in the same order."""

    reserves: tuple[Reserve, ...]
    """The reservations asked for, each of another symbol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    checks: tuple[CheckResult, ...]
    """Steps 6 to 9."""
    plan: OrderPlan | None
    """The order to send when every step passed."""
    reservation_id: str | None
    """To settle once the order's outcome is known; unique across Ledger incarnations."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderNotExecuted(Command):
    """Reconciler to Ledger: an order whose outcome was unknown was never executed (not
    found at the exchange once its window passed, or so resolved by an operator)."""

    client_order_id: str
    """The order."""
    signal_id: str
    """The signal (or stop exit) it was made for: what the Ledger's book knows it by."""
    symbol: str
    """Its pair."""
    side: Side
    """BUY or SELL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settle(Command):
    """Validator to Ledger: the reserved order's outcome."""

    reservation_id: str
    """From the Reservation."""
    filled: bool | None
    """True filled, False not sent or refused, None unknown."""
    symbol: str
    """The symbol of the order settled: the Ledger checks the id names that plan."""
    side: Side
    """Its side."""
    at: float | None = None
    """Wall-clock time the outcome was known: the Ledger takes a fill's Settle at its
    next wake, which may be later. None: when the Ledger takes it."""

    @property
    def wakes(self) -> bool:
        """A fill waits in the Ledger's inbox for its next wake; an order not filled or
        of unknown outcome wakes it (``DeferringInbox``). Those change what the Ledger
        believes held, which the fetch that follows at once must check; a fill's fetch
        waits up to a second after it anyway."""
        return self.filled is not True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationsExpired(Event):
    """The Ledger released reservations nobody settled within their lifetime."""

    count: int
    """How many."""
    owners: tuple[str, ...]
    """Who had reserved them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioFetched(Event):
    """The Ledger's fetcher thread has an answer from the Portfolio."""

    view: PortfolioView | None
    """Balances and positions, or None when the fetch failed."""
    requested_at: float
    """Wall-clock time the fetch started: fills after it are not in the view."""
    error: str | None
    """Why it failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshPortfolio(Command):
    """Time for the Ledger to fetch the Portfolio if its view is older than the TTL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionsSeen(Command):
    """The TrailingStop adopted positions: the Ledger fetches at once if its view lacks
    one of them, so that their exits are not refused ``no_position``."""

    symbols: tuple[str, ...]
    """Symbols of the positions adopted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetLedgerSnapshot(Query):
    """Ask the Ledger for a ``LedgerSnapshot``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSnapshot:
    positions: tuple[str, ...]
    """Symbols held (portfolio view plus fills since)."""
    reservations: int
    """Orders in flight."""
    reservations_expired: int = 0
    """Reservations released unsettled by this incarnation."""
    reserved_quote: float
    """Quote amount held by BUYs in flight."""
    view_age: float | None
    """Seconds since the Portfolio last answered."""
    error: str | None
    """Why the last fetch failed."""
    cash_held_back: float = 0.0
    """Quote held back from what BUYs may spend: what the last fetched view's matching
    may count beyond the exchange's cash (``LedgerBook.cash_margin``)."""
    base_held_back: Mapping[str, float] = field(default_factory=dict)
    """Base asset -> held back from what SELLs may sell: what our SELLs taken as shown
    by a view that may not show them yet may count beyond the exchange's holdings
    (``LedgerBook.base_margin``)."""
