"""The processes of the cluster drill: an embedded Redis and PostgreSQL, the Trader stub,
and N coordinators in cluster mode sharing them, each with its own identity, data
directory, port and JSON log. Started, killed, paused and restarted from the main
thread (the parent-death signal of a child fires when the thread that forked it ends).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import redis
import requests

from bench.soak_stack import _dies_with_us
from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from coordinator.infra.store import apply_migrations

__all__ = ["ClusterStack", "Instance"]

ROOT = Path(__file__).resolve().parent.parent
SIGNALS_CHANNEL = "roottrading:signals:filtered"
SIGNALS_STREAM = "roottrading:signals:stream"


@dataclass(slots=True)
class Instance:
    name: str
    port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ClusterStack:
    def __init__(self, tmp: Path, count: int, coordinator_env: dict[str, str]) -> None:
        self.tmp = tmp
        self.extra_env = coordinator_env
        self.instances = [
            Instance(f"drill-{i + 1}", free_port(), tmp / f"data-{i + 1}", tmp / f"c{i + 1}.log")
            for i in range(count)
        ]
        self.redis: EmbeddedRedis | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.stub: subprocess.Popen[bytes] | None = None
        self.stub_url = ""
        self.client: redis.Redis | None = None
        self._http = requests.Session()
        self._http.trust_env = False

    # --- start and stop ---------------------------------------------------------------

    def start_servers(self) -> None:
        self.redis = EmbeddedRedis(self.tmp / "redis", persistent=False).start()
        self.postgres = EmbeddedPostgres(self.tmp / "pg", durable=True).start()
        apply_migrations(self.postgres.dsn)
        self.client = redis.Redis.from_url(self.redis.url)
        port = free_port()
        self.stub_url = f"http://127.0.0.1:{port}"
        with (self.tmp / "stub.log").open("ab") as handle:
            self.stub = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "trader_stub.py"), "--port", str(port)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                start_new_session=True,
                preexec_fn=_dies_with_us(os.getpid()),
            )
        self._wait_http(self.stub_url + "/health", 30, self.stub)

    def env(self, instance: Instance) -> dict[str, str]:
        assert self.redis is not None and self.postgres is not None
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "PG", "DATABASE_", "COORDINATOR_", "PAPER_", "LOG_"))
        }
        return {
            **inherited,
            "REDIS_URL": self.redis.url,
            "DATABASE_URL": self.postgres.dsn,
            "TRADER_API_URL": self.stub_url,
            "PORTFOLIO_API_URL": self.stub_url,
            "COORDINATOR_INSTANCES": "cluster",
            "COORDINATOR_INSTANCE": instance.name,
            "COORDINATOR_PORT": str(instance.port),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            **self.extra_env,
        }

    def spawn(self, instance: Instance) -> None:
        with instance.log.open("ab") as handle:
            instance.process = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "run", "--data-dir", str(instance.data_dir)],
                cwd=ROOT,
                env=self.env(instance),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=handle,
                start_new_session=True,
                preexec_fn=_dies_with_us(os.getpid()),
            )
        instance.paused = False

    def start_instance(self, instance: Instance, timeout: float = 90.0) -> None:
        """Start it and wait for its API; a start refused while its identity's row is
        still live (a restart right after a kill) is tried again until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.spawn(instance)
            try:
                assert instance.process is not None
                self._wait_http(
                    instance.url + "/status", deadline - time.monotonic(), instance.process
                )
                return
            except RuntimeError:
                if instance.process.returncode != 1 or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _wait_http(self, url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {process.returncode}")
            try:
                if self._http.get(url, timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} did not answer within {timeout:g} s")

    def stop(self) -> None:
        """Stop everything started, whatever state it is in; never raises."""
        processes = [i.process for i in self.instances] + [self.stub]
        for instance in self.instances:
            if instance.alive() and instance.paused:
                instance.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        for process in processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            if process is None:
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self.client is not None:
            self.client.close()
        for server in (self.postgres, self.redis):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:
                    print(f"stopping {server.name}: {exc}", file=sys.stderr)

    # --- faults -----------------------------------------------------------------------

    def kill(self, instance: Instance) -> float:
        """SIGKILL; the wall-clock time it was sent."""
        assert instance.process is not None
        at = time.time()
        instance.process.send_signal(signal.SIGKILL)
        instance.process.wait(10)
        return at

    def pause(self, instance: Instance) -> float:
        assert instance.process is not None
        at = time.time()
        instance.process.send_signal(signal.SIGSTOP)
        instance.paused = True
        return at

    def resume(self, instance: Instance) -> float:
        assert instance.process is not None
        at = time.time()
        instance.process.send_signal(signal.SIGCONT)
        instance.paused = False
        return at

    # --- reads ------------------------------------------------------------------------

    def get(self, url: str, timeout: float = 2.0) -> Any:
        """JSON of a GET, or None when it does not answer 2xx in time."""
        try:
            answer = self._http.get(url, timeout=timeout)
        except requests.RequestException:
            return None
        return answer.json() if answer.ok else None

    def roles(self) -> dict[str, str]:
        """The role each live, running instance says it has."""
        roles = {}
        for instance in self.instances:
            if instance.alive() and not instance.paused:
                status = self.get(instance.url + "/status", timeout=1.0)
                if isinstance(status, dict) and isinstance(status.get("role"), str):
                    roles[instance.name] = status["role"]
        return roles

    def leader(self) -> Instance | None:
        leaders = [n for n, role in self.roles().items() if role == "leader"]
        return self.by_name(leaders[0]) if len(leaders) == 1 else None

    def wait_leader(self, timeout: float, not_in: tuple[str, ...] = ()) -> Instance:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader.name not in not_in:
                return leader
            time.sleep(0.1)
        raise RuntimeError(f"no single leader (other than {not_in}) within {timeout:g} s")

    def by_name(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def watched(self, instance: Instance) -> set[str] | None:
        """The symbols ``instance`` holds a stop for, if it leads and answers."""
        body = self.get(instance.url + "/trailing-stops", timeout=1.0)
        if not isinstance(body, dict) or not body.get("leading"):
            return None
        return {str(row["symbol"]) for row in body.get("positions", [])}

    def peaks(self, instance: Instance) -> dict[str, float]:
        """The peak of each stop ``instance`` holds, by symbol (empty unless it leads)."""
        body = self.get(instance.url + "/trailing-stops", timeout=2.0)
        if not isinstance(body, dict) or not body.get("leading"):
            return {}
        return {str(row["symbol"]): float(row["peak"]) for row in body.get("positions", [])}

    def stub_orders(self, since: int = 0) -> list[dict[str, Any]]:
        body = self.get(f"{self.stub_url}/_stub/orders?since={since}", timeout=30)
        return [] if body is None else list(body["orders"])

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self.postgres is not None
        with psycopg2.connect(self.postgres.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def stop_rows(self) -> list[tuple[str, str, float, float]]:
        """Open stops: key, symbol, peak, updated_at (epoch seconds)."""
        return [
            (key, symbol, float(peak), float(updated))
            for key, symbol, peak, updated in self.rows(
                "SELECT position_key, symbol, peak, extract(epoch FROM updated_at)"
                " FROM coordinator_stops WHERE closed_at IS NULL"
            )
        ]

    def lease_holder(self) -> str | None:
        """The instance holding the leader lease (its holder is ``instance:...#n``)."""
        rows = self.rows(
            "SELECT holder FROM coordinator_leases WHERE name = 'leader' AND expires_at > now()"
        )
        return str(rows[0][0]).split(":", 1)[0] if rows else None

    def lease_state(self) -> str:
        """The lease row, the age of the latest stop write and any transaction open or
        waiting on a lock for over 0.5 s, as one line: what a fault interrupts."""
        lease = self.rows(
            "SELECT holder, generation, extract(epoch FROM now() - renewed_at),"
            " extract(epoch FROM expires_at - now()) FROM coordinator_leases WHERE name = 'leader'"
        )
        written = self.rows(
            "SELECT extract(epoch FROM now() - max(updated_at)) FROM coordinator_stops"
        )
        stuck = self.rows(
            "SELECT application_name, state, wait_event_type,"
            " extract(epoch FROM now() - xact_start), left(query, 90) FROM pg_stat_activity"
            " WHERE xact_start < now() - interval '0.5 s'"
            " AND pid <> pg_backend_pid()"
        )
        text = "no lease"
        if lease:
            holder, generation, renewed, left = lease[0]
            text = (
                f"lease {holder} gen {generation}, renewed {float(renewed):.2f} s ago, "
                f"expires in {float(left):.2f} s"
            )
        if written and written[0][0] is not None:
            text += f"; last stop write {float(written[0][0]):.2f} s ago"
        for name, state, waiting, age, query in stuck:
            text += f"; open {float(age):.1f} s ({name or '-'}, {state}, {waiting or '-'}: {query})"
        return text

    def log_lines(self, instance: Instance) -> list[str]:
        try:
            return instance.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
