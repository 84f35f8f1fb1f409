"""The UniverseManager's part in the leader lease. The leader rotates the universe and
keeps the blacklist, each write of a snapshot or of the blacklist fenced by its lease.
A follower rotates nothing: it serves the universe the leader stored, read again on
each of its ticks and taken over (and published to its Validators) when it changed;
the operator's commands (a rotation now, the blacklist) are the leader's, and a
follower answers them ``NotLeading`` with the leader's name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from coordinator.actors.leadership import lease_holder, lease_now
from coordinator.cluster.fencing import LeaseLost, LeaseToken
from coordinator.infra.store import StoreError
from coordinator.messages.leadership import NotLeading
from coordinator.trading.blacklist import BlacklistEntry

if TYPE_CHECKING:
    from coordinator.infra.universe_store import UniverseStore
    from coordinator.logs import FailureLog
    from coordinator.runtime import Services
    from coordinator.supervisor.child import ChildActor
    from coordinator.trading.blacklist import Blacklist

    _Host = ChildActor
else:
    _Host = object

__all__ = ["UniverseLeadership"]

logger = logging.getLogger("coordinator.actors.universe_manager")


class UniverseLeadership(_Host):
    """Part of the UniverseManager (its attributes are set up there)."""

    _token: LeaseToken | None
    """The lease this instance leads under; None while it follows."""
    _store: UniverseStore
    _services: Services
    _blacklist: Blacklist
    _last: dict[str, Any]
    _follow_failure: FailureLog

    if TYPE_CHECKING:

        def _apply_stored(
            self, latest: dict[str, Any] | None, entries: list[BlacklistEntry], why: str
        ) -> None: ...

    def _follow_elector(self) -> None:
        self._token = lease_now(self.context.directory)

    def _lead(self, token: LeaseToken) -> None:
        if self._token == token:
            return
        self._token = token
        # The last leader's universe is where this one goes on from (a follower's is
        # at most a tick behind it).
        self._follow_store()
        logger.info("leader at generation %d: universe rotations run here", token.generation)

    def _lost(self, token: LeaseToken, why: str, *, planned: bool = False) -> None:
        """No longer leader at ``token`` (unless it is an older term's news); a WARNING
        unless ``planned`` (released by a clean stop)."""
        if self._token is None or self._token != token:
            return
        self._token = None
        logger.log(
            logging.INFO if planned else logging.WARNING,
            "universe rotations stop here (no longer leader at generation %d): %s",
            token.generation,
            why,
        )

    def _follow_store(self) -> None:
        """The universe and blacklist as the leader stored them, taken over when they
        changed."""
        try:
            latest = self._store.latest()
            entries = self._store.blacklist()
        except StoreError as exc:
            self._follow_failure.failed(str(exc))
            return
        self._follow_failure.succeeded()
        stored_at = None if latest is None else latest["at"]
        same_blacklist = {e.symbol: e for e in entries} == dict(self._blacklist.entries)
        if stored_at == self._last.get("at") and same_blacklist:
            return
        self._apply_stored(latest, entries, "as the leader stored it")

    def _fenced(self, write: Callable[[Any, LeaseToken | None], None], value: Any) -> bool:
        """A leader's write of the universe or the blacklist, fenced by its lease;
        whether it was this leader's to make. Refused: no longer leader (a WARNING),
        nothing written. Other failures: StoreError, as the store raises them."""
        token = self._token
        if token is None:
            return False
        try:
            write(value, token)
        except LeaseLost as exc:
            self._lost(token, f"the fence refused a write of the universe: {exc}")
            return False
        return True

    def _not_leading(self) -> NotLeading:
        """The answer to an operator's command on a follower, naming the leader."""
        dsn = self._services.endpoints.database_dsn
        return NotLeading(leader=lease_holder(self.context.directory, dsn))
