"""RootTrading's ``trading_signals`` table in a test's database, as the aggregator's
schema makes it and its consensus rows as the aggregator writes them."""

from __future__ import annotations

import psycopg2

from tests.pipeline import PRICES

__all__ = ["create_trading_signals", "insert_consensus_row"]


def create_trading_signals(dsn: str) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """CREATE TABLE trading_signals (
                   id serial PRIMARY KEY, strategy text, symbol text, side text,
                   timestamp timestamptz, price double precision, confidence double precision,
                   strength text, metadata jsonb, processed boolean DEFAULT false,
                   created_at timestamptz DEFAULT now())"""
        )
    conn.close()


def insert_consensus_row(
    dsn: str, symbol: str, side: str = "BUY", *, moment: str = "now()", processed: bool = False
) -> int:
    """A consensus row of ``symbol`` stamped at ``moment`` (an SQL expression); its id."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"""INSERT INTO trading_signals (strategy, symbol, side, timestamp, price,
                    confidence, strength, metadata, processed, created_at)
                VALUES ('CONSENSUS', %s, %s, {moment}, %s, 0.8, 'strong',
                        '{{"consensus_strength": 0.9, "strategies_count": 4}}', %s, {moment})
                RETURNING id""",
            (symbol, side, PRICES[symbol], processed),
        )
        (row_id,) = cur.fetchone()
    conn.close()
    return int(row_id)
