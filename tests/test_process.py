"""``python -m coordinator run`` as a real process, with its embedded servers."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from coordinator.infra.embedded import free_port
from tests.waiting import wait_for

TOKEN = "process-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parent.parent
_launches = itertools.count()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def server_pids(coordinator: CoordinatorProcess) -> list[int]:
    """Embedded server processes of ``coordinator`` that are still alive.

    Their pids come from the coordinator's log; anything else whose command line
    names the data directory (other than the coordinator itself) counts too.
    """
    pids = {
        int(match)
        for match in re.findall(r"(?:redis|postgres) started \(pid (\d+)", coordinator.log())
    }
    needle = str(coordinator.data_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), coordinator.process.pid):
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
        except OSError:
            continue
    return sorted(pid for pid in pids if _alive(pid))


class CoordinatorProcess:
    def __init__(self, data_dir: Path, *args: str, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-{next(_launches)}.log"
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(
                (
                    "REDIS_",
                    "PG",
                    "DATABASE_",
                    "COORDINATOR_",
                    "SUPERVISOR_",
                    "TRADER_",
                    "PORTFOLIO_",
                )
            )
            and key not in ("PAPER_TRADING", "LOG_LEVEL", "TRADING_SYMBOLS")
        }
        environment.update(
            {
                "COORDINATOR_PORT": str(self.port),
                "COORDINATOR_API_TOKEN": TOKEN,
                "COORDINATOR_DRILLS": "1",
                "HEALTH_CHECK_INTERVAL": "0.5",
                "SUPERVISOR_BACKOFF_BASE": "0.05",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "coordinator", "run", "--data-dir", str(data_dir), *args],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_up(self) -> dict[str, Any]:
        def answer() -> Any:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}:\n{self.log()}")
            try:
                return requests.get(self.url + "/health", timeout=2).json()
            except requests.RequestException:
                return None

        return wait_for(answer, timeout=60, message="the coordinator to answer /health")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Any]:
    launched: list[CoordinatorProcess] = []

    def start(name: str = "data", *args: str, **env: str) -> CoordinatorProcess:
        process = CoordinatorProcess(tmp_path / name, *args, **env)
        launched.append(process)
        return process

    yield start
    for process in launched:
        process.close()
    for process in launched:
        wait_for(lambda p=process: not server_pids(p), message="no server left")


def test_run_with_embedded_servers_survives_drills_and_stops_on_sigterm(launch):
    # One crash per actor: more restarts than the default intensity allows in a minute.
    coordinator = launch(SUPERVISOR_MAX_RESTARTS="100")
    health = coordinator.wait_up()
    assert health["components"]["redis"]["status"] in ("up", "unchecked")
    assert len(server_pids(coordinator)) >= 2, "embedded Redis and PostgreSQL run"
    health = wait_for(
        lambda: (
            (h := requests.get(coordinator.url + "/health", timeout=2).json())["status"]
            == "healthy"
            and h
        ),
        message="healthy",
    )
    # No Trader or Portfolio configured: the in-process paper exchange stands in.
    assert health["components"]["trader"]["status"] == "up"
    assert health["trading"]["state"] == "ACTIVE"
    status = requests.get(coordinator.url + "/status", timeout=2).json()
    assert status["dependencies"]["trader"]["target"].startswith("http://127.0.0.1:")

    actors = [
        c["name"]
        for c in requests.get(coordinator.url + "/supervisor", timeout=2).json()["children"]
    ]
    assert actors
    for actor in actors:
        response = requests.post(
            f"{coordinator.url}/drills/actors/{actor}/crash", headers=AUTH, timeout=5
        )
        assert response.status_code == 202
        wait_for(
            lambda a=actor: any(
                c["name"] == a and c["incarnation"] == 2 and c["state"] == "running"
                for c in requests.get(coordinator.url + "/supervisor", timeout=2).json()["children"]
            ),
            message=f"{actor} replaced",
        )
    assert requests.get(coordinator.url + "/health", timeout=2).status_code == 200

    coordinator.process.send_signal(signal.SIGTERM)
    assert coordinator.wait_exit(10) == 0
    assert not server_pids(coordinator)

    records = coordinator.log_records()
    assert records, "logs are JSON lines"
    assert all({"ts", "level", "actor", "msg"} <= set(r) for r in records)
    assert any(r["actor"] == "service_health#1" for r in records)
    assert any("SIGTERM received" in r["msg"] for r in records)


def test_sigint_also_stops_cleanly(launch):
    coordinator = launch()
    coordinator.wait_up()
    coordinator.process.send_signal(signal.SIGINT)
    assert coordinator.wait_exit(10) == 0
    assert not server_pids(coordinator)


def test_a_killed_coordinator_leaves_no_server_behind(launch):
    coordinator = launch()
    coordinator.wait_up()
    assert server_pids(coordinator)

    coordinator.process.kill()
    coordinator.wait_exit(10)

    wait_for(lambda: not server_pids(coordinator), message="servers gone after kill -9")
    # The data survives: a new coordinator starts on the same directory.
    again = launch()
    assert again.data_dir == coordinator.data_dir
    again.wait_up()
    # Its identity, whose heartbeat may still be young, is known free: the embedded
    # database lives in the data directory this process now holds.
    assert "taken over from a coordinator that did not stop cleanly" in again.log()


def test_sigusr1_logs_every_thread(launch):
    coordinator = launch()
    coordinator.wait_up()
    coordinator.process.send_signal(signal.SIGUSR1)

    def complete_dump() -> list[dict[str, Any]]:
        records = coordinator.log_records()
        header = [r for r in records if r["msg"].startswith("thread dump: ")]
        stacks = [r for r in records if "stack" in r]
        if header and len(stacks) >= int(header[0]["msg"].split()[2]):
            return stacks
        return []

    records = wait_for(complete_dump, message="every thread's stack in the log")
    threads = {r["dump_thread"] for r in records}
    assert {"MainThread", "supervisor", "http"} <= threads
    assert any(name.startswith("service_health#") for name in threads)
    assert coordinator.process.poll() is None


def test_restart_intensity_exceeded_exits_non_zero(launch):
    coordinator = launch(SUPERVISOR_MAX_RESTARTS="0")
    coordinator.wait_up()
    requests.post(f"{coordinator.url}/drills/actors/service_health/crash", headers=AUTH, timeout=5)
    assert coordinator.wait_exit(15) == 3
    assert "restart intensity exceeded" in coordinator.log()
    assert not server_pids(coordinator)


def test_a_second_coordinator_on_the_same_data_dir_is_refused(launch):
    first = launch()
    first.wait_up()
    second = launch()
    assert second.wait_exit(30) == 1
    assert "is in use by pid" in second.log()
    assert first.process.poll() is None


def test_one_process_per_identity_and_a_lost_identity_exits_4(launch, redis_server, postgres):
    instance = f"process-{uuid.uuid4().hex[:10]}"
    shared = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": postgres.dsn,
        # Beside other tests' coordinators on the session's database.
        "COORDINATOR_INSTANCES": "cluster",
    }
    first = launch("one", "--paper", COORDINATOR_INSTANCE=instance, **shared)
    assert first.wait_up()
    # Another data directory, the same identity on the same database: refused.
    second = launch("two", "--paper", COORDINATOR_INSTANCE=instance, **shared)
    assert second.wait_exit(60) == 1
    refusal = second.log()
    assert f"instance {instance!r} is held by a live coordinator" in refusal
    assert f"pid {first.process.pid}" in refusal and "last heartbeat" in refusal
    assert "Traceback" not in refusal
    assert first.process.poll() is None

    # Another process took the identity over (this one was thought dead): it stops.
    conn = psycopg2.connect(postgres.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE coordinator_instances SET incarnation = %s, host = 'box-3', pid = 33"
                " WHERE instance = %s",
                (str(uuid.uuid4()), instance),
            )
    finally:
        conn.close()
    assert first.wait_exit(30) == 4
    critical = [r["msg"] for r in first.log_records() if r["level"] == "critical"]
    assert any("host box-3, pid 33" in message for message in critical), critical


def test_a_second_lone_coordinator_beside_a_live_one_exits_1_with_one_line_saying_why(
    launch, redis_server, own_postgres
):
    """COORDINATOR_INSTANCES=single (the default) leads without a lease: a second one on
    the same database is refused at start, before any actor that trades, and says why on
    one line (its own database: another test's coordinator may be live on the
    session's)."""
    shared = {"REDIS_URL": redis_server.url, "DATABASE_URL": own_postgres.dsn}
    first = launch("one", "--paper", COORDINATOR_INSTANCE="alone-1", **shared)
    assert first.wait_up()
    assert requests.get(first.url + "/status", timeout=5).json()["instances"] == "single"
    second = launch("two", "--paper", COORDINATOR_INSTANCE="alone-2", **shared)
    assert second.wait_exit(60) == 1
    assert "Traceback" not in second.log()
    (refusal,) = [r for r in second.log_records() if r["level"] == "critical"]
    message = refusal["msg"]
    assert "\n" not in message
    assert message.startswith("could not start: ")
    assert "instance 'alone-2' runs alone (COORDINATOR_INSTANCES=single)" in message
    assert "instance 'alone-1' (single) is live" in message
    assert f"pid {first.process.pid}" in message
    assert "set COORDINATOR_INSTANCES=cluster on every instance" in message
    # Refused before anything that trades: no actor of the second ever started.
    assert not [r for r in second.log_records() if r["msg"].startswith("PAPER TRADING")]
    assert first.process.poll() is None
    assert requests.get(first.url + "/status", timeout=5).json()["role"] == "leader"


def test_bad_config_exits_2_before_starting_anything(launch):
    coordinator = launch(SIGNAL_TIMEOUT="soon")
    assert coordinator.wait_exit(30) == 2
    assert "SIGNAL_TIMEOUT='soon'" in coordinator.log()
    assert not coordinator.data_dir.exists()


def test_taken_port_is_a_clear_start_failure(launch):
    first = launch()
    first.wait_up()
    second = launch("other", COORDINATOR_PORT=str(first.port))
    assert second.wait_exit(60) == 1
    assert f"cannot listen on 127.0.0.1:{first.port}" in second.log()
    wait_for(lambda: not server_pids(second), message="no server left by the failed start")


def test_exit_is_within_ten_seconds_even_with_a_hung_actor(launch):
    coordinator = launch(SUPERVISOR_LIVENESS_TIMEOUT="60", SUPERVISOR_STOP_TIMEOUT="2")
    coordinator.wait_up()
    requests.post(
        f"{coordinator.url}/drills/actors/service_health/hang?seconds=60", headers=AUTH, timeout=5
    )
    started = time.monotonic()
    coordinator.process.send_signal(signal.SIGTERM)
    assert coordinator.wait_exit(10) == 0
    assert time.monotonic() - started < 10
    assert "did not stop within" in coordinator.log()


def test_embedded_run_is_paper_said_once_at_start_and_roottradings_debug_stays_quiet(launch):
    coordinator = launch(LOG_LEVEL="DEBUG")
    health = coordinator.wait_up()
    assert health["paper"] is True and health["mode"] == "paper"
    assert requests.get(coordinator.url + "/status", timeout=2).json()["paper"] is True
    coordinator.process.send_signal(signal.SIGTERM)
    assert coordinator.wait_exit(10) == 0
    records = coordinator.log_records()
    banners = [r for r in records if r["msg"].startswith("PAPER TRADING")]
    assert len(banners) == 1 and banners[0]["level"] == "warning"
    assert "no real money" in banners[0]["msg"]
    assert "nothing configured" in banners[0]["msg"]
    # LOG_LEVEL=DEBUG (RootTrading's example env) turns on this service's own DEBUG
    # lines, not the libraries' nor the per-message ones.
    assert not [r for r in records if r["logger"].startswith(("pykka", "coordinator.flow"))]


def test_run_paper_with_configured_redis_and_postgresql(launch, redis_server, postgres):
    coordinator = launch(
        "data",
        "--paper",
        REDIS_URL=redis_server.url,
        DATABASE_URL=postgres.dsn,
        COORDINATOR_INSTANCES="cluster",
    )
    health = coordinator.wait_up()
    assert health["paper"] is True and health["mode"] == "paper"
    coordinator.process.send_signal(signal.SIGTERM)
    assert coordinator.wait_exit(10) == 0
    banners = [r for r in coordinator.log_records() if r["msg"].startswith("PAPER TRADING")]
    assert len(banners) == 1
    assert "PAPER_TRADING=true from command line" in banners[0]["msg"]


def test_run_paper_with_a_trader_url_exits_2_naming_both(launch):
    coordinator = launch("data", "--paper", TRADER_API_URL="http://trader:5002")
    assert coordinator.wait_exit(30) == 2
    log = coordinator.log()
    assert "PAPER_TRADING=true (command line)" in log
    assert "TRADER_API_URL=http://trader:5002 (environment)" in log
