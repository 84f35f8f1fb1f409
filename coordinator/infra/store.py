"""PostgreSQL: connections, versioned migrations, and the small stores built on them."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
from psycopg2.extensions import make_dsn, parse_dsn

from coordinator.errors import CoordinatorError

__all__ = [
    "KillSwitchStore",
    "Migration",
    "OwnConnectionStore",
    "StoreError",
    "apply_migrations",
    "clean_text",
    "connect",
    "first_line",
    "load_migrations",
    "table_columns",
    "with_session_setting",
    "without_session_settings",
]

logger = logging.getLogger(__name__)

_MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x436F6F7264  # advisory lock: one coordinator migrates at a time


class StoreError(CoordinatorError):
    """The database refused or could not be reached; the message says which."""


def connect(
    dsn: str,
    *,
    timeout: float = 5.0,
    application: str = "coordinator",
    synchronous_commit: bool = True,
) -> Any:
    """A connection that fails fast: connect and statement timeouts, TCP keepalives.

    ``synchronous_commit=False`` for writes that may lose their last fraction of a
    second in a crash of the server (they are kept elsewhere too): their commits then
    do not wait for the WAL flush, nor hold back the ones that must.
    """
    options = f"-c statement_timeout={int(timeout * 1000)}"
    if not synchronous_commit:
        options += " -c synchronous_commit=off"
    # The DSN's own session settings (the paper mark among them) are kept, not replaced.
    with contextlib.suppress(psycopg2.Error):
        given = parse_dsn(dsn).get("options")
        if given:
            options = f"{given} {options}"
    try:
        return psycopg2.connect(
            dsn,
            connect_timeout=max(1, round(timeout)),
            application_name=application,
            options=options,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
    except psycopg2.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {first_line(exc)}") from exc


def with_session_setting(dsn: str, name: str, value: str) -> str:
    """``dsn`` with ``-c name=value`` added to the options of each of its sessions, in
    the form it was given (a URL stays a URL, its password hidden as before where it is
    shown). ``value`` must need no quoting (no space, quote or backslash)."""
    mark = f"-c {name}={value}"
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = parse_qsl(parts.query, keep_blank_values=True)
        options = " ".join([*(v for k, v in query if k == "options"), mark])
        query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    given = parse_dsn(dsn).get("options")
    if given:
        return make_dsn(dsn, options=f"{given} {mark}")
    return f"{dsn} options='{mark}'"


def without_session_settings(dsn: str) -> str:
    """``dsn`` without its ``options`` (the session marks): where the server is, as
    shown to people."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        given = parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in given if k != "options"]
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    return re.sub(r"\s*\boptions=('(?:[^'\\]|\\.)*'|\S*)", "", dsn).strip()


class OwnConnectionStore:
    """One connection, used by one thread, opened on first use and again after a
    failure; every error comes out as a StoreError with its first line."""

    application = "coordinator"
    synchronous_commit = True
    autocommit = False
    """Each statement its own transaction (a read that must not hold one open)."""

    def __init__(self, dsn: str, *, timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._conn: Any = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self) -> Any:
        """The open connection, opened now if there is none (StoreError if it cannot)."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self._dsn,
                timeout=self._timeout,
                application=self.application,
                synchronous_commit=self.synchronous_commit,
            )
            if self.autocommit:
                self._conn.autocommit = True
        return self._conn

    def _run(self, work: Any) -> Any:
        try:
            conn = self._connection()
            with conn, conn.cursor() as cur:
                return work(cur)
        except psycopg2.Error as exc:
            self.close()
            raise StoreError(first_line(exc)) from exc


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    folder = resources.files("coordinator.infra") / "migrations"
    migrations = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match:
            migrations.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    # A number may be missing: changes made side by side reserve theirs in advance, and
    # the one that lands second must not wait for the first. Each is applied once
    # whatever the order it arrives in (apply_migrations looks at every version).
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        raise StoreError(f"migrations must be numbered from 1, each number once, found {versions}")
    return migrations


def apply_migrations(dsn: str, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing, in order, each in its own transaction; return the versions."""
    migrations = load_migrations() if migrations is None else migrations
    conn = connect(dsn, timeout=30)
    applied: list[int] = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            cur.execute(
                """CREATE TABLE IF NOT EXISTS coordinator_schema_migrations (
                       version    integer     PRIMARY KEY,
                       name       text        NOT NULL,
                       checksum   text        NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT version, name, checksum FROM coordinator_schema_migrations")
                done = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
            known = {m.version for m in migrations}
            unknown = sorted(v for v in done if v not in known)
            if unknown:
                raise StoreError(
                    f"the database has migrations {unknown} that this version does not know; "
                    "it was migrated by a newer coordinator (or another branch of it)"
                )
            for migration in migrations:
                if migration.version in done:
                    name, checksum = done[migration.version]
                    if checksum != migration.checksum:
                        raise StoreError(
                            f"migration {migration.version:04d}_{name} was changed after it "
                            "was applied; add a new migration instead"
                        )
                    continue
                with conn, conn.cursor() as cur:
                    cur.execute(migration.sql)
                    cur.execute(
                        "INSERT INTO coordinator_schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                logger.info("applied migration %04d_%s", migration.version, migration.name)
                applied.append(migration.version)
        finally:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg2.Error as exc:
        raise StoreError(f"migration failed: {first_line(exc)}") from exc
    finally:
        conn.close()
    return applied


@dataclass(frozen=True, slots=True)
class KillSwitchPosition:
    halted: bool
    reason: str
    by: str
    at: float | None
    exits: str = "allow"
    """While halted: ``allow`` (SELLs still go) or ``block``."""


class KillSwitchStore(OwnConnectionStore):
    """The kill switch's history in ``coordinator_kill_switch_events``.

    One connection, used by one thread at a time (ServiceHealth's store worker).
    """

    application = "coordinator-health"

    def __init__(self, dsn: str, *, timeout: float) -> None:
        super().__init__(dsn, timeout=timeout)

    def load(self) -> KillSwitchPosition:
        def work(cur: Any) -> Any:
            cur.execute(
                "SELECT halted, reason, requested_by, at, exits"
                " FROM coordinator_kill_switch_events ORDER BY id DESC LIMIT 1"
            )
            return cur.fetchone()

        row = self._run(work)
        if row is None:
            return KillSwitchPosition(False, "", "", None)
        return KillSwitchPosition(row[0], row[1], row[2], row[3].timestamp(), row[4])

    def save(self, *, halted: bool, reason: str, by: str, at: float, exits: str = "allow") -> None:
        def work(cur: Any) -> None:
            cur.execute(
                "INSERT INTO coordinator_kill_switch_events"
                " (halted, reason, requested_by, at, exits) VALUES (%s, %s, %s, %s, %s)",
                (halted, reason, by, datetime.fromtimestamp(at, UTC), exits),
            )

        self._run(work)


def table_columns(cur: Any, table: str) -> set[str]:
    """The columns of ``table`` (of RootTrading's, which may be absent: then none)."""
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
    )
    return {row[0] for row in cur.fetchall()}


def clean_text(text: str | None) -> str | None:
    """PostgreSQL text holds neither NUL nor lone surrogates: keep them visible instead."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text: PostgreSQL errors carry a hint below it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
