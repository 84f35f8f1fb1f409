"""The intake's duplicate window rebuilt at a start from real PostgreSQL: every id the
store holds within the window, another instance's too, and those not written yet, each
forgotten at its own time; with PostgreSQL down, the decisions the process knows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coordinator.actors.dedup_handover import duplicate_window, rebuild_window
from coordinator.clock import ManualClock
from coordinator.compact_ids import id_digest, pack_sorted_digests
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.runtime import Services
from tests.stored_signals import received_records
from tests.trees import make_services

HORIZON = 600.0


def services_on(postgres: EmbeddedPostgres, tmp_path: Path, clock: ManualClock) -> Services:
    config = load_config({"COORDINATOR_DATA_DIR": str(tmp_path / "data")})
    return make_services(config, redis_url="redis://unused", database_dsn=postgres.dsn, clock=clock)


def stored(postgres: EmbeddedPostgres, times: dict[str, float]) -> None:
    store = PipelineStore(postgres.dsn, timeout=5.0)
    try:
        store.write(received_records(times))
    finally:
        store.close()


def test_every_stored_and_unwritten_id_is_held_and_forgotten_at_its_own_time(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Stored ids count from when they were received, not from the restart: those seen
    nine minutes before it (a generation here) are forgotten a minute after, within a
    ten-minute window; those not written yet count from the restart."""
    clock = ManualClock()
    now = clock.time()
    stored(
        own_postgres,
        {
            "long-ago": now - HORIZON - 5,
            "nine-minutes-ago": now - HORIZON + 60,
            "by-another-instance": now - HORIZON + 61,
        },
    )
    window = duplicate_window(HORIZON)
    services = services_on(own_postgres, tmp_path, clock)
    unwritten = pack_sorted_digests([id_digest("batched")])
    rebuild_window(window, services, unwritten, now=now, horizon=HORIZON)
    assert "long-ago" not in window
    assert all(s in window for s in ("nine-minutes-ago", "by-another-instance", "batched"))
    assert window.held() == 3
    window.forget_older_than(now + 61)
    assert "nine-minutes-ago" in window
    window.forget_older_than(now + 63)
    assert "nine-minutes-ago" not in window and "by-another-instance" not in window
    assert "batched" in window


def test_with_postgresql_down_the_decisions_of_the_process_stand_in(
    own_postgres: EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    services = services_on(own_postgres, tmp_path, clock)
    services.decided.add("decided-here")
    own_postgres.stop()
    window = duplicate_window(HORIZON)
    try:
        with caplog.at_level(logging.ERROR):
            rebuild_window(window, services, b"", now=clock.time(), horizon=HORIZON)
    finally:
        own_postgres.start()
    assert "decided-here" in window
    assert "never-seen" not in window
    assert any("could not read the ids seen within" in r.getMessage() for r in caplog.records)
