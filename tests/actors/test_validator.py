"""A Validator alone: its Trader a paper exchange on real HTTP, its intents in the real
PostgreSQL, stand-ins for ServiceHealth, the UniverseManager, the Ledger, the StoreWriter
and the Reconciler. Accepted, refused by the Ledger, and held while the Trader is down
until the clock passes the signal's timeout."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pykka
import pytest

from coordinator.actors.validator import Validator
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.intent_claims import IntentClaims
from coordinator.infra.journal import Journal
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.store import connect
from coordinator.messages.health import GetHealthSnapshot, TradingStateChanged
from coordinator.messages.ledger import (
    OrderNotExecuted,
    Reservation,
    Reserve,
    ReserveMany,
    Settle,
)
from coordinator.messages.pipeline import (
    GetValidatorSnapshot,
    OrderRecord,
    PriceUpdated,
    RecordDecision,
    SubmitSignal,
)
from coordinator.messages.reconcile import HeldOrderResolved
from coordinator.messages.stops import ExitPosition
from coordinator.messages.universe import GetUniverse, UniverseSnapshot
from coordinator.trading.routing import client_order_id
from coordinator.trading.signals import Side, Signal, parse_signal
from coordinator.trading.trading_state import StateReason, TradingState, TradingStatus
from coordinator.trading.validation import CheckResult, OrderPlan, Reason
from tests.pipeline import PRICES, SYMBOLS, signal_payload
from tests.solo import Solo
from tests.trees import make_services
from tests.waiting import wait_for

TIMEOUT = 30.0
ACTIVE = TradingStatus(state=TradingState.ACTIVE, reasons=())


def service_health(message: object) -> object:
    if isinstance(message, GetHealthSnapshot):
        return SimpleNamespace(trading=ACTIVE)
    return None


def universe_manager(message: object) -> object:
    if isinstance(message, GetUniverse):
        return UniverseSnapshot(selected=frozenset(SYMBOLS), blacklist=())
    return None


class Ledger:
    """Answers every Reserve with a plan of ``quantity`` (None: refused), and each of a
    ReserveMany's the same way."""

    def __init__(self) -> None:
        self.quantity: float | None = 0.01
        self.before: Callable[[object], None] | None = None
        """Runs first on each message (a test holds the Ledger with it)."""
        self.require_market = False
        """Refuse a signal of a symbol whose price the Validator does not know yet."""

    def __call__(self, message: object) -> object:
        if self.before is not None:
            self.before(message)
        if isinstance(message, ReserveMany):
            return tuple(self._reserve(reserve) for reserve in message.reserves)
        if not isinstance(message, Reserve):
            return None
        return self._reserve(message)

    def _reserve(self, message: Reserve) -> Reservation:
        signal = message.signal
        if self.require_market and message.market is None:
            missing = CheckResult(
                "market",
                False,
                Reason.MARKET_DATA_UNAVAILABLE,
                f"no market price for {signal.symbol} yet",
            )
            return Reservation(checks=(missing,), plan=None, reservation_id=None)
        if self.quantity is None:
            refused = CheckResult("risk", False, Reason.MAX_CONCURRENT_TRADES, "test: no room")
            return Reservation(checks=(refused,), plan=None, reservation_id=None)
        plan = OrderPlan(
            symbol=signal.symbol,
            side=signal.side,
            quantity=self.quantity,
            reference_price=PRICES[signal.symbol],
            notional=self.quantity * PRICES[signal.symbol],
            category=None,
        )
        passed = CheckResult("risk", True, None, "test: room")
        return Reservation(checks=(passed,), plan=plan, reservation_id=uuid.uuid4().hex)


@pytest.fixture
def world(
    postgres: EmbeddedPostgres, clear_kill_switch: None, tmp_path: Path, paper: PaperExchange
) -> Iterator[dict[str, Any]]:
    clock = ManualClock()
    config = load_config(
        {
            "VALIDATION_THREADS": "1",
            "SIGNAL_TIMEOUT": str(TIMEOUT),
            "TRADING_SYMBOLS": ",".join(SYMBOLS),
            "COORDINATOR_DATA_DIR": str(tmp_path / "data"),
        }
    )
    services = make_services(
        config,
        redis_url="redis://unused",
        database_dsn=postgres.dsn,
        trader_url=paper.url,
        portfolio_url=paper.url,
        clock=clock,
    )
    journal = Journal(tmp_path / "data" / "journal.jsonl")
    services = dataclasses.replace(
        services,
        journal=journal,
        intents=IntentClaims(postgres.dsn, journal, timeout=2.0, clock=clock),
    )
    ledger = Ledger()
    stand_ins = {
        "service_health": service_health,
        "universe_manager": universe_manager,
        "ledger": ledger,
        "store_writer": None,
        "reconciler": None,
    }
    validator = Solo(Validator, "validator-0", services, clock=clock, stand_ins=stand_ins)
    try:
        yield {
            "validator": validator,
            "paper": paper,
            "ledger": ledger,
            "intents": services.intents,
            "services": services,
            "stand_ins": stand_ins,
        }
    finally:
        validator.stop()


def make_signal(validator: Solo, symbol: str = "ETHUSDC") -> Signal:
    payload = signal_payload(symbol, timestamp_ms=int(validator.clock.time() * 1000))
    signal = parse_signal(json.dumps(payload))
    assert isinstance(signal, Signal), signal
    return signal


def submit(validator: Solo, symbol: str = "ETHUSDC", signal: Signal | None = None) -> Signal:
    now = validator.clock.time()
    signal = signal or make_signal(validator, symbol)
    validator.tell(
        SubmitSignal(
            signal=signal,
            source="http",
            received_at=now,
            received_mono=validator.clock.monotonic(),
        )
    )
    return signal


def decision_of(validator: Solo, signal: Signal) -> Any:
    return validator.told(
        "store_writer",
        RecordDecision,
        lambda m: m.decision.signal_id == signal.signal_id,
    ).decision


def test_an_accepted_signal_makes_one_order_and_settles_its_reservation(world) -> None:
    validator: Solo = world["validator"]
    signal = submit(validator)
    decision = decision_of(validator, signal)
    assert decision.outcome == "accepted", decision.detail
    assert decision.order is not None and decision.order.state == "accepted"
    settle = validator.told("ledger", Settle)
    assert (settle.symbol, settle.filled) == ("ETHUSDC", True)
    assert sum(world["paper"].fills_by_client_id.values()) == 1


def test_a_signal_the_ledger_refuses_is_rejected_and_sends_nothing(world) -> None:
    validator: Solo = world["validator"]
    world["ledger"].quantity = None
    decision = decision_of(validator, submit(validator))
    assert (decision.outcome, decision.reason) == ("rejected", "max_concurrent_trades")
    assert not world["paper"].fills_by_client_id


def test_a_signal_waits_while_the_trader_is_down_until_the_clock_passes_its_timeout(
    world,
) -> None:
    validator: Solo = world["validator"]
    down = TradingStatus(
        state=TradingState.HALTED, reasons=(StateReason("trader_down", "test: down"),)
    )
    validator.tell(TradingStateChanged(status=down, previous=ACTIVE, at=validator.clock.time()))
    signal = submit(validator)
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="waiting")
    validator.clock.advance(TIMEOUT - 5)
    validator.clock.settle()  # its ticks handled before the ask: still waiting
    assert validator.ask(GetValidatorSnapshot()).waiting == 1
    validator.clock.advance(10)
    decision = decision_of(validator, signal)
    assert (decision.outcome, decision.reason) == ("rejected", "trader_unavailable")
    assert not world["paper"].fills_by_client_id


def test_a_signal_whose_reservation_met_the_ledger_dying_waits_for_the_next_one(world) -> None:
    """The Ledger crashes with the Validator's Reserve in its inbox: the directory
    answers the ask ActorDeadError as it hands the inbox over. The Ledger is restarted
    at once, so the signal waits and is tried again, as when the Ledger cannot be
    reached; it is not rejected ``internal_error`` (a plain signal would be lost so)."""
    validator: Solo = world["validator"]
    dying = {"once": True}

    def dies_once(message: object) -> None:
        if isinstance(message, Reserve | ReserveMany) and dying.pop("once", False):
            raise pykka.ActorDeadError("ledger stopped before answering")

    world["ledger"].before = dies_once
    signal = submit(validator)
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="waiting")
    validator.clock.advance(1.0)  # its next tick tries it again
    decision = decision_of(validator, signal)
    assert decision.outcome == "accepted", decision.detail
    assert sum(world["paper"].fills_by_client_id.values()) == 1


def test_a_signal_decided_before_any_price_of_its_symbol_waits_for_the_first_one(world) -> None:
    """A Validator just started (a new process, with signals waiting in the stream) has
    no price yet: the first ticks of each symbol come within seconds. A signal the
    Ledger refuses for want of one waits for it, at most until its timeout, instead of
    being rejected ``market_data_unavailable`` (the soak, seed 24, rejected 30 of its
    signals so, in bursts right after its coordinator restarts)."""
    validator: Solo = world["validator"]
    world["ledger"].require_market = True
    signal = submit(validator)
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="waiting")
    validator.tell(
        PriceUpdated(symbol="ETHUSDC", price=PRICES["ETHUSDC"], at=validator.clock.time())
    )
    validator.clock.advance(1.0)  # its next tick tries it again
    decision = decision_of(validator, signal)
    assert decision.outcome == "accepted", decision.detail
    assert sum(world["paper"].fills_by_client_id.values()) == 1


def test_a_signal_whose_symbol_has_no_price_until_its_timeout_is_rejected_for_it(
    world,
) -> None:
    validator: Solo = world["validator"]
    world["ledger"].require_market = True
    signal = submit(validator)
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="waiting")
    validator.clock.advance(TIMEOUT + 1)
    decision = decision_of(validator, signal)
    assert (decision.outcome, decision.reason) == ("rejected", "market_data_unavailable")
    assert "no market price for ETHUSDC yet" in decision.detail
    assert not world["paper"].fills_by_client_id


def test_a_signal_that_waited_for_the_trader_waits_on_while_the_portfolio_lags(world) -> None:
    """The Trader and the Portfolio down together, and the Trader back first (its probe
    answered before the Portfolio's): a BUY that waited the whole outage was refused
    ``trading_degraded`` in the moment between the two (CI at 07037f7,
    test_a_trader_outage_loses_no_signal_and_fills_no_order_twice). It waits on, and
    goes once the Portfolio is back."""
    validator: Solo = world["validator"]
    portfolio_down = StateReason("portfolio_down", "test: portfolio down")
    both = TradingStatus(
        state=TradingState.HALTED,
        reasons=(StateReason("trader_down", "test: down"), portfolio_down),
    )
    validator.tell(TradingStateChanged(status=both, previous=ACTIVE, at=validator.clock.time()))
    signal = submit(validator)
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="waiting")
    lagging = TradingStatus(state=TradingState.DEGRADED, reasons=(portfolio_down,))
    validator.tell(TradingStateChanged(status=lagging, previous=both, at=validator.clock.time()))
    assert validator.ask(GetValidatorSnapshot()).waiting == 1, "refused while the Portfolio lags"
    validator.tell(TradingStateChanged(status=ACTIVE, previous=lagging, at=validator.clock.time()))
    decision = decision_of(validator, signal)
    assert decision.outcome == "accepted", decision.detail
    assert sum(world["paper"].fills_by_client_id.values()) == 1


def test_an_exit_waiting_when_its_validator_crashed_is_decided_by_the_next_incarnation(
    world,
) -> None:
    """A stop's exit waits for the Trader when its Validator's incarnation ends. The
    TrailingStop sends a lost exit again only while its stop is hit, so the exit, stored
    as a signal, would stay undecided (the soak found it, seed 22): the next incarnation
    takes it in again and decides it."""
    validator: Solo = world["validator"]
    down = TradingStatus(
        state=TradingState.HALTED, reasons=(StateReason("trader_down", "test: down"),)
    )
    validator.tell(TradingStateChanged(status=down, previous=ACTIVE, at=validator.clock.time()))
    price = PRICES["ETHUSDC"]
    key = f"ETHUSDC@1000.000@{price:.10g}"
    exit = ExitPosition(
        exit_id=f"exit:{key}:1",
        position_key=key,
        symbol="ETHUSDC",
        quantity=0.01,
        entry_price=price,
        opened_at=1000.0,
        price=price * 0.9,
        price_at=validator.clock.time(),
        stop=price * 0.95,
        rule="stoploss",
        strategy="stoploss",
        triggered_at=validator.clock.time(),
        tick_mono=validator.clock.monotonic(),
    )
    validator.tell(exit)
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="waiting")
    validator.stop()
    again = Solo(
        Validator,
        "validator-0",
        world["services"],
        clock=validator.clock,
        stand_ins=world["stand_ins"],
    )
    try:
        decided = again.told(
            "store_writer", RecordDecision, lambda m: m.decision.signal_id == exit.exit_id
        ).decision
        assert decided.symbol == "ETHUSDC" and decided.side == "SELL"
        assert not world["services"].kept_exits.copy(), "decided: no longer kept"
    finally:
        again.stop()


def store_order(
    world: dict[str, Any],
    postgres: EmbeddedPostgres,
    signal: Signal,
    state: str,
    error: str | None = None,
) -> str:
    """The signal's order as an earlier process left it in the store; its id."""
    order_id = client_order_id(signal.signal_id)
    intent = OrderRecord(
        client_order_id=order_id,
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        side=signal.side.value,
        quantity=0.01,
        reference_price=signal.price,
        state="pending",
        at=world["validator"].clock.time() - 60,
    )
    world["intents"].claim(
        {name: getattr(intent, name) for name in OrderRecord.__slots__}, first_seen=None
    )
    conn = connect(postgres.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE coordinator_orders SET state = %s, error = %s WHERE client_order_id = %s",
                (state, error, order_id),
            )
    finally:
        conn.close()
    return order_id


@pytest.mark.parametrize(
    ("state", "filled", "outcome", "reason"),
    [
        ("rejected", False, "rejected", "trader_error"),
        ("sent", None, "unknown", "order_unknown"),
        ("accepted", None, "unknown", "order_unknown"),
    ],
)
def test_an_order_that_exists_is_not_sent_again_and_its_room_follows_its_stored_state(
    world, postgres: EmbeddedPostgres, state: str, filled: bool | None, outcome: str, reason: str
) -> None:
    """A signal met again after its order was stored (a stop's exit sent again under its
    own id after a restart): never sent twice. An order stored rejected (found not
    executed by the reconciliation, with nobody waiting for it) cannot have executed:
    the room is released and the stop may try again; counted as filled, the SELL would
    hide the holding for the whole settle window. Any other state may have executed."""
    validator: Solo = world["validator"]
    signal = make_signal(validator)
    store_order(world, postgres, signal, state)
    submit(validator, signal=signal)
    decision = decision_of(validator, signal)
    assert (decision.outcome, decision.reason) == (outcome, reason), decision.detail
    assert validator.told("ledger", Settle).filled is filled
    assert not world["paper"].fills_by_client_id


@pytest.mark.parametrize("waiting", [False, True], ids=["nobody waits", "its signal expired"])
def test_a_held_order_not_executed_and_not_sent_again_is_told_to_the_ledger(
    world, postgres: EmbeddedPostgres, waiting: bool
) -> None:
    """After a restart the Ledger's only account of a held order is the copy it laid
    from the store (the Reconciler leaves held orders to their Validator). Found not
    executed and not sent again (nobody waits for it, or its signal expired), the Ledger
    is told, or a SELL laid on would hide the holding for the whole settle window."""
    validator: Solo = world["validator"]
    payload = signal_payload("ETHUSDC", "SELL", timestamp_ms=int(validator.clock.time() * 1000))
    signal = parse_signal(json.dumps(payload))
    assert isinstance(signal, Signal), signal
    order_id = store_order(world, postgres, signal, "unknown", error="held: 502 Bad Gateway")
    if waiting:
        submit(validator, signal=signal)
        wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 1, message="held")
        validator.clock.advance(TIMEOUT + 5)
    validator.tell(
        HeldOrderResolved(
            client_order_id=order_id,
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side.value,
            quantity=0.01,
            accepted=False,
            trader_order_id=None,
            detail="test: not found at the Trader",
            by="reconciler",
        )
    )
    told = validator.told("ledger", OrderNotExecuted)
    assert (told.client_order_id, told.signal_id, told.side) == (
        order_id,
        signal.signal_id,
        Side.SELL,
    )
    assert not world["paper"].fills_by_client_id
