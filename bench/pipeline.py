"""The signal pipeline under load: sustained throughput, latency at a steady rate, a burst.

Everything runs as in production, each in its own process: an embedded Redis and
PostgreSQL (durable, fsync on), the minimal Trader and Portfolio of bench/trader_stub.py
(``--paper``: ``coordinator paper-exchange`` instead, which costs a core of its own),
``coordinator run``, and a publisher that sends the aggregator's JSON on Redis.

Every command prints the coordinator's CPU per order, read from /proc, and its split by
thread (each actor's thread bears its name; see bench/cpu.py).

    python bench/pipeline.py [--paper] sustained [--signals 20000] [--rate 0] [--symbols 50]
    python bench/pipeline.py [--paper] latency   [--rate 200] [--seconds 20]
    python bench/pipeline.py [--paper] burst     [--signals 10000]
    python bench/pipeline.py [--paper] health    [--signals 8000] [--rounds 2] [--connections 10]
                                                 [--health-rate 0]
    python bench/pipeline.py [--paper] rejected  [--signals 30000] [--refusal no_position]
    python bench/pipeline.py [--paper] rss       [--minutes 60] [--rate 500]

sustained  signals published -> decision stored -> order at the Trader;
           target >= 2,000 signals/s
latency    p99 from intake to the order request leaving at --rate signals/s;
           target <= 2 ms at both 20 and 200 signals/s; and the p99 of each 10 s
           window, which grows with the Ledger's book in a long run at 200/s
burst      10,000 signals at once: no crash, memory bounded, every signal decided or
           rejected "overloaded", none silently dropped
rejected   signals refused before any order, decided and stored per second
           (bench/pipeline_growth.py); target >= 10,000 signals/s
rss        a steady run at --rate signals/s for --minutes, the coordinator's RSS
           sampled every 10 s (bench/pipeline_growth.py); target flat, <= 200 MB
health     sustained runs alternately without and with GET /health on 10 keep-alive
           connections meanwhile (bench/health_load.py): orders/s of each, /health's
           req/s and p99; targets >= 3,000 req/s, orders/s down by less than 10 %.
           The clients share the two cores: --health-rate 3000 paces them at the
           target's rate instead of as fast as they can go
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.health_load import HealthLoad, LoadResult
from bench.pipeline_growth import add_commands
from bench.pipeline_stack import (
    SYMBOLS,
    Stack,
    payloads,
    publish,
    rss_mb,
    symbols_of,
    wait_decided,
)

__all__ = ["Stack"]  # bench/stops.py takes it from here


def sustained(args: argparse.Namespace, tmp: Path) -> None:
    symbols = symbols_of(args.symbols)
    # RootTrading's sizing spends 12 - 28 % of the free quote per BUY: with hundreds of
    # positions open at once the quote would run out (BUYs refused insufficient_balance,
    # their SELLs no_position). 0.5 % each leaves 8 % of it free with 500 open.
    sizing = (
        {"SIZING_MODE": "table", "SIZING_PERCENTS": "0.5,0.5,0.5,0.5"}
        if len(symbols) > len(SYMBOLS)
        else {}
    )
    stack = Stack(
        tmp,
        {
            **sizing,
            "MAX_PENDING_SIGNALS": str(args.signals),
            # Every signal is published at once: with few symbols a few Validators hold
            # the whole backlog, and their Ping waits behind it.
            "SUPERVISOR_LIVENESS_TIMEOUT": "600",
        },
        paper=args.paper,
        symbols=symbols,
    )
    try:
        bodies = payloads(args.signals, symbols)
        ids = [i for i, _ in bodies]
        orders_before = stack.orders()[0]
        spy = stack.profile(args.profile)
        cpu_before = stack.cpu()
        started = time.perf_counter()
        published = publish(stack, bodies, args.rate)
        finished = wait_decided(stack, ids, timeout=600)
        elapsed = finished - started
        cpu = stack.cpu().since(cpu_before)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its flame graph on SIGINT
            spy.wait(60)
        received, filled = stack.orders()
        outcomes = stack.rows(
            "SELECT outcome, coalesce(reason, ''), count(*), min(detail) FROM coordinator_decisions"
            " WHERE signal_id = ANY(%s) GROUP BY 1, 2 ORDER BY 3 DESC",
            (ids,),
        )
        made = received - orders_before
        print(f"Trader: {stack.trader_name}; {len(symbols)} symbols")
        print(f"published {len(ids)} signals in {published:.2f} s")
        print(f"decided and stored all {len(ids)} in {elapsed:.2f} s")
        print(f"sustained: {len(ids) / elapsed:,.0f} signals/s, {made / elapsed:,.0f} orders/s")
        print("   (target >= 2,000 orders/s, every signal an order)")
        print(f"orders at the Trader: {received} received, {filled} filled")
        print(cpu.report(made))
        for outcome, reason, n, detail in outcomes:
            print(f"{outcome} {reason}: {n}" + (f" (e.g. {detail})" if reason else ""))
    finally:
        stack.stop()


WINDOW_SECONDS = 10.0
"""The latency's p99 is printed for each window of this many seconds too."""


def latency(args: argparse.Namespace, tmp: Path) -> None:
    stack = Stack(tmp, {}, paper=args.paper)
    try:
        count = int(args.rate * args.seconds)
        bodies = payloads(count)
        ids = [i for i, _ in bodies]
        orders_before = stack.orders()[0]
        cpu_before = stack.cpu()
        publish(stack, bodies, args.rate)
        wait_decided(stack, ids, timeout=120)
        cpu = stack.cpu().since(cpu_before)
        made = stack.orders()[0] - orders_before
        rows = stack.rows(
            """SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99, 0.999])
                          WITHIN GROUP (ORDER BY intake_to_order_ms),
                      max(intake_to_order_ms), count(intake_to_order_ms),
                      percentile_cont(ARRAY[0.5, 0.99])
                          WITHIN GROUP (ORDER BY intake_to_decision_ms)
               FROM coordinator_decisions WHERE signal_id = ANY(%s)""",
            (ids,),
        )
        (p50, p90, p99, p999), maximum, sent, (d50, d99) = rows[0]
        print(f"Trader: {stack.trader_name}")
        print(f"{count} signals at {args.rate:g}/s, {sent} orders sent")
        print(
            f"intake -> order request: p50 {p50:.2f} ms  p90 {p90:.2f} ms  p99 {p99:.2f} ms  "
            f"p99.9 {p999:.2f} ms  max {maximum:.2f} ms   (target p99 <= 2 ms)"
        )
        print(f"intake -> decision:      p50 {d50:.2f} ms  p99 {d99:.2f} ms")
        # The Ledger's book grows with the orders of the settle window, and so does the
        # tail: one p99 per window shows whether it is steady.
        windows = stack.rows(
            """SELECT floor(extract(epoch FROM decided_at - first) / %s)::int AS window,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY intake_to_order_ms)
                 FROM coordinator_decisions,
                      (SELECT min(decided_at) AS first FROM coordinator_decisions
                        WHERE signal_id = ANY(%s)) AS start
                WHERE signal_id = ANY(%s) AND intake_to_order_ms IS NOT NULL
                GROUP BY 1 ORDER BY 1""",
            (WINDOW_SECONDS, ids, ids),
        )
        print(
            f"p99 by {WINDOW_SECONDS:g} s window: "
            + ", ".join(f"{p99:.2f}" for _, p99 in windows)
            + " ms"
        )
        print(cpu.report(made, target_ms=None))
    finally:
        stack.stop()


def burst(args: argparse.Namespace, tmp: Path) -> None:
    stack = Stack(tmp, {}, paper=args.paper)
    try:
        before = rss_mb(stack.coordinator.pid)
        bodies = payloads(args.signals)
        ids = [i for i, _ in bodies]
        published = publish(stack, bodies, 0)
        peak = before
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and stack.decided(ids) < len(ids):
            peak = max(peak, rss_mb(stack.coordinator.pid))
            time.sleep(0.1)
        decided = stack.decided(ids)
        outcomes = stack.rows(
            "SELECT coalesce(reason, outcome), count(*) FROM coordinator_decisions"
            " WHERE signal_id = ANY(%s) GROUP BY 1 ORDER BY 2 DESC",
            (ids,),
        )
        alive = stack.coordinator.poll() is None
        print(f"burst of {len(ids)} published in {published:.2f} s")
        print(
            f"decided {decided} of {len(ids)} ({len(ids) - decided} missing); "
            f"coordinator alive: {alive}"
        )
        print("by reason:", ", ".join(f"{r} {n}" for r, n in outcomes))
        print(f"memory (RSS): {before:.0f} MB before, {peak:.0f} MB at the peak")
    finally:
        stack.stop()


def orders_per_second(
    stack: Stack, count: int, load: HealthLoad | None
) -> tuple[float, LoadResult | None, str]:
    """Publish ``count`` signals as fast as possible and wait for every decision, under
    ``load`` if given: the orders the Trader received per second, the load's
    result, and the refusals by reason."""
    bodies = payloads(count)
    ids = [i for i, _ in bodies]
    before = stack.orders()[0]
    if load is not None:
        load.start()
    started = time.perf_counter()
    publish(stack, bodies, 0)
    # One connection for all the polls: a new one each tenth of a second (wait_decided)
    # costs PostgreSQL a process start, on the cores being measured.
    with psycopg2.connect(stack.postgres.dsn) as conn, conn.cursor() as cur:
        deadline = time.monotonic() + 600
        while True:
            cur.execute(
                "SELECT count(*) FROM coordinator_decisions WHERE signal_id = ANY(%s)", (ids,)
            )
            decided = cur.fetchone()[0]
            conn.rollback()  # each poll sees what was committed since the last
            if decided >= len(ids):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"not all of {len(ids)} signals decided in 600 s")
            time.sleep(0.1)
    finished = time.perf_counter()
    result = load.stop() if load is not None else None
    refused = stack.rows(
        "SELECT reason, count(*) FROM coordinator_decisions"
        " WHERE signal_id = ANY(%s) AND reason IS NOT NULL GROUP BY 1 ORDER BY 2 DESC",
        (ids,),
    )
    why = ", ".join(f"{reason} {n}" for reason, n in refused) or "none"
    return (stack.orders()[0] - before) / (finished - started), result, why


def health(args: argparse.Namespace, tmp: Path) -> None:
    # Whole rounds of BUY then SELL over every symbol: each run starts with nothing held.
    count = max(2, args.signals // (2 * len(SYMBOLS))) * 2 * len(SYMBOLS)
    stack = Stack(
        tmp,
        {"MAX_PENDING_SIGNALS": str(count)},
        paper=args.paper,
    )
    try:
        orders_per_second(stack, 2 * len(SYMBOLS) * 5, None)  # warm up
        quiet: list[float] = []
        loaded: list[float] = []
        loads: list[LoadResult] = []
        # MAX_ORDERS_PER_MINUTE is at most 10,000 BUYs: a run starts a minute (--pause)
        # after the one before it started, so that no minute holds more than two runs'.
        last_start = time.monotonic()
        for round_ in range(args.rounds):
            for under_load in (False, True):
                time.sleep(max(0.0, last_start + args.pause - time.monotonic()))
                last_start = time.monotonic()
                load = (
                    HealthLoad(stack.port, connections=args.connections, rate=args.health_rate)
                    if under_load
                    else None
                )
                rate, result, why = orders_per_second(stack, count, load)
                (loaded if under_load else quiet).append(rate)
                if result is not None:
                    loads.append(result)
                print(
                    f"round {round_ + 1}, {'with' if under_load else 'without'} /health load: "
                    f"{rate:,.0f} orders/s; refused: {why}",
                    flush=True,
                )
        requests_total = sum(r.requests for r in loads)
        seconds = sum(r.seconds for r in loads)
        change = (sum(loaded) / len(loaded)) / (sum(quiet) / len(quiet)) - 1
        print(f"{args.rounds} rounds of {count} signals each way; Trader: {stack.trader_name}")
        print("orders/s without /health load: " + ", ".join(f"{r:,.0f}" for r in quiet))
        print("orders/s with /health load:    " + ", ".join(f"{r:,.0f}" for r in loaded))
        print(f"orders/s change under load: {change:+.1%}   (target: a drop under 10 %)")
        print(
            f"GET /health during the runs, {args.connections} keep-alive connections: "
            f"{requests_total / seconds:,.0f} req/s, p99 "
            + ", ".join(f"{r.p99_ms:.1f}" for r in loads)
            + f" ms, {sum(r.failures for r in loads)} failures   (target >= 3,000 req/s)"
        )
        print(
            f"the clients' own CPU meanwhile, on the same cores: "
            f"{sum(r.client_cpu_seconds for r in loads) / seconds:.2f} cores"
            + (f"; paced at {args.health_rate:,.0f} req/s" if args.health_rate else "; unpaced")
        )
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="the paper exchange as Trader and Portfolio instead of the minimal stub",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("sustained")
    one.add_argument("--signals", type=int, default=20_000)
    one.add_argument("--rate", type=float, default=0.0, help="publish rate, 0: as fast as possible")
    one.add_argument(
        "--symbols", type=int, default=50, help="symbols the signals go round (1 to 500)"
    )
    one.add_argument(
        "--profile", type=Path, help="write py-spy's flame graph of the run (SVG) to this file"
    )
    two = commands.add_parser("latency")
    two.add_argument("--rate", type=float, default=200.0)
    two.add_argument("--seconds", type=float, default=20.0)
    three = commands.add_parser("burst")
    three.add_argument("--signals", type=int, default=10_000)
    four = commands.add_parser("health")
    four.add_argument("--signals", type=int, default=8_000)
    four.add_argument("--rounds", type=int, default=2)
    four.add_argument("--connections", type=int, default=10)
    four.add_argument(
        "--health-rate",
        type=float,
        default=0.0,
        help="GET /health requests a second over all connections, 0: back to back",
    )
    four.add_argument(
        "--pause", type=float, default=61.0, help="seconds from a run's start to the next's"
    )
    growth = add_commands(commands)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = {"sustained": sustained, "latency": latency, "burst": burst, "health": health}
        run.update(growth)
        run[args.command](args, Path(tmp))


if __name__ == "__main__":
    main()
