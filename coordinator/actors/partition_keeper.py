"""PartitionKeeper: holds the leases of the symbol partitions this instance should own.

Which partitions an instance should own is rendezvous hashing over the live cluster
instances (``coordinator.cluster.partitions``), which every instance computes alike
from the instance registry. Wanting one is not owning it: each partition is a lease in
PostgreSQL, driven by the same pure contender as the leader lease, one per partition,
on the injected clock. A partition this instance should no longer own (another joined)
is first *left*: its stream is no longer read, and its lease is given up once the
intake has no signal of it in flight, so its new owner starts on a partition nobody
decides any more. A partition whose owner died is taken once its lease has lapsed and
the owner has left the registry's live list. What this instance holds goes to the
shared ``PartitionOwnership`` at every change and every tick; signals carry their
partition's token, and their order intents pass its fence in PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pykka

from coordinator.actors.names import ActorName
from coordinator.cluster.fencing import LeaseToken
from coordinator.cluster.lease import (
    Answer,
    Ask,
    Contender,
    Failed,
    LeaseTimings,
    Request,
    StartedLeading,
    Step,
    StoppedLeading,
    answered,
    may_act,
    release,
    tick,
)
from coordinator.cluster.ownership import PartitionOwnership
from coordinator.cluster.partitions import lease_name, wanted_by
from coordinator.infra.partition_store import PartitionStore
from coordinator.infra.store import first_line
from coordinator.messages.partitions import (
    GetBusyPartitions,
    GetPartitions,
    PartitionLeasesAnswered,
    PartitionsSnapshot,
    PartitionTick,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable

__all__ = ["PartitionKeeper", "PartitionSettings"]

logger = logging.getLogger(__name__)

_LEAVE_AT_MOST = 10.0
"""Seconds a partition being left waits for its signals in flight; past that it is given
up all the same (its new owner's fence refuses what this one still claims)."""


@dataclass(frozen=True, slots=True)
class PartitionSettings:
    """The PartitionKeeper's."""

    timings: LeaseTimings
    """The partitions' leases last and are renewed as the leader's."""
    instance: str
    """This instance's name in the registry (COORDINATOR_INSTANCE)."""
    holder: str
    """This process's name in the leases."""
    liveness: float
    """INSTANCE_LIVENESS: a registry row beating more recently is a live instance."""
    refresh: float
    """Seconds between two reads of the live instances."""


class PartitionKeeper(ChildActor):
    settings: PartitionSettings

    def setup(self) -> None:
        services: Services = self.context.services
        if services.ownership is None:
            raise RuntimeError("PartitionKeeper without a PartitionOwnership")
        self._ownership: PartitionOwnership = services.ownership
        self._clock = self.context.clock
        self._timings = self.settings.timings
        self._holder = f"{self.settings.holder}#{self.context.incarnation}"
        self._contenders: dict[int, Contender] = {}
        self._leaving_since: dict[int, float] = {}
        self._wanted: frozenset[int] = frozenset()
        self._live: tuple[str, ...] = ()
        self._read_live_at = -float("inf")
        self._taken = 0
        self._last_error: str | None = None
        self._awaiting = False
        # Nothing held yet by this incarnation: an earlier one's leases lapse or were
        # released at its cleanup.
        self._ownership.update({}, {}, frozenset())
        self._store = PartitionStore(
            services.endpoints.database_dsn, timeout=self._timings.duration
        )
        self._worker = self.worker_pool("partitions")
        self.on_cleanup(lambda: self._worker.submit(self._store.close), what="partition store")
        self.ticker(self._timings.tick, PartitionTick, immediately=True)

    def handle(self, message: Any) -> Any:
        match message:
            case PartitionTick():
                self._tick()
            case PartitionLeasesAnswered():
                self._answered(message)
            case GetPartitions():
                return self._snapshot()
            case _:
                return NOT_HANDLED
        return None

    def cleanup(self) -> None:
        """A clean stop gives every partition up at once, for the others to take now."""
        self._ownership.update({}, {}, frozenset())
        given_up = [
            (partition, step.change.generation)
            for partition, step in ((k, release(c)) for k, c in self._contenders.items())
            if isinstance(step.change, StoppedLeading)
        ]
        self._contenders.clear()

        cluster, instance = self._ownership.stream_prefix, self.settings.instance

        def give_up() -> None:
            # Out of the members first: nobody wants these partitions for it any more.
            self._store.leave(cluster, instance, self._holder)
            for partition, generation in given_up:
                self._store.release(lease_name(cluster, partition), self._holder, generation)

        try:
            self._worker.submit(give_up).result(timeout=self._timings.duration)
        except Exception as exc:
            # They lapse by themselves within a lease.
            logger.warning("partitions not released: %s", first_line(exc))

    # --- ticks ---------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock.monotonic()
        if self._awaiting:
            # One batch of calls at a time; the deadlines still count meanwhile.
            self._publish(now)
            return
        requests: list[tuple[int, Request]] = []
        for partition in sorted(self._wanted | set(self._contenders)):
            contender = self._contenders.get(partition, Contender())
            if partition not in self._wanted:
                if not may_act(contender, now):
                    self._drop(partition)
                    continue
                if self._may_leave(partition, now):
                    self._leave(partition, contender)
                    continue
            step = tick(contender, now, self._timings)
            self._take(partition, step)
            if step.request is not None:
                requests.append((partition, step.request))
        refresh = now - self._read_live_at >= self.settings.refresh
        if requests or refresh:
            self._send(requests, refresh, now)
        self._publish(now)

    def _may_leave(self, partition: int, now: float) -> bool:
        since = self._leaving_since.setdefault(partition, now)
        if now - since >= _LEAVE_AT_MOST:
            logger.warning("partition %d given up with signals still in flight", partition)
            return True
        try:
            busy = self.context.directory.ask(
                ActorName.SIGNAL_INTAKE, GetBusyPartitions(), timeout=1.0
            )
        except (ChildUnavailable, pykka.Timeout):
            return False
        return partition not in busy

    def _leave(self, partition: int, contender: Contender) -> None:
        step = release(contender)
        self._drop(partition)
        if isinstance(step.change, StoppedLeading):
            generation = step.change.generation
            logger.info("partition %d given up at generation %d", partition, generation)
            name = lease_name(self._ownership.stream_prefix, partition)
            self.run_then_tell(
                lambda: self._store.release(name, self._holder, generation),
                lambda _released: None,
                pool="partitions",
                on_error=lambda exc: logger.warning(
                    "partition %d not released (it lapses by itself): %s",
                    partition,
                    first_line(exc),
                ),
            )

    def _drop(self, partition: int) -> None:
        self._contenders.pop(partition, None)
        self._leaving_since.pop(partition, None)

    def _take(self, partition: int, step: Step) -> None:
        self._contenders[partition] = step.state
        match step.change:
            case StartedLeading(generation=generation):
                self._taken += 1
                logger.info("partition %d taken at generation %d", partition, generation)
            case StoppedLeading(generation=generation, reason=reason):
                logger.warning(
                    "partition %d lost at generation %d: %s", partition, generation, reason
                )

    def _send(self, requests: list[tuple[int, Request]], refresh: bool, now: float) -> None:
        self._awaiting = True
        if refresh:
            self._read_live_at = now
        wall = self._clock.time()
        duration = self._timings.duration
        liveness = self.settings.liveness
        cluster, instance = self._ownership.stream_prefix, self.settings.instance

        def call() -> PartitionLeasesAnswered:
            answers: list[tuple[int, Answer]] = []
            error: str | None = None
            for partition, request in requests:
                try:
                    answers.append((partition, self._call(partition, request, wall, duration)))
                except Exception as exc:
                    error = first_line(exc)
                    answers.append((partition, Failed(request.number)))
            live: tuple[str, ...] | None = None
            if refresh:
                try:
                    live = tuple(
                        self._store.beat_and_list(cluster, instance, self._holder, liveness)
                    )
                except Exception as exc:
                    error = first_line(exc)
            return PartitionLeasesAnswered(answers=tuple(answers), live=live, error=error)

        def failed(exc: Exception) -> PartitionLeasesAnswered:
            return PartitionLeasesAnswered(
                answers=tuple((k, Failed(r.number)) for k, r in requests), error=first_line(exc)
            )

        self.run_then_tell(call, pool="partitions", on_error=failed)

    def _call(self, partition: int, request: Request, wall: float, duration: float) -> Answer:
        name = lease_name(self._ownership.stream_prefix, partition)
        if request.ask is Ask.ACQUIRE:
            result = self._store.acquire(name, self._holder, now=wall, duration=duration)
        else:
            assert request.generation is not None
            result = self._store.renew(
                name, self._holder, request.generation, now=wall, duration=duration
            )
        return result.answer(request.number, wall)

    def _answered(self, message: PartitionLeasesAnswered) -> None:
        self._awaiting = False
        self._last_error = message.error
        now = self._clock.monotonic()
        for partition, answer in message.answers:
            contender = self._contenders.get(partition)
            if contender is not None:
                self._take(partition, answered(contender, answer, now, self._timings))
        if message.live is not None:
            self._live = message.live
            wanted = wanted_by(self.settings.instance, message.live, self._ownership.partitions)
            if wanted != self._wanted:
                logger.info(
                    "partitions wanted among %d live instance(s): %s",
                    len({*message.live, self.settings.instance}),
                    ",".join(map(str, sorted(wanted))) or "none",
                )
            self._wanted = wanted
        self._publish(now)

    def _publish(self, now: float) -> None:
        acting = {
            k: c
            for k, c in self._contenders.items()
            if c.generation is not None and may_act(c, now)
        }
        cluster = self._ownership.stream_prefix
        tokens = {
            k: LeaseToken(lease_name(cluster, k), self._holder, c.generation)
            for k, c in acting.items()
            if c.generation is not None
        }
        deadlines = {k: c.expires for k, c in acting.items()}
        self._ownership.update(tokens, deadlines, frozenset(tokens) - self._wanted)

    def _snapshot(self) -> PartitionsSnapshot:
        now = self._clock.monotonic()
        held = sorted(k for k, c in self._contenders.items() if may_act(c, now))
        return PartitionsSnapshot(
            partitions=self._ownership.partitions,
            held=tuple(held),
            leaving=tuple(k for k in held if k not in self._wanted),
            wanted=tuple(sorted(self._wanted)),
            live=self._live,
            taken=self._taken,
            last_error=self._last_error,
        )
