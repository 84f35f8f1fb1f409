"""The catch-up from ``trading_signals``: due on the leader at each election and each
time the signal subscription comes back, never on a follower; the intake alone, on a
real PostgreSQL holding the aggregator's table."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.actors.intake_catch_up import (
    CATCH_UP_RETRY,
    HEALTH_BARRIER,
    CatchUpCause,
    CatchUpPlan,
)
from coordinator.actors.signal_intake import SignalIntake
from coordinator.clock import ManualClock
from coordinator.cluster.fencing import LeaseToken
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.messages.health import GetHealthSnapshot
from coordinator.messages.leadership import LeaderElected, LeadershipLost
from coordinator.messages.pipeline import (
    GetIntakeSnapshot,
    IntakeLink,
    IntakeLinkChanged,
    SubmitSignal,
)
from tests.actors.test_signal_intake import store_writer
from tests.aggregator_table import create_trading_signals, insert_consensus_row
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

LEASE = "coordinator-leader"


def token(generation: int) -> LeaseToken:
    return LeaseToken(LEASE, "here", generation)


# --- the plan ---------------------------------------------------------------------------


def test_the_plan_catches_up_at_each_new_election_and_each_return_of_the_link_while_leading():
    plan = CatchUpPlan()
    assert plan.subscription(True) is None, "a follower does not catch up"
    assert plan.due(CatchUpCause.RETRY) is None
    assert plan.elected(token(1)) is CatchUpCause.ELECTED
    assert plan.elected(token(1)) is None, "the same election told again"
    assert plan.subscription(False) is None
    assert plan.subscription(True) is CatchUpCause.RECONNECTED
    assert plan.due(CatchUpCause.RETRY) is CatchUpCause.RETRY
    plan.lost(token(0))
    assert plan.leading, "a late loss of an older lead ends nothing"
    plan.lost(token(1))
    assert plan.subscription(True) is None and plan.due(CatchUpCause.RETRY) is None
    assert plan.elected(token(2)) is CatchUpCause.ELECTED


class CatchUpPlanModel(RuleBasedStateMachine):
    """Whatever the order of elections, losses and link changes: a catch-up only while
    leading, and one at every new lead and every return of the link while leading."""

    def __init__(self) -> None:
        super().__init__()
        self.plan = CatchUpPlan()
        self.lead: int | None = None

    @rule(generation=st.integers(1, 3))
    def elected(self, generation: int) -> None:
        cause = self.plan.elected(token(generation))
        assert (cause is CatchUpCause.ELECTED) == (self.lead != generation)
        self.lead = generation

    @rule(generation=st.integers(1, 3))
    def lost(self, generation: int) -> None:
        self.plan.lost(token(generation))
        if self.lead == generation:
            self.lead = None

    @rule(connected=st.booleans())
    def link(self, connected: bool) -> None:
        cause = self.plan.subscription(connected)
        assert (cause is CatchUpCause.RECONNECTED) == (connected and self.lead is not None)

    @rule(cause=st.sampled_from([CatchUpCause.RETRY, CatchUpCause.RESTARTED]))
    def asked(self, cause: CatchUpCause) -> None:
        assert (self.plan.due(cause) is cause) == (self.lead is not None)

    @invariant()
    def leads_as_told(self) -> None:
        assert self.plan.leading == (self.lead is not None)


TestCatchUpPlanModel = CatchUpPlanModel.TestCase


# --- the intake ------------------------------------------------------------------------


@pytest.fixture
def intake(own_postgres: EmbeddedPostgres) -> Iterator[Solo]:
    create_trading_signals(own_postgres.dsn)
    clock = ManualClock()
    config = load_config({"VALIDATION_THREADS": "1"})
    services = make_services(
        config, redis_url="redis://unused", database_dsn=own_postgres.dsn, clock=clock
    )
    stand_ins = {"store_writer": store_writer, "validator-0": None}
    with solo(SignalIntake, "signal_intake", services, clock=clock, stand_ins=stand_ins) as s:
        yield s


def link(up: bool) -> IntakeLinkChanged:
    return IntakeLinkChanged(link=IntakeLink.PUBSUB, connected=up, error=None if up else "gone")


def submitted(intake: Solo, row_id: int) -> SubmitSignal:
    return intake.told("validator-0", SubmitSignal, lambda m: m.signal.signal_id == f"db:{row_id}")


def test_rows_are_taken_in_at_each_election_and_each_reconnect_while_leading(
    intake: Solo, own_postgres: EmbeddedPostgres
) -> None:
    dsn = own_postgres.dsn
    first = insert_consensus_row(dsn, "ETHUSDC")
    intake.tell(link(True))
    intake.tell(LeaderElected(token=token(1)))
    assert submitted(intake, first).source == "database"

    intake.tell(link(False))
    second = insert_consensus_row(dsn, "SOLUSDC")
    intake.tell(link(True))
    assert submitted(intake, second).redelivered, "it may have been taken in before"

    # Neither the same election told again nor a link's return while following reads.
    intake.tell(LeaderElected(token=token(1)))
    intake.tell(LeadershipLost(token=token(1), reason="expired"))
    third = insert_consensus_row(dsn, "XRPUSDC")
    intake.tell(link(False))
    intake.tell(link(True))
    intake.tell(LeaderElected(token=token(2)))
    submitted(intake, third)
    # Three reads: one row, then two, then three; each row admitted once, the rest
    # recognised as duplicates. A read more would have counted its rows too.
    counts = intake.ask(GetIntakeSnapshot())
    assert (counts.received, counts.admitted, counts.duplicates) == (6, 3, 3)


def test_a_read_that_failed_is_tried_again_while_leading(
    intake: Solo, own_postgres: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = own_postgres.dsn
    # The election's read done before PostgreSQL goes: only the next read fails.
    before = insert_consensus_row(dsn, "SOLUSDC")
    intake.tell(LeaderElected(token=token(1)))
    submitted(intake, before)
    own_postgres.stop()
    intake.tell(link(False))
    intake.tell(link(True))
    wait_for(
        lambda: any("trading_signals not read" in r.getMessage() for r in caplog.records),
        message="the failed read logged",
    )
    # Answered after the failure's handling, which set the retry's alarm.
    assert intake.ask(GetIntakeSnapshot()).received == 1
    own_postgres.start()
    row = insert_consensus_row(dsn, "ETHUSDC")

    intake.clock.advance(CATCH_UP_RETRY)
    assert submitted(intake, row).signal.symbol == "ETHUSDC"


def test_rows_caught_up_wait_for_service_health_to_have_heard_the_link_return(
    own_postgres: EmbeddedPostgres,
) -> None:
    """On a reconnection ServiceHealth hears the link come back with the intake; the
    rows' signals go to the Validators only once it has handled that (its trading state,
    Redis up, then reaches them first). A ServiceHealth slow to get there holds them."""
    create_trading_signals(own_postgres.dsn)
    clock = ManualClock()
    config = load_config({"VALIDATION_THREADS": "1"})
    services = make_services(
        config, redis_url="redis://unused", database_dsn=own_postgres.dsn, clock=clock
    )
    busy = threading.Event()
    busy.set()

    def service_health(message: object) -> None:
        if isinstance(message, GetHealthSnapshot):
            assert busy.wait(timeout=HEALTH_BARRIER + 5)

    stand_ins = {
        "store_writer": store_writer,
        "validator-0": None,
        "service_health": service_health,
    }
    with solo(SignalIntake, "signal_intake", services, clock=clock, stand_ins=stand_ins) as s:
        s.tell(LeaderElected(token=token(1)))
        s.told("service_health", GetHealthSnapshot)  # the election's catch-up: no row

        busy.clear()  # ServiceHealth busy from here
        row = insert_consensus_row(own_postgres.dsn, "ETHUSDC")
        s.tell(link(False))
        s.tell(link(True))
        s.told("service_health", GetHealthSnapshot)
        # The rows are read, and wait: no signal has gone to the Validator.
        assert not any(isinstance(m, SubmitSignal) for m in s.taken("validator-0"))
        busy.set()
        assert submitted(s, row).signal.symbol == "ETHUSDC"
