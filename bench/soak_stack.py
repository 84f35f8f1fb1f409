"""The processes of the soak: embedded Redis and PostgreSQL, the paper exchange and the
coordinator, each started, faulted and restarted from the main thread, all stopped at
the end however the soak ends.

Every process is started from the main thread on purpose: the kernel's parent-death
signal (set on each child) fires when the *thread* that forked it ends, so a child
started from a worker thread would die with that thread.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2
import requests

from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from coordinator.infra.store import apply_migrations

__all__ = ["EVENTS_CHANNEL", "SIGNALS_CHANNEL", "SIGNALS_STREAM", "Stack"]

ROOT = Path(__file__).resolve().parent.parent
SIGNALS_CHANNEL = "roottrading:signals:filtered"
SIGNALS_STREAM = "roottrading:signals:stream"
EVENTS_CHANNEL = "roottrading:coordinator:events"
_PR_SET_PDEATHSIG = 1
# RootTrading's database/schema.sql:300-316: the aggregator stores each consensus here (the
# soak's SignalSource, as the aggregator, before it publishes), and the coordinator
# takes in the rows whose publication it could not hear.
TRADING_SIGNALS = """
CREATE TABLE IF NOT EXISTS trading_signals (
    id SERIAL PRIMARY KEY,
    strategy VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    side VARCHAR(10) NOT NULL CHECK (side IN ('BUY', 'SELL')),
    timestamp TIMESTAMP NOT NULL,
    confidence DECIMAL(5,2) NOT NULL,
    price DECIMAL(20,8) NOT NULL,
    metadata JSONB,
    processed BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP DEFAULT NOW(),
    CONSTRAINT unique_signal_constraint
    UNIQUE (strategy, symbol, side, timestamp, confidence)
)
"""


def _dies_with_us(parent: int) -> Any:
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def fee_in_base_supported() -> bool:
    """Whether this tree's paper exchange can take the BUY fee in the base asset."""
    out = subprocess.run(
        [sys.executable, "-m", "coordinator", "paper-exchange", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--fee-in-base" in out.stdout


class Stack:
    def __init__(self, tmp: Path, coordinator_env: dict[str, str], *, fee_in_base: bool) -> None:
        self.tmp = tmp
        self.token = secrets.token_urlsafe(24)
        self.fee_in_base = fee_in_base
        self.coordinator_env_extra = coordinator_env
        self.redis: EmbeddedRedis | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.paper: subprocess.Popen[bytes] | None = None
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.coordinator_starts = 0
        self.identity_waits = 0
        """Starts refused because the killed process's identity was still live."""
        self.paper_url = ""
        self.url = ""

    # --- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        self.redis = EmbeddedRedis(self.tmp / "redis", persistent=True).start()
        self.postgres = EmbeddedPostgres(self.tmp / "pg", durable=True).start()
        apply_migrations(self.postgres.dsn)
        with psycopg2.connect(self.postgres.dsn) as conn, conn.cursor() as cur:
            cur.execute(TRADING_SIGNALS)
        conn.close()
        paper_port = free_port()
        self.paper_url = f"http://127.0.0.1:{paper_port}"
        paper_args = ["paper-exchange", "--port", str(paper_port)]
        if self.fee_in_base:
            paper_args.append("--fee-in-base")
        self.paper = self._spawn(paper_args, self._base_env(), "paper.log")
        self._wait(self.paper_url + "/health", 60, self.paper)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.start_coordinator()

    def _base_env(self) -> dict[str, str]:
        assert self.redis is not None and self.postgres is not None
        return {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("REDIS_", "PG", "DATABASE_", "COORDINATOR_", "PAPER_"))
            },
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.postgres.dsn,
            "LOG_LEVEL": "warning",
            "PAPER_STARTING_BALANCE": "10000",
            "PAPER_FEE_PERCENT": "0.1",
            **({"PAPER_FEE_IN_BASE": "true"} if self.fee_in_base else {}),
        }

    def _spawn(self, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as handle:
            return subprocess.Popen(
                [sys.executable, "-m", "coordinator", *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=handle,
                # Ctrl-C reaches the soak alone, which then stops everything in order.
                start_new_session=True,
                preexec_fn=_dies_with_us(os.getpid()),
            )

    def start_coordinator(self, timeout: float = 90.0) -> None:
        port = self.url.rsplit(":", 1)[1]
        env = {
            **self._base_env(),
            "TRADER_API_URL": self.paper_url,
            "PORTFOLIO_API_URL": self.paper_url,
            "COORDINATOR_PORT": port,
            "COORDINATOR_API_TOKEN": self.token,
            "COORDINATOR_DRILLS": "1",
            **self.coordinator_env_extra,
        }
        deadline = time.monotonic() + timeout
        while True:
            self.coordinator = self._spawn(
                ["run", "--data-dir", str(self.tmp / "data")], env, "coordinator.log"
            )
            self.coordinator_starts += 1
            try:
                self._wait(self.url + "/status", deadline - time.monotonic(), self.coordinator)
                return
            except RuntimeError:
                # Right after a kill -9 the killed process's identity stays live for
                # INSTANCE_LIVENESS (this PostgreSQL is not in the data directory, so
                # the row is not known dead): started again, as an orchestrator would.
                if self.coordinator.poll() is None or not self._identity_held():
                    raise
                if time.monotonic() + 1.0 >= deadline:
                    raise
                self.identity_waits += 1
                time.sleep(1.0)

    def _identity_held(self) -> bool:
        """Whether the coordinator's last start was refused for a live identity."""
        with (self.tmp / "coordinator.log").open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode("utf-8", "replace").strip().splitlines()
        return bool(tail) and "is held by a live coordinator" in tail[-1]

    def _wait(self, url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {process.returncode}")
            try:
                if requests.get(url, timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} did not answer within {timeout:g} s")

    def stop(self) -> None:
        """Stop everything started, whatever state it is in; never raises."""
        for process in (self.coordinator, self.paper):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.coordinator, self.paper):
            if process is None:
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for server in (self.postgres, self.redis):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:
                    print(f"stopping {server.name}: {exc}", file=sys.stderr)

    # --- faults -----------------------------------------------------------------------

    def kill_coordinator(self) -> None:
        assert self.coordinator is not None
        self.coordinator.send_signal(signal.SIGKILL)
        self.coordinator.wait(10)

    def coordinator_exit(self) -> int | None:
        """The exit code of a coordinator that stopped by itself, else None."""
        return None if self.coordinator is None else self.coordinator.poll()

    def restart_postgres(self, down: float) -> None:
        assert self.postgres is not None
        self.postgres.stop()
        time.sleep(down)
        self.postgres.start()

    def restart_redis(self, down: float) -> None:
        assert self.redis is not None
        self.redis.stop()
        time.sleep(down)
        self.redis.start()

    def knobs(self, **changes: float) -> bool:
        """Set the paper exchange's knobs; False when it does not have one of them."""
        for attempt in range(5):
            try:
                answer = requests.post(self.paper_url + "/_paper/knobs", json=changes, timeout=5)
                return answer.ok
            except requests.RequestException:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        return False

    def actors(self) -> list[str]:
        tree = requests.get(self.url + "/supervisor", timeout=3).json()
        return [child["name"] for child in tree["children"]]

    def crash_actor(self, name: str) -> bool:
        answer = requests.post(
            f"{self.url}/drills/actors/{name}/crash",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=3,
        )
        return answer.status_code == 202

    # --- reads ------------------------------------------------------------------------

    def get(self, base: str, path: str, timeout: float = 5.0) -> Any:
        """JSON of GET base+path, or None when it does not answer 2xx."""
        try:
            answer = requests.get(base + path, timeout=timeout)
        except requests.RequestException:
            return None
        return answer.json() if answer.ok else None

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.tmp / name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
