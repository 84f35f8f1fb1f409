"""PostgreSQL side of the signal pipeline: batched writes and reads for the API (intent
claims: ``intent_claims``). Records are plain dicts (as the local journal holds them), one
``kind`` each: ``signal``, ``decision``, ``order`` (a state change), ``intent`` (an order
about to be sent) and ``processed`` (a ``trading_signals`` row to mark)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg2
import psycopg2.extras

from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.audit_rows import insert_audit, read_audit
from coordinator.infra.lease_store import run_maybe_fenced
from coordinator.infra.pipeline_rows import (
    WRITE_ROWS,
    decision_row,
    encode_row,
    json_rows,
    order_json_row,
    signal_row,
)
from coordinator.infra.records import RecordKind
from coordinator.infra.store import OwnConnectionStore, StoreError, clean_text, first_line
from coordinator.infra.trading_signals import TradingSignalsTable

__all__ = ["PipelineStore", "RecordError", "clean_text"]

logger = logging.getLogger(__name__)


class RecordError(StoreError):
    """PostgreSQL is up but refused the data: retrying the same records will not help."""


class PipelineStore(OwnConnectionStore):
    """The store writer's connection. A RecordError (the data was refused: retrying
    it will not help) is told apart from other StoreErrors (the database: try again)."""

    application = "coordinator-store"

    def __init__(self, dsn: str, *, timeout: float) -> None:
        super().__init__(dsn, timeout=timeout)
        self._trading_signals = TradingSignalsTable()

    def _run(self, work: Any) -> Any:
        conn = self._connection()
        try:
            with conn, conn.cursor() as cur:
                return work(cur)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self.close()
            raise StoreError(first_line(exc)) from exc
        except psycopg2.Error as exc:
            raise RecordError(first_line(exc)) from exc
        except (UnicodeError, TypeError, ValueError) as exc:
            raise RecordError(f"{type(exc).__name__}: {exc}") from exc

    # --- writes -----------------------------------------------------------------------

    def write(
        self, records: list[dict[str, Any]], encoded: Mapping[str, str] | None = None
    ) -> set[str]:
        """Write a batch in one transaction; return the ids of decisions newly stored.

        Each table's rows go as one JSON document (``json_to_recordset``), the three
        tables in one statement: one encode per record in C rather than every value
        quoted apart in Python, and one round trip for the rows. ``encoded``: decision
        rows encoded already (``encode_row(decision_row(...))``), by signal id."""
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_kind.setdefault(record["kind"], []).append(record)
        # One statement cannot touch a row twice: keep each order's latest state.
        latest: dict[str, dict[str, Any]] = {}
        for record in by_kind.get(RecordKind.INTENT, []) + by_kind.get(RecordKind.ORDER, []):
            changes = {k: v for k, v in record.items() if v is not None}
            known = latest.get(record["client_order_id"])
            latest[record["client_order_id"]] = changes if known is None else {**known, **changes}

        def work(cur: Any) -> set[str]:
            inserted: set[str] = set()
            decisions = by_kind.get(RecordKind.DECISION, [])
            if RecordKind.SIGNAL in by_kind or latest or decisions:
                cur.execute(
                    WRITE_ROWS,
                    {
                        "signals": json_rows(
                            [signal_row(r) for r in by_kind.get(RecordKind.SIGNAL, [])]
                        ),
                        "orders": json_rows([order_json_row(r) for r in latest.values()]),
                        "decisions": "["
                        + ",".join(
                            (encoded or {}).get(r["signal_id"]) or encode_row(decision_row(r))
                            for r in decisions
                        )
                        + "]",
                    },
                )
                inserted = {row[0] for row in cur.fetchall()}
            processed = [str(r["db_id"]) for r in by_kind.get(RecordKind.PROCESSED, [])]
            self._trading_signals.mark_processed(cur, processed)
            insert_audit(cur, by_kind.get(RecordKind.AUDIT, []))
            return inserted

        return self._run(work)

    def mark_orphaned_orders(
        self,
        now: float,
        *,
        before: float | None = None,
        fence: LeaseToken | None = None,
        instance: str | None = None,
        liveness: float = 5.0,
    ) -> int:
        """Orders still pending or sent made unknown: this process's ``instance``'s (and
        those naming none) created ``before`` a time (its start: an earlier life's), and
        those of any other instance not live (stopped, or silent for ``liveness`` s,
        INSTANCE_LIVENESS). With a ``fence``, only while that lease is held."""

        def work(cur: Any) -> int:
            cur.execute(
                """UPDATE coordinator_orders o
                   SET state = 'unknown', updated_at = to_timestamp(%(now)s),
                       error = COALESCE(error || '; ', '')
                               || 'the coordinator stopped before the outcome was known'
                   WHERE state IN ('pending', 'sent')
                     AND CASE WHEN o.instance IS NULL OR o.instance = %(instance)s
                              THEN %(before)s::float8 IS NULL
                                   OR created_at < to_timestamp(%(before)s::float8)
                              ELSE NOT EXISTS (
                                  SELECT 1 FROM coordinator_instances i
                                   WHERE i.instance = o.instance AND i.stopped_at IS NULL
                                     AND i.heartbeat_at > clock_timestamp()
                                                          - make_interval(secs => %(liveness)s))
                         END""",
                {"now": now, "before": before, "instance": instance, "liveness": liveness},
            )
            return cur.rowcount

        return run_maybe_fenced(self, fence, work)

    def decide_orphaned_exits(
        self, now: float, *, before: float | None = None, fence: LeaseToken | None = None
    ) -> int:
        """At process start, an exit a dead process stored undecided is decided (exits are
        not taken in again): ``unknown`` with an order (it may have left), else rejected."""

        def work(cur: Any) -> int:
            cur.execute(
                """INSERT INTO coordinator_decisions (signal_id, symbol, side, outcome, reason,
                       detail, checks, quantity, decided_at, decided_by)
                   SELECT s.signal_id, s.symbol, s.side,
                          CASE WHEN o.client_order_id IS NULL THEN 'rejected' ELSE 'unknown' END,
                          CASE WHEN o.client_order_id IS NULL THEN 'internal_error'
                               ELSE 'order_unknown' END,
                          'the coordinator stopped before deciding this exit'
                          || CASE WHEN o.client_order_id IS NULL THEN ': never sent'
                                  ELSE ': its order may have left (reconciled)' END,
                          '[]'::jsonb, o.quantity, to_timestamp(%s), 'start (orphaned exit)'
                   FROM coordinator_signals s
                   LEFT JOIN coordinator_decisions d USING (signal_id)
                   LEFT JOIN coordinator_orders o USING (signal_id)
                   WHERE d.signal_id IS NULL AND s.source = 'trailing_stop'
                     AND s.received_at < to_timestamp(%s)
                   ON CONFLICT (signal_id) DO NOTHING""",
                (now, now if before is None else before),
            )
            return cur.rowcount

        return run_maybe_fenced(self, fence, work)

    # --- reads ------------------------------------------------------------------------

    def undecided(self, since: float) -> list[dict[str, Any]]:
        """Signals received after ``since`` with no decision: a crash left them."""

        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                """SELECT s.signal_id, s.source, extract(epoch FROM s.received_at), s.payload,
                          s.stream_id
                   FROM coordinator_signals s
                   LEFT JOIN coordinator_decisions d USING (signal_id)
                   WHERE d.signal_id IS NULL AND s.received_at > to_timestamp(%s)
                     -- exits are the TrailingStop's to follow up, not the intake's
                     AND s.source <> 'trailing_stop'
                   ORDER BY s.received_at""",
                (since,),
            )
            return [
                {
                    "signal_id": row[0],
                    "source": row[1],
                    "received_at": float(row[2]),
                    "payload": row[3],
                    "stream_id": row[4],
                }
                for row in cur.fetchall()
            ]

        return self._run(work)

    def recent_signal_digests(
        self, since: float, limit: int, generation: int, take: Callable[[float, bytes], object]
    ) -> int:
        """The ids of the newest ``limit`` signals received since ``since``, as digests:
        see ``_recent_digests``."""
        return self._recent_digests(
            "coordinator_signals", "received_at", since, limit, generation, take
        )

    def recent_decision_digests(
        self, since: float, limit: int, generation: int, take: Callable[[float, bytes], object]
    ) -> int:
        """The ids of the newest ``limit`` signals decided since ``since``, as digests:
        see ``_recent_digests``."""
        return self._recent_digests(
            "coordinator_decisions", "decided_at", since, limit, generation, take
        )

    def _recent_digests(
        self,
        table: str,
        column: str,
        since: float,
        limit: int,
        generation: int,
        take: Callable[[float, bytes], object],
    ) -> int:
        """Hand ``take`` the ids' digests (``compact_ids.id_digest``), about
        ``generation`` at a time, the oldest first: each batch packed in ascending order,
        with the time of its newest id. Return how many ids. PostgreSQL hashes and sorts
        them, in its own process: an hour of ids is millions, which cost seconds of
        Python one at a time. First the times that cut the newest ``limit`` into
        batches (from the index alone), then one short statement per batch, rather than
        one long one sorting millions of rows on disk."""

        def edges(cur: Any) -> list[tuple[Any, int]]:
            cur.execute(
                "SELECT at, n FROM (SELECT " + column + " AS at,"
                " row_number() OVER (ORDER BY " + column + " DESC) AS n"
                " FROM " + table + " WHERE " + column + " > to_timestamp(%s)"
                " ORDER BY " + column + " DESC LIMIT %s) newest"
                " WHERE n %% %s = 0 OR n = %s ORDER BY at, n DESC",
                (since, limit, generation, limit),
            )
            return list(cur.fetchall())

        cuts = self._run(edges)
        # A cut is the oldest of ``generation`` newer ids: each batch runs from one cut
        # (included) to the next (excluded), the oldest from the window's start or, when
        # it holds more than ``limit`` ids, from the oldest of the newest ``limit``.
        if cuts and cuts[0][1] == limit:
            bounds: list[tuple[str, Any]] = [(" >= %s", cuts[0][0])]
            cuts = cuts[1:]
        else:
            bounds = [(" > to_timestamp(%s)", since)]
        bounds += [(" >= %s", at) for at, _ in cuts]
        count = 0
        for index, (lower, low) in enumerate(bounds):
            where = column + lower
            params: tuple[Any, ...] = (low,)
            if index + 1 < len(bounds):
                where += " AND " + column + " < %s"
                params += (bounds[index + 1][1],)
            newest, ids, packed = self._run(
                lambda cur, where=where, params=params: self._digest_batch(
                    cur, table, column, where, params
                )
            )
            if ids:
                take(newest, packed)
                count += ids
        return count

    @staticmethod
    def _digest_batch(
        cur: Any, table: str, column: str, where: str, params: tuple[Any, ...]
    ) -> tuple[float, int, bytes]:
        cur.execute(
            "SELECT extract(epoch FROM max(at)), count(*), string_agg(digest, ''::bytea"
            " ORDER BY digest) FROM (SELECT " + column + " AS at,"
            " substr(sha256(convert_to(signal_id, 'UTF8')), 1, 16) AS digest"
            " FROM " + table + " WHERE " + where + ") batch",
            params,
        )
        newest, ids, packed = cur.fetchone()
        return (float(newest) if ids else 0.0), int(ids), bytes(packed or b"")

    def mark_decided_trading_signals(self, since: float) -> int:
        """Rows of ``trading_signals`` whose signal was decided since ``since`` but
        which are not marked ``processed`` yet: marked now."""
        return self._run(lambda cur: self._trading_signals.mark_decided(cur, since))

    def pending_trading_signals(self, since: float) -> list[dict[str, Any]]:
        """Consensus rows of the aggregator's ``trading_signals`` not processed yet, whose
        signal is younger than ``since``; none when the table is absent."""
        return self._run(lambda cur: self._trading_signals.consensus_rows(cur, since))

    def signal(self, signal_id: str) -> dict[str, Any] | None:
        def work(cur: Any) -> dict[str, Any] | None:
            cur.execute(
                """SELECT s.signal_id, s.source, s.received_at, s.valid, s.symbol, s.side,
                          s.price, s.signal_at, s.strategy, s.payload,
                          d.outcome, d.reason, d.detail, d.checks, d.quantity, d.decided_at,
                          d.decided_by, d.intake_to_decision_ms, d.intake_to_order_ms,
                          o.client_order_id, o.state, o.quantity, o.reference_price,
                          o.trader_order_id, o.error, o.created_at, o.updated_at, o.paper
                   FROM coordinator_signals s
                   LEFT JOIN coordinator_decisions d USING (signal_id)
                   LEFT JOIN coordinator_orders o USING (signal_id)
                   WHERE s.signal_id = %s""",
                (signal_id,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            payload: Any = row[9]
            with contextlib.suppress(ValueError):
                payload = json.loads(row[9])
            return {
                "signal": {
                    "signal_id": row[0],
                    "source": row[1],
                    "received_at": _iso(row[2]),
                    "valid": row[3],
                    "symbol": row[4],
                    "side": row[5],
                    "price": row[6],
                    "timestamp": _iso(row[7]),
                    "strategy": row[8],
                    "payload": payload,
                },
                "decision": None
                if row[10] is None
                else {
                    "outcome": row[10],
                    "reason": row[11],
                    "detail": row[12],
                    "checks": row[13],
                    "quantity": row[14],
                    "decided_at": _iso(row[15]),
                    "decided_by": row[16],
                    "intake_to_decision_ms": row[17],
                    "intake_to_order_ms": row[18],
                },
                "order": None
                if row[19] is None
                else {
                    "client_order_id": row[19],
                    "state": row[20],
                    "quantity": row[21],
                    "reference_price": row[22],
                    "trader_order_id": row[23],
                    "error": row[24],
                    "created_at": _iso(row[25]),
                    "updated_at": _iso(row[26]),
                    "paper": row[27],
                },
            }

        return self._run(work)

    def decisions(
        self, *, symbol: str | None, outcome: str | None, limit: int
    ) -> list[dict[str, Any]]:
        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                """SELECT signal_id, symbol, side, outcome, reason, detail, quantity, decided_at,
                          decided_by, intake_to_decision_ms
                   FROM coordinator_decisions
                   WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
                     AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s)
                   ORDER BY decided_at DESC LIMIT %(limit)s""",
                {"symbol": symbol, "outcome": outcome, "limit": limit},
            )
            return [
                {
                    "signal_id": r[0],
                    "symbol": r[1],
                    "side": r[2],
                    "outcome": r[3],
                    "reason": r[4],
                    "detail": r[5],
                    "quantity": r[6],
                    "decided_at": _iso(r[7]),
                    "decided_by": r[8],
                    "intake_to_decision_ms": r[9],
                }
                for r in cur.fetchall()
            ]

        return self._run(work)

    def unknown_orders(self, limit: int = 100) -> list[dict[str, Any]]:
        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                """SELECT client_order_id, signal_id, symbol, side, quantity, reference_price,
                          state, error, extract(epoch FROM updated_at)
                   FROM coordinator_orders WHERE state IN ('unknown', 'pending', 'sent')
                   ORDER BY updated_at DESC LIMIT %s""",
                (limit,),
            )
            return [
                {
                    "client_order_id": r[0],
                    "signal_id": r[1],
                    "symbol": r[2],
                    "side": r[3],
                    "quantity": r[4],
                    "reference_price": r[5],
                    "state": r[6],
                    "error": r[7],
                    "at": float(r[8]),
                }
                for r in cur.fetchall()
            ]

        return self._run(work)

    def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest entries of the audit trail."""
        return self._run(lambda cur: read_audit(cur, limit))

    def lifetime(self) -> dict[str, Any]:
        """Totals over every stored decision and order."""

        def work(cur: Any) -> dict[str, Any]:
            cur.execute("SELECT count(*) FROM coordinator_signals")
            received = cur.fetchone()[0]
            cur.execute("SELECT outcome, reason, count(*) FROM coordinator_decisions GROUP BY 1, 2")
            by_outcome: dict[str, int] = {}
            by_reason: dict[str, int] = {}
            for outcome, reason, count in cur.fetchall():
                by_outcome[outcome] = by_outcome.get(outcome, 0) + count
                if reason:
                    by_reason[reason] = by_reason.get(reason, 0) + count
            cur.execute(
                "SELECT count(*) FILTER (WHERE state IN ('accepted', 'unknown', 'sent'))"
                " FROM coordinator_orders"
            )
            orders = cur.fetchone()[0]
            cur.execute(
                """SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99])
                              WITHIN GROUP (ORDER BY intake_to_decision_ms),
                          max(intake_to_decision_ms),
                          percentile_cont(ARRAY[0.5, 0.9, 0.99])
                              WITHIN GROUP (ORDER BY intake_to_order_ms),
                          max(intake_to_order_ms)
                   FROM coordinator_decisions"""
            )
            d_pct, d_max, o_pct, o_max = cur.fetchone()
            return {
                "signals_received": received,
                "decisions": by_outcome,
                "rejections_by_reason": by_reason,
                "orders_sent": orders,
                "latency_ms": {
                    "intake_to_decision": _percentiles(d_pct, d_max),
                    "intake_to_order": _percentiles(o_pct, o_max),
                },
            }

        return self._run(work)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _percentiles(
    values: Sequence[float | None] | None, maximum: float | None
) -> dict[str, float | None]:
    values = values or [None, None, None]
    return {"p50": values[0], "p90": values[1], "p99": values[2], "max": maximum}
