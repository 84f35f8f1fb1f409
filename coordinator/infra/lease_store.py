"""The leases in PostgreSQL (``coordinator_leases``): take, renew, release, and the
fence every leader-only transaction passes first.

Times are the caller's: ``now`` is read from the injected clock by the contender and
passed in, never PostgreSQL's ``now()``. The contender counts its own deadline from the
moment it sent the request, on its own monotonic clock, and the row's expiry is that
same moment's wall-clock reading plus the duration; so the holder stops believing it
leads no later than anyone may take the row, however late the answer came back, and
tests drive it all with a ManualClock. This assumes the instances' wall clocks agree
(NTP, well within a renewal interval): a clock ahead takes over early, one behind
waits longer. Safety does not rest on it: a takeover raises the generation, and
``coordinator_assert_lease`` refuses every write of an older one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg2

from coordinator.cluster.fencing import LeaseLost, LeaseToken
from coordinator.cluster.lease import Granted, Refused
from coordinator.infra.store import OwnConnectionStore, StoreError, first_line

__all__ = [
    "FENCE_SQLSTATE",
    "LeaseAnswer",
    "LeaseRow",
    "LeaseStore",
    "run_fenced",
    "run_maybe_fenced",
]

T = TypeVar("T")

FENCE_SQLSTATE = "LEASE"
"""What ``coordinator_assert_lease`` raises when the lease is not the caller's."""

_COLUMNS = (
    "holder, generation, extract(epoch FROM expires_at)::float8,"
    " extract(epoch FROM acquired_at)::float8, extract(epoch FROM renewed_at)::float8"
)

# A take when the row is free (absent, released or expired at the caller's time) starts
# a new term, raising the generation whoever takes it: a holder that comes back under
# the same name fences off what its earlier life still has in flight. Our own row, not
# expired, is only extended (never shortened: a late request must not bring its expiry
# back under what a newer renewal promised).
_ACQUIRE = f"""
INSERT INTO coordinator_leases AS l
    (name, holder, generation, expires_at, acquired_at, renewed_at)
VALUES (%(name)s, %(holder)s, 1, %(expires)s, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    generation = CASE WHEN l.expires_at <= EXCLUDED.acquired_at
                      THEN l.generation + 1 ELSE l.generation END,
    acquired_at = CASE WHEN l.expires_at <= EXCLUDED.acquired_at
                       THEN EXCLUDED.acquired_at ELSE l.acquired_at END,
    expires_at = CASE WHEN l.expires_at <= EXCLUDED.acquired_at
                      THEN EXCLUDED.expires_at
                      ELSE greatest(l.expires_at, EXCLUDED.expires_at) END,
    renewed_at = EXCLUDED.renewed_at
WHERE l.expires_at <= EXCLUDED.acquired_at OR l.holder = EXCLUDED.holder
RETURNING {_COLUMNS}
"""

# A released row stays released: a renewal sent before the release must not revive it.
_RENEW = f"""
UPDATE coordinator_leases
   SET expires_at = greatest(expires_at, %(expires)s), renewed_at = %(now)s
 WHERE name = %(name)s AND holder = %(holder)s AND generation = %(generation)s
   AND expires_at > '-infinity'
RETURNING {_COLUMNS}
"""

_RELEASE = """
UPDATE coordinator_leases SET expires_at = '-infinity'
 WHERE name = %(name)s AND holder = %(holder)s AND generation = %(generation)s
"""

_READ = f"SELECT {_COLUMNS} FROM coordinator_leases WHERE name = %(name)s"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease as stored."""

    name: str
    holder: str
    generation: int
    expires_at: float
    """Epoch seconds; -inf once released."""
    acquired_at: float
    """When this generation was taken."""
    renewed_at: float
    """When it was last acquired or renewed."""

    @property
    def released(self) -> bool:
        return self.expires_at == -math.inf

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (0 when expired or released)."""
        return max(0.0, self.expires_at - now)

    def token(self) -> LeaseToken:
        return LeaseToken(self.name, self.holder, self.generation)


@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    """What came of an acquisition or a renewal."""

    granted: bool
    """Whether the lease is ours now."""
    row: LeaseRow | None
    """The row after the call: ours when granted, else the holder's (None: no row)."""

    def answer(self, number: int, wall: float) -> Granted | Refused:
        """As the contender takes it, for its request ``number`` sent at ``wall``."""
        row = self.row
        if self.granted and row is not None:
            return Granted(number, row.generation)
        return Refused(
            number,
            row.holder if row else None,
            row.generation if row else None,
            row.remaining(wall) if row else 0.0,
        )


def _row(name: str, values: Any) -> LeaseRow | None:
    if values is None:
        return None
    return LeaseRow(name, values[0], values[1], values[2], values[3], values[4])


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def run_fenced(conn: Any, token: LeaseToken, work: Callable[[Any], T]) -> T:
    """Run ``work(cursor)`` in one transaction of ``conn`` that passes the fence first
    (``coordinator_assert_lease``), and commit it. The lease's row stays locked FOR
    SHARE until the commit, so a takeover waits for this transaction and any fenced
    transaction after the takeover is refused. Refused: rolled back, nothing written,
    ``LeaseLost``. Other database errors go on as they are (psycopg2's). A token of a
    coordinator leading alone passes no fence: the transaction is a plain one."""
    try:
        with conn, conn.cursor() as cur:
            if token.fenced:
                cur.execute(
                    "SELECT coordinator_assert_lease(%s, %s, %s)",
                    (token.name, token.holder, token.generation),
                )
            return work(cur)
    except psycopg2.Error as exc:
        if exc.pgcode == FENCE_SQLSTATE:
            raise LeaseLost(token, first_line(exc)) from exc
        raise


def run_maybe_fenced(
    store: OwnConnectionStore, token: LeaseToken | None, work: Callable[[Any], T]
) -> T:
    """``work(cursor)`` in one transaction on ``store``'s connection, passing the fence
    first when there is a ``token`` (leader-only work): LeaseLost when refused, a
    StoreError for any other failure, as the store's own calls."""
    if token is None or not token.fenced:
        result: T = store._run(work)
        return result
    try:
        return run_fenced(store._connection(), token, work)
    except psycopg2.Error as exc:
        store.close()
        raise StoreError(first_line(exc)) from exc


class LeaseStore(OwnConnectionStore):
    """The leases, through one connection used by one thread at a time (the elector's
    worker). Every database failure is a StoreError; a refused lease is an answer."""

    application = "coordinator-lease"

    def acquire(self, name: str, holder: str, *, now: float, duration: float) -> LeaseAnswer:
        """Take the lease if it is free or expired at ``now`` (a new generation), or
        extend it if it is already ours; else the holder's row."""
        params = {
            "name": name,
            "holder": holder,
            "now": _at(now),
            "expires": _at(now + duration),
        }

        return self._grant_or_read(_ACQUIRE, name, params)

    def renew(
        self, name: str, holder: str, generation: int, *, now: float, duration: float
    ) -> LeaseAnswer:
        """Extend the lease to ``now + duration`` if it is still ours at ``generation``
        and not released; else the row as it is."""
        params = {
            "name": name,
            "holder": holder,
            "generation": generation,
            "now": _at(now),
            "expires": _at(now + duration),
        }

        return self._grant_or_read(_RENEW, name, params)

    def _grant_or_read(self, statement: str, name: str, params: dict[str, Any]) -> LeaseAnswer:
        """Run the conditional ``statement``: its row when it granted, else the row as
        the holder has it."""

        def work(cur: Any) -> LeaseAnswer:
            cur.execute(statement, params)
            granted = _row(name, cur.fetchone())
            if granted is not None:
                return LeaseAnswer(True, granted)
            cur.execute(_READ, params)
            return LeaseAnswer(False, _row(name, cur.fetchone()))

        answer: LeaseAnswer = self._run(work)
        return answer

    def release(self, name: str, holder: str, generation: int) -> bool:
        """Give the lease up (a clean stop): anyone may take it at once. Whether it was
        still ours to give."""
        params = {"name": name, "holder": holder, "generation": generation}

        def work(cur: Any) -> bool:
            cur.execute(_RELEASE, params)
            return bool(cur.rowcount)

        released: bool = self._run(work)
        return released

    def read(self, name: str) -> LeaseRow | None:
        def work(cur: Any) -> LeaseRow | None:
            cur.execute(_READ, {"name": name})
            return _row(name, cur.fetchone())

        row: LeaseRow | None = self._run(work)
        return row

    def run_fenced(self, token: LeaseToken, work: Callable[[Any], T]) -> T:
        """``run_fenced`` on this store's connection: LeaseLost when refused, a
        StoreError for any other failure."""
        return run_maybe_fenced(self, token, work)
