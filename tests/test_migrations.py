"""The schema migrations as shipped: numbered once each, in order."""

from __future__ import annotations

from coordinator.infra.store import load_migrations


def test_the_migrations_are_numbered_once_each_in_order():
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_the_leases_are_migration_9():
    leases = {m.version: m.name for m in load_migrations()}[9]
    assert leases == "leases"
