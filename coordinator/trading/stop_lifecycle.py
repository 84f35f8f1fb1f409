"""The life of one holding's stop, as a pure state machine.

The TrailingStop feeds each holding's ``Lifecycle`` with events (a tick, an exit's
decision, a positions fetch, our own SELL filled, the stored states of earlier exit
orders, time passing) through ``step``, which returns the new lifecycle and the actions
to take. The actor does the I/O; nothing here reads a clock or a socket. The rules that
keep money safe, all enforced here:

* One exit in flight per holding: an exit is sent only from ``WATCHING`` (first hit) or
  after the stored orders were read (``CHECKING``), and the phase is ``EXITING`` until
  its decision comes back or is looked up.
* No new attempt while an earlier one's order is unresolved: every attempt but a first
  one on a holding with no history goes through ``CHECKING``, which reads the stored
  states of the earlier exit orders; an unknown, pending or sent one parks the holding
  in ``AWAITING_ORDER`` until that order is reconciled or resolved by an operator.
* An exit is sent only on a fresh price at or below the stop (``price`` None if stale).
* A stop that sold (our own SELL filled) or found dust never sends again by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from coordinator.trading.backoff import Backoff
from coordinator.trading.execution import UNRESOLVED_ORDER_STATES, OrderStatus
from coordinator.trading.stop_events import (
    Action,
    Alert,
    Decided,
    DecisionMissing,
    ExitOutcome,
    FetchPositions,
    LookUpDecision,
    OrderSeen,
    OrdersRead,
    OwnSellFilled,
    PositionsSeen,
    ReadOrders,
    RecordStopLoss,
    SendExit,
    StopEvent,
    Tick,
    Timer,
)
from coordinator.trading.validation import Reason

__all__ = [
    "TIMED_PHASES",
    "UNRESOLVED_ORDER_STATES",
    "Action",
    "Alert",
    "Decided",
    "DecisionMissing",
    "ExitOutcome",
    "FetchPositions",
    "Lifecycle",
    "LifecycleParams",
    "LookUpDecision",
    "OrderSeen",
    "OrdersRead",
    "OwnSellFilled",
    "Phase",
    "PositionsSeen",
    "ReadOrders",
    "RecordStopLoss",
    "SendExit",
    "StopEvent",
    "Tick",
    "Timer",
    "step",
]


class Phase(StrEnum):
    WATCHING = "watching"
    """Follows the price; the first fresh price at or below the stop starts an exit."""
    CHECKING = "checking_orders"
    """A new attempt is due: the stored orders of the earlier attempts are being read."""
    EXITING = "exiting"
    """One exit is in flight; its decision is awaited."""
    RETRY = "retry"
    """The last exit failed; a new attempt is due at ``retry_at`` if still hit."""
    AWAITING_ORDER = "awaiting_order"
    """An earlier exit order's outcome is unknown: nothing is sent until it is reconciled
    or an operator resolves it."""
    SOLD = "sold"
    """Our SELL filled: nothing more to sell; closed once the Portfolio drops it."""
    DUST = "dust"
    """What is left is too small to sell: final, reported, never retried."""
    CLOSED = "closed"
    """The holding is gone."""


# Rejections saying the holding is not as the stop knows it: look at the positions now.
_REEXAMINE = frozenset({Reason.NO_POSITION, Reason.POSITION_CHANGED})
_FINAL = frozenset({Reason.DUST_REMAINDER})
_CLOSED_BECAUSE = {Phase.SOLD: "sold", Phase.DUST: "dust left, no longer shown"}
# Phases in which the stop may still send (the holding is ours to protect).
LIVE_PHASES = frozenset(
    {Phase.WATCHING, Phase.CHECKING, Phase.EXITING, Phase.RETRY, Phase.AWAITING_ORDER}
)
# The only phases a Timer changes anything in (the actor steps no others with it).
TIMED_PHASES = frozenset({Phase.EXITING, Phase.RETRY, Phase.AWAITING_ORDER, Phase.SOLD})


@dataclass(frozen=True, slots=True)
class LifecycleParams:
    exit_timeout: float = 60.0
    """An exit without a decision after this is looked up."""
    exit_settle: float = 90.0
    """A sold holding still shown this long after its sale is watched again (alert)."""
    retry_base: float = 1.0
    """First wait after a failed exit."""
    retry_max: float = 60.0
    """Longest wait between attempts."""
    misses_to_close: int = 2
    """Successful fetches in a row without the holding before its stop closes."""


@dataclass(frozen=True, slots=True)
class Lifecycle:
    phase: Phase = Phase.WATCHING
    """Where the stop is."""
    attempt: int = 0
    """Exits sent so far; the current one is ``exit:<key>:<attempt>``."""
    failures: int = 0
    """Failed exits in a row."""
    sent_at: float | None = None
    """When the current exit was sent, or its outcome came."""
    retry_at: float | None = None
    """When a failed exit may be tried again."""
    confirmed: bool = True
    """The Portfolio showed the holding since it was restored: a restored stop sends
    nothing before (the holding may have been sold and another opened meanwhile)."""
    clean: bool = False
    """No earlier attempt can exist anywhere (adopted here, nothing stored): its first
    exit needs no reading of stored orders."""
    sold_attempt: int = 0
    """Accepted attempts up to this one are known; one of them does not end the stop."""
    waiting_on: str | None = None
    """The unresolved order (client order id, or exit id before it is read)."""
    lookup_pending: bool = False
    """The current exit's decision is being looked up."""
    resent: bool = False
    """The current exit was found lost and sent again under its own id."""
    resend_on_price: bool = False
    """The current exit was found lost while no fresh price was known: it is sent again
    (under its own id) at the first tick with a fresh price, if still hit."""
    missing: int = 0
    """Successful fetches in a row without the holding."""
    seen_at: float | None = None
    """When the Portfolio last showed the holding."""
    detail: str = ""
    """The last thing that happened, for a person."""

    @property
    def seen_unchanged(self) -> bool:
        """A fetch showing the holding changes nothing (seen_at is read in SOLD alone)."""
        return self.confirmed and not self.missing and self.phase is not Phase.SOLD

    @property
    def live(self) -> bool:
        return self.phase in LIVE_PHASES

    @property
    def may_rekey(self) -> bool:
        """Whether its key may change now: not while an exit is sent, checked or
        unsettled (the exit ids of the attempt in hand are under the current key)."""
        return self.phase in (Phase.WATCHING, Phase.RETRY)


# --- the machine ----------------------------------------------------------------------


def step(
    life: Lifecycle,
    event: StopEvent,
    *,
    now: float,
    price: float | None,
    stop: float,
    entry: float,
    params: LifecycleParams,
) -> tuple[Lifecycle, tuple[Action, ...]]:
    """The lifecycle after ``event`` and what to do. ``price`` is the latest price when
    it is fresh (None otherwise); ``stop`` and ``entry`` are the holding's now."""
    hit = price is not None and math.isfinite(price) and price <= stop
    match event:
        case Tick():
            if life.phase is Phase.WATCHING and hit:
                return _begin(life, now, price, "stop hit")
            return life, ()
        case Timer():
            return _on_timer(life, now, price, hit, params)
        case Decided():
            return _on_decided(life, event, now, price, entry, params)
        case DecisionMissing(attempt=attempt):
            if life.phase is Phase.EXITING and attempt == life.attempt:
                return _on_missing(life, now, price, hit, params)
            return replace(life, lookup_pending=False), ()
        case PositionsSeen(held=held):
            return _on_positions(life, held, now, price, hit, params)
        case OwnSellFilled(detail=detail):
            if life.phase in (Phase.CLOSED, Phase.DUST):
                return life, ()
            return (
                replace(
                    life,
                    phase=Phase.SOLD,
                    sent_at=now,
                    sold_attempt=life.attempt,
                    failures=0,
                    waiting_on=None,
                    detail=f"sold by our own SELL ({detail}): no more exits",
                ),
                (),
            )
        case OrdersRead():
            return _on_orders(life, event, now, price, hit)
    raise TypeError(f"not a stop lifecycle event: {event!r}")


def _begin(
    life: Lifecycle, now: float, price: float | None, why: str
) -> tuple[Lifecycle, tuple[Action, ...]]:
    """A new attempt is due on a fresh price at or below the stop."""
    assert price is not None
    if not life.confirmed:
        return replace(
            life,
            detail=f"{why} at {price:.8g}, but the holding is not confirmed by the "
            "Portfolio since the restart: no exit",
        ), ()
    if life.attempt == 0 and life.clean:
        return _send(life, now, price, why)
    return replace(
        life,
        phase=Phase.CHECKING,
        retry_at=None,
        detail=f"{why} at {price:.8g}: reading the earlier exit orders first",
    ), (ReadOrders(),)


def _send(
    life: Lifecycle, now: float, price: float, why: str
) -> tuple[Lifecycle, tuple[Action, ...]]:
    attempt = life.attempt + 1
    return replace(
        life,
        phase=Phase.EXITING,
        attempt=attempt,
        sent_at=now,
        retry_at=None,
        waiting_on=None,
        lookup_pending=False,
        resent=False,
        resend_on_price=False,
        detail=f"exit {attempt} sent: {why} at {price:.8g}",
    ), (SendExit(attempt=attempt, price=price),)


def _on_missing(
    life: Lifecycle, now: float, price: float | None, hit: bool, params: LifecycleParams
) -> tuple[Lifecycle, tuple[Action, ...]]:
    """No decision long after the exit was sent: lost on the way (its Validator crashed
    with it). Sent again once under its own id, so that the signal stored for it gets
    its decision (an order already claimed for it is never sent twice: the Validator
    finds the claim and decides it unknown, or rejected when it is stored rejected),
    on a fresh price still at or under the stop; lost again, stuck, or the price gone
    above the stop: the next attempt reads its order first."""
    life = replace(life, lookup_pending=False)
    if life.resent or (price is not None and not hit):
        return _failed(life, "no decision in time", now, params)
    if price is None:
        return replace(
            life,
            sent_at=now,
            resend_on_price=True,
            detail=f"exit {life.attempt} lost; sent again on a fresh price",
        ), ()
    return replace(
        life, sent_at=now, resent=True, detail=f"exit {life.attempt} lost; sent again"
    ), (SendExit(attempt=life.attempt, price=price),)


def _failed(
    life: Lifecycle, why: str, now: float, params: LifecycleParams
) -> tuple[Lifecycle, tuple[Action, ...]]:
    failures = life.failures + 1
    wait = Backoff(params.retry_base, params.retry_max).delay(max(0, failures - 1))
    return replace(
        life,
        phase=Phase.RETRY,
        failures=failures,
        retry_at=now + wait,
        detail=f"exit {life.attempt} failed ({why}); again in {wait:g} s if still hit",
    ), ()


def _on_timer(
    life: Lifecycle, now: float, price: float | None, hit: bool, params: LifecycleParams
) -> tuple[Lifecycle, tuple[Action, ...]]:
    phase = life.phase
    if phase is Phase.EXITING and life.resend_on_price and price is not None and life.confirmed:
        # Not left to the exit timeout: after a failover every exit the old leader had
        # in flight is found lost at once, before any price has come in.
        life = replace(life, resend_on_price=False, resent=False)
        return _on_missing(life, now, price, hit, params)
    if phase is Phase.RETRY and life.retry_at is not None and now >= life.retry_at:
        if hit:
            return _begin(life, now, price, "still hit")
        if price is not None:
            return replace(
                life, phase=Phase.WATCHING, detail="price above the stop again; watching"
            ), ()
        return replace(life, detail="exit due again, but the price is stale: waiting for one"), ()
    if (
        phase is Phase.EXITING
        and life.sent_at is not None
        and now - life.sent_at > params.exit_timeout
        and not life.lookup_pending
    ):
        return replace(life, lookup_pending=True), (LookUpDecision(attempt=life.attempt),)
    if phase is Phase.AWAITING_ORDER:
        return life, (ReadOrders(),)
    if (
        phase is Phase.SOLD
        and life.sent_at is not None
        and life.seen_at is not None
        and life.seen_at - life.sent_at > params.exit_settle
    ):
        held_for = life.seen_at - life.sent_at
        text = f"still held {held_for:.0f} s after it was sold: watched again"
        # Watched again, but any new attempt reads the stored orders first.
        return replace(
            life,
            phase=Phase.WATCHING,
            clean=False,
            sold_attempt=life.attempt,
            detail=f"ALERT {text}",
        ), (Alert(text=text),)
    return life, ()


def _on_decided(
    life: Lifecycle,
    event: Decided,
    now: float,
    price: float | None,
    entry: float,
    params: LifecycleParams,
) -> tuple[Lifecycle, tuple[Action, ...]]:
    attempt, outcome = event.attempt, event.outcome
    if life.phase in (Phase.CLOSED, Phase.DUST):
        return life, ()
    if outcome is ExitOutcome.ACCEPTED or outcome is ExitOutcome.SHADOW:
        if attempt <= life.sold_attempt:
            return life, ()  # known already (a duplicate, or closed by the fill itself)
        if life.phase is Phase.SOLD and life.attempt > attempt:
            return life, ()
        actions: tuple[Action, ...] = ()
        if outcome is ExitOutcome.ACCEPTED and price is not None and price < entry:
            actions = (RecordStopLoss(),)
        how = "filled" if outcome is ExitOutcome.ACCEPTED else "in shadow mode: not sent"
        return replace(
            life,
            phase=Phase.SOLD,
            sent_at=now,
            failures=0,
            waiting_on=None,
            lookup_pending=False,
            sold_attempt=max(life.sold_attempt, attempt),
            detail=f"exit {attempt} {how}: {event.detail}",
        ), actions
    current = attempt == life.attempt and life.phase is Phase.EXITING
    if outcome is ExitOutcome.UNKNOWN:
        if life.phase is Phase.SOLD or (life.phase is Phase.EXITING and not current):
            # Sold already; or a late copy about an older attempt, which the reading of
            # the orders before the current one has seen.
            return life, ()
        text = f"exit {attempt} outcome unknown ({event.detail}): nothing sent until resolved"
        return replace(
            life,
            phase=Phase.AWAITING_ORDER,
            sent_at=now,
            lookup_pending=False,
            waiting_on=life.waiting_on if life.phase is Phase.AWAITING_ORDER else None,
            detail=f"ALERT {text}",
        ), (Alert(text=text), ReadOrders())
    if not current:
        return life, ()  # an older attempt's rejection: the current one decides
    life = replace(life, lookup_pending=False)
    reason = event.reason or ""
    if reason in _FINAL:
        return replace(
            life,
            phase=Phase.DUST,
            sent_at=now,
            detail=f"exit {attempt}: {reason}: {event.detail}; not retried",
        ), ()
    actions = ()
    if reason in _REEXAMINE:
        # The Ledger does not hold this holding as the stop knows it: the positions
        # decide (the stop closes if it is gone); until then a retry like any failure.
        life = replace(life, missing=max(life.missing, 1))
        actions = (FetchPositions(),)
    life, more = _failed(life, f"{reason}: {event.detail}", now, params)
    return life, actions + more


def _on_positions(
    life: Lifecycle,
    held: bool,
    now: float,
    price: float | None,
    hit: bool,
    params: LifecycleParams,
) -> tuple[Lifecycle, tuple[Action, ...]]:
    if life.phase is Phase.CLOSED:
        return life, ()
    if held:
        if life.seen_unchanged:
            return life, ()  # most of every fetch
        confirmed_now = not life.confirmed
        life = replace(life, confirmed=True, missing=0, seen_at=now)
        if confirmed_now and life.phase is Phase.WATCHING and hit:
            # A restored stop hit while it waited for this confirmation exits now.
            return _begin(life, now, price, "stop hit")
        return life, ()
    if life.phase is Phase.EXITING:
        return life, ()  # its decision says what happened
    missing = life.missing + 1
    if missing < params.misses_to_close:
        return replace(life, missing=missing), ()
    why = _CLOSED_BECAUSE.get(life.phase, "no longer held (closed elsewhere)")
    return replace(life, phase=Phase.CLOSED, missing=missing, detail=why), ()


def _on_orders(
    life: Lifecycle, event: OrdersRead, now: float, price: float | None, hit: bool
) -> tuple[Lifecycle, tuple[Action, ...]]:
    if life.phase not in (Phase.CHECKING, Phase.AWAITING_ORDER):
        return life, ()
    if event.error is not None:
        # Unreadable: no decision. CHECKING falls back to a retry (read again then).
        if life.phase is Phase.CHECKING:
            return replace(
                life,
                phase=Phase.RETRY,
                retry_at=now,
                detail=f"earlier exit orders not read ({event.error}): nothing sent",
            ), ()
        return life, ()
    open_ = [o for o in event.orders if o.state in UNRESOLVED_ORDER_STATES]
    if open_:
        first = min(open_, key=lambda o: o.client_order_id)
        return replace(
            life,
            phase=Phase.AWAITING_ORDER,
            waiting_on=first.client_order_id,
            detail=f"waiting for order {first.client_order_id} ({first.state}) to be "
            "reconciled or resolved: nothing sent",
        ), ()
    sold = [
        o
        for o in event.orders
        if o.state == OrderStatus.ACCEPTED
        and o.attempt is not None
        and o.attempt > life.sold_attempt
    ]
    if sold:
        attempt = max(o.attempt or 0 for o in sold)
        return replace(
            life,
            phase=Phase.SOLD,
            sent_at=now,
            waiting_on=None,
            sold_attempt=attempt,
            failures=0,
            detail=f"exit {attempt} found filled ({sold[0].client_order_id}): no more exits",
        ), ()
    if hit:
        assert price is not None
        return _send(replace(life, waiting_on=None), now, price, "stop still hit")
    if price is not None:
        return replace(
            life,
            phase=Phase.WATCHING,
            waiting_on=None,
            detail="earlier exit orders settled; price above the stop: watching",
        ), ()
    return replace(
        life,
        phase=Phase.RETRY,
        retry_at=now,
        waiting_on=None,
        detail="earlier exit orders settled; no fresh price: waiting for one",
    ), ()
