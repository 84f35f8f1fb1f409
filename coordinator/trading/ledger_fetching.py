"""When the Ledger fetches the Portfolio: when its view is older than the cache ttl, at
most once every ``min_refresh`` after our own fills (the view has them laid over
already; the fetch only confirms them, and with a thousand positions each one costs
milliseconds that exits on other symbols wait behind), less often when a fetch takes
long (``COST_SHARE``), and soon (``urgent_gap`` apart at
most) when a position the view lacks is seen. One fetch at a time: one asked for while
another runs starts when it ends. No I/O: time is given."""

from __future__ import annotations

__all__ = ["COST_SHARE", "MIN_REFRESH", "URGENT_GAP", "FetchThrottle"]

MIN_REFRESH = 1.0
"""Seconds between fetches caused by our own fills."""
COST_SHARE = 0.1
"""The share of the time that refreshes after fills may spend fetching: after a fetch
that took 0.15 s (ten thousand positions: 0.1 s of CPU to read them, more on a busy
machine) the next such refresh waits 1.5 s. Never longer than the ttl, which asks for
a fetch anyway."""
URGENT_GAP = 0.2
"""Seconds between fetches for a position the view lacks: many exits refused at once
must not hammer a Portfolio that is failing."""


class FetchThrottle:
    def __init__(
        self, ttl: float, *, min_refresh: float = MIN_REFRESH, urgent_gap: float = URGENT_GAP
    ) -> None:
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.urgent_gap = urgent_gap
        self.last_started: float | None = None
        """When the last fetch started (wall clock)."""
        self.refresh_after_fill = False
        """A fetch is owed: after a fill, or an urgent one too soon after the last."""
        self.fetching = False
        self.again = False
        """A fetch was asked for while one ran."""
        self.last_took = 0.0
        """Seconds the last fetch took, from its start to its answer."""

    def after_fill(self) -> None:
        """Refreshed after our own orders, but not once per fill."""
        self.refresh_after_fill = True

    def refresh_gap(self) -> float:
        """Seconds from the start of one fetch to a refresh after fills: ``min_refresh``,
        or more when the last fetch took over ``COST_SHARE`` of that, up to the ttl."""
        return max(self.min_refresh, min(self.ttl, self.last_took / COST_SHARE))

    def due(self, now: float, fetched_at: float | None) -> bool:
        """Whether to fetch now, on a tick or a check: an owed refresh once the
        ``refresh_gap`` has passed, or a view missing or older than the ttl. Never while
        a fetch runs: the view it brings is the fresh one asked for, and the checks
        meanwhile, each seeing the view still old, would ask for a second fetch straight
        after it (every ttl, two fetches of every position instead of one)."""
        if self.fetching:
            return False
        last = self.last_started
        if self.refresh_after_fill and (last is None or now - last >= self.refresh_gap()):
            self.refresh_after_fill = False
            return True
        return fetched_at is None or now - fetched_at >= self.ttl

    def urgent(self, now: float) -> bool:
        """Whether to fetch now for a position the view lacks; if not (one started less
        than ``urgent_gap`` ago), it goes with the refreshes after fills."""
        last = self.last_started
        if last is None or now - last >= self.urgent_gap:
            return True
        self.refresh_after_fill = True
        return False

    def start(self, now: float) -> bool:
        """Whether a fetch starts now; if one runs, it starts again when that one ends."""
        if self.fetching:
            self.again = True
            return False
        self.fetching = True
        self.last_started = now
        return True

    def finished(self, now: float) -> bool:
        """The running fetch answered at ``now``; whether one was asked for meanwhile."""
        if self.fetching and self.last_started is not None:
            self.last_took = max(0.0, now - self.last_started)
        self.fetching = False
        if self.again:
            self.again = False
            return True
        return False
