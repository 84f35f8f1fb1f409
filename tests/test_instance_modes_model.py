"""The instance registry's modes against a model, on a real PostgreSQL of its own:
identities start alone or in a cluster, stop cleanly and are paused past the liveness,
in any order. A claim wins only when its own identity is free and no other live
instance runs alone, nor any at all when it runs alone; so a live instance that runs
alone is always the only live one."""

from __future__ import annotations

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

from coordinator.config.identity import InstanceMode
from coordinator.infra.instances import IdentityInUse, InstanceBeside, InstanceRegistry

IDENTITIES = ("a", "b", "c")


class ModesModel(RuleBasedStateMachine):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.admin = psycopg2.connect(dsn)
        self.admin.autocommit = True
        with self.admin.cursor() as cur:
            cur.execute("DELETE FROM coordinator_instances")
        self.running: dict[str, InstanceRegistry] = {}
        self.live: dict[str, InstanceMode] = {}
        """The identities whose holder runs and beats, and how it runs."""
        self.held: dict[str, str] = {}
        """The incarnation each identity's row names, while not stopped (a paused one's
        too, until another takes it over)."""

    def teardown(self) -> None:
        for registry in self.running.values():
            registry.close()
        self.admin.close()

    @rule(identity=st.sampled_from(IDENTITIES), mode=st.sampled_from(InstanceMode))
    def start(self, identity: str, mode: InstanceMode) -> None:
        registry = InstanceRegistry(
            self.dsn,
            instance=identity,
            host="model",
            pid=1,
            data_dir=f"/model/{identity}",
            liveness=5.0,
            mode=mode,
        )
        others = {i: m for i, m in self.live.items() if i != identity}
        alone = [i for i, m in others.items() if InstanceMode.SINGLE in (mode, m)]
        try:
            registry.claim()
        except InstanceBeside as refused:
            registry.close()
            assert alone, f"{identity} ({mode}) refused beside {others}"
            assert refused.other.instance in alone
            return
        except IdentityInUse:
            registry.close()
            assert identity in self.live and not alone, "refused for its own identity"
            return
        assert not alone, f"{identity} ({mode}) started beside {alone}"
        assert identity not in self.live, f"{identity} won over its live holder"
        if identity in self.running:
            self.running.pop(identity).close()
        self.running[identity] = registry
        self.live[identity] = mode
        self.held[identity] = registry.incarnation

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def stop_cleanly(self, data: Any) -> None:
        identity = data.draw(st.sampled_from(sorted(self.running)))
        registry = self.running.pop(identity)
        ours = self.held.get(identity) == registry.incarnation
        assert registry.release() is ours
        registry.close()
        if ours:
            del self.held[identity]
            self.live.pop(identity, None)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def pause_past_the_liveness(self, data: Any) -> None:
        identity = data.draw(st.sampled_from(sorted(self.live)))
        with self.admin.cursor() as cur:
            cur.execute(
                "UPDATE coordinator_instances SET heartbeat_at = clock_timestamp()"
                " - interval '60 seconds' WHERE instance = %s",
                (identity,),
            )
        del self.live[identity]

    @invariant()
    def one_that_runs_alone_is_the_only_live_one(self) -> None:
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT instance, mode FROM coordinator_instances WHERE stopped_at IS NULL"
                " AND heartbeat_at > clock_timestamp() - interval '5 seconds'"
            )
            rows = dict(cur.fetchall())
        assert rows == {i: m.value for i, m in self.live.items()}
        if InstanceMode.SINGLE in rows.values():
            assert len(rows) == 1, rows


def test_the_modes_follow_their_model(own_postgres):
    run_state_machine_as_test(
        lambda: ModesModel(own_postgres.dsn),
        settings=settings(
            max_examples=40,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
