"""The audit trail's rows in PostgreSQL: written in the store writer's batches, read
back newest first for ``GET /audit``."""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg2.extras

from coordinator.infra.store import clean_text

__all__ = ["insert_audit", "read_audit"]


def _clean(value: Any) -> Any:
    """jsonb holds neither NUL nor lone surrogates, in keys or values, nor NaN: kept
    visible as text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        # JSON as Python reads it allows NaN and Infinity; jsonb does not.
        return str(value)
    return value


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(_clean(value), default=str)


def insert_audit(cur: Any, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    psycopg2.extras.execute_values(
        cur,
        """INSERT INTO coordinator_audit (at, client, token_fingerprint, method, path, body,
               body_text, status, result)
           VALUES %s""",
        [
            (
                r["at"],
                clean_text(r.get("client")),
                r.get("token_fingerprint"),
                clean_text(r["method"]),
                clean_text(r["path"]),
                _json(r.get("body")),
                clean_text(r.get("body_text")),
                r["status"],
                _json(r.get("result")),
            )
            for r in records
        ],
        template="(to_timestamp(%s), %s, %s, %s, %s, %s::jsonb, %s, %s, %s::jsonb)",
        page_size=1000,
    )


def read_audit(cur: Any, limit: int) -> list[dict[str, Any]]:
    cur.execute(
        """SELECT id, at, client, token_fingerprint, method, path, body, body_text, status,
                  result, paper
           FROM coordinator_audit ORDER BY at DESC, id DESC LIMIT %s""",
        (limit,),
    )
    return [
        {
            "id": r[0],
            "at": r[1].isoformat(),
            "client": r[2],
            "token_fingerprint": r[3],
            "method": r[4],
            "path": r[5],
            "body": r[6],
            "body_text": r[7],
            "status": r[8],
            "result": r[9],
            "paper": r[10],
        }
        for r in cur.fetchall()
    ]
