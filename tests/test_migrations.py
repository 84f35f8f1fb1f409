"""The schema migrations: numbered once each, applied once each whatever the order they
arrive in (a number left for a change made beside this one may land later)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from coordinator.infra.store import Migration, StoreError, apply_migrations, load_migrations


def test_the_migrations_are_numbered_once_each_in_order():
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_the_leases_are_migration_9():
    leases = {m.version: m.name for m in load_migrations()}[9]
    assert leases == "leases"


@pytest.fixture
def database(postgres) -> Iterator[str]:
    """An empty database of this test alone, on the session's server."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield postgres.dsn.rsplit("/", 1)[0] + "/" + name
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def _table(version: int) -> Migration:
    return Migration(version, f"table_{version}", f"CREATE TABLE t{version} (x int)")


def test_a_number_that_lands_later_is_applied_then(database):
    assert apply_migrations(database, [_table(1), _table(3)]) == [1, 3]
    assert apply_migrations(database, [_table(1), _table(2), _table(3)]) == [2]
    assert apply_migrations(database, [_table(1), _table(2), _table(3)]) == []


def test_a_database_with_a_migration_this_version_lacks_is_refused(database):
    assert apply_migrations(database, [_table(1), _table(2), _table(3)]) == [1, 2, 3]
    with pytest.raises(StoreError, match=r"migrations \[2\] that this version does not know"):
        apply_migrations(database, [_table(1), _table(3)])
