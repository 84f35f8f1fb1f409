"""The signal pipeline under load: sustained throughput, latency at a steady rate, a burst.

Everything runs as in production, each in its own process: an embedded Redis and
PostgreSQL (durable, fsync on), the minimal Trader and Portfolio of bench/trader_stub.py
(``--paper``: ``coordinator paper-exchange`` instead, which costs a core of its own),
``coordinator run``, and a publisher that sends the aggregator's JSON on Redis.

Every command prints the coordinator's CPU per order, read from /proc, and its split by
thread (each actor's thread bears its name; see bench/cpu.py).

    python bench/pipeline.py [--paper] sustained [--signals 20000] [--rate 0]
    python bench/pipeline.py [--paper] latency   [--rate 200] [--seconds 20]
    python bench/pipeline.py [--paper] burst     [--signals 10000]
    python bench/pipeline.py [--paper] health    [--signals 8000] [--rounds 2] [--connections 10]

sustained  signals published -> decision stored -> order at the Trader;
           target >= 2,000 signals/s
latency    p99 from intake to the order request leaving at 200 signals/s; target <= 5 ms
burst      10,000 signals at once: no crash, memory bounded, every signal decided or
           rejected "overloaded", none silently dropped
health     sustained runs alternately without and with GET /health on 10 keep-alive
           connections meanwhile (bench/health_load.py): orders/s of each, /health's
           req/s and p99; targets >= 3,000 req/s, orders/s down by less than 10 %
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuSample  # noqa: E402
from bench.health_load import HealthLoad, LoadResult  # noqa: E402
from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from coordinator.infra.store import apply_migrations  # noqa: E402

SYMBOLS = [f"S{index:03d}USDC" for index in range(50)]
CHANNEL = "bench:signals"


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "coordinator", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Stack:
    def __init__(
        self,
        tmp: Path,
        extra_env: dict[str, str],
        *,
        paper: bool = False,
        paper_args: tuple[str, ...] = (),
    ) -> None:
        self.tmp = tmp
        self.redis = EmbeddedRedis(tmp / "redis", persistent=True).start()
        self.postgres = EmbeddedPostgres(
            tmp / "pg", durable=os.environ.get("BENCH_PG_DURABLE", "1") == "1"
        ).start()
        apply_migrations(self.postgres.dsn)
        base = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("REDIS_", "PG", "DATABASE_"))
            },
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.postgres.dsn,
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            "PAPER_STARTING_BALANCE": "1000000000000",
        }
        trader_port = free_port()
        self.paper = paper
        self.trader_url = f"http://127.0.0.1:{trader_port}"
        if paper:
            self.trader = start(
                ["paper-exchange", "--port", str(trader_port), *paper_args],
                base,
                tmp / "trader.log",
            )
        else:
            self.trader = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "trader_stub.py"),
                    "--port",
                    str(trader_port),
                ],
                cwd=ROOT,
                env=base,
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "trader.log").open("ab"),
            )
        wait_http(self.trader_url + "/health")
        self.port = free_port()
        env = {
            **base,
            "TRADER_API_URL": self.trader_url,
            "PORTFOLIO_API_URL": self.trader_url,
            "COORDINATOR_PORT": str(self.port),
            "SIGNALS_CHANNEL": CHANNEL,
            "SIGNALS_STREAM_ENABLED": "false",
            "TRADING_SYMBOLS": ",".join(SYMBOLS),
            # No candles here for the UniverseManager to choose from: every symbol is a
            # core pair, so that a BUY is never refused for being outside the universe.
            "CORE_PAIRS": ",".join(SYMBOLS),
            "UNIVERSE_SIZE": str(len(SYMBOLS)),
            "MAX_CONCURRENT_TRADES": "1000",
            "MAX_ORDERS_PER_MINUTE": "10000",
            "MAX_EXPOSURE_PERCENT": "100",
            # Thousands of round trips pay enough fees to trip the loss guards: off here.
            "MAX_DRAWDOWN_PERCENT": "100",
            "DAILY_LOSS_LIMIT_PERCENT": "100",
            "REQUIRE_MARKET_DATA": "false",
            "SIGNAL_TIMEOUT": "60",
            **extra_env,
        }
        self.coordinator = start(
            ["run", "--data-dir", str(tmp / "data")], env, tmp / "coordinator.log"
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    requests.get(self.url + "/status", timeout=1).json()["trading_state"]
                    == "ACTIVE"
                ):
                    break
            except (requests.RequestException, KeyError, ValueError):
                pass
            time.sleep(0.2)
        else:
            raise SystemExit(
                "the coordinator did not become ACTIVE; see " + str(tmp / "coordinator.log")
            )
        self.client = redis.Redis.from_url(self.redis.url)

    def orders(self) -> tuple[int, int]:
        """Order requests the Trader received, and those it filled."""
        if self.paper:
            stats = requests.get(self.trader_url + "/_paper/stats", timeout=5).json()
            return stats["orders_received"], stats["orders_filled"]
        stats = requests.get(self.trader_url + "/_stub/stats", timeout=5).json()
        return stats["requests"], stats["filled"]

    @property
    def paper_url(self) -> str:
        return self.trader_url

    @property
    def trader_name(self) -> str:
        return "the paper exchange" if self.paper else "the minimal stub (bench/trader_stub.py)"

    def profile(self, output: Path | None) -> subprocess.Popen[bytes] | None:
        """py-spy recording the coordinator until stopped (``--profile``): a flame graph."""
        if output is None:
            return None
        spy = Path(sys.executable).parent / "py-spy"
        # .txt: collapsed stacks (one line per stack and its count), .json: speedscope
        kind = {".txt": "raw", ".json": "speedscope"}.get(output.suffix, "flamegraph")
        return subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(self.coordinator.pid),
                "--output",
                str(output),
                "--threads",
                "--rate",
                "250",
                "--nonblocking",
                "--gil",
                "--format",
                kind,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "py-spy.log").open("ab"),
        )

    def cpu(self) -> CpuSample:
        return CpuSample.of(self.coordinator.pid)

    def decided(self, ids: list[str]) -> int:
        with psycopg2.connect(self.postgres.dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM coordinator_decisions WHERE signal_id = ANY(%s)", (ids,)
            )
            return cur.fetchone()[0]

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg2.connect(self.postgres.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def stop(self) -> None:
        for process in (self.coordinator, self.trader):
            process.send_signal(signal.SIGTERM)
        for process in (self.coordinator, self.trader):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.client.close()
        self.postgres.stop()
        self.redis.stop()


def payloads(count: int) -> list[tuple[str, bytes]]:
    """BUY then SELL per symbol, round after round: every signal can make an order."""
    out = []
    for index in range(count):
        symbol = SYMBOLS[index % len(SYMBOLS)]
        side = "BUY" if (index // len(SYMBOLS)) % 2 == 0 else "SELL"
        consensus = uuid.uuid4().hex
        body = {
            "strategy": "CONSENSUS",
            "symbol": symbol,
            "side": side,
            "timestamp": 0,
            "price": 10.0 + (index % len(SYMBOLS)) % 7,
            "confidence": 0.8,
            "strength": "strong",
            "metadata": {
                "consensus_strength": 0.9,
                "strategies_count": 4,
                "consensus_id": consensus,
            },
        }
        out.append((f"consensus:{consensus}", body))
    return out


def publish(stack: Stack, bodies: list, rate: float) -> float:
    """Publish at ``rate`` per second (0: as fast as possible); return the seconds taken."""
    pipe = stack.client.pipeline(transaction=False)
    started = time.perf_counter()
    batch = 50 if rate == 0 else max(1, int(rate / 100))
    for index, (_, body) in enumerate(bodies):
        body["timestamp"] = int(time.time() * 1000)
        pipe.publish(CHANNEL, json.dumps(body))
        if (index + 1) % batch == 0:
            pipe.execute()
            if rate:
                due = started + (index + 1) / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
    pipe.execute()
    return time.perf_counter() - started


def wait_decided(stack: Stack, ids: list[str], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.decided(ids) >= len(ids):
            return time.perf_counter()
        time.sleep(0.1)
    raise SystemExit(f"only {stack.decided(ids)} of {len(ids)} decided in {timeout:g} s")


def sustained(args: argparse.Namespace, tmp: Path) -> None:
    stack = Stack(tmp, {"MAX_PENDING_SIGNALS": str(args.signals)}, paper=args.paper)
    try:
        bodies = payloads(args.signals)
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
        print(f"Trader: {stack.trader_name}")
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
                load = HealthLoad(stack.port, connections=args.connections) if under_load else None
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
        "--pause", type=float, default=61.0, help="seconds from a run's start to the next's"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"sustained": sustained, "latency": latency, "burst": burst, "health": health}
        commands[args.command](args, Path(tmp))


if __name__ == "__main__":
    main()
