"""TrailingStop: positions and prices in, stops kept, exits out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coordinator.cluster.fencing import LeaseToken
from coordinator.messages.base import Command, Event, Query

__all__ = [
    "AtrHistoryLoaded",
    "CandleClosed",
    "ExitOrdersRead",
    "ExitPosition",
    "ExitsLookedUp",
    "GetTrailingStops",
    "HeldPosition",
    "PositionsFetched",
    "StopTick",
    "StopTriggered",
    "StopsFlushed",
    "StopsSource",
    "StoredClosesRead",
    "StoredStopsRead",
    "TrailingStopsSnapshot",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleClosed(Event):
    """A closed candle of the ATR timeframe (MarketFeed)."""

    symbol: str
    """The symbol."""
    timeframe: str
    """Its timeframe, such as ``5m``."""
    time_ms: int
    """Open time, epoch milliseconds."""
    high: float
    """High."""
    low: float
    """Low."""
    close: float
    """Close."""


@dataclass(frozen=True, slots=True)
class HeldPosition:
    """An open position as the Portfolio (and ``trade_cycles``) show it."""

    symbol: str
    """The symbol."""
    quantity: float
    """Base quantity held."""
    entry_price: float
    """Entry price."""
    opened_at: float | None
    """Entry time, epoch seconds, when known."""
    cycle_id: str | None = None
    """Id of the RootTrading trade cycle, when there is one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionsFetched(Event):
    """The TrailingStop's fetcher has the open positions (or why not)."""

    positions: tuple[HeldPosition, ...]
    """Every open position; meaningless when ``error`` is set."""
    error: str | None
    """Why the Portfolio could not be read."""
    cycles_error: str | None = None
    """Why ``trade_cycles`` could not be read (the positions are still usable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AtrHistoryLoaded(Event):
    """Closed candles of the ATR timeframe from the ``market_data`` table."""

    candles: tuple[tuple[str, int, float, float, float], ...]
    """(symbol, open time ms, high, low, close), oldest first."""
    error: str | None
    """Why nothing was read, if so."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredClosesRead(Event):
    """The current prices of held symbols found in the ``market_data`` table: candles
    that closed while no process of ours was listening."""

    prices: tuple[tuple[str, float, float], ...]
    """(symbol, close, the moment it was true: the candle's close) of each symbol with a
    candle closed within ``STOP_PRICE_MAX_AGE``."""
    error: str | None
    """Why nothing was read, if so."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitsLookedUp(Event):
    """The stored decisions of exits that were in flight when the last incarnation ended."""

    decisions: tuple[tuple[str, str, str | None, str], ...]
    """(exit id, outcome, reason, detail) of each exit found decided."""
    error: str | None
    """Why the store could not be read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitPosition(Command):
    """TrailingStop to the Validator of the symbol: sell this position, once."""

    exit_id: str
    """``exit:<position key>:<attempt>``: the signal id of the exit, so one attempt can
    make one order at most."""
    position_key: str
    """The position."""
    symbol: str
    """The symbol."""
    quantity: float
    """The position's quantity as the TrailingStop knows it (the Ledger sizes the sell
    from its own view, which includes our latest fills)."""
    entry_price: float
    """The position's entry price: with the key, what the Ledger checks it still holds."""
    opened_at: float | None = None
    """When the Portfolio showed the position opened (None: unknown): what tells it from
    a later holding of the same size and price."""
    price: float
    """The price that triggered."""
    price_at: float
    """Wall-clock time that price was received."""
    stop: float
    """The stop level."""
    rule: str
    """The rule that set the stop (``stoploss``, ``percent``, ...)."""
    strategy: str
    """The position's rule set, such as ``stoploss+breakeven+percent``."""
    triggered_at: float
    """Wall-clock time of the trigger."""
    tick_mono: float
    """Monotonic time the triggering price arrived from Redis, for latencies."""
    fence: LeaseToken | None = None
    """The lease the TrailingStop led under when it asked: the exit's intent claim
    passes this fence, so a stale leader's exit is refused before it leaves (None: not
    fenced)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopTriggered(Event):
    """A position's stop was hit and its exit sent (also on the events channel)."""

    position_key: str
    """The position."""
    symbol: str
    """The symbol."""
    exit_id: str
    """The exit's signal id."""
    attempt: int
    """1 for the first try, more after failed ones."""
    price: float
    """The price that triggered."""
    stop: float
    """The stop level."""
    peak: float
    """The peak since entry."""
    entry: float
    """The entry price."""
    rule: str
    """The rule that set the stop."""
    strategy: str
    """The position's rule set."""
    at: float
    """Wall-clock time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopTick(Command):
    """Time to reconcile positions, retry exits and flush the stop state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopsFlushed(Event):
    """The stop-state writer is done with a batch."""

    keys: tuple[str, ...]
    """The positions written."""
    error: str | None
    """Why the batch was not stored (it is kept and written again)."""
    fence: LeaseToken | None = None
    """The lease the batch was written under."""
    lease_lost: bool = False
    """The fence refused the batch: another instance leads now, nothing was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStopsRead(Event):
    """The stored records of positions adopted just now (watched before, maybe)."""

    json: str
    """The records (``coordinator_stops`` rows) as a JSON list."""
    keys: tuple[str, ...] = ()
    """The keys asked for (those without a record were never watched)."""
    error: str | None = None
    """Why the store could not be read (then ``json`` is an empty list)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitOrdersRead(Event):
    """The stored exit orders a holding's next attempt depends on."""

    position_key: str
    """The holding asked for."""
    orders: tuple[tuple[str, str, str], ...]
    """(signal id, client order id, state) of the symbol's unsettled exit orders and of
    every exit order of the holding."""
    error: str | None
    """Why they could not be read (no attempt is started then)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetTrailingStops(Query):
    """Ask the TrailingStop for a ``TrailingStopsSnapshot``."""

    stored_if_following: bool = False
    """On a follower, which watches no stop: answer with the leader's open stops as it
    last stored them in ``coordinator_stops`` (a read of the database) instead of none."""
    rows: bool = True
    """False: the counts (``active``, ``stale``) without a row per holding, for
    ``/stats`` and ``/metrics``: ten thousand rows take the TrailingStop 30 ms, which
    the ticks and exits behind them in its mailbox wait for."""


class StopsSource(StrEnum):
    """Where the stops of a ``TrailingStopsSnapshot`` come from."""

    WATCHING = "watching"
    """This instance watches them: it leads."""
    STORE = "store"
    """Read from ``coordinator_stops``: the leader's as it last stored them (a flush
    behind it at most), on a follower."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailingStopsSnapshot:
    active: int
    """Positions under watch (``trailing_stops_active``)."""
    positions: tuple[Mapping[str, Any], ...] = ()
    """One row per holding under watch, by symbol (none when asked without rows)."""
    stale: int = 0
    """Holdings under watch whose latest price is missing or too old (the rows'
    ``stale``)."""
    default_rules: str = ""
    """The rules of a symbol without its own, joined by ``+``."""
    rules_by_symbol: tuple[tuple[str, str], ...] = ()
    """(symbol, rules joined by ``+``) of the symbols with their own."""
    rules_described: tuple[tuple[str, Any], ...] = ()
    """(rules joined by ``+``, what they do) of every rule set in use."""
    price_max_age: float = 0.0
    """Seconds a price is taken for current."""
    positions_fetched_at: float | None = None
    """Wall-clock time of the last read of the positions."""
    positions_error: str | None = None
    """Why the last read of the positions failed."""
    trade_cycles_error: str | None = None
    """Why the last read of the trade cycles failed."""
    store_error: str | None = None
    """Why the last write of the stops failed (from the store: why it was not read)."""
    stale_ticks_ignored: int = 0
    """Prices too old to move a stop."""
    exits_triggered: int = 0
    """Exits the stops started."""
    leading: bool = False
    """Whether this instance leads, and so watches the stops (a follower holds none:
    the leader's are in ``coordinator_stops``)."""
    source: StopsSource = StopsSource.WATCHING
    """Watched here, or read from the store on a follower."""
    leader: str | None = None
    """The lease's holder: this instance when it leads, else the leader as stored (None:
    unknown, or nobody holds the lease)."""
