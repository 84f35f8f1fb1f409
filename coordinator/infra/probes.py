"""Health probes of the four dependencies. Each raises ProbeFailed with a short reason.

A probe object is used by one thread at a time (ServiceHealth never runs two probes
of one dependency at once) and keeps its connection between calls.
"""

from __future__ import annotations

from typing import Protocol

import psycopg2
import redis
import requests

from coordinator.config import redact_url
from coordinator.errors import CoordinatorError
from coordinator.infra.store import (
    OwnConnectionStore,
    StoreError,
    first_line,
    without_session_settings,
)

__all__ = ["HttpHealthProbe", "PostgresProbe", "Probe", "ProbeFailed", "RedisProbe"]


class ProbeFailed(CoordinatorError):
    """The dependency did not answer correctly in time."""


class Probe(Protocol):
    target: str
    """Where the dependency is reached, with secrets hidden."""

    def __call__(self) -> None: ...

    def close(self) -> None: ...


class HttpHealthProbe:
    """``GET {base_url}/health`` must answer 2xx within the timeout, and not report its
    database in error."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/health"
        self.target = redact_url(self.url)
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False

    def __call__(self) -> None:
        try:
            response = self._session.get(self.url, timeout=(self._timeout, self._timeout))
        except requests.Timeout as exc:
            raise ProbeFailed(f"timeout after {self._timeout:g} s") from exc
        except requests.RequestException as exc:
            raise ProbeFailed(f"unreachable: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise ProbeFailed(f"GET /health answered {response.status_code}")
        # RootTrading's Portfolio answers 200 "ok" with its database down, and says so
        # only in this field: its balances are then stale or failing.
        try:
            body = response.json()
        except ValueError:
            return
        database = body.get("database") if isinstance(body, dict) else None
        if isinstance(database, str) and database.lower().startswith("error"):
            raise ProbeFailed(f"GET /health: database: {database.strip().splitlines()[0][:160]}")

    def close(self) -> None:
        self._session.close()


class RedisProbe:
    """``PING`` must answer within the timeout."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.target = redact_url(url)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )

    def __call__(self) -> None:
        try:
            if not self._client.ping():
                raise ProbeFailed("PING was not answered with PONG")
        except redis.TimeoutError as exc:
            raise ProbeFailed(f"timeout: {exc}") from exc
        except redis.RedisError as exc:
            raise ProbeFailed(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


class PostgresProbe(OwnConnectionStore):
    """``SELECT 1`` must answer within the timeout; the connection is remade after a failure."""

    application = "coordinator-probe"
    autocommit = True

    def __init__(self, dsn: str, *, timeout: float) -> None:
        super().__init__(dsn, timeout=timeout)
        self.target = _describe_dsn(dsn)

    def __call__(self) -> None:
        try:
            with self._connection().cursor() as cur:
                cur.execute("SELECT 1")
                if cur.fetchone() != (1,):
                    raise ProbeFailed("SELECT 1 did not return 1")
        except StoreError as exc:
            self.close()
            raise ProbeFailed(str(exc)) from exc
        except psycopg2.Error as exc:
            self.close()
            raise ProbeFailed(first_line(exc)) from exc


def _describe_dsn(dsn: str) -> str:
    # The session marks (paper, instance) say nothing of where the server is.
    dsn = without_session_settings(dsn)
    if "://" in dsn:
        return redact_url(dsn)
    parts = [p for p in dsn.split() if not p.startswith("password=")]
    return " ".join(parts)
