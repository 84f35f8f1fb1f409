"""RootTrading's ``trading_signals`` table, read at start and marked as signals are decided.

The table belongs to the aggregator (``database/schema.sql``): the coordinator only
reads consensus rows left unprocessed and sets ``processed = true`` on the rows of the
signals it decided. Without RootTrading's schema (the embedded database) the table is
absent: that is said once, at INFO, and nothing else happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.errors

from coordinator.trading.signal_rows import CONSENSUS_STRATEGY

__all__ = ["TradingSignalsTable"]

logger = logging.getLogger(__name__)

# A table that was absent is looked for again after this long: RootTrading's schema may
# be created after the coordinator started.
_RECHECK_ABSENT = 300.0
_MAX_ROWS = 10_000
_BIGINT_MAX = 2**63 - 1
_INTEGER_TYPES = frozenset({"integer", "bigint", "smallint"})

# Errors of the server or the link, not of the table: the batch is written again later.
_TRANSIENT = (
    psycopg2.InterfaceError,
    psycopg2.errors.QueryCanceled,
    psycopg2.errors.OperatorIntervention,
    psycopg2.errors.ConnectionException,
    psycopg2.errors.InsufficientResources,
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
)

_said_absent = threading.Event()
_said_refused = threading.Event()


class TradingSignalsTable:
    """Access to ``trading_signals`` on a connection owned by someone else."""

    def __init__(self) -> None:
        self._columns: dict[str, str] | None = None
        self._checked_at = 0.0

    def present(self, cur: Any) -> bool:
        """Whether the table is there with ``id`` and ``processed`` (cached)."""
        now = time.monotonic()
        known = self._columns is not None
        if known and (self._columns or now - self._checked_at < _RECHECK_ABSENT):
            return bool(self._columns)
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'trading_signals'"
            " AND table_schema = ANY(current_schemas(false))"
        )
        columns = {name: kind for name, kind in cur.fetchall()}
        self._checked_at = now
        if not {"id", "processed"} <= columns.keys():
            columns = {}
            if not _said_absent.is_set():
                _said_absent.set()
                logger.info(
                    "no trading_signals table (RootTrading's aggregator schema) in this"
                    " database: no catch-up from it, no row marked processed"
                )
        elif self._columns == {}:
            logger.info("the trading_signals table is there now")
        self._columns = columns
        return bool(columns)

    def consensus_rows(self, cur: Any, since: float) -> list[dict[str, Any]]:
        """Unprocessed consensus rows whose signal is younger than ``since`` (epoch s).

        Constituent rows are left out by the query: the aggregator publishes, and stores
        as the consensus, only ``strategy = 'CONSENSUS'``; the constituents carry the
        strategy's own name. The strategy is a plain column on every schema, where the
        constituent markers sit two levels deep in metadata whose column type varies;
        ``lift_row`` checks the markers as well.
        """
        if not self.present(cur):
            return []
        assert self._columns is not None
        where = "processed IS NOT TRUE AND strategy = %s"
        params: list[Any] = [CONSENSUS_STRATEGY]
        time_column = next((c for c in ("timestamp", "created_at") if c in self._columns), None)
        if time_column is not None:
            if self._columns[time_column] == "timestamp without time zone" and (
                time_column == "timestamp"
            ):
                # The aggregator writes the signal's UTC wall clock there.
                where += f" AND \"{time_column}\" > (to_timestamp(%s) AT TIME ZONE 'UTC')"
            else:
                # now() in the server's zone, or a zoned column: compared as such.
                where += f' AND "{time_column}" > to_timestamp(%s)'
            params.append(since)
        cur.execute(
            f"SELECT * FROM trading_signals WHERE {where} ORDER BY id LIMIT {_MAX_ROWS}", params
        )
        names = [column[0] for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _consensus_only(self, table: str) -> str:
        # A signal may name any row (a db_id in a POST): a constituent row is never
        # ours to mark, whatever names it.
        if self._columns and "strategy" in self._columns:
            return f" AND {table}.strategy = '{CONSENSUS_STRATEGY}'"
        return ""

    def mark_processed(self, cur: Any, db_ids: list[str]) -> int:
        """``processed = true`` on these rows, inside the caller's transaction.

        An id naming no row changes nothing. A refusal of the table itself (no UPDATE
        right, a view, a changed schema) is rolled back to a savepoint and logged once:
        it must not cost the decisions written in the same transaction. A lost
        connection, a timeout or a shutdown is raised, so the batch is kept and written
        again like the rest.
        """
        if not db_ids or not self.present(cur):
            return 0
        assert self._columns is not None
        if self._columns["id"] in _INTEGER_TYPES:
            # A SERIAL id: an id that is not an integer names no row.
            ids: list[Any] = sorted(
                {int(i) for i in db_ids if i.isdigit() and int(i) <= _BIGINT_MAX}
            )
            sql = "UPDATE trading_signals SET processed = true WHERE id = ANY(%s::bigint[])"
        else:
            ids = sorted(set(db_ids))
            sql = "UPDATE trading_signals SET processed = true WHERE id::text = ANY(%s)"
        if not ids:
            return 0
        return _update_or_skip(
            cur,
            "trading_signals_processed",
            sql + " AND processed IS NOT TRUE" + self._consensus_only("trading_signals"),
            (ids,),
            _refused_once,
        )

    def mark_decided(self, cur: Any, since: float) -> int:
        """``processed = true`` on the rows of signals decided since ``since`` (epoch s)
        whose mark is missing: decided while the table was absent, or refused, or by
        a process that died before its batch went in. At start, before the catch-up
        reads the table, so a row already decided is not even read again."""
        if not self.present(cur):
            return 0
        assert self._columns is not None
        if self._columns["id"] in _INTEGER_TYPES:
            match = "t.id = substr(d.signal_id, 4)::bigint AND d.signal_id ~ '^db:[0-9]{1,18}$'"
        else:
            match = "t.id::text = substr(d.signal_id, 4) AND d.signal_id LIKE 'db:%%'"
        return _update_or_skip(
            cur,
            "trading_signals_decided",
            f"""UPDATE trading_signals t SET processed = true
                FROM coordinator_decisions d
                WHERE {match} AND d.decided_at > to_timestamp(%s)
                  AND t.processed IS NOT TRUE{self._consensus_only("t")}""",
            (since,),
            lambda exc: logger.error("trading_signals rows of decided signals not marked: %s", exc),
        )


def _update_or_skip(
    cur: Any,
    savepoint: str,
    sql: str,
    params: tuple[Any, ...],
    refused: Callable[[psycopg2.Error], None],
) -> int:
    """The rows ``sql`` updated, or 0 when the table refused it (told to ``refused``):
    undone to a savepoint, so the rest of the transaction stands. An error of the
    server or the link is raised (the caller's batch is then written again)."""
    cur.execute(f"SAVEPOINT {savepoint}")
    try:
        cur.execute(sql, params)
    except _TRANSIENT:
        raise
    except psycopg2.Error as exc:
        # Raises in turn when the connection is gone: then the batch is retried.
        cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
        refused(exc)
        return 0
    cur.execute(f"RELEASE SAVEPOINT {savepoint}")
    return int(cur.rowcount)


def _refused_once(exc: psycopg2.Error) -> None:
    if not _said_refused.is_set():
        _said_refused.set()
        logger.error(
            "trading_signals rows not marked processed: %s",
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
