"""The TrailingStop's part in the leader lease: it watches stops and sends exits only
while this instance leads. A follower holds nothing; elected, it restores the open stops
from ``coordinator_stops`` (peaks, stops, lifecycles) as a start does; lost (told by the
elector, or a write refused by the fence), it drops everything at once and sends
nothing more. Every write of the stops, and the intent claim of every exit it asks for,
carries the lease's token, so a stale leader's work is refused by PostgreSQL."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

from coordinator.actors.leadership import lease_holder, lease_now
from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.stop_store import StopStore
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import OrderFinished, PricesUpdated, PriceUpdated, SignalDecided
from coordinator.messages.stops import (
    AtrHistoryLoaded,
    CandleClosed,
    ExitOrdersRead,
    ExitsLookedUp,
    PositionsFetched,
    StopsSource,
    StopTick,
    StoredClosesRead,
    StoredStopsRead,
    TrailingStopsSnapshot,
)
from coordinator.trading.stop_book import Holding, stored_row
from coordinator.trading.stops import AtrTracker

if TYPE_CHECKING:
    from coordinator.actors.trailing_stop_work import StopWork

    _Host = StopWork
else:
    _Host = object

__all__ = ["LEADER_WORK", "StopLeadership"]

logger = logging.getLogger("coordinator.actors.trailing_stop")

LEADER_WORK = (
    PricesUpdated,
    PriceUpdated,
    StopTick,
    CandleClosed,
    SignalDecided,
    OrderFinished,
    PositionsFetched,
    ExitsLookedUp,
    ExitOrdersRead,
    AtrHistoryLoaded,
    StoredStopsRead,
    StoredClosesRead,
)
"""What a follower ignores: it watches nothing (late answers of a term it lost too)."""


class StopLeadership(_Host):
    """Part of the TrailingStop (its attributes are set up there)."""

    _token: LeaseToken | None
    """The lease this instance leads under; None while it follows."""
    _by_symbol: dict[str, list[Holding]]
    _alias: dict[str, str]
    _atr: dict[str, AtrTracker]
    _lookups: list[str]
    _fetching: bool
    _fetch_due: float
    _fetch_started: float
    _dsn: str

    if TYPE_CHECKING:

        def _restore(self) -> None: ...

        def _snapshot(self, rows: bool = True) -> TrailingStopsSnapshot: ...

    def _follow_elector(self) -> None:
        """At start: lead at once if the elector says this instance leads, else wait
        for ``LeaderElected``."""
        token = lease_now(self.context.directory)
        if token is not None:
            self._lead(token)

    def _lead(self, token: LeaseToken) -> None:
        if self._token == token:
            return
        if self._token is not None:
            self._step_down(f"leading again at generation {token.generation}")
        self._token = token
        logger.info(
            "leader at generation %d: trailing stops restored from the store", token.generation
        )
        self._restore()

    def _lost(self, token: LeaseToken, why: str, *, planned: bool = False) -> None:
        """The lease at ``token`` is gone: dormant, unless it is an older term's news.
        ``planned``: released by a clean stop, not worth a WARNING."""
        if self._token is not None and self._token == token:
            self._step_down(why, planned=planned)

    def _step_down(self, why: str, *, planned: bool = False) -> None:
        """Dormant at once: every stop dropped (the next leader restores them from the
        store), nothing more sent. What changed since the last flush goes in one last
        fenced write: stored if no one has taken the lease yet, refused otherwise."""
        token, self._token = self._token, None
        if token is None:
            return
        records = self._dirty_records()
        if records:
            self.run_then_tell(lambda: self._write(records, token), pool="store")
        self._forget_stops()
        self._kept.clear()
        logger.log(
            logging.INFO if planned else logging.WARNING,
            "trailing stops dormant (no longer leader at generation %d): %s",
            token.generation,
            why,
        )

    def _forget_stops(self) -> None:
        """No stop held: a follower's state, and a new term's before its restore."""
        self._positions = {}
        self._by_symbol = defaultdict(list)
        self._alias = {}
        self._atr = {}
        self._closing = {}
        self._fetching = False
        self._fetch_due = 0.0
        self._fetch_started = 0.0
        self._last_fetch = None
        self._lookups = []
        self._orders_reading = set()
        self._orders_read_at = {}
        self._flush.dirty = set()
        self._flush.busy = False

    def _stored_snapshot(self) -> TrailingStopsSnapshot:
        """A follower's answer to ``GET /trailing-stops``: the leader's open stops as it
        last stored them (a flush behind it at most), and its name; a store that cannot
        be read is said in ``store_error``, with no stop."""
        reader = StopStore(self._dsn, timeout=2.0)
        error = None
        try:
            records = reader.open_stops()
        except StoreError as exc:
            records, error = [], f"coordinator_stops not read: {exc}"
        finally:
            reader.close()
        rows = tuple(
            stored_row(r) for r in sorted(records, key=lambda r: (r["symbol"], r["position_key"]))
        )
        return replace(
            self._snapshot(),
            active=len(rows),
            positions=rows,
            stale=sum(1 for row in rows if row.get("stale")),
            store_error=error,
            source=StopsSource.STORE,
            leader=None if error else lease_holder(self.context.directory, self._dsn),
        )
