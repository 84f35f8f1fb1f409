"""LeaderElector: contends for the leader lease in PostgreSQL and tells the instance
when it leads and when it stops.

The decisions are the pure contender of ``coordinator.cluster.lease``; this actor
drives it on the injected clock (a tick every fifth of the renewal interval), makes
its store calls on one worker thread (one in flight at a time, their answers back as
``LeaseAnswered``), and publishes ``LeaderElected`` and ``LeadershipLost`` to the
children that subscribe. On a clean stop, and on a crash, it releases the lease so
that another instance takes over at once.

A coordinator that runs alone (COORDINATOR_INSTANCES=single) takes no lease: its
elector tells the children at its start that this instance leads, with a token that
fences nothing, and never says it stopped. Its leader-only work then goes on through a
PostgreSQL outage, as it did before there were leases; what keeps a second instance
from leading beside it is the instance registry, which refuses it at start.
"""

from __future__ import annotations

import logging
from typing import Any

from coordinator.cluster.fencing import LeaseToken
from coordinator.cluster.lease import (
    Ask,
    Belief,
    Contender,
    Failed,
    LossReason,
    Request,
    Role,
    StartedLeading,
    Step,
    StoppedLeading,
    answered,
    release,
    role,
    tick,
)
from coordinator.config.identity import InstanceMode
from coordinator.config.parts import ElectorSettings
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.store import first_line
from coordinator.messages.leadership import (
    GetLeadership,
    LeaderElected,
    LeadershipLost,
    LeadershipSnapshot,
    LeaseAnswered,
    LeaseTick,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor

__all__ = ["LeaderElector"]

logger = logging.getLogger(__name__)


class LeaderElector(ChildActor):
    settings: ElectorSettings

    def setup(self) -> None:
        services: Services = self.context.services
        self._clock = self.context.clock
        self._timings = self.settings.timings
        self._lease = self.settings.lease
        self._alone: LeaseToken | None = None
        if self.settings.mode is InstanceMode.SINGLE:
            self._lead_alone()
            return
        # Each incarnation contends under a name of its own: the one it replaced (hung)
        # may still release or renew late, and must not touch its successor's term.
        self._holder = f"{self.settings.holder}#{self.context.incarnation}"
        self._state = Contender()
        self._elected = 0
        self._ticks = 0
        self._last_error: str | None = None
        # A call that takes longer than a lease can confirm nothing: give up on it then.
        self._store = LeaseStore(services.endpoints.database_dsn, timeout=self._timings.duration)
        self._worker = self.worker_pool("lease")
        self.on_cleanup(lambda: self._worker.submit(self._store.close), what="lease store")
        self.ticker(self._timings.tick, LeaseTick, immediately=True)

    def _lead_alone(self) -> None:
        # Under the process's own name, the same for every incarnation of this actor: a
        # replaced elector tells the same token again, which the children take as news
        # they already have (a new token would make them step down and restore).
        self._holder = self.settings.holder
        self._elected = 1
        self._ticks = 0
        self._last_error = None
        self._alone = LeaseToken.alone(self._lease, self._holder)
        logger.info("leader: this coordinator runs alone (COORDINATOR_INSTANCES=single)")
        self.context.directory.publish(LeaderElected(token=self._alone))

    def handle(self, message: Any) -> Any:
        if self._alone is not None:
            return self._snapshot() if isinstance(message, GetLeadership) else NOT_HANDLED
        match message:
            case LeaseTick():
                self._ticks += 1
                self._take(tick(self._state, self._clock.monotonic(), self._timings))
            case LeaseAnswered(answer=answer, error=error):
                self._last_error = error
                now = self._clock.monotonic()
                self._take(answered(self._state, answer, now, self._timings))
            case GetLeadership():
                return self._snapshot()
            case _:
                return NOT_HANDLED
        return None

    def cleanup(self) -> None:
        if self._alone is not None:
            return
        generation = self._state.generation
        step = release(self._state)
        self._state = step.state
        if step.change is None or generation is None:
            return
        self._announce(step.change)
        done = self._worker.submit(self._store.release, self._lease, self._holder, generation)
        try:
            done.result(timeout=self._timings.duration)
        except Exception as exc:
            # It lapses by itself within a lease.
            logger.warning("lease %s not released: %s", self._lease, first_line(exc))

    def _take(self, step: Step) -> None:
        self._state = step.state
        if step.change is not None:
            self._announce(step.change)
        if step.request is not None:
            self._send(step.request)

    def _send(self, request: Request) -> None:
        # Read with the monotonic reading the request carries: the row expires at this
        # wall-clock time plus the duration, when our own deadline passes too.
        wall = self._clock.time()
        duration = self._timings.duration

        def call() -> LeaseAnswered:
            if request.ask is Ask.ACQUIRE:
                result = self._store.acquire(self._lease, self._holder, now=wall, duration=duration)
            else:
                assert request.generation is not None
                result = self._store.renew(
                    self._lease, self._holder, request.generation, now=wall, duration=duration
                )
            return LeaseAnswered(answer=result.answer(request.number, wall))

        def failed(exc: Exception) -> LeaseAnswered:
            return LeaseAnswered(answer=Failed(request.number), error=first_line(exc))

        self.run_then_tell(call, pool="lease", on_error=failed)

    def _announce(self, change: StartedLeading | StoppedLeading) -> None:
        token = LeaseToken(self._lease, self._holder, change.generation)
        if isinstance(change, StartedLeading):
            self._elected += 1
            logger.info("leader: lease %s taken at generation %d", self._lease, change.generation)
            self.context.directory.publish(LeaderElected(token=token))
            return
        if change.reason is LossReason.RELEASED:
            logger.info("lease %s released at generation %d", self._lease, change.generation)
        else:
            logger.warning(
                "no longer leader: lease %s at generation %d %s",
                self._lease,
                change.generation,
                change.reason,
            )
        self.context.directory.publish(LeadershipLost(token=token, reason=change.reason))

    def _snapshot(self) -> LeadershipSnapshot:
        if self._alone is not None:
            return LeadershipSnapshot(
                lease=self._lease,
                holder=self._holder,
                role=Role.LEADER,
                belief=Belief.LEADER,
                generation=None,
                expires_in=None,
                elected=self._elected,
                last_error=None,
                awaiting=False,
                ticks=self._ticks,
                alone=True,
            )
        now = self._clock.monotonic()
        state = self._state
        current = role(state, now)
        return LeadershipSnapshot(
            lease=self._lease,
            holder=self._holder,
            role=current,
            belief=state.belief,
            generation=state.generation,
            expires_in=state.expires - now if current is Role.LEADER else None,
            elected=self._elected,
            last_error=self._last_error,
            awaiting=state.pending is not None,
            ticks=self._ticks,
        )
