"""The stack of bench/pipeline.py: an embedded Redis and PostgreSQL (durable, fsync on),
the Trader (the minimal stub of bench/trader_stub.py, or ``coordinator paper-exchange``),
``coordinator run``, and the aggregator's signals published on Redis.

Used by bench/pipeline.py, bench/pipeline_growth.py and bench/stops.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg2
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuSample  # noqa: E402
from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from coordinator.infra.store import apply_migrations  # noqa: E402


def symbols_of(count: int) -> list[str]:
    return [f"S{index:03d}USDC" for index in range(count)]


SYMBOLS = symbols_of(50)
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
        symbols: list[str] = SYMBOLS,
        prepare: Callable[[str], None] | None = None,
    ) -> None:
        """``prepare``: handed the database's DSN once its tables are made, before the
        coordinator starts (rows an earlier run would have left)."""
        if len(symbols) > 500:
            raise SystemExit("at most 500 symbols: UNIVERSE_SIZE is at most 500")
        self.tmp = tmp
        self.symbols = symbols
        self.redis = EmbeddedRedis(tmp / "redis", persistent=True).start()
        self.postgres = EmbeddedPostgres(
            tmp / "pg", durable=os.environ.get("BENCH_PG_DURABLE", "1") == "1"
        ).start()
        apply_migrations(self.postgres.dsn)
        if prepare is not None:
            prepare(self.postgres.dsn)
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
            "TRADING_SYMBOLS": ",".join(symbols),
            # No candles here for the UniverseManager to choose from: every symbol is a
            # core pair, so that a BUY is never refused for being outside the universe.
            "CORE_PAIRS": ",".join(symbols),
            "UNIVERSE_SIZE": str(len(symbols)),
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


def payloads(count: int, symbols: list[str] = SYMBOLS) -> list[tuple[str, dict]]:
    """BUY then SELL per symbol, round after round: every signal can make an order (with
    one symbol: BUY, SELL, BUY, ...)."""
    out = []
    for index in range(count):
        body = order_body(index, symbols)
        out.append((f"consensus:{body['metadata']['consensus_id']}", body))
    return out


def signal_body(symbol: str, side: str, price: float, timestamp: int = 0) -> dict:
    """A consensus signal of RootTrading's shape, with an id of its own."""
    return {
        "strategy": "CONSENSUS",
        "symbol": symbol,
        "side": side,
        "timestamp": timestamp,
        "price": price,
        "confidence": 0.8,
        "strength": "strong",
        "metadata": {
            "consensus_strength": 0.9,
            "strategies_count": 4,
            "consensus_id": uuid.uuid4().hex,
        },
    }


def order_body(index: int, symbols: list[str] = SYMBOLS) -> dict:
    """The ``index``-th signal of the BUY/SELL alternation over ``symbols``."""
    return signal_body(
        symbols[index % len(symbols)],
        "BUY" if (index // len(symbols)) % 2 == 0 else "SELL",
        10.0 + (index % len(symbols)) % 7,
    )


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
