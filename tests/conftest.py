"""Real servers for the whole session: PostgreSQL and Redis on free ports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis
from coordinator.infra.store import KillSwitchStore, apply_migrations
from tests.http_stub import StubService


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), durable=False).start()
    apply_migrations(server.dsn)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test alone, which it may stop and start again."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False).start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test alone, which it may stop and start again."""
    server = EmbeddedPostgres(tmp_path / "pg", durable=False).start()
    apply_migrations(server.dsn)
    yield server
    server.stop()


@pytest.fixture
def clear_kill_switch(postgres: EmbeddedPostgres) -> None:
    """The session's database starts every test with trading not halted."""
    store = KillSwitchStore(postgres.dsn, timeout=2)
    store.save(halted=False, reason="", by="test setup", at=time.time())
    store.close()


@pytest.fixture
def trader() -> Iterator[StubService]:
    service = StubService("trader").start()
    yield service
    service.stop()


@pytest.fixture
def portfolio() -> Iterator[StubService]:
    service = StubService("portfolio").start()
    yield service
    service.stop()
