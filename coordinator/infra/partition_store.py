"""What the PartitionKeeper reads and writes: the partitions' leases (the lease store's
own calls) and the cluster's live instances, from the instance registry."""

from __future__ import annotations

from typing import Any

from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.store import OwnConnectionStore

__all__ = ["DecidedFilter", "PartitionStore"]


class PartitionStore(LeaseStore):
    application = "coordinator-partitions"

    def beat_and_list(self, cluster: str, instance: str, holder: str, liveness: float) -> list[str]:
        """Say this instance is a member of ``cluster`` now, and list the members whose
        beat is younger than ``liveness`` (this one among them)."""

        def work(cur: Any) -> list[str]:
            cur.execute(
                "INSERT INTO coordinator_partition_members"
                " (cluster, instance, holder, heartbeat_at)"
                " VALUES (%s, %s, %s, clock_timestamp())"
                " ON CONFLICT (cluster, instance) DO UPDATE"
                " SET holder = EXCLUDED.holder, heartbeat_at = EXCLUDED.heartbeat_at",
                (cluster, instance, holder),
            )
            cur.execute(
                "SELECT instance FROM coordinator_partition_members"
                " WHERE cluster = %s"
                " AND heartbeat_at > clock_timestamp() - make_interval(secs => %s)"
                " ORDER BY instance",
                (cluster, liveness),
            )
            return [row[0] for row in cur.fetchall()]

        live: list[str] = self._run(work)
        return live

    def leave(self, cluster: str, instance: str, holder: str) -> None:
        """A clean stop: no longer a member (the others re-share at their next read)."""

        def work(cur: Any) -> None:
            cur.execute(
                "DELETE FROM coordinator_partition_members"
                " WHERE cluster = %s AND instance = %s AND holder = %s",
                (cluster, instance, holder),
            )

        self._run(work)


class DecidedFilter(OwnConnectionStore):
    """Which of some signals have a stored decision: an entry taken over from another
    instance's pending ones may have been decided there, its acknowledgement not yet
    made."""

    application = "coordinator-partition-reader"
    autocommit = True

    def decided(self, signal_ids: list[str]) -> set[str]:
        if not signal_ids:
            return set()

        def work(cur: Any) -> set[str]:
            cur.execute(
                "SELECT signal_id FROM coordinator_decisions WHERE signal_id = ANY(%s)",
                (signal_ids,),
            )
            return {row[0] for row in cur.fetchall()}

        found: set[str] = self._run(work)
        return found
