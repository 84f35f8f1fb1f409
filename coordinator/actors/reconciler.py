"""Reconciler: settles the orders whose outcome is unknown against what the Trader did.

Periodically, and soon after an order becomes unknown or is held after a 5xx, a pass
on a worker thread reads the unknown orders of ``coordinator_orders``, the Trader's
``GET /orders`` (with ``GET /health`` saying since when it covers), RootTrading's
``trade_executions`` when the database has it, and the accepted orders around them,
and applies ``trading.reconciliation``: found, the order is marked accepted with the
Trader's id; not found once its window has passed, rejected; the rest stays unknown,
an ambiguous one with an ALERT. It only updates ``coordinator_orders``: an order held
by a Validator (its signal waiting) is handed back to that Validator when it is not
found, which sends it again or decides it. Operators settle one with ``ResolveOrder``.
In cluster mode the passes are the leader's (see ``reconciler_leader``).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future
from typing import Any

from coordinator.actors.names import ActorName
from coordinator.actors.reconciler_leader import ReconcilerLeadership
from coordinator.actors.reconciler_operator import OperatorResolutions
from coordinator.cluster.fencing import LeaseLost, LeaseToken
from coordinator.cluster.lease import LossReason
from coordinator.config.parts import ReconcilerSettings
from coordinator.infra.order_states import OrderRow, OrderStates
from coordinator.infra.store import StoreError
from coordinator.infra.trader_client import TraderClient, TraderReadError
from coordinator.messages.leadership import LeaderElected, LeadershipLost
from coordinator.messages.ledger import OrderNotExecuted
from coordinator.messages.reconcile import (
    GetReconcilerSnapshot,
    HeldOrderResolved,
    ReconcilePassDone,
    ReconcilerSnapshot,
    ReconcileSoon,
    ReconcileTick,
    ResolveOrder,
    StillUnknown,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.reconciliation import (
    FillSource,
    MatchPolicy,
    OurOrder,
    Resolution,
    Venue,
    VerdictReason,
    merge_fills,
    reconcile,
)
from coordinator.trading.routing import validator_for
from coordinator.trading.signals import Side

__all__ = ["RECONCILE_INTERVAL", "Reconciler", "match_policy"]

logger = logging.getLogger(__name__)

RECONCILE_INTERVAL = 30.0
"""Seconds between passes when nothing new is unknown."""
_TICK = 0.25
_SOON = 0.2
"""A new unknown order is looked for this soon (its fill may already be listed)."""


def match_policy(read_timeout: float) -> MatchPolicy:
    """The window after a send runs past the Trader's 10 s de-duplication and past the
    longest an answer can take, so a fill it would show is there when it closes. Before
    the send it allows for the two clocks (the Trader stamps its orders after the fill,
    so only a difference of clocks puts one before our send)."""
    return MatchPolicy(window_before=2.0, window_after=max(15.0, read_timeout + 10.0))


class Reconciler(ReconcilerLeadership, OperatorResolutions, ChildActor):
    settings: ReconcilerSettings
    subscriptions = (LeaderElected, LeadershipLost)

    def setup(self) -> None:
        services: Services = self.context.services
        execution = self.settings.execution
        self._services = services
        self._clock = self.context.clock
        self._validators = self.settings.validators
        self._identity = self.settings.identity
        self._token = None
        self._policy = match_policy(execution.read_timeout)
        dsn = services.endpoints.database_dsn
        self._pass_store = OrderStates(dsn, timeout=5.0)
        self.on_cleanup(self._pass_store.close, what="pass store")
        self._operator_store = OrderStates(dsn, timeout=2.0)
        self.on_cleanup(self._operator_store.close, what="operator store")
        url = services.endpoints.trader_url
        self._trader = (
            TraderClient(
                url,
                connect_timeout=execution.connect_timeout,
                read_timeout=execution.read_timeout,
                pool_size=1,
            )
            if url
            else None
        )
        if self._trader is not None:
            self.on_cleanup(self._trader.close, what="trader client")
        self.worker_pool("pass")
        self._running: Future[Any] | None = None
        self._next_run = self._clock.time() + _SOON
        self._due: list[float] = []
        self._accepted = 0
        self._rejected = 0
        self._by_operator = 0
        self._runs = 0
        self._still: tuple[StillUnknown, ...] = ()
        self._resolved: set[str] = set()
        self._last_run: float | None = None
        self._last_error: str | None = None
        self._alerted: dict[str, str] = {}
        self._handed_back: dict[str, tuple[float, float]] = {}
        """Held orders handed back: the row's ``updated_at`` then, and when (worker
        thread)."""
        self.ticker(_TICK, ReconcileTick)
        self._follow_elector()

    def handle(self, message: Any) -> Any:
        match message:
            case ReconcileTick():
                self._maybe_run()
            case ReconcileSoon(sent_at=sent_at):
                now = self._clock.time()
                self._due.append(now + _SOON)
                self._due.append(sent_at + self._policy.window_after + 0.5)
            case ReconcilePassDone():
                self._done(message)
            case LeaderElected(token=token):
                self._lead(token)
            case LeadershipLost(token=token, reason=reason):
                self._lost(token, f"leadership {reason}", planned=reason is LossReason.RELEASED)
            case ResolveOrder():
                return self._resolve(message)
            case GetReconcilerSnapshot():
                return ReconcilerSnapshot(
                    accepted=self._accepted,
                    rejected=self._rejected,
                    resolved_by_operator=self._by_operator,
                    still_unknown=self._still,
                    resolved=frozenset(self._resolved),
                    last_run=self._last_run,
                    last_error=self._last_error,
                    runs=self._runs,
                )
            case _:
                return NOT_HANDLED
        return None

    # --- passes -----------------------------------------------------------------------

    def _pass_soon(self) -> None:
        self._next_run = min(self._next_run, self._clock.time())

    def _maybe_run(self) -> None:
        if self._running is not None and not self._running.done():
            return
        now = self._clock.time()
        due = [t for t in self._due if t <= now]
        if now < self._next_run and not due:
            return
        self._due = [t for t in self._due if t > now]
        self._next_run = now + RECONCILE_INTERVAL
        started, token = now, self._token

        def failed(exc: Exception) -> ReconcilePassDone:
            # A bug in a pass must not kill the worker's loop.
            logger.error("reconciliation pass failed", exc_info=exc)
            return ReconcilePassDone(
                accepted=0,
                rejected=0,
                still_unknown=self._still,
                resolved=(),
                error=f"{type(exc).__name__}: {exc}",
                at=started,
            )

        self._running = self.run_then_tell(
            lambda: self._pass(started, token), on_error=failed, pool="pass"
        )

    def _done(self, message: ReconcilePassDone) -> None:
        # The pass is over once it told so, though its future completes a moment
        # later: a tick falling between the two must not be skipped.
        self._running = None
        self._runs += 1
        self._last_run = message.at
        self._last_error = message.error
        self._accepted += message.accepted
        self._rejected += message.rejected
        self._still = message.still_unknown
        self._resolved.update(message.resolved)
        if message.lease_lost is not None:
            self._lost(message.lease_lost, f"the fence refused a settlement: {message.error}")

    def _pass(self, started: float, token: LeaseToken | None) -> ReconcilePassDone:
        """One pass, on the worker thread: reads, verdicts, writes (fenced by ``token``
        when leading)."""
        store = self._pass_store
        try:
            rows = self._rows_to_reconcile(store, token)
        except StoreError as exc:
            return self._pass_result(started, error=f"coordinator_orders: {exc}")
        if not rows:
            return self._pass_result(started)
        errors: list[str] = []
        lo = min(r.created_at for r in rows) - self._policy.window_before - 60.0
        trader, since = self._trader_fills(errors)
        executions: list[Venue] = []
        try:
            if store.has_executions():
                executions = [
                    Venue(
                        e.order_id,
                        FillSource.EXECUTIONS,
                        e.symbol,
                        e.side,
                        e.quantity,
                        e.at,
                        e.order_id,
                    )
                    for e in store.executions(lo, started + 60.0)
                ]
                # The table holds every fill: it covers any window on its own (unless
                # demo rows may have overwritten some).
                if store.executions_complete_since(lo):
                    since = -math.inf
        except StoreError as exc:
            errors.append(f"trade_executions: {exc}")
        try:
            settled = [_ours(r) for r in store.settled(lo, started + 60.0)]
        except StoreError as exc:
            return self._pass_result(started, error=f"coordinator_orders: {exc}")
        verdicts = reconcile(
            [_ours(r) for r in rows],
            merge_fills(trader, executions),
            now=self._clock.time(),
            covered_since=since,
            covered_until=started,
            policy=self._policy,
            settled=settled,
        )
        by_id = {r.client_order_id: r for r in rows}
        for gone in [c for c in self._handed_back if c not in by_id]:
            del self._handed_back[gone]
        accepted = rejected = 0
        lease_lost: LeaseToken | None = None
        resolved: list[str] = []
        still: list[StillUnknown] = []
        for verdict in verdicts:
            row = by_id[verdict.client_order_id]
            if verdict.resolution is Resolution.UNKNOWN:
                still.append(
                    StillUnknown(
                        client_order_id=row.client_order_id,
                        symbol=row.symbol,
                        side=row.side,
                        quantity=row.quantity,
                        reason=verdict.reason.value,
                        detail=verdict.detail,
                        held=row.held,
                    )
                )
                self._alert(row, verdict.reason, verdict.detail)
                continue
            found = verdict.resolution is Resolution.ACCEPTED
            if row.held and not found:
                # Not executed: its Validator sends it again or decides it. Once per
                # attempt: until its re-send is marked the row still reads held, and a
                # second "not executed" would race that re-send. Again only after a
                # window, in case the first was lost (its Validator restarted).
                now = self._clock.time()
                before = self._handed_back.get(row.client_order_id)
                if (
                    before is None
                    or before[0] != row.updated_at
                    or now - before[1] > self._policy.window_after
                ):
                    self._handed_back[row.client_order_id] = (row.updated_at, now)
                    self._hand_back(row, accepted=False, trader_id=None, detail=verdict.detail)
                continue
            try:
                result = store.resolve(
                    row.client_order_id,
                    state=verdict.resolution.value,
                    trader_order_id=verdict.trader_order_id,
                    note=f"reconciled: {verdict.detail}",
                    at=self._clock.time(),
                    fence=token,
                )
            except LeaseLost as exc:
                # Nothing written: the new leader settles it (and what follows).
                errors.append(str(exc))
                lease_lost = token
                break
            except StoreError as exc:
                errors.append(f"coordinator_orders: {exc}")
                break
            if not result.resolved:
                continue
            resolved.append(row.client_order_id)
            accepted += found
            rejected += not found
            if not found:
                self._tell_ledger(row)
            log = logger.warning if found else logger.error
            log(
                "order %s (%s %s %s) reconciled %s: %s",
                row.client_order_id,
                row.side,
                row.quantity,
                row.symbol,
                verdict.resolution.value,
                verdict.detail,
            )
            if row.held:
                self._hand_back(
                    row, accepted=True, trader_id=verdict.trader_order_id, detail=verdict.detail
                )
        return self._pass_result(
            started,
            accepted=accepted,
            rejected=rejected,
            still=tuple(still),
            resolved=tuple(resolved),
            error="; ".join(errors) or None,
            lease_lost=lease_lost,
        )

    def _trader_fills(self, errors: list[str]) -> tuple[list[Venue], float | None]:
        if self._trader is None:
            errors.append("trader: TRADER_API_URL is not set")
            return [], None
        try:
            started = self._trader.status().started_at
            orders = self._trader.orders(limit=0)
        except TraderReadError as exc:
            errors.append(f"trader: {exc}")
            return [], None
        fills = [
            Venue(
                o.order_id,
                FillSource.TRADER,
                o.symbol,
                o.side,
                o.quantity,
                o.at,
                o.binance_order_id,
            )
            for o in orders
        ]
        return fills, started

    def _pass_result(
        self,
        started: float,
        *,
        accepted: int = 0,
        rejected: int = 0,
        still: tuple[StillUnknown, ...] = (),
        resolved: tuple[str, ...] = (),
        error: str | None = None,
        lease_lost: LeaseToken | None = None,
    ) -> ReconcilePassDone:
        if error is not None:
            logger.warning("reconciliation: %s", error)
        return ReconcilePassDone(
            accepted=accepted,
            rejected=rejected,
            still_unknown=still,
            resolved=resolved,
            error=error,
            at=started,
            lease_lost=lease_lost,
        )

    def _alert(self, row: OrderRow, reason: VerdictReason, detail: str) -> None:
        if reason is VerdictReason.WINDOW_OPEN:
            return
        if self._alerted.get(row.client_order_id) == reason.value:
            return  # said once per reason, not every pass
        self._alerted[row.client_order_id] = reason.value
        logger.error(
            "ALERT order %s (%s %s %s) is still unknown (%s): %s",
            row.client_order_id,
            row.side,
            row.quantity,
            row.symbol,
            reason.value,
            detail,
        )

    def _hand_back(
        self, row: OrderRow, *, accepted: bool, trader_id: str | None, detail: str
    ) -> None:
        self._tell_validator(
            HeldOrderResolved(
                client_order_id=row.client_order_id,
                signal_id=row.signal_id,
                symbol=row.symbol,
                side=row.side,
                quantity=row.quantity,
                accepted=accepted,
                trader_order_id=trader_id,
                detail=detail,
                by="reconciler",
            )
        )

    def _tell_validator(self, message: HeldOrderResolved) -> None:
        owner = validator_for(message.symbol, self._validators)
        try:
            self.context.directory.tell(owner, message)
        except ChildUnavailable as exc:
            logger.error(
                "%s did not take the outcome of %s: %s", owner, message.client_order_id, exc
            )

    def _tell_ledger(self, row: OrderRow) -> None:
        """An order found not executed, for good, to the Ledger, which counted it as
        filled while its outcome was unknown (or laid it from the store at start): a
        SELL laid over its view would hide the position it did not sell. Not a held
        order handed back: after a restart its Validator sends it again without a
        reservation of its own, and the copy laid from the store is what keeps a second
        SELL of the holding from going out beside it."""
        if row.side not in (Side.BUY, Side.SELL):
            return  # the Ledger never counted an order of another side
        message = OrderNotExecuted(
            client_order_id=row.client_order_id,
            signal_id=row.signal_id,
            symbol=row.symbol,
            side=Side(row.side),
        )
        try:
            self.context.directory.tell(ActorName.LEDGER, message)
        except ChildUnavailable as exc:
            logger.error("the ledger did not take %s as not executed: %s", row.client_order_id, exc)


def _ours(row: OrderRow) -> OurOrder:
    return OurOrder(
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=row.side,
        quantity=row.quantity,
        sent_at=row.created_at,
        trader_order_id=row.trader_order_id,
        last_sent_at=row.updated_at,
    )
