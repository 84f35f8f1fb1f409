"""Validator: checks the signals of its symbols, in order, and sends the accepted ones.

One Validator per partition of symbols, so a symbol is never decided twice at once.
Steps 4-5 run here on state that arrives as events (trading state, universe, prices);
steps 6-9 are asked of the Ledger; step 10 is here: the order intent is stored under a
client order id derived from the signal id before ``POST /order``, and an intent that
already exists is never sent again. While the Trader is unreachable, signals wait (at
most until ``signal_timeout`` after their timestamp) and are checked again from step 4
once it answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import pykka

from coordinator.actors.held_orders import HoldsOrders
from coordinator.actors.names import ActorName
from coordinator.actors.outbox import Outbox
from coordinator.actors.reconciler import match_policy
from coordinator.actors.validator_batch import (
    LEDGER_UNAVAILABLE,
    RESERVE_TIMEOUT,
    ReservesTogether,
)
from coordinator.actors.validator_exits import TakesExits
from coordinator.actors.validator_orders import SendsOrders
from coordinator.actors.validator_waiting import WaitQueue
from coordinator.config.parts import ValidatorSettings
from coordinator.infra.order_gateway import OrderGateway
from coordinator.infra.trader_client import TraderClient
from coordinator.messages.base import Command
from coordinator.messages.health import GetHealthSnapshot, TradingStateChanged
from coordinator.messages.pipeline import (
    Decision,
    GetValidatorSnapshot,
    OrderRecord,
    PricesUpdated,
    PriceUpdated,
    RecordDecision,
    Reservation,
    Reserve,
    SubmitSignal,
    ValidatorSnapshot,
    ValidatorTick,
)
from coordinator.messages.reconcile import HeldOrderResolved
from coordinator.messages.stops import ExitPosition
from coordinator.messages.universe import GetUniverse, UniverseChanged
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.evolve import evolve
from coordinator.trading.execution import OrderStatus
from coordinator.trading.routing import client_order_id
from coordinator.trading.sizing_roottrading import universe_override
from coordinator.trading.trading_state import StateReason, TradingState, TradingStatus
from coordinator.trading.validation import (
    CheckResult,
    MarketQuote,
    OrderPlan,
    Outcome,
    Reason,
    check_trading_state,
    check_universe,
    waiting_for_trader,
)
from coordinator.trading.wait_queue import SignalQueue

__all__ = ["Validator"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


_UNKNOWN_STATE = TradingStatus(
    TradingState.HALTED,
    (StateReason("trading_state_unknown", "ServiceHealth has not told the trading state yet"),),
)


class Validator(HoldsOrders, SendsOrders, ReservesTogether, TakesExits, WaitQueue, ChildActor):
    # Prices are told by the MarketFeed to the owner of the symbol only.
    subscriptions = (TradingStateChanged, UniverseChanged)
    settings: ValidatorSettings
    takes_leading = True  # the signals waiting together are reserved together

    def setup(self) -> None:
        services: Services = self.context.services
        execution = self.settings.execution
        self._services = services
        self._clock = self.context.clock
        self._timeout = self.settings.signal_timeout
        self._stop_price_max_age = self.settings.stop_price_max_age
        self._enabled = self.settings.trading_enabled
        self._universe_override = self.settings.universe_override
        self._universe: frozenset[str] | None = None
        self._blacklist: dict[str, str] = {}
        self._prices: dict[str, MarketQuote] = {}
        self._waiting: SignalQueue[SubmitSignal] = SignalQueue()
        self._decided = 0
        self._outbox = Outbox(self.context.directory)
        self._sending = False
        # Reservations not settled yet (the plan names what a Settle settles), and
        # whether the order being processed may have left (for the ``finally``).
        self._reserved: dict[str, OrderPlan] = {}
        self._unbegun = {}
        self._submitted = False
        self._trader_failed = False
        self._init_held(match_policy(execution.read_timeout).window_after)
        self._incarnation_started = self._clock.time()
        url = services.endpoints.trader_url
        self._gateway = OrderGateway(
            intents=services.intents,
            claimed_ahead=services.claimed_ahead,
            trader=(
                TraderClient(
                    url,
                    connect_timeout=execution.connect_timeout,
                    read_timeout=execution.read_timeout,
                )
                if url
                else None
            ),
        )
        self.on_cleanup(self._gateway.close, what="order gateway")
        self.on_cleanup(self._release_unbegun, what="reservations of signals not begun")
        self._status = self._ask_trading_state()
        self._ask_universe()
        self._warm = False
        self.ticker(0.25, ValidatorTick)
        self._kept_exits = services.kept_exits
        for record in self._kept_exits.copy().values():
            if record["validator"] == self.name:
                # Taken in by an earlier incarnation and not decided: in again, after
                # what is already in the inbox (a copy sent again is skipped then).
                self.actor_ref.tell(record["message"])

    def _warm_up(self) -> None:
        """Connections to PostgreSQL (intents) and the Trader opened before the first
        order, not by it: opening them costs that order milliseconds. Once per incarnation,
        after start (a server down makes it return at once or within its connect timeout)."""
        self._warm = True
        problems = self._gateway.warm()
        if problems:
            logger.info("connections not opened ahead (the first order opens them): %s", problems)

    def _ask_trading_state(self, timeout: float = 2.0, *, quiet: bool = False) -> TradingStatus:
        try:
            return self.context.directory.ask(
                ActorName.SERVICE_HEALTH, GetHealthSnapshot(), timeout=timeout
            ).trading
        except (ChildUnavailable, pykka.Timeout, pykka.ActorDeadError) as exc:
            # Held back until ServiceHealth answers or tells: HALTED meanwhile.
            if not quiet:
                logger.warning("trading state unknown (%s); HALTED until known", exc)
            return _UNKNOWN_STATE

    def _ask_universe(self, timeout: float = 2.0, *, quiet: bool = False) -> None:
        try:
            snapshot = self.context.directory.ask(
                ActorName.UNIVERSE_MANAGER, GetUniverse(), timeout=timeout
            )
        except (ChildUnavailable, pykka.Timeout, pykka.ActorDeadError) as exc:
            # Later changes come as events; until one does, no BUY (kept: SELLs).
            if not quiet:
                logger.warning("universe unknown (%s); no BUY until it is", exc)
            return
        self._universe = snapshot.selected
        self._blacklist = dict(snapshot.blacklist)

    def handle(self, message: Any) -> Any:
        match message:
            case SubmitSignal():
                batch = self._taken_with(message)
                if len(batch) == 1:
                    self._on_signal(message)
                else:
                    self._on_signals(batch)
            case ExitPosition():
                self._on_exit(message)
            case HeldOrderResolved():
                self._held_resolved(message)
            case PricesUpdated(updates=updates):
                for update in updates:
                    self._prices[update.symbol] = MarketQuote(update.price, update.at)
            case PriceUpdated(symbol=symbol, price=price, at=at):
                self._prices[symbol] = MarketQuote(price, at)
            case TradingStateChanged(status=status):
                self._status = status
                self._retry_waiting()
            case UniverseChanged(selected=selected, blacklist=blacklist):
                self._universe = selected
                self._blacklist = dict(blacklist)
            case ValidatorTick():
                if not self._warm:
                    self._warm_up()
                if self._status is _UNKNOWN_STATE:
                    # Changes come as events; if none came since we started, ask again.
                    self._status = self._ask_trading_state(timeout=0.5, quiet=True)
                if self._universe is None:
                    self._ask_universe(timeout=0.5, quiet=True)
                self._expire_waiting()
                self._retry_waiting()
            case GetValidatorSnapshot():
                return ValidatorSnapshot(
                    name=self.name,
                    waiting=len(self._waiting),
                    trading_state=self._status.state.value,
                    decided=self._decided,
                )
            case _:
                return NOT_HANDLED
        return None

    # --- flow -------------------------------------------------------------------------

    def _on_signal(self, message: SubmitSignal) -> None:
        if not self._skipped(message):
            self._process(message)

    def _skipped(self, message: SubmitSignal) -> bool:
        """Whether the signal goes no further now: a copy of one seen, or one queued."""
        signal_id = message.signal.signal_id
        if signal_id in self._services.decided or self._waiting.has_signal(signal_id):
            # A second copy (kept by the directory, or sent again by the intake after a
            # restart) of a signal that is decided or waiting here already.
            if message.exit is not None and signal_id in self._services.decided:
                self._kept_exits.drop(signal_id)
            return True
        if self._waiting.has_symbol(message.signal.symbol):
            # Keep each symbol's order: behind the ones already waiting.
            self._wait(message, Reason.TRADER_UNAVAILABLE, "queued behind")
            return True
        return False

    def _process(self, message: SubmitSignal) -> None:
        """Steps 4 to 10 for one signal."""
        if not self._partition_lost(message):
            self._guarded(message, self._steps, message)

    def _guarded(self, message: SubmitSignal, step: Callable[..., T], *args: Any) -> T | None:
        """A step of the signal's path. A bug on one signal is that signal's decision, not
        a crash of the Validator (which would meet the same signal again)."""
        self._sending = False
        try:
            return step(*args)
        except Exception as exc:
            logger.exception("internal error on %s", message.signal.signal_id)
            self._internal_error(message, exc, sending=self._sending)
            return None

    def _internal_error(self, message: SubmitSignal, exc: Exception, *, sending: bool) -> None:
        """The signal decided after a bug on it; ``sending``: its order may have left."""
        if message.signal.signal_id in self._services.decided:
            return
        detail = f"internal error: {type(exc).__name__}: {exc}"
        if sending:
            # The order may have left: never treat it as not sent.
            failure = CheckResult("execution", False, Reason.ORDER_UNKNOWN, detail)
            self._decide(message, (*message.checks, failure), outcome=Outcome.UNKNOWN)
        else:
            failure = CheckResult("execution", False, Reason.INTERNAL_ERROR, detail)
            self._decide(message, (*message.checks, failure))

    def _steps(self, message: SubmitSignal) -> None:
        done = self._checks_before_reserve(message)
        if done is None:
            return
        try:
            reservation: Reservation = self.context.directory.ask(
                ActorName.LEDGER, self._reserve_of(message), timeout=RESERVE_TIMEOUT
            )
        except LEDGER_UNAVAILABLE as exc:
            self._ledger_unavailable(message, done, exc)
            return
        self._with_reservation(message, done, reservation)

    def _checks_before_reserve(self, message: SubmitSignal) -> tuple[CheckResult, ...] | None:
        """Steps 4 and 5, and an order held before sent again. The checks passed when
        the signal goes on to the Ledger; None when it is decided, waits, or was sent."""
        signal = message.signal
        checks = message.checks
        state_check = check_trading_state(signal, self._status)
        if not state_check.passed:
            if waiting_for_trader(self._status, signal.side) and not self._expired(message):
                self._wait(message, Reason.TRADER_UNAVAILABLE, state_check.detail)
                return None
            self._decide(message, (*checks, state_check))
            return None
        override = universe_override(signal, self._universe_override)
        universe_check = check_universe(signal, self._universe, self._blacklist, override)
        if (
            override is not None
            and universe_check.passed
            and self._universe is not None
            and signal.symbol not in self._universe
        ):
            logger.info(
                "universe override: BUY %s outside the universe goes on to the risk checks "
                "(%s: consensus force %.2f, %d strategies)",
                signal.symbol,
                signal.signal_id,
                override.value,
                override.strategies,
            )
        done = (*checks, state_check, universe_check)
        if not universe_check.passed:
            self._decide(message, done)
            return None
        plan = self._resend_plans.pop(signal.signal_id, None)
        if (
            plan is None
            and client_order_id(signal.signal_id) not in self._resending
            and message.received_at < self._incarnation_started
            and self._held_before(message, done)
        ):
            return None  # held by an earlier incarnation: it waits for the reconciliation again
        if plan is not None:
            # Sent again as held before a restart: that attempt's room is still in the
            # Ledger (its reservation died with the incarnation), so no second one.
            self._execute(message, done, plan, None)
            return None
        return done

    def _reserve_of(self, message: SubmitSignal) -> Reserve:
        return Reserve(
            signal=message.signal,
            market=self._prices.get(message.signal.symbol),
            exit=message.exit,
            owner=f"{self.name}#{self.context.incarnation}",
            deadline=self._clock.time() + RESERVE_TIMEOUT,
        )

    def _ledger_unavailable(
        self, message: SubmitSignal, done: tuple[CheckResult, ...], exc: Exception
    ) -> None:
        if not self._expired(message):
            self._wait(message, Reason.INTERNAL_ERROR, f"ledger unavailable: {exc}")
            return
        failure = CheckResult("risk", False, Reason.INTERNAL_ERROR, f"ledger unavailable: {exc}")
        self._decide(message, (*done, failure))

    def _with_reservation(
        self, message: SubmitSignal, done: tuple[CheckResult, ...], reservation: Reservation
    ) -> None:
        """Steps 6-9 as the Ledger answered them, and step 10 if they passed."""
        done = (*done, *reservation.checks)
        if reservation.plan is None or reservation.reservation_id is None:
            failure = done[-1]
            if failure.reason is Reason.MARKET_DATA_UNAVAILABLE and not self._expired(message):
                # No price of the symbol since this Validator started (a new process
                # with signals waiting in the stream): its first ticks come within
                # seconds, and the signal is checked again from step 4 on each tick.
                self._wait(message, Reason.MARKET_DATA_UNAVAILABLE, failure.detail)
                return
            self._decide(message, done)
            return
        plan, reservation_id = reservation.plan, reservation.reservation_id
        self._reserved[reservation_id] = plan
        self._submitted = False
        try:
            if not self._enabled:
                self._settle(reservation_id, False)
                execution = CheckResult(
                    "execution", True, None, "shadow mode (TRADING_ENABLED=false): not sent"
                )
                self._decide(message, (*done, execution), plan=plan, shadow=True)
                return
            self._execute(message, done, plan, reservation_id)
        finally:
            if reservation_id in self._reserved and not self._holds(reservation_id):
                # An exception (or a path) left the reservation unsettled: settled here,
                # never leaked. Unknown once the order may have left. (A 5xx answer held
                # for the reconciliation keeps its room until it is settled.)
                self._settle(reservation_id, None if self._submitted else False)

    # --- recording --------------------------------------------------------------------

    def _decide(
        self,
        message: SubmitSignal,
        checks: tuple[CheckResult, ...],
        *,
        plan: OrderPlan | None = None,
        order: OrderRecord | None = None,
        order_ms: float | None = None,
        outcome: Outcome | None = None,
        shadow: bool = False,
    ) -> None:
        signal = message.signal
        failure = next((c for c in checks if not c.passed), None)
        if outcome is None:
            outcome = (
                Outcome.SHADOW if shadow else (Outcome.REJECTED if failure else Outcome.ACCEPTED)
            )
        decision = Decision(
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side.value,
            outcome=outcome.value,
            reason=None if failure is None or failure.reason is None else failure.reason.value,
            detail=failure.detail if failure is not None else checks[-1].detail if checks else "",
            checks=checks,
            quantity=None if plan is None else plan.quantity,
            decided_at=self._clock.time(),
            decided_by=f"{self.name}#{self.context.incarnation}",
            intake_to_decision_ms=(self._clock.monotonic() - message.received_mono) * 1000.0,
            intake_to_order_ms=order_ms,
            order=order,
        )
        if not self._services.decided.add(signal.signal_id):
            logger.error(
                "%s was decided elsewhere meanwhile; this decision dropped", signal.signal_id
            )
            self._kept_exits.drop(signal.signal_id)
            return
        order_id = client_order_id(signal.signal_id)
        resent = order_id in self._resending
        self._resending.discard(order_id)
        if order is None and (
            self._gateway.forget(order_id) or self._gateway.take_claimed_ahead(order_id)
        ):
            # An intent that never left: close it, so it is not taken for a lost order.
            order = OrderRecord(
                client_order_id=order_id,
                signal_id=signal.signal_id,
                symbol=signal.symbol,
                side=signal.side.value,
                quantity=0.0 if plan is None else plan.quantity,
                reference_price=signal.price if plan is None else plan.reference_price,
                state=OrderStatus.REJECTED,
                error=("not executed (a 5xx), not sent again: " if resent else "never sent: ")
                + decision.detail,
                at=self._clock.time(),
            )
            decision = replace(decision, order=order)
        self._decided += 1
        self._store(RecordDecision(decision=decision))
        if message.exit is not None:
            self._kept_exits.drop(signal.signal_id)

    def _moved(self, order: OrderRecord, **changes: Any) -> OrderRecord:
        """The order in a new state, stamped now."""
        return evolve(order, **{**changes, "at": self._clock.time()})

    def _store(self, message: Command) -> None:
        """Kept for the StoreWriter until the turn ends or an order is about to be sent
        (``Outbox``): an order's decision goes with the next order's sending, a batch's
        refusals together. Never later than the send, so an order is recorded sent
        before its request leaves, as when each was told alone."""
        self._outbox.record(message)

    def _flush_store(self) -> None:
        self._outbox.flush()

    def after_turn(self) -> None:
        self._outbox.flush()
