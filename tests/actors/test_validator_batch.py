"""A Validator's signals that waited together in its inbox: reserved with one ask of
the Ledger, then sent in order, as if each had come alone. The Validator is held on
its first signal's reservation (the stand-in Ledger waits for the test) while the
others queue behind it."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from typing import Any

import pykka

from coordinator.actors.validator import Validator
from coordinator.infra.intent_claims import ClaimResult
from coordinator.messages.health import TradingStateChanged
from coordinator.messages.ledger import Reserve, ReserveMany, Settle
from coordinator.messages.pipeline import GetValidatorSnapshot, RecordDecision, SubmitSignal
from coordinator.trading.routing import client_order_id
from coordinator.trading.signals import Signal, parse_signal
from coordinator.trading.trading_state import StateReason, TradingState, TradingStatus
from tests.actors import test_validator
from tests.actors.test_validator import ACTIVE, Ledger
from tests.pipeline import signal_payload
from tests.solo import Solo, settings_for
from tests.test_execution import intent
from tests.waiting import wait_for

world = test_validator.world  # the same Validator, stand-ins and paper exchange


class HeldLedger:
    """Holds the stand-in Ledger on its first ask until ``release``; ``on_many`` runs
    when a ReserveMany comes, before it is answered."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self._release = threading.Event()
        self._held = False
        self.on_many: Any = None

    def __call__(self, message: object) -> None:
        if isinstance(message, Reserve | ReserveMany) and not self._held:
            self._held = True
            self.asked.set()
            assert self._release.wait(20), "the test did not release the Ledger"
        if isinstance(message, ReserveMany) and self.on_many is not None:
            self.on_many(message)

    def release(self) -> None:
        self._release.set()


def held(world: dict[str, Any], on_many: Any = None) -> tuple[HeldLedger, Signal]:
    """The Validator held on its first signal's reservation: the signals told now
    queue in its inbox, until ``release``. That first signal."""
    ledger: Ledger = world["ledger"]
    gate = HeldLedger()
    gate.on_many = on_many
    ledger.before = gate
    first = submit(world["validator"], "BTCUSDC")
    assert gate.asked.wait(10), "the Validator asked the Ledger"
    return gate, first


def submit(validator: Solo, symbol: str) -> Signal:
    payload = signal_payload(
        symbol,
        consensus_id=uuid.uuid4().hex,
        timestamp_ms=int(validator.clock.time() * 1000),
    )
    signal = parse_signal(json.dumps(payload))
    assert isinstance(signal, Signal), signal
    validator.tell(
        SubmitSignal(
            signal=signal,
            source="http",
            received_at=validator.clock.time(),
            received_mono=validator.clock.monotonic(),
        )
    )
    return signal


def decided(validator: Solo, signals: list[Signal]) -> dict[str, Any]:
    """The decisions of these signals, by signal id, whatever their order."""
    wanted = {s.signal_id for s in signals}
    found: dict[str, Any] = {}
    while wanted - found.keys():
        decision = validator.told(
            "store_writer", RecordDecision, lambda m: m.decision.signal_id in wanted
        ).decision
        found[decision.signal_id] = decision
    return found


def ledger_asks(validator: Solo) -> list[Any]:
    """Every Reserve, ReserveMany and Settle the Ledger has been sent so far, in order."""
    return [m for m in validator.taken("ledger") if isinstance(m, Reserve | ReserveMany | Settle)]


def test_signals_waiting_together_are_reserved_with_one_ask_and_each_sent_in_order(
    world,
) -> None:
    validator: Solo = world["validator"]
    ledger, first = held(world)
    behind = [submit(validator, symbol) for symbol in ("ETHUSDC", "SOLUSDC", "XRPUSDC")]
    ledger.release()
    decisions = decided(validator, [first, *behind])
    assert all(d.outcome == "accepted" for d in decisions.values()), decisions
    asks = ledger_asks(validator)
    many = [a for a in asks if isinstance(a, ReserveMany)]
    assert len(many) == 1, "the three behind reserved with one ask"
    assert [r.signal.signal_id for r in many[0].reserves] == [s.signal_id for s in behind]
    settles = [a for a in asks if isinstance(a, Settle)]
    assert [s.symbol for s in settles] == ["BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC"]
    assert all(s.filled for s in settles)
    assert sum(world["paper"].fills_by_client_id.values()) == 4
    # The intents of the three behind claimed ahead in one commit, the first's alone.
    assert world["intents"].batches == (2, 4)


def test_a_symbols_second_signal_is_reserved_only_once_its_first_is_settled(world) -> None:
    """Two signals of a symbol never go together: the second's room depends on the
    first's outcome (a SELL after a BUY has nothing to sell until the BUY fills)."""
    validator: Solo = world["validator"]
    ledger, first = held(world)
    behind = [submit(validator, symbol) for symbol in ("ETHUSDC", "ETHUSDC", "SOLUSDC")]
    ledger.release()
    decided(validator, [first, *behind])
    asks = ledger_asks(validator)

    def at(predicate: Any) -> int:
        return next(i for i, a in enumerate(asks) if predicate(a))

    def reserves(a: Any) -> list[str]:
        if isinstance(a, ReserveMany):
            return [r.signal.signal_id for r in a.reserves]
        return [a.signal.signal_id] if isinstance(a, Reserve) else []

    eth_first, eth_second = behind[0].signal_id, behind[1].signal_id
    settled = at(lambda a: isinstance(a, Settle) and a.symbol == "ETHUSDC")
    assert at(lambda a: eth_first in reserves(a)) < settled
    assert settled < at(lambda a: eth_second in reserves(a))
    assert not any(eth_first in reserves(a) and eth_second in reserves(a) for a in asks)


def test_a_change_of_trading_state_between_signals_is_seen_by_the_ones_behind_it(
    world,
) -> None:
    validator: Solo = world["validator"]
    ledger, first = held(world)
    before = submit(validator, "ETHUSDC")
    degraded = TradingStatus(
        state=TradingState.DEGRADED, reasons=(StateReason("max_drawdown", "test: drawdown"),)
    )
    validator.tell(TradingStateChanged(status=degraded, previous=ACTIVE, at=0.0))
    after = [submit(validator, symbol) for symbol in ("SOLUSDC", "XRPUSDC")]
    ledger.release()
    decisions = decided(validator, [first, before, *after])
    assert decisions[before.signal_id].outcome == "accepted"
    for signal in after:
        assert decisions[signal.signal_id].reason == "trading_degraded"
    assert sum(world["paper"].fills_by_client_id.values()) == 2


def replaced_after_reserving(world: dict[str, Any]) -> list[Signal]:
    """The incarnation replaced (it hung, say) while the Ledger reserved for the three
    signals it took together behind its first: it stops without sending them. Those
    three."""
    validator: Solo = world["validator"]

    def replaced(_many: ReserveMany) -> None:
        validator.context.retired.set()

    ledger, _ = held(world, on_many=replaced)
    behind = [submit(validator, symbol) for symbol in ("ETHUSDC", "SOLUSDC", "XRPUSDC")]
    ledger.release()
    wait_for(lambda: not validator.ref.is_alive(), message="the replaced incarnation to stop")
    return behind


def next_incarnation(world: dict[str, Any]) -> pykka.ActorRef[Any]:
    validator: Solo = world["validator"]
    context = dataclasses.replace(
        validator.context,
        incarnation=2,
        retired=threading.Event(),
        unhandled=(),
        batch_lock=threading.Lock(),
        progress=0,
        thread=None,
    )
    validator.directory.expect(validator.name, 2)
    return Validator.start(context, settings=settings_for(validator.name, world["services"]))


def test_signals_taken_together_and_not_begun_go_to_the_next_incarnation_with_their_room_back(
    world,
) -> None:
    """None of their orders is sent by the replaced incarnation, each reservation is
    given back, and the next incarnation decides them all, each order sent once: their
    intents, claimed ahead in one commit, are sent by it and not taken for orders that
    may have left."""
    validator: Solo = world["validator"]
    behind = replaced_after_reserving(world)
    asks = ledger_asks(validator)
    many = next(a for a in asks if isinstance(a, ReserveMany))
    given_back = [a for a in asks if isinstance(a, Settle) and a.filled is False]
    assert sorted(s.symbol for s in given_back) == sorted(r.signal.symbol for r in many.reserves)
    assert sum(world["paper"].fills_by_client_id.values()) == 1, "only the first was sent"
    claimed_ahead = world["services"].claimed_ahead
    assert all(client_order_id(s.signal_id) in claimed_ahead for s in behind)

    again = next_incarnation(world)
    try:
        decisions = decided(validator, behind)
        assert all(d.outcome == "accepted" for d in decisions.values()), decisions
        assert all(d.decided_by == "validator-0#2" for d in decisions.values())
        assert sum(world["paper"].fills_by_client_id.values()) == 4
        assert len(claimed_ahead) == 0
    finally:
        again.stop()


def test_intents_claimed_ahead_and_then_refused_are_closed_as_never_sent(world) -> None:
    """The next incarnation finds no room for the signals the replaced one claimed ahead
    (the Ledger refuses them now): each is rejected, and its intent closed as never
    sent, not left pending as if its order might have left."""
    validator: Solo = world["validator"]
    behind = replaced_after_reserving(world)
    world["ledger"].quantity = None
    again = next_incarnation(world)
    try:
        decisions = decided(validator, behind)
    finally:
        again.stop()
    for decision in decisions.values():
        assert decision.outcome == "rejected", decision
        assert decision.order is not None and decision.order.state == "rejected", decision
        assert decision.order.error.startswith("never sent"), decision.order
    assert len(world["services"].claimed_ahead) == 0
    assert sum(world["paper"].fills_by_client_id.values()) == 1


def test_signals_reserved_together_when_the_ledger_dies_wait_and_are_tried_again(
    world,
) -> None:
    validator: Solo = world["validator"]
    dying = {"once": True}

    def dies_once(_many: ReserveMany) -> None:
        if dying.pop("once", False):
            raise pykka.ActorDeadError("ledger stopped before answering")

    ledger, first = held(world, on_many=dies_once)
    behind = [submit(validator, symbol) for symbol in ("ETHUSDC", "SOLUSDC")]
    ledger.release()
    wait_for(lambda: validator.ask(GetValidatorSnapshot()).waiting == 2, message="waiting")
    validator.clock.advance(1.0)  # its next tick tries them again
    decisions = decided(validator, [first, *behind])
    assert all(d.outcome == "accepted" for d in decisions.values()), decisions
    assert sum(world["paper"].fills_by_client_id.values()) == 3


def test_signals_reserved_together_when_the_ledger_fails_on_them_are_rejected_unsent(
    world,
) -> None:
    """A bug in the Ledger on a ReserveMany: each signal of it is decided
    ``internal_error`` (rejected, not unknown: none of their orders left), and the
    Validator goes on with the next signal."""
    validator: Solo = world["validator"]

    def fails(_many: ReserveMany) -> None:
        raise RuntimeError("test: the Ledger fails on this batch")

    ledger, first = held(world, on_many=fails)
    behind = [submit(validator, symbol) for symbol in ("ETHUSDC", "SOLUSDC")]
    ledger.release()
    decisions = decided(validator, [first, *behind])
    assert decisions.pop(first.signal_id).outcome == "accepted"
    for decision in decisions.values():
        assert (decision.outcome, decision.reason) == ("rejected", "internal_error")
        assert "the Ledger fails on this batch" in decision.detail
    later = submit(validator, "XRPUSDC")
    assert decided(validator, [later])[later.signal_id].outcome == "accepted"
    assert sum(world["paper"].fills_by_client_id.values()) == 2


def test_an_intent_that_exists_already_among_those_claimed_ahead_is_never_sent(world) -> None:
    """One of the signals reserved together has an intent stored already (by an earlier
    process, say) when the batch is claimed: the others are claimed ahead and sent, and
    that one, claimed again at its send, meets its row and is decided as an order that
    may have left, never sent."""
    validator: Solo = world["validator"]
    existing: dict[str, str] = {}

    def stored_before(many: ReserveMany) -> None:
        signal_id = many.reserves[1].signal.signal_id
        existing["id"] = signal_id
        claim = world["intents"].claim(intent(client_order_id(signal_id)), first_seen=None)
        assert claim.result is ClaimResult.CLAIMED

    ledger, first = held(world, on_many=stored_before)
    behind = [submit(validator, symbol) for symbol in ("ETHUSDC", "SOLUSDC", "XRPUSDC")]
    ledger.release()
    decisions = decided(validator, [first, *behind])
    there = decisions.pop(existing["id"])
    assert (there.outcome, there.reason) == ("unknown", "order_unknown"), there
    assert all(d.outcome == "accepted" for d in decisions.values()), decisions
    assert world["paper"].fills_by_client_id.get(client_order_id(existing["id"]), 0) == 0
    assert sum(world["paper"].fills_by_client_id.values()) == 3
    assert len(world["services"].claimed_ahead) == 0
