"""The instance registry (``coordinator_instances``): a coordinator claims its identity
at start, beats its row while it runs, and frees it when it stops cleanly.

Liveness is judged on the database's clock (``clock_timestamp()``) for the heartbeat
written and the heartbeat read alike, so two hosts with skewed clocks agree on it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.config.identity import InstanceMode
from coordinator.errors import CoordinatorError
from coordinator.infra.store import OwnConnectionStore, with_session_setting

__all__ = [
    "INSTANCE_SETTING",
    "IdentityInUse",
    "IdentityLost",
    "InstanceBeside",
    "InstanceRegistry",
    "InstanceRow",
    "instance_dsn",
]

logger = logging.getLogger(__name__)

INSTANCE_SETTING = "coordinator.instance"
"""The session setting the ``instance`` columns of decisions and orders default to."""

_COLUMNS = "instance, host, pid, data_dir, incarnation, started_at, heartbeat_at, stopped_at, mode"
_FIELDS = 9
# Held by every claim for its transaction: two instances starting at once are judged one
# after the other, so two that may not run together do not both start.
_CLAIM_LOCK = 0x636F6F7264


def instance_dsn(dsn: str, instance: str) -> str:
    """``dsn`` with ``instance`` set on each of its sessions: every decision and order
    written through it records that instance, whatever path writes it (intent, store
    writer, journal replay). The name's characters need no quoting (see
    ``coordinator.config.identity``)."""
    return with_session_setting(dsn, INSTANCE_SETTING, instance)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One identity's row as read."""

    instance: str
    host: str
    pid: int
    data_dir: str
    incarnation: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    mode: InstanceMode = InstanceMode.SINGLE
    """How it runs; a row written before modes were stored ran alone."""

    def describe(self) -> str:
        """Who holds it, as a log line or an error names it."""
        state = (
            f"stopped at {self.stopped_at.isoformat()}"
            if self.stopped_at is not None
            else f"last heartbeat {self.heartbeat_at.isoformat()}"
        )
        return (
            f"host {self.host}, pid {self.pid}, incarnation {self.incarnation}, "
            f"data dir {self.data_dir}, {state}"
        )


class IdentityInUse(CoordinatorError):
    """Another live process holds this identity: this one must not start."""

    def __init__(self, instance: str, holder: InstanceRow, liveness: float) -> None:
        super().__init__(
            f"instance {instance!r} is held by a live coordinator ({holder.describe()}, "
            f"younger than INSTANCE_LIVENESS={liveness:g} s): set another "
            "COORDINATOR_INSTANCE, or stop that one first"
        )
        self.holder = holder


class InstanceBeside(CoordinatorError):
    """Another instance is live that this one may not run beside: any other when this
    one runs alone (COORDINATOR_INSTANCES=single), or one running alone when this one
    is of a cluster. Two leading at once would trade twice."""

    def __init__(
        self, instance: str, mode: InstanceMode, other: InstanceRow, liveness: float
    ) -> None:
        live = (
            f"instance {other.instance!r} ({other.mode}) is live ({other.describe()}, "
            f"younger than INSTANCE_LIVENESS={liveness:g} s)"
        )
        if mode is InstanceMode.SINGLE:
            why = (
                f"instance {instance!r} runs alone (COORDINATOR_INSTANCES=single) but {live}: "
                "stop that one first, or set COORDINATOR_INSTANCES=cluster on every "
                "instance to run several"
            )
        else:
            why = (
                f"instance {instance!r} (COORDINATOR_INSTANCES=cluster) cannot start beside "
                f"one that runs alone: {live}; stop it, or set "
                "COORDINATOR_INSTANCES=cluster on every instance to run several"
            )
        super().__init__(why)
        self.other = other


class IdentityLost(CoordinatorError):
    """Another process took this identity over (this one was paused or cut off past the
    liveness): this one must stop acting at once."""

    def __init__(self, instance: str, holder: InstanceRow | None) -> None:
        who = holder.describe() if holder is not None else "its row is gone"
        super().__init__(f"instance {instance!r} is no longer ours: {who}")
        self.holder = holder


class InstanceRegistry(OwnConnectionStore):
    """This process's row: claimed once, beaten, released. One connection, used by one
    thread at a time (the claim and release in the daemon's thread, the heartbeats on
    the InstanceKeeper's worker, never together)."""

    application = "coordinator-instance"
    autocommit = True

    def __init__(
        self,
        dsn: str,
        *,
        instance: str,
        host: str,
        pid: int,
        data_dir: str,
        liveness: float,
        timeout: float = 2.0,
        incarnation: str | None = None,
        database_in_data_dir: bool = False,
        mode: InstanceMode = InstanceMode.CLUSTER,
    ) -> None:
        super().__init__(dsn, timeout=timeout)
        self.mode = mode
        """COORDINATOR_INSTANCES: alone, no other instance may be live at the claim; in
        a cluster, none that runs alone."""
        self.database_in_data_dir = database_in_data_dir
        """The database is the embedded one, inside ``data_dir``, whose lock this process
        holds: a row written from this host and data directory was written by a process
        that has died since (the lock is released only with its holder), however young
        its heartbeat."""
        self.instance = instance
        self.host = host
        self.pid = pid
        self.data_dir = data_dir
        self.liveness = liveness
        self.incarnation = incarnation or str(uuid.uuid4())
        """This process's, new at each start: what tells it from the one before."""
        self._losses: list[IdentityLost] = []
        """Shared with its twins: a loss found by one is known to all."""

    @property
    def lost(self) -> IdentityLost | None:
        """How the identity was lost, once a heartbeat (of this registry or a twin) found
        another incarnation holding it; None while it is ours."""
        return self._losses[0] if self._losses else None

    def twin(self) -> InstanceRegistry:
        """The same identity and incarnation on a connection of its own, for another
        thread; a loss found by either is the other's too."""
        twin = InstanceRegistry(
            self._dsn,
            instance=self.instance,
            host=self.host,
            pid=self.pid,
            data_dir=self.data_dir,
            liveness=self.liveness,
            timeout=self._timeout,
            incarnation=self.incarnation,
            database_in_data_dir=self.database_in_data_dir,
            mode=self.mode,
        )
        twin._losses = self._losses
        return twin

    def claim(self) -> InstanceRow | None:
        """Take this identity: the earlier row it replaced when that one was stopped or
        stale (None for a first claim); IdentityInUse when a live process holds it,
        InstanceBeside when another instance is live that this one may not run beside.

        Atomic: the row, when there is one, is locked while it is judged and replaced,
        and a first claim is an insert that only one of two racing processes makes (the
        other then finds the winner's row, live)."""

        def work(cur: Any) -> tuple[InstanceRow | None, bool]:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))
            self._refuse_beside(cur)
            cur.execute(
                f"SELECT {_COLUMNS}, stopped_at IS NULL AND heartbeat_at > clock_timestamp()"
                " - make_interval(secs => %s) FROM coordinator_instances"
                " WHERE instance = %s FOR UPDATE",
                (self.liveness, self.instance),
            )
            found = cur.fetchone()
            if found is None:
                cur.execute(
                    f"INSERT INTO coordinator_instances ({_COLUMNS}) VALUES"
                    " (%s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp(), NULL, %s)"
                    " ON CONFLICT (instance) DO NOTHING",
                    self._values(),
                )
                # Nothing inserted: another process claimed it first (and committed).
                return None, cur.rowcount == 1
            earlier = _row(found[:_FIELDS])
            if found[_FIELDS] and not self._left_by_the_dead(earlier):
                raise IdentityInUse(self.instance, earlier, self.liveness)
            cur.execute(
                "UPDATE coordinator_instances SET host = %s, pid = %s, data_dir = %s,"
                " incarnation = %s, started_at = clock_timestamp(),"
                " heartbeat_at = clock_timestamp(), stopped_at = NULL, mode = %s"
                " WHERE instance = %s",
                (*self._values()[1:], self.instance),
            )
            return earlier, True

        # A lost insert race is judged again: the winner's row is there then.
        for _ in range(3):
            earlier, claimed = self._run_in_transaction(work)
            if claimed:
                return earlier
        raise CoordinatorError(f"instance {self.instance!r} could not be claimed")

    def _refuse_beside(self, cur: Any) -> None:
        """InstanceBeside when another identity is live that this one may not run
        beside (this identity's own row is judged by the claim)."""
        cur.execute(
            f"SELECT {_COLUMNS} FROM coordinator_instances"
            " WHERE instance <> %s AND stopped_at IS NULL"
            " AND heartbeat_at > clock_timestamp() - make_interval(secs => %s)"
            " ORDER BY heartbeat_at DESC",
            (self.instance, self.liveness),
        )
        for found in cur.fetchall():
            other = _row(found)
            alone = InstanceMode.SINGLE in (self.mode, other.mode)
            if alone and not self._left_by_the_dead(other):
                raise InstanceBeside(self.instance, self.mode, other, self.liveness)

    def _left_by_the_dead(self, row: InstanceRow) -> bool:
        """Whether ``row``, live by its heartbeat, was left by a process known dead: one
        of this host and data directory, when the database lives in that directory (a
        restart right after a kill -9 then need not wait for the liveness). Only then:
        on a shared database, another machine may bear the same host name and path."""
        return self.database_in_data_dir and (row.host, row.data_dir) == (
            self.host,
            self.data_dir,
        )

    def heartbeat(self) -> None:
        """Say this process is alive; IdentityLost when another incarnation holds the
        identity now (StoreError when PostgreSQL does not answer)."""

        def work(cur: Any) -> bool:
            cur.execute(
                "UPDATE coordinator_instances SET heartbeat_at = clock_timestamp()"
                " WHERE instance = %s AND incarnation = %s AND stopped_at IS NULL",
                (self.instance, self.incarnation),
            )
            held: bool = cur.rowcount == 1
            return held

        if not self._run(work):
            lost = IdentityLost(self.instance, self.read())
            self._losses.append(lost)
            raise lost

    def release(self) -> bool:
        """Free the identity at a clean stop, so that a restart takes it at once; False
        when this process no longer held it."""

        def work(cur: Any) -> bool:
            cur.execute(
                "UPDATE coordinator_instances SET stopped_at = clock_timestamp(),"
                " heartbeat_at = clock_timestamp()"
                " WHERE instance = %s AND incarnation = %s AND stopped_at IS NULL",
                (self.instance, self.incarnation),
            )
            released: bool = cur.rowcount == 1
            return released

        released: bool = self._run(work)
        return released

    def read(self) -> InstanceRow | None:
        """This identity's row as it is now."""
        row: InstanceRow | None = self._run(self._read)
        return row

    def _read(self, cur: Any) -> InstanceRow | None:
        cur.execute(
            f"SELECT {_COLUMNS} FROM coordinator_instances WHERE instance = %s",
            (self.instance,),
        )
        found = cur.fetchone()
        return None if found is None else _row(found)

    def _values(self) -> tuple[Any, ...]:
        return (
            self.instance,
            self.host,
            self.pid,
            self.data_dir,
            self.incarnation,
            self.mode.value,
        )

    def _run_in_transaction(self, work: Any) -> Any:
        # The claim's lock must hold from the read to the write: one transaction, where
        # the heartbeats are each a statement of their own (autocommit).
        conn = self._connection()
        conn.autocommit = False
        try:
            return self._run(work)
        finally:
            if not conn.closed:
                conn.autocommit = True


def _row(values: Any) -> InstanceRow:
    return InstanceRow(
        instance=values[0],
        host=values[1],
        pid=values[2],
        data_dir=values[3],
        incarnation=str(values[4]),
        started_at=values[5],
        heartbeat_at=values[6],
        stopped_at=values[7],
        # NULL: written before modes were stored, when a coordinator ran alone.
        mode=InstanceMode(values[8] or InstanceMode.SINGLE),
    )
