"""Order states for the reconciliation: the unknown orders of ``coordinator_orders``, the
settled ones around them, their resolution, and RootTrading's ``trade_executions``.

A resolution only ever moves an order out of ``unknown`` (the UPDATE says so), so a
verdict never overwrites an outcome written meanwhile by the Validator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.lease_store import run_maybe_fenced
from coordinator.infra.pipeline_store import clean_text
from coordinator.infra.store import OwnConnectionStore, with_session_setting
from coordinator.trading.execution import OrderStatus

__all__ = [
    "HELD_MARK",
    "PAPER_SETTING",
    "RESENT_MARK",
    "Execution",
    "OrderRow",
    "OrderStates",
    "ResolveResult",
    "paper_dsn",
]

logger = logging.getLogger(__name__)

HELD_MARK = "held: "
"""How the error of an order held after a 5xx answer begins: its signal waits in the
Validator for the reconciliation (found: accepted; not found: sent again if fresh)."""


RESENT_MARK = "resent: "
"""How the error of a held order begins once its Validator sent it again (same client
order id): unknown until that attempt's answer, reconciled like any unknown order."""


PAPER_SETTING = "coordinator.paper"
"""The session setting that marks the orders a connection writes as paper orders (the
``paper`` column's default reads it)."""


def paper_dsn(dsn: str) -> str:
    """``dsn`` with the paper mark on each of its sessions: every order written through it
    is recorded ``paper`` whatever path writes it (intent, store writer, journal replay)."""
    return with_session_setting(dsn, PAPER_SETTING, "on")


@dataclass(frozen=True, slots=True)
class OrderRow:
    client_order_id: str
    signal_id: str
    symbol: str
    side: str
    quantity: float
    state: str
    trader_order_id: str | None
    error: str | None
    created_at: float
    updated_at: float
    reference_price: float | None = None
    paper: bool | None = None
    """Sent to the in-process paper exchange; None: written before this was recorded."""

    @property
    def held(self) -> bool:
        return self.state == OrderStatus.UNKNOWN and (self.error or "").startswith(HELD_MARK)


@dataclass(frozen=True, slots=True)
class Execution:
    """One ``trade_executions`` row (FILLED or PARTIALLY_FILLED)."""

    order_id: str
    """Binance's id."""
    symbol: str
    side: str
    quantity: float
    """Executed."""
    at: float
    """Epoch seconds (the column is naive UTC)."""


@dataclass(frozen=True, slots=True)
class ResolveResult:
    resolved: bool
    state: str | None
    """The order's state now; None when there is no such order."""


_COLUMNS = """client_order_id, signal_id, symbol, side, quantity, state, trader_order_id, error,
    extract(epoch FROM created_at), extract(epoch FROM updated_at), reference_price, paper"""


def _row(r: tuple[Any, ...]) -> OrderRow:
    return OrderRow(
        client_order_id=r[0],
        signal_id=r[1],
        symbol=r[2],
        side=r[3],
        quantity=float(r[4]),
        state=r[5],
        trader_order_id=r[6],
        error=r[7],
        created_at=float(r[8]),
        updated_at=float(r[9]),
        reference_price=None if r[10] is None else float(r[10]),
        paper=r[11],
    )


def _resolved(cur: Any, client_order_id: str, state: str) -> ResolveResult:
    """The result of a conditional ``UPDATE ... RETURNING`` just executed on ``cur``:
    moved to ``state``, or not, and then the state the order is in (None: no such
    order)."""
    if cur.fetchone() is not None:
        return ResolveResult(True, state)
    cur.execute(
        "SELECT state FROM coordinator_orders WHERE client_order_id = %s",
        (client_order_id,),
    )
    row = cur.fetchone()
    return ResolveResult(False, None if row is None else row[0])


class OrderStates(OwnConnectionStore):
    """The reconciler's connection (one thread)."""

    application = "coordinator-reconciler"

    def __init__(self, dsn: str, *, timeout: float) -> None:
        super().__init__(dsn, timeout=timeout)
        self._executions: bool | None = None

    def unknown(self, limit: int = 1000) -> list[OrderRow]:
        """Orders in state unknown, oldest first."""
        return self._select("state = 'unknown' ORDER BY created_at LIMIT %s", (limit,))

    def unknown_but_held_elsewhere(
        self, instance: str, liveness: float, limit: int = 1000
    ) -> list[OrderRow]:
        """Orders in state unknown, oldest first, but those held by another live
        instance (its heartbeat younger than ``liveness`` seconds): their signals wait in
        that process's Validator, which alone can send them again or decide them."""
        return self._select(
            f"""state = 'unknown' AND NOT (
                  left(coalesce(error, ''), {len(HELD_MARK)}) = %s
                  AND o.instance IS NOT NULL AND o.instance <> %s
                  AND EXISTS (
                      SELECT 1 FROM coordinator_instances i
                       WHERE i.instance = o.instance AND i.stopped_at IS NULL
                         AND i.heartbeat_at > clock_timestamp() - make_interval(secs => %s)))
                ORDER BY created_at LIMIT %s""",
            (HELD_MARK, instance, liveness, limit),
        )

    def held_by(self, instance: str, limit: int = 1000) -> list[OrderRow]:
        """The orders ``instance`` holds after a 5xx (unknown, their signals waiting in
        its Validators), oldest first."""
        return self._select(
            f"""state = 'unknown' AND left(coalesce(error, ''), {len(HELD_MARK)}) = %s
                AND o.instance = %s ORDER BY created_at LIMIT %s""",
            (HELD_MARK, instance, limit),
        )

    def recent(self, since: float) -> list[OrderRow]:
        """Orders created since ``since`` that filled or may have (accepted, unknown,
        held, or never answered), oldest first: what a new Ledger lays over its view."""
        return self._select(
            "state IN ('accepted', 'unknown', 'pending', 'sent')"
            " AND created_at >= to_timestamp(%s) ORDER BY created_at LIMIT 10000",
            (since,),
        )

    def order(self, client_order_id: str) -> OrderRow | None:
        found = self._select("client_order_id = %s", (client_order_id,))
        return found[0] if found else None

    def settled(self, since: float, until: float) -> list[OrderRow]:
        """Accepted orders created in [since, until]: a fill one of them made is theirs."""
        return self._select(
            "state = 'accepted' AND created_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            (since, until),
        )

    def _select(self, where: str, params: tuple[Any, ...]) -> list[OrderRow]:
        """The orders ``where`` (and what follows it: order, limit) selects."""

        def work(cur: Any) -> list[OrderRow]:
            cur.execute(f"SELECT {_COLUMNS} FROM coordinator_orders o WHERE {where}", params)
            return [_row(r) for r in cur.fetchall()]

        return self._run(work)

    def resolve(
        self,
        client_order_id: str,
        *,
        state: str,
        trader_order_id: str | None,
        note: str,
        at: float,
        fence: LeaseToken | None = None,
    ) -> ResolveResult:
        """Move an unknown order to ``accepted`` or ``rejected``; nothing else moves.
        With a ``fence``, only while that lease is held (LeaseLost, nothing written)."""
        if state not in (OrderStatus.ACCEPTED, OrderStatus.REJECTED):
            raise ValueError(f"an unknown order resolves to accepted or rejected, not {state!r}")

        def work(cur: Any) -> ResolveResult:
            cur.execute(
                """UPDATE coordinator_orders
                   SET state = %s, trader_order_id = COALESCE(%s, trader_order_id),
                       error = COALESCE(error || '; ', '') || %s,
                       updated_at = to_timestamp(%s)
                   WHERE client_order_id = %s AND state = 'unknown'
                   RETURNING state""",
                (state, trader_order_id, clean_text(note), at, client_order_id),
            )
            return _resolved(cur, client_order_id, state)

        result: ResolveResult = run_maybe_fenced(self, fence, work)
        return result

    def reject_held(self, client_order_id: str, *, note: str, at: float) -> ResolveResult:
        """Move a held order to ``rejected`` only while it is still held: once its re-send
        is marked, that attempt (which may fill) decides it, not this."""

        def work(cur: Any) -> ResolveResult:
            cur.execute(
                """UPDATE coordinator_orders
                   SET state = 'rejected', error = COALESCE(error || '; ', '') || %s,
                       updated_at = to_timestamp(%s)
                   WHERE client_order_id = %s AND state = 'unknown'
                     AND left(error, %s) = %s
                   RETURNING state""",
                (clean_text(note), at, client_order_id, len(HELD_MARK), HELD_MARK),
            )
            return _resolved(cur, client_order_id, OrderStatus.REJECTED)

        return self._run(work)

    def has_executions(self) -> bool:
        """Whether RootTrading's ``trade_executions`` is in this database (asked until
        it is, then remembered: a table that appears later is found)."""
        if self._executions:
            return True

        def work(cur: Any) -> bool:
            cur.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name ="
                " 'trade_executions' AND column_name IN"
                " ('order_id', 'symbol', 'side', 'status', 'quantity', 'timestamp')"
            )
            return cur.fetchone()[0] == 6

        self._executions = self._run(work)
        return bool(self._executions)

    def executions_complete_since(self, since: float) -> bool:
        """Whether the table still holds every fill since ``since``: demo rows count
        Binance ids from 10000000 again after each Trader restart and overwrite older
        rows, so with demo rows written since then, a fill may be gone from it."""

        def work(cur: Any) -> bool:
            cur.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name ="
                " 'trade_executions' AND column_name IN ('demo', 'updated_at')"
            )
            if cur.fetchone()[0] < 2:
                return False
            cur.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM trade_executions WHERE demo"
                " AND updated_at >= (to_timestamp(%s) AT TIME ZONE 'UTC'))",
                (since,),
            )
            return bool(cur.fetchone()[0])

        return self._run(work)

    def executions(self, since: float, until: float) -> list[Execution]:
        """Fills executed in [since, until]; empty when the table is not there."""
        if not self.has_executions():
            return []

        def work(cur: Any) -> list[Execution]:
            cur.execute(
                """SELECT order_id, symbol, side, quantity, extract(epoch FROM "timestamp")
                   FROM trade_executions
                   WHERE status IN ('FILLED', 'PARTIALLY_FILLED')
                     AND "timestamp" BETWEEN (to_timestamp(%s) AT TIME ZONE 'UTC')
                                         AND (to_timestamp(%s) AT TIME ZONE 'UTC')
                   ORDER BY "timestamp" LIMIT 10000""",
                (since, until),
            )
            return [
                Execution(
                    order_id=str(r[0]),
                    symbol=r[1],
                    side=r[2],
                    quantity=float(r[3]),
                    at=float(r[4]),
                )
                for r in cur.fetchall()
            ]

        return self._run(work)
