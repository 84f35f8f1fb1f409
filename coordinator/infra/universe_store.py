"""Storage and outside sources of the universe: snapshots, blacklist, the RootTrading
``market_data`` table for a warm start, the bid/ask and market-cap feeds."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis

from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.lease_store import run_maybe_fenced
from coordinator.infra.store import OwnConnectionStore, table_columns
from coordinator.trading.blacklist import BlacklistEntry

__all__ = ["MarketSources", "UniverseStore"]

logger = logging.getLogger(__name__)


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class UniverseStore(OwnConnectionStore):
    """Used by the UniverseManager's thread and its worker, each with its own."""

    application = "coordinator-universe"

    def latest(self) -> dict[str, Any] | None:
        def work(cur: Any) -> dict[str, Any] | None:
            cur.execute(
                "SELECT extract(epoch FROM at), selected, state, performance, scores, verdicts,"
                " added, removed, draining, reason"
                " FROM coordinator_universe_snapshots ORDER BY id DESC LIMIT 1"
            )
            row = cur.fetchone()
            if row is None:
                return None
            keys = (
                "at",
                "selected",
                "state",
                "performance",
                "scores",
                "verdicts",
                "added",
                "removed",
                "draining",
                "reason",
            )
            record = dict(zip(keys, row, strict=True))
            record["at"] = float(record["at"])
            return record

        return self._run(work)

    def save(self, snapshot: dict[str, Any], fence: LeaseToken | None = None) -> None:
        def work(cur: Any) -> None:
            cur.execute(
                """INSERT INTO coordinator_universe_snapshots (at, reason, selected, added,
                       removed, draining, scores, verdicts, state, performance)
                   VALUES (to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    snapshot["at"],
                    snapshot["reason"],
                    *(
                        json.dumps(snapshot[k])
                        for k in (
                            "selected",
                            "added",
                            "removed",
                            "draining",
                            "scores",
                            "verdicts",
                            "state",
                            "performance",
                        )
                    ),
                ),
            )

        run_maybe_fenced(self, fence, work)

    def history(self, limit: int) -> list[dict[str, Any]]:
        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                "SELECT at, reason, selected, added, removed, draining, scores"
                " FROM coordinator_universe_snapshots ORDER BY id DESC LIMIT %s",
                (limit,),
            )
            return [
                {
                    "at": r[0].isoformat(),
                    "reason": r[1],
                    "selected": r[2],
                    "added": r[3],
                    "removed": r[4],
                    "draining": r[5],
                    "scores": r[6],
                }
                for r in cur.fetchall()
            ]

        return self._run(work)

    def blacklist(self) -> list[BlacklistEntry]:
        def work(cur: Any) -> list[BlacklistEntry]:
            cur.execute(
                "SELECT symbol, reason, source, extract(epoch FROM added_at),"
                " extract(epoch FROM expires_at) FROM coordinator_universe_blacklist"
            )
            return [
                BlacklistEntry(r[0], r[1], r[2], float(r[3]), None if r[4] is None else float(r[4]))
                for r in cur.fetchall()
            ]

        return self._run(work)

    def put_blacklisted(self, entry: BlacklistEntry, fence: LeaseToken | None = None) -> None:
        def work(cur: Any) -> None:
            cur.execute(
                """INSERT INTO coordinator_universe_blacklist
                       (symbol, reason, source, added_at, expires_at)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (symbol) DO UPDATE SET reason = EXCLUDED.reason,
                       source = EXCLUDED.source, added_at = EXCLUDED.added_at,
                       expires_at = EXCLUDED.expires_at""",
                (
                    entry.symbol,
                    entry.reason,
                    entry.source,
                    _ts(entry.added_at),
                    _ts(entry.expires_at),
                ),
            )

        run_maybe_fenced(self, fence, work)

    def delete_blacklisted(self, symbols: list[str], fence: LeaseToken | None = None) -> None:
        def work(cur: Any) -> None:
            cur.execute(
                "DELETE FROM coordinator_universe_blacklist WHERE symbol = ANY(%s)", (symbols,)
            )

        run_maybe_fenced(self, fence, work)

    def market_data(
        self, timeframe: str, since: float, limit: int
    ) -> list[tuple[str, int, float, float]]:
        """Candles of the RootTrading ``market_data`` table, if there is one: (symbol,
        open time ms, close, quote volume), oldest first. Empty without the table."""

        def work(cur: Any) -> list[tuple[str, int, float, float]]:
            columns = table_columns(cur, "market_data")
            if not {"time", "symbol", "close", "volume"} <= columns:
                return []
            where = "time > to_timestamp(%s)"
            params: list[Any] = [since]
            if "timeframe" in columns:
                where += " AND timeframe = %s"
                params.append(timeframe)
            params.append(limit)
            cur.execute(
                f"""SELECT symbol, (extract(epoch FROM time) * 1000)::bigint, close, volume
                    FROM market_data WHERE {where} ORDER BY time LIMIT %s""",
                params,
            )
            out = []
            for symbol, time_ms, close, volume in cur.fetchall():
                close, volume = float(close), float(volume)
                out.append((str(symbol).upper(), int(time_ms), close, close * volume))
            return out

        return self._run(work)


class MarketSources:
    """Bid/ask and market caps, read at each rotation.

    Bid/ask: the Redis hash ``BOOK_TICKER_KEY``, field = symbol, value = JSON
    ``{"bid": 64999.9, "ask": 65000.1, "time": <epoch ms>}`` (what Binance's bookTicker
    stream gives, stamped). Market cap: the Redis hash ``MARKET_CAP_KEY`` and/or the JSON
    file ``MARKET_CAP_FILE``, field = base asset (``BTC``) or symbol, value = USD; the
    file wins for a name in both.
    """

    def __init__(
        self, redis_url: str, *, book_key: str, cap_key: str, cap_file: Path | None
    ) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2)
        self._book_key = book_key
        self._cap_key = cap_key
        self._cap_file = cap_file

    def close(self) -> None:
        self._client.close()

    def spreads(self, now: float, max_age: float) -> tuple[dict[str, float], str | None]:
        """symbol -> spread in percent of the mid price, fresh ones only; and an error."""
        try:
            # The client does not decode replies: fields and values are bytes.
            raw = cast(dict[bytes, bytes], self._client.hgetall(self._book_key))
        except redis.RedisError as exc:
            return {}, f"bid/ask unreadable: {exc}"
        spreads = {}
        malformed = []
        for field, value in raw.items():
            name = field.decode(errors="replace").upper()
            try:
                book = json.loads(value)
                bid, ask = float(book["bid"]), float(book["ask"])
                at = float(book.get("time", 0)) / 1000.0
            except (ValueError, KeyError, TypeError, AttributeError):
                malformed.append(name)
                continue
            if not (bid > 0 and ask >= bid and math.isfinite(ask)):
                malformed.append(name)
            elif now - at <= max_age:
                spreads[name] = (ask - bid) / ((ask + bid) / 2) * 100.0
        return spreads, _malformed(f"bid/ask in {self._book_key}", malformed)

    def market_caps(self) -> tuple[dict[str, float], str | None]:
        caps: dict[str, float] = {}
        errors = []
        try:
            malformed = []
            caps_raw = cast(dict[bytes, bytes], self._client.hgetall(self._cap_key))
            for field, value in caps_raw.items():
                name, number = field.decode(errors="replace").upper(), _number(value)
                if number is None:
                    malformed.append(name)
                else:
                    caps[name] = number
            if problem := _malformed(f"market caps in {self._cap_key}", malformed):
                errors.append(problem)
        except redis.RedisError as exc:
            errors.append(f"market caps unreadable from Redis: {exc}")
        if self._cap_file is not None:
            try:
                data = json.loads(self._cap_file.read_text())
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                malformed = []
                for name, value in data.items():
                    number = _number(value)
                    if number is None:
                        malformed.append(str(name))
                    else:
                        caps[str(name).upper()] = number
                if problem := _malformed(f"market caps in {self._cap_file}", malformed):
                    errors.append(problem)
            except (OSError, ValueError) as exc:
                errors.append(f"market cap file {self._cap_file} unreadable: {exc}")
        return caps, "; ".join(errors) or None


def _malformed(where: str, names: list[str]) -> str | None:
    """One line naming the unusable entries, which then count as unknown."""
    if not names:
        return None
    shown = ", ".join(sorted(names)[:10]) + (" ..." if len(names) > 10 else "")
    entries = "entry" if len(names) == 1 else "entries"
    return f"{len(names)} malformed {entries} of {where} (unknown): {shown}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None
