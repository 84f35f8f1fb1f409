"""InstanceKeeper: beats this process's row in the instance registry, and ends the
process when another incarnation has taken its identity over.

An actor of its own rather than a part of ServiceHealth: the heartbeat must not queue
behind probes that may each take their timeout, nor stop while ServiceHealth restarts;
first in the tree, it beats from before the first actor that trades until after the
last one has stopped. The daemon claims the identity before the tree starts and frees
it once the tree has stopped: this actor only keeps it alive in between.
"""

from __future__ import annotations

import logging
from typing import Any

from coordinator.config.sections import InstanceConfig
from coordinator.infra.instances import IdentityLost, InstanceRegistry
from coordinator.infra.store import StoreError, first_line
from coordinator.messages.instance import (
    HeartbeatFailed,
    HeartbeatWritten,
    IdentityTakenOver,
    InstanceTick,
)
from coordinator.messages.supervision import StopTree
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor

__all__ = ["InstanceKeeper"]

logger = logging.getLogger(__name__)


class InstanceKeeper(ChildActor):
    settings: InstanceConfig

    def setup(self) -> None:
        services: Services = self.context.services
        self._clock = self.context.clock
        claimed: InstanceRegistry | None = services.identity
        self._registry: InstanceRegistry | None = None
        self._beating = False
        self._failures = 0
        self._failing_since: float | None = None
        self._warned_liveness = False
        if claimed is None:
            logger.warning("no identity was claimed: no heartbeat")
            return
        # Its own connection: the daemon's may free the identity while a last heartbeat
        # of this worker is still on its way.
        self._registry = claimed.twin()
        worker = self.worker_pool("heartbeat")
        registry = self._registry
        self.on_cleanup(lambda: worker.submit(registry.close), what="registry connection")
        self.ticker(self.settings.heartbeat, InstanceTick, immediately=True)

    def handle(self, message: Any) -> Any:
        match message:
            case InstanceTick():
                self._beat()
            case HeartbeatWritten():
                self._written()
            case HeartbeatFailed(error=error):
                self._failed(error)
            case IdentityTakenOver(reason=reason):
                self._taken_over(reason)
            case _:
                return NOT_HANDLED
        return None

    def _beat(self) -> None:
        registry = self._registry
        # One heartbeat at a time: a slow one is not queued behind by more.
        if registry is None or self._beating or registry.lost is not None:
            return
        self._beating = True
        self.run_then_tell(
            registry.heartbeat,
            lambda _: HeartbeatWritten(),
            pool="heartbeat",
            on_error=self._outcome_of,
            errors=(StoreError, IdentityLost),
        )

    @staticmethod
    def _outcome_of(exc: Exception) -> Any:
        if isinstance(exc, IdentityLost):
            return IdentityTakenOver(reason=str(exc))
        return HeartbeatFailed(error=first_line(exc))

    def _written(self) -> None:
        self._beating = False
        if self._failures:
            logger.warning(
                "instance heartbeat written again after %d failure(s) over %.1f s",
                self._failures,
                self._clock.monotonic() - (self._failing_since or self._clock.monotonic()),
            )
        self._failures = 0
        self._failing_since = None
        self._warned_liveness = False

    def _failed(self, error: str) -> None:
        self._beating = False
        now = self._clock.monotonic()
        if self._failures == 0:
            self._failing_since = now
            logger.warning("instance heartbeat not written (tried again): %s", error)
        else:
            logger.debug("instance heartbeat not written (%d): %s", self._failures + 1, error)
        self._failures += 1
        silent = now - (self._failing_since or now)
        if silent >= self.settings.liveness and not self._warned_liveness:
            self._warned_liveness = True
            # Past this, another process of the same identity may start and take it
            # over; the next heartbeat that reaches PostgreSQL will say so.
            logger.error(
                "instance heartbeat not written for %.1f s (INSTANCE_LIVENESS=%g s): "
                "this identity may be taken over: %s",
                silent,
                self.settings.liveness,
                error,
            )

    def _taken_over(self, reason: str) -> None:
        self._beating = False
        logger.critical("%s; stopping: another coordinator acts under this identity", reason)
        # The daemon reads the loss (registry.lost, set by the heartbeat) once the tree
        # has stopped, and exits non-zero.
        self.context.report(StopTree(reason=f"identity lost: {reason}"))
