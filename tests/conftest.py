"""Real servers for the whole session: PostgreSQL and Redis on free ports."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from coordinator.infra.embedded import EmbeddedPostgres, EmbeddedRedis
from coordinator.infra.store import KillSwitchStore, apply_migrations
from tests.http_stub import StubService


@pytest.fixture(scope="session")
def postgres(
    tmp_path_factory: pytest.TempPathFactory, postgres_template: Path
) -> Iterator[EmbeddedPostgres]:
    server = postgres_from(postgres_template, tmp_path_factory.mktemp("pg") / "pg")
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


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped cluster with the schema, made once per worker: the session's server
    and each test's own start on a copy of it (a fifth of a second) instead of an
    initdb each (over two)."""
    data_dir = tmp_path_factory.mktemp("pg-template")
    server = EmbeddedPostgres(data_dir, durable=False).start()
    try:
        apply_migrations(server.dsn)
    finally:
        server.stop()
    return data_dir


def postgres_from(template: Path, data_dir: Path) -> EmbeddedPostgres:
    """A server started on a copy of the template, its schema already there."""
    # -a: the files stay the server user's when the tests run as root.
    subprocess.run(["cp", "-a", str(template), str(data_dir)], check=True)
    return EmbeddedPostgres(data_dir, durable=False).start()


@pytest.fixture
def own_postgres(tmp_path: Path, postgres_template: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test alone, which it may stop and start again."""
    server = postgres_from(postgres_template, tmp_path / "pg")
    yield server
    server.stop()


@pytest.fixture
def clear_kill_switch(postgres: EmbeddedPostgres) -> None:
    """``forget_earlier_tests`` on the session's database."""
    forget_earlier_tests(postgres.dsn)


def forget_earlier_tests(dsn: str) -> None:
    """The database starts the next test with trading not halted, with no universe and
    no stops of earlier tests and none of their orders recent enough for a new Ledger to
    lay over its view (each test has a paper exchange of its own)."""
    store = KillSwitchStore(dsn, timeout=2)
    store.save(halted=False, reason="", by="test setup", at=time.time())
    store.close()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM coordinator_stops")
        # An earlier test's universe would be restored at start: its symbols in this
        # test's universe.
        cur.execute("DELETE FROM coordinator_universe_snapshots")
        # Nor its blacklist (an entry ended on a test's own clock is still stored).
        cur.execute("DELETE FROM coordinator_universe_blacklist")
        # A day old, not a day older: a test on its own clock (2027) writes orders dated
        # ahead of now, which a day less would leave recent, laid over every Ledger's view.
        cur.execute(
            "UPDATE coordinator_orders SET created_at = now() - interval '1 day'"
            " WHERE created_at > now() - interval '1 day'"
        )
        # Earlier tests' unsettled orders went to exchanges that are gone: settled here,
        # or a stop of this test would wait on them, and the reconciler judge them.
        cur.execute(
            "UPDATE coordinator_orders SET state = 'rejected',"
            " error = COALESCE(error || '; ', '') || 'settled by the next test''s setup'"
            " WHERE state IN ('pending', 'sent', 'unknown')"
        )
    conn.close()


@pytest.fixture
def pipelines(redis_server, postgres, tmp_path, clear_kill_switch) -> Iterator[Any]:
    """Whole coordinators in this process (see tests.pipeline), stopped after the test.

    ``make(env, wait_active=True, redis_url=..., database_dsn=..., paper=...)``.
    """
    from tests.pipeline import Pipeline
    from tests.waiting import wait_for

    made: list[Pipeline] = []

    def make(
        env: dict[str, str] | None = None, *, wait_active: bool = True, **kwargs: Any
    ) -> Pipeline:
        dsn = kwargs.get("database_dsn", postgres.dsn)
        if dsn != postgres.dsn and "lease" not in kwargs:
            # A database of the test's own, one coordinator at a time: the default
            # mode, single, which goes on through a PostgreSQL outage (on the session's
            # shared database a lone coordinator could be refused beside another test's,
            # and the pipelines run in cluster mode, each leading on a lease of its own).
            env = {"COORDINATOR_INSTANCES": "single", **(env or {})}
        pipeline = Pipeline(
            redis_url=kwargs.pop("redis_url", redis_server.url),
            database_dsn=kwargs.pop("database_dsn", postgres.dsn),
            data_dir=tmp_path / f"data{len(made)}",
            env=env,
            **kwargs,
        )
        made.append(pipeline)
        if wait_active:
            wait_for(
                lambda: (
                    # A 503 (an actor restarting on a loaded machine) is not yet ACTIVE.
                    requests.get(pipeline.url + "/status", timeout=5).json().get("trading_state")
                    == "ACTIVE"
                ),
                timeout=20,
                message="trading ACTIVE",
            )
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop()


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


# --- a real browser ---------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"no headless browser: {', '.join(missing)} missing "
            "(apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,2400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
