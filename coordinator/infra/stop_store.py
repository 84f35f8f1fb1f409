"""Storage of the trailing stops, and what the RootTrading database tells about
positions (``trade_cycles``) and candles (``market_data``, for the ATR)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from psycopg2.extras import execute_values

from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.lease_store import run_maybe_fenced
from coordinator.infra.store import OwnConnectionStore, table_columns
from coordinator.trading import json_text

__all__ = ["STOP_FIELDS", "StopStore"]

STOP_FIELDS = (
    "position_key",
    "symbol",
    "cycle_id",
    "entry_price",
    "entry_time",
    "quantity",
    "rules",
    "peak",
    "stop",
    "stop_rule",
    "state",
    "attempt",
    "failures",
    "detail",
    "watched_at",
    "updated_at",
    "closed_at",
)
"""A stop record's keys; the ``*_time`` / ``*_at`` ones are epoch seconds or None."""

_TIMES = frozenset({"entry_time", "watched_at", "updated_at", "closed_at"})
# Rows read per symbol for its current price: RootTrading stores six timeframes.
_RECENT_CANDLES = 32
# trade_cycles statuses of a position that is bought and not sold yet.
_OPEN_CYCLES = ("active_buy", "waiting_sell")


_CONFLICT = """
    ON CONFLICT (position_key) DO UPDATE SET
        quantity = EXCLUDED.quantity,
        cycle_id = EXCLUDED.cycle_id,
        rules = EXCLUDED.rules,
        peak = GREATEST(coordinator_stops.peak, EXCLUDED.peak),
        stop = GREATEST(coordinator_stops.stop, EXCLUDED.stop),
        stop_rule = CASE WHEN EXCLUDED.stop >= coordinator_stops.stop
            THEN EXCLUDED.stop_rule ELSE coordinator_stops.stop_rule END,
        state = EXCLUDED.state,
        attempt = GREATEST(coordinator_stops.attempt, EXCLUDED.attempt),
        failures = EXCLUDED.failures,
        detail = EXCLUDED.detail,
        updated_at = EXCLUDED.updated_at,
        closed_at = EXCLUDED.closed_at"""
_INSERT = f"INSERT INTO coordinator_stops ({', '.join(STOP_FIELDS)})"
_COLUMN_TYPES = {
    "position_key": "text",
    "symbol": "text",
    "cycle_id": "text",
    "entry_price": "float8",
    "entry_time": "float8",
    "quantity": "float8",
    "rules": "text",
    "peak": "float8",
    "stop": "float8",
    "stop_rule": "text",
    "state": "text",
    "attempt": "integer",
    "failures": "integer",
    "detail": "text",
    "watched_at": "float8",
    "updated_at": "float8",
    "closed_at": "float8",
}
"""The records' fields as ``json_to_recordset`` reads them: the times as epoch seconds."""
_UPSERT_JSON = (
    f"{_INSERT} SELECT "
    + ", ".join(f"to_timestamp({f})" if f in _TIMES else f for f in STOP_FIELDS)
    + " FROM json_to_recordset(%s::json) AS r("
    + ", ".join(f"{f} {_COLUMN_TYPES[f]}" for f in STOP_FIELDS)
    + f"){_CONFLICT}"
)
_UPSERT_VALUES = f"{_INSERT} VALUES %s{_CONFLICT}"
# Built once. ASCII only: a NUL or a surrogate shows as its escape, which PostgreSQL's
# json does not turn into text (and a NaN or an infinity is no JSON at all).
_RECORDS = json_text.encoder_of(json.JSONEncoder(allow_nan=False, separators=(",", ":")))


def _as_json(records: list[dict[str, Any]]) -> str | None:
    """The records as one JSON text for ``json_to_recordset``; None when one holds what
    that would refuse or read otherwise (a NaN, an infinity, a NUL, a surrogate): the
    batch then goes as VALUES, as it always did, with the same result or error."""
    try:
        encoded: str = _RECORDS(records)
    except ValueError:
        return None
    if "\\u0000" in encoded or "\\ud" in encoded:
        return None
    return encoded


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _select(where: str) -> str:
    columns = ", ".join(f"extract(epoch FROM {f})" if f in _TIMES else f for f in STOP_FIELDS)
    return f"SELECT {columns} FROM coordinator_stops WHERE {where}"


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    record = dict(zip(STOP_FIELDS, row, strict=True))
    for name in _TIMES:
        if record[name] is not None:
            record[name] = float(record[name])
    return record


class StopStore(OwnConnectionStore):
    """Used by the TrailingStop's worker thread."""

    application = "coordinator-stops"
    # A checkpoint of state the process also keeps in memory: written often, and its
    # commits must not queue in front of the order intents' (which wait for the disk).
    synchronous_commit = False

    def open_stops(self) -> list[dict[str, Any]]:
        """Every position still watched (not closed)."""

        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(_select("closed_at IS NULL"))
            return [_record(row) for row in cur.fetchall()]

        return self._run(work)

    def stops(self, keys: list[str]) -> list[dict[str, Any]]:
        """The records of these positions, closed or not."""

        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(_select("position_key = ANY(%s)"), (keys,))
            return [_record(row) for row in cur.fetchall()]

        return self._run(work)

    def write(self, records: list[dict[str, Any]], fence: LeaseToken | None = None) -> None:
        """Upsert in one transaction. Peak and stop never go down here either, so an
        older write that lands late cannot undo a newer one. With a ``fence``, the
        transaction passes it first: ``LeaseLost`` (nothing written) when another
        instance leads now."""

        # One statement for the batch, not a round trip per record: with thousands of
        # positions a flush holds thousands. A key once (the last record of it: its
        # peak, stop and attempt are the highest), as one statement updates a row once.
        latest = list({record["position_key"]: record for record in records}.values())
        # The records as they are, in one C call: a row each by json_to_recordset (their
        # other keys ignored), no Python work per field. As VALUES, 3,000 rows cost 43 -
        # 47 ms of this process's CPU (psycopg2 quoting each field), under the GIL that
        # ticks and exits wait for; this way 8.5 - 12.5 ms. The times go as epoch
        # seconds, to the microsecond as before (to_timestamp may round the last one
        # the other way: nothing compares them closer than a millisecond).
        encoded = _as_json(latest)

        def work(cur: Any) -> None:
            if encoded is not None:
                cur.execute(_UPSERT_JSON, (encoded,))
                return
            rows = [
                tuple(_ts(record[f]) if f in _TIMES else record[f] for f in STOP_FIELDS)
                for record in latest
            ]
            execute_values(cur, _UPSERT_VALUES, rows, page_size=1000)

        run_maybe_fenced(self, fence, work)

    def exit_decisions(self, exit_ids: list[str]) -> list[tuple[str, str, str | None, str]]:
        """(exit id, outcome, reason, detail) of the exits that have a stored decision."""

        def work(cur: Any) -> list[tuple[str, str, str | None, str]]:
            cur.execute(
                "SELECT signal_id, outcome, reason, detail FROM coordinator_decisions"
                " WHERE signal_id = ANY(%s)",
                (exit_ids,),
            )
            return [(str(a), str(b), c, str(d)) for a, b, c, d in cur.fetchall()]

        return self._run(work)

    def exit_orders(self, symbol: str, prefixes: list[str]) -> list[tuple[str, str, str]]:
        """(signal id, client order id, state) of the symbol's exit orders that are not
        settled (unknown, pending, sent), and of every exit order whose signal id matches
        one of ``prefixes`` (LIKE patterns: one holding's attempts), settled or not."""

        def work(cur: Any) -> list[tuple[str, str, str]]:
            cur.execute(
                """SELECT signal_id, client_order_id, state FROM coordinator_orders
                    WHERE symbol = %s AND signal_id LIKE 'exit:%%'
                      AND (state IN ('unknown', 'pending', 'sent')
                           OR signal_id LIKE ANY(%s))""",
                (symbol, prefixes),
            )
            return [(str(a), str(b), str(c)) for a, b, c in cur.fetchall()]

        return self._run(work)

    def open_cycles(
        self,
    ) -> list[tuple[str, str, float | None, float | None, float | None]] | None:
        """(cycle id, symbol, entry price, quantity, created at) of the RootTrading
        ``trade_cycles`` bought and not sold; None without the table."""

        def work(
            cur: Any,
        ) -> list[tuple[str, str, float | None, float | None, float | None]] | None:
            columns = table_columns(cur, "trade_cycles")
            if not {"id", "symbol", "status"} <= columns:
                return None
            entry = "entry_price" if "entry_price" in columns else "NULL"
            quantity = "quantity" if "quantity" in columns else "NULL"
            created = "extract(epoch FROM created_at)" if "created_at" in columns else "NULL"
            cur.execute(
                f"""SELECT id, symbol, {entry}, {quantity}, {created} FROM trade_cycles
                    WHERE status = ANY(%s)""",
                (list(_OPEN_CYCLES),),
            )
            return [
                (
                    str(cycle),
                    str(symbol).upper(),
                    None if price is None else float(price),
                    None if amount is None else float(amount),
                    None if at is None else float(at),
                )
                for cycle, symbol, price, amount, at in cur.fetchall()
            ]

        return self._run(work)

    def atr_candles(
        self, symbols: list[str], timeframe: str, per_symbol: int
    ) -> list[tuple[str, int, float, float, float]]:
        """The last ``per_symbol`` candles of each symbol from ``market_data`` (symbol,
        open time ms, high, low, close), oldest first; empty without the table."""

        def work(cur: Any) -> list[tuple[str, int, float, float, float]]:
            columns = table_columns(cur, "market_data")
            if not {"time", "symbol", "high", "low", "close"} <= columns:
                return []
            timeframe_filter = "AND timeframe = %s" if "timeframe" in columns else ""
            out: list[tuple[str, int, float, float, float]] = []
            for symbol in symbols:
                params: list[Any] = [symbol]
                if timeframe_filter:
                    params.append(timeframe)
                params.append(per_symbol)
                cur.execute(
                    f"""SELECT (extract(epoch FROM time) * 1000)::bigint, high, low, close
                        FROM market_data WHERE symbol = %s {timeframe_filter}
                        ORDER BY time DESC LIMIT %s""",
                    params,
                )
                rows = cur.fetchall()
                out.extend(
                    (symbol, int(t), float(h), float(lo), float(c))
                    for t, h, lo, c in reversed(rows)
                )
            return out

        return self._run(work)

    def recent_candles(
        self, symbols: list[str], opened_since: float
    ) -> list[tuple[str, str | None, int, float]]:
        """The newest candles of each symbol in ``market_data`` opened at or after
        ``opened_since`` (epoch seconds): (symbol, timeframe or None where the table has
        none, open time ms, close), newest first, a few dozen a symbol at most; empty
        without the table."""

        def work(cur: Any) -> list[tuple[str, str | None, int, float]]:
            columns = table_columns(cur, "market_data")
            if not {"time", "symbol", "close"} <= columns:
                return []
            timeframe = "timeframe" if "timeframe" in columns else "NULL"
            out: list[tuple[str, str | None, int, float]] = []
            for symbol in symbols:
                # The newest 1m candle is among the newest rows of every timeframe.
                cur.execute(
                    f"""SELECT {timeframe}, (extract(epoch FROM time) * 1000)::bigint, close
                        FROM market_data WHERE symbol = %s AND time >= to_timestamp(%s)
                        ORDER BY time DESC LIMIT {_RECENT_CANDLES}""",
                    (symbol, opened_since),
                )
                out.extend(
                    (symbol, None if tf is None else str(tf), int(t), float(c))
                    for tf, t, c in cur.fetchall()
                    if t is not None and c is not None
                )
            return out

        return self._run(work)
