"""What every actor of one coordinator process shares: config, addresses, start time."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from coordinator import __version__
from coordinator.clock import Clock
from coordinator.compact_ids import CompactIdWindow
from coordinator.config import Config
from coordinator.infra.claimed_ahead import ClaimedAhead

__all__ = ["DecidedSignals", "Endpoints", "KeptRecords", "Services"]


class DecidedSignals:
    """Ids of the signals that have a decision, shared by every actor that decides.

    A Validator looks here before it works on a signal, so that a copy of a signal
    decided by an earlier incarnation (kept in a mailbox, or sent again after a
    restart) is not decided - or ordered - a second time.

    Such a copy is minutes old at most, so the newest 250,000 (eight minutes at 500
    signals a second) are kept, more than the StoreWriter's own guard against a second
    decision (200,000); an older copy is the intake's duplicate window's to stop, and
    an order's intent in PostgreSQL stops a second order whatever the age.
    """

    def __init__(self, limit: int = 250_000, *, generation: int = 65_536) -> None:
        self._lock = threading.Lock()
        self._ids = CompactIdWindow(limit, generation=generation)
        self.limit = limit
        """How many of the newest are kept at least."""
        self.generation = generation
        """How many digests ``add_generation`` best takes at once."""

    @property
    def takes_generations(self) -> bool:
        """Whether ``add_generation`` may be used: no decision was added as an id yet."""
        with self._lock:
            return self._ids.takes_digests

    def digests(self) -> list[int]:
        """The digest of every decision kept (``compact_ids.id_digest``)."""
        with self._lock:
            return list(self._ids.digests())

    def add_generation(self, packed: bytes) -> None:
        """Decisions read back from the store, as ``CompactIdWindow.add_generation``
        takes them: oldest first, before any is added as an id."""
        with self._lock:
            self._ids.add_generation(packed)

    def add(self, signal_id: str) -> bool:
        """Record a decision; False when the signal had one already."""
        with self._lock:
            return self._ids.add(signal_id)

    def update(self, signal_ids: Iterable[str]) -> None:
        with self._lock:
            self._ids.update(signal_ids)

    def __contains__(self, signal_id: object) -> bool:
        with self._lock:
            return signal_id in self._ids


class KeptRecords:
    """Records an actor keeps outside itself, written through on every change, so that
    its next incarnation starts exactly where a crashed one stopped (the store lags
    behind by one batched flush). Lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}

    def put(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._records[key] = record

    def drop(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def copy(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._records)

    def clear(self) -> None:
        """Everything dropped (what they describe is another's to keep now)."""
        with self._lock:
            self._records.clear()


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the dependencies are, once embedded servers are up (secrets included)."""

    redis_url: str
    database_dsn: str
    trader_url: str | None
    """None: not configured."""
    portfolio_url: str | None
    """None: not configured."""
    redis_embedded: bool = False
    database_embedded: bool = False


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    endpoints: Endpoints
    clock: Clock
    started_at: float
    """Wall-clock start of the process, epoch seconds."""
    started_monotonic: float
    version: str = __version__
    journal: Any = None
    """The local write-ahead journal (coordinator.infra.journal.Journal)."""
    intents: Any = None
    """The order-intent gate (coordinator.infra.intent_claims.IntentClaims)."""
    paper_exchange: bool = False
    """Whether Trader and Portfolio are the in-process paper exchange."""
    identity: Any = None
    """This process's identity, claimed at start (coordinator.infra.instances
    .InstanceRegistry); None in trees built without one (tests)."""
    ownership: Any = None
    """Cluster mode: the symbol partitions this process holds
    (coordinator.cluster.ownership.PartitionOwnership); None when it decides every
    symbol (COORDINATOR_INSTANCES=single, and trees built without one)."""
    decided: DecidedSignals = field(default_factory=DecidedSignals)
    """Signals with a decision (this process's and the store's recent ones)."""
    kept_stops: KeptRecords = field(default_factory=KeptRecords)
    """The TrailingStop's latest record per position, for its next incarnation."""
    kept_ledger: KeptRecords = field(default_factory=KeptRecords)
    """The Ledger's book after its latest complete change (key ``book``), for its next
    incarnation."""
    kept_halt: KeptRecords = field(default_factory=KeptRecords)
    """ServiceHealth's kill switch as last known (key ``halt``), for its next incarnation."""
    kept_exits: KeptRecords = field(default_factory=KeptRecords)
    """The stops' exits each Validator took in and has not decided (by signal id: the
    Validator's name and the ``SubmitSignal``), for its next incarnation: one waiting
    there when it crashed would otherwise stay stored and undecided (the TrailingStop
    sends a lost exit again only while its stop is hit)."""
    claimed_ahead: ClaimedAhead = field(default_factory=ClaimedAhead)
    """Intents the Validators claimed ahead of sending their orders, not sent yet: for
    their next incarnations, which may send them (see ``infra.claimed_ahead``)."""
    trader_calls_clean: threading.Event = field(default_factory=threading.Event)
    """Set by ServiceHealth while the Trader's breaker is closed with no failure counted:
    a Validator's successful call would change nothing there, and is not told."""

    @property
    def mode(self) -> str:
        """Where orders go: ``paper`` (the in-process paper exchange, no real money),
        ``live`` (the Trader), or ``shadow`` (TRADING_ENABLED=false: none is sent)."""
        if not self.config.trading.enabled:
            return "shadow"
        return "paper" if self.paper_exchange else "live"

    def uptime(self) -> float:
        return self.clock.monotonic() - self.started_monotonic
