"""The Reconciler's part in the leader lease. The leader reconciles the unknown orders
of every instance (followers settle none of them), each settlement fenced by its lease.

A held order (answered 5xx) is the exception: its signal waits in the Validator of the
process that sent it, and only that Validator can send it again or decide it (a verdict
is handed to the Validator of this process, in memory). So each instance, leader or
follower, reconciles the orders its own Validators hold, as it always did, and the
leader leaves the held orders of another live instance to that instance; those of an
instance gone (stopped, or its heartbeat lapsed) are the leader's, whose Validator
records them rejected when not found (nobody waits for them), or which marks them
accepted when found.

A write refused by the fence, or ``LeadershipLost``, makes the Reconciler a follower
again at once, with one WARNING (an INFO for a release at a clean stop)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from coordinator.actors.leadership import lease_now
from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.order_states import OrderRow, OrderStates

if TYPE_CHECKING:
    from coordinator.config.sections import InstanceConfig
    from coordinator.supervisor.child import ChildActor

    _Host = ChildActor
else:
    _Host = object

__all__ = ["ReconcilerLeadership"]

logger = logging.getLogger("coordinator.actors.reconciler")


class ReconcilerLeadership(_Host):
    """Part of the Reconciler (its attributes are set up there)."""

    _token: LeaseToken | None
    """The lease this instance leads under; None while it follows."""
    _identity: InstanceConfig
    """This instance: its name (the ``instance`` of the orders it writes) and the
    liveness of the others."""

    if TYPE_CHECKING:

        def _pass_soon(self) -> None: ...

    def _follow_elector(self) -> None:
        """At start: lead at once if the elector says this instance leads (a restarted
        Reconciler of a leader), else wait for ``LeaderElected``."""
        token = lease_now(self.context.directory)
        if token is not None:
            self._lead(token)

    def _lead(self, token: LeaseToken) -> None:
        if self._token == token:
            return
        self._token = token
        # What the followers and the last leader left unknown is looked at now.
        self._pass_soon()
        logger.info(
            "leader at generation %d: the unknown orders of every instance reconciled here",
            token.generation,
        )

    def _lost(self, token: LeaseToken, why: str, *, planned: bool = False) -> None:
        """No longer leader at ``token`` (unless it is an older term's news); a WARNING
        unless ``planned`` (released by a clean stop)."""
        if self._token is None or self._token != token:
            return
        self._token = None
        logger.log(
            logging.INFO if planned else logging.WARNING,
            "reconciliation of other instances' orders stops here (no longer leader at "
            "generation %d): %s",
            token.generation,
            why,
        )

    def _rows_to_reconcile(self, store: OrderStates, token: LeaseToken | None) -> list[OrderRow]:
        """The unknown orders this instance reconciles under ``token`` (StoreError when
        they cannot be read): as leader, all of them but those another live instance
        holds; as follower, only those its own Validators hold."""
        identity = self._identity
        if token is None:
            return store.held_by(identity.name)
        return store.unknown_but_held_elsewhere(identity.name, identity.liveness)
