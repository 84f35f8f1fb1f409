"""SignalIntake alone, with stand-ins for the StoreWriter and the Validator: steps 1-3,
the hand-over to the symbol's Validator, and a dedup window that passes with the clock."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from coordinator.actors.signal_intake import SignalIntake
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.messages.pipeline import (
    Admission,
    GetIntakeSnapshot,
    GetUndecided,
    RawSignal,
    RecordDecision,
    RecordSignal,
    SubmitSignal,
    UndecidedSignals,
)
from tests.pipeline import signal_payload
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

WINDOW = 600.0


def store_writer(message: object) -> object:
    if isinstance(message, GetUndecided):
        return UndecidedSignals(signals=(), unwritten=b"")
    return None


@pytest.fixture
def intake(own_postgres: EmbeddedPostgres) -> Iterator[Solo]:
    clock = ManualClock()
    config = load_config({"VALIDATION_THREADS": "1", "DEDUP_WINDOW": str(WINDOW)})
    services = make_services(
        config, redis_url="redis://unused", database_dsn=own_postgres.dsn, clock=clock
    )
    stand_ins = {"store_writer": store_writer, "validator-0": None}
    with solo(SignalIntake, "signal_intake", services, clock=clock, stand_ins=stand_ins) as s:
        yield s


def raw(intake: Solo, payload: dict | bytes) -> RawSignal:
    return RawSignal(
        payload=payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
        source="http",
        received_at=intake.clock.time(),
        received_mono=intake.clock.monotonic(),
    )


def test_a_signal_is_stored_as_received_and_handed_to_its_validator(intake: Solo) -> None:
    payload = signal_payload(timestamp_ms=int(intake.clock.time() * 1000))
    admission: Admission = intake.ask(raw(intake, payload))
    assert admission.status == "accepted"
    stored = intake.told("store_writer", RecordSignal)
    submitted = intake.told("validator-0", SubmitSignal)
    assert stored.signal_id == submitted.signal.signal_id == admission.signal_id
    assert [c.step for c in submitted.checks] == ["parse", "freshness", "back_pressure"]
    assert intake.ask(GetIntakeSnapshot()).in_flight == 1


def test_bad_json_and_a_stale_signal_are_decided_here(intake: Solo) -> None:
    assert intake.ask(raw(intake, b"{nope")).reason == "invalid_signal"
    assert intake.told("store_writer", RecordDecision).decision.reason == "invalid_signal"
    stale = signal_payload(timestamp_ms=int((intake.clock.time() - 3600) * 1000))
    assert intake.ask(raw(intake, stale)).status == "rejected"
    rejected = intake.told("store_writer", RecordDecision).decision
    assert (rejected.outcome, rejected.reason) == ("rejected", "stale_signal")
    assert intake.ask(GetIntakeSnapshot()).in_flight == 0


def test_an_id_is_a_duplicate_until_the_clock_passes_the_dedup_window(intake: Solo) -> None:
    def send() -> str:
        now_ms = int(intake.clock.time() * 1000)
        return intake.ask(
            raw(intake, signal_payload(consensus_id="c1", timestamp_ms=now_ms))
        ).status

    assert send() == "accepted"
    assert send() == "duplicate"
    intake.clock.advance(WINDOW - 5)
    assert send() == "duplicate"
    # The window is swept on the intake's 5 s tick: past it, the id is new again.
    intake.clock.advance(10.0)
    wait_for(lambda: send() == "accepted", message="the id forgotten")
