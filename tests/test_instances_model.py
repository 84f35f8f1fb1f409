"""The instance registry against a model, on a real PostgreSQL: processes of one
identity start (claim), beat, stop cleanly, and are paused past the liveness, in any
order. A claim wins only over no holder, a stopped one or a silent one; a process that
lost the identity never beats it again; the row always names the last winner."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from coordinator.infra.instances import IdentityInUse, IdentityLost, InstanceRegistry
from coordinator.infra.store import apply_migrations

PROCESSES = 3


class RegistryModel(RuleBasedStateMachine):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.instance = f"model-{uuid.uuid4().hex[:12]}"
        self.running: dict[int, InstanceRegistry] = {}
        """The processes started (their claim won) and not stopped yet."""
        self.holder: int | None = None
        self.holder_incarnation: str | None = None
        self.stopped = False
        self.silent = False
        """The holder has not beaten for longer than the liveness."""
        self.admin = psycopg2.connect(dsn)
        self.admin.autocommit = True

    def teardown(self) -> None:
        for registry in self.running.values():
            registry.close()
        self.admin.close()

    @rule(process=st.integers(0, PROCESSES - 1))
    def start(self, process: int) -> None:
        if process in self.running:
            self.running.pop(process).close()  # killed: restarted as a new incarnation
        registry = InstanceRegistry(
            self.dsn,
            instance=self.instance,
            host="model",
            pid=process,
            data_dir="/model",
            liveness=5.0,
        )
        free = self.holder is None or self.stopped or self.silent
        try:
            earlier = registry.claim()
        except IdentityInUse as refused:
            registry.close()
            assert not free, "refused a free identity"
            assert f"pid {self.holder}," in str(refused)
            return
        assert free, f"won over the live holder {self.holder}"
        if self.holder_incarnation is None:
            assert earlier is None
        else:
            assert earlier is not None and earlier.incarnation == self.holder_incarnation
        self.running[process] = registry
        self.holder, self.holder_incarnation = process, registry.incarnation
        self.stopped = self.silent = False

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def beat(self, data: Any) -> None:
        process = data.draw(st.sampled_from(sorted(self.running)))
        registry = self.running[process]
        ours = registry.incarnation == self.holder_incarnation and not self.stopped
        try:
            registry.heartbeat()
        except IdentityLost:
            assert not ours, "our own row refused our heartbeat"
            assert registry.lost is not None
            self.running.pop(process).close()  # it stops acting
            return
        assert ours, f"process {process} beat an identity taken over"
        self.silent = False

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def stop_cleanly(self, data: Any) -> None:
        process = data.draw(st.sampled_from(sorted(self.running)))
        registry = self.running.pop(process)
        ours = registry.incarnation == self.holder_incarnation and not self.stopped
        assert registry.release() is ours
        registry.close()
        if ours:
            self.stopped = True

    @precondition(lambda self: self.holder is not None)
    @rule()
    def pause_past_the_liveness(self) -> None:
        with self.admin.cursor() as cur:
            cur.execute(
                "UPDATE coordinator_instances SET heartbeat_at = clock_timestamp()"
                " - interval '60 seconds' WHERE instance = %s",
                (self.instance,),
            )
        self.silent = True

    @invariant()
    def the_row_names_the_last_winner(self) -> None:
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT incarnation, stopped_at FROM coordinator_instances WHERE instance = %s",
                (self.instance,),
            )
            row = cur.fetchone()
        if self.holder_incarnation is None:
            assert row is None
            return
        assert row is not None and str(row[0]) == self.holder_incarnation
        assert (row[1] is not None) is self.stopped


def test_the_registry_follows_its_model(postgres):
    apply_migrations(postgres.dsn)
    run_state_machine_as_test(
        lambda: RegistryModel(postgres.dsn),
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
