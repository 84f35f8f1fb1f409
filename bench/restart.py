"""A start over an hour of signals: what the coordinator costs in memory and time when
PostgreSQL holds the signals and decisions of an hour at 500 a second (1,800,000), as
after a restart of a busy instance. The duplicate window and the decided signals are
rebuilt from them.

    python bench/restart.py [--ids 1800000]

Prints the time from launch to ACTIVE, the RSS then and once fresh signals went
through, and checks that copies of stored signals published again are dropped as
duplicates (no second decision), the newest and the oldest of the hour.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline_stack import (
    Stack,
    order_body,
    publish,
    rss_mb,
    signal_body,
    wait_decided,
)

HOUR = 3_500.0
"""Seconds the stored signals span: inside the hour-long duplicate window."""


def stored_id(index: int) -> str:
    return f"{index:032x}"


def prefill(count: int) -> Callable[[str], None]:
    def fill(dsn: str) -> None:
        started = time.perf_counter()
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            # Received and decided over the last hour, the first the oldest.
            cur.execute(
                "INSERT INTO coordinator_signals (signal_id, source, received_at, valid, payload)"
                " SELECT 'consensus:' || lpad(to_hex(i), 32, '0'), 'pubsub',"
                " now() - make_interval(secs => %s * (1 - i::float8 / %s)), true, '{}'"
                " FROM generate_series(1, %s) i",
                (HOUR, count, count),
            )
            cur.execute(
                "INSERT INTO coordinator_decisions"
                " (signal_id, outcome, checks, decided_at, decided_by)"
                " SELECT signal_id, 'rejected', '[]', received_at, 'bench'"
                " FROM coordinator_signals"
            )
        print(f"{count:,} signals and decisions stored in {time.perf_counter() - started:.1f} s")
        # Written over an hour, the rows would have been vacuumed and analyzed on the way:
        # read fresh, the first scan writes their hint bits and the planner knows nothing.
        started = time.perf_counter()
        conn = psycopg2.connect(dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE coordinator_signals, coordinator_decisions")
        finally:
            conn.close()
        print(f"vacuumed and analyzed in {time.perf_counter() - started:.1f} s")

    return fill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=1_800_000)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--log", type=Path, help="copy the coordinator's log here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        launched: list[float] = []

        def fill_then_time(dsn: str) -> None:
            prefill(args.ids)(dsn)
            launched.append(time.perf_counter())

        stack = Stack(Path(tmp), {}, prepare=fill_then_time)
        try:
            active = time.perf_counter() - launched[0]
            pid = stack.coordinator.pid
            at_start = rss_mb(pid)
            # Copies of stored signals: the newest and the oldest of the hour.
            half = args.copies // 2
            indexes = [*range(args.ids - half + 1, args.ids + 1), *range(1, half + 1)]
            copies = []
            for index in indexes:
                body = signal_body("BTCUSDC", "BUY", 10.0)
                body["metadata"]["consensus_id"] = stored_id(index)
                copies.append((f"consensus:{stored_id(index)}", body))
            fresh = []
            for index in range(args.copies):
                body = order_body(index)
                fresh.append((f"consensus:{body['metadata']['consensus_id']}", body))
            publish(stack, copies + fresh, 500.0)
            wait_decided(stack, [signal_id for signal_id, _ in fresh], 60.0)
            deadline = time.monotonic() + 30.0
            duplicates = 0
            while time.monotonic() < deadline:
                stats = requests.get(stack.url + "/stats", timeout=5).json()
                duplicates = stats["duplicates"]
                if duplicates >= len(copies):
                    break
                time.sleep(0.2)
            (decided_again,) = stack.rows(
                "SELECT count(*) FROM coordinator_decisions WHERE decided_by <> 'bench'"
                " AND signal_id = ANY(%s)",
                ([signal_id for signal_id, _ in copies],),
            )[0]
            after = rss_mb(pid)
            print(f"launch -> ACTIVE: {active:.1f} s")
            print(
                f"RSS at ACTIVE: {at_start:.1f} MB, after {len(fresh)} new signals: {after:.1f} MB"
            )
            print(
                f"copies of stored signals published again: {len(copies)}, dropped as"
                f" duplicates: {duplicates}, decided again: {decided_again}   (target: 0)"
            )
        finally:
            stack.stop()
            if args.log is not None:
                shutil.copyfile(Path(tmp) / "coordinator.log", args.log)


if __name__ == "__main__":
    main()
