"""A model-based test of the stop lifecycle with the stop rules: the holdings of one
symbol, their stops and lifecycles driven as the TrailingStop drives them, against a
model of the exchange and of the stored orders. Ticks come fresh or stale, exit outcomes
late, duplicated and for older attempts, unknown outcomes are reconciled later, positions
are shown present, absent, under a new key or next to another holding of the symbol, our
own SELLs fill, and the process restarts from the stored records alone. After every step
the money-safety invariants hold."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.stop_book import Holding, carry_over, find_rekeyed, from_record
from coordinator.trading.stops import StopParams, exit_id, open_stop, update_stop

SYMBOL = "ETHUSDC"
MAX_AGE = 30.0
RULES = ("stoploss", "breakeven", "percent", "ladder")
PARAMS = StopParams()
LIFE = lc.LifecycleParams(
    exit_timeout=60.0, exit_settle=90.0, retry_base=1.0, retry_max=30.0, misses_to_close=2
)
REASONS = ["no_position", "position_changed", "dust_remainder", "insufficient_balance", "x"]


@dataclass
class Order:
    hid: int
    attempt: int
    state: str
    """pending (sent, no answer yet), accepted, rejected or unknown."""
    decision: str | None = None
    """The stored decision's outcome, once decided."""
    reason: str | None = None


@dataclass
class World:
    now: float = 1_000.0
    price: float = 100.0
    price_at: float = 1_000.0
    holdings: dict[int, Holding] = field(default_factory=dict)
    held: set[int] = field(default_factory=set)
    """Holdings the exchange holds."""
    orders: dict[str, Order] = field(default_factory=dict)
    in_flight: list[str] = field(default_factory=list)
    """Exits sent whose decision has not been made."""
    decided: list[str] = field(default_factory=list)
    """Exits decided (their decision may be delivered, again and again)."""
    reads: list[int] = field(default_factory=list)
    lookups: list[tuple[int, str]] = field(default_factory=list)
    top_stop: dict[int, float] = field(default_factory=dict)
    next_id: int = 0


class _Given:
    """A drawn value handed on to another rule."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, strategy: object) -> object:
        return self.value


class StopLifecycleModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World()
        self._open(quantity=1.0, entry=100.0, clean=True)

    # --- helpers ----------------------------------------------------------------------

    def _open(self, quantity: float, entry: float, clean: bool) -> None:
        w = self.w
        hid, w.next_id = w.next_id, w.next_id + 1
        w.holdings[hid] = Holding(
            key=f"{SYMBOL}@{hid}@{entry:.10g}",
            symbol=SYMBOL,
            cycle_id=None,
            quantity=quantity,
            entry_time=float(hid),
            rules=RULES,
            stop=open_stop(RULES, PARAMS, entry),
            watched_at=w.now,
            updated_at=w.now,
            known_since=w.now,
            life=lc.Lifecycle(confirmed=True, clean=clean, seen_at=w.now),
        )
        w.held.add(hid)
        w.top_stop[hid] = w.holdings[hid].stop.stop

    def _fresh(self) -> float | None:
        w = self.w
        return w.price if w.now - w.price_at <= MAX_AGE else None

    def _owner(self, signal_id: str) -> int | None:
        for hid, holding in self.w.holdings.items():
            if holding.attempt_of(signal_id) is not None:
                return hid
        return None

    def _step(self, hid: int, event: lc.StopEvent) -> None:
        w = self.w
        holding = w.holdings[hid]
        life, actions = lc.step(
            holding.life,
            event,
            now=w.now,
            price=self._fresh(),
            stop=holding.stop.stop,
            entry=holding.stop.entry,
            params=LIFE,
        )
        holding.life = life
        note_event(f"phase {life.phase}")
        for action in actions:
            match action:
                case lc.SendExit(attempt=attempt, price=price):
                    self._sent(hid, attempt, price)
                case lc.ReadOrders():
                    if hid not in w.reads:
                        w.reads.append(hid)
                case lc.LookUpDecision():
                    w.lookups.append((hid, holding.exit_id))
        if life.phase is lc.Phase.CLOSED:
            del w.holdings[hid]

    def _sent(self, hid: int, attempt: int, price: float) -> None:
        w = self.w
        holding = w.holdings[hid]
        # An exit only on a fresh price at or below the stop.
        assert w.now - w.price_at <= MAX_AGE, "exit on a stale price"
        assert price == w.price and price <= holding.stop.stop, "exit above the stop"
        signal_id = exit_id(holding.key, attempt)
        if signal_id in w.orders:
            self._sent_again(hid, signal_id)
            return
        # Never a new attempt while an earlier one is unsettled; one in flight at most.
        for order in w.orders.values():
            if order.hid == hid:
                assert order.state not in ("pending", "unknown"), (
                    f"attempt {attempt} while attempt {order.attempt} is {order.state}"
                )
        # Only for its own holding, which the exchange holds.
        assert hid in w.held, "exit for a holding that was sold"
        assert attempt == holding.life.attempt
        holding.sent_key = holding.key
        w.orders[signal_id] = Order(hid=hid, attempt=attempt, state="pending")
        note_event(f"exit attempt {min(attempt, 3)} sent")
        w.in_flight.append(signal_id)

    def _sent_again(self, hid: int, signal_id: str) -> None:
        """A lost exit sent again under its own id: the Validator drops it if decided or
        still waiting, else finds its claimed intent and decides it unknown; nothing new
        goes out."""
        w = self.w
        holding = w.holdings[hid]
        assert holding.life.resent, "an exit id used twice"
        order = w.orders[signal_id]
        if signal_id in w.in_flight or order.decision is not None:
            return  # still waiting at its Validator, or decided: the copy is dropped
        order.decision, order.reason = "unknown", None
        if order.state == "pending":
            order.state = "unknown"
        w.decided.append(signal_id)
        self.decision_delivered(_Given(signal_id))

    def _fill(self, hid: int, why: str) -> None:
        """A SELL of ours filled on the symbol: the exchange holds nothing of it, and the
        TrailingStop hears of it (OrderFinished) for every holding known before."""
        w = self.w
        w.held.clear()
        for other in list(w.holdings):
            if other in w.holdings:
                self._step(other, lc.OwnSellFilled(detail=why))

    # --- rules ------------------------------------------------------------------------

    @rule(
        move=st.sampled_from([-0.07, -0.03, -0.01, 0.0, 0.01, 0.03]) | st.floats(-0.08, 0.08),
        fresh=st.booleans(),
    )
    def tick(self, move: float, fresh: bool) -> None:
        w = self.w
        if not fresh:
            return  # a stale tick decides nothing: the actor drops it
        w.price = max(1.0, w.price * (1 + move))
        w.price_at = w.now
        for hid in list(w.holdings):
            holding = w.holdings.get(hid)
            if holding is None or not holding.life.live:
                continue
            holding.stop, hit = update_stop(holding.stop, w.price, RULES, PARAMS, None)
            if hit and holding.life.phase is lc.Phase.WATCHING:
                self._step(hid, lc.Tick())

    @rule(seconds=st.sampled_from([0.5, 2.0, 20.0, 70.0, 100.0]))
    def time_passes(self, seconds: float) -> None:
        w = self.w
        w.now += seconds
        for hid in list(w.holdings):
            if hid in w.holdings:
                self._step(hid, lc.Timer())

    @precondition(lambda self: self.w.in_flight)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["accepted", "rejected", "unknown", "lost"]),
        reason=st.sampled_from(REASONS),
        late=st.booleans(),
    )
    def exit_decided(self, data: st.DataObject, outcome: str, reason: str, late: bool) -> None:
        """The Validator decides an exit; the TrailingStop hears of it now, or later (see
        ``decision_delivered``)."""
        w = self.w
        signal_id = data.draw(st.sampled_from(w.in_flight))
        w.in_flight.remove(signal_id)
        order = w.orders[signal_id]
        if outcome == "lost":
            return  # a Validator died on it: no decision, the order row stays pending
        if outcome == "accepted" and order.hid not in w.held:
            outcome, reason = "rejected", "position_changed"
        order.decision, order.reason = outcome, reason if outcome == "rejected" else None
        order.state = outcome
        w.decided.append(signal_id)
        if outcome == "accepted":
            self._fill(order.hid, signal_id)
        if not late:
            self.decision_delivered(_Given(signal_id))

    @precondition(lambda self: self.w.decided)
    @rule(data=st.data())
    def decision_delivered(self, data: st.DataObject | _Given) -> None:
        """A decision reaches the TrailingStop: late, again, or an older attempt's."""
        w = self.w
        signal_id = data.draw(st.sampled_from(w.decided))
        order = w.orders[signal_id]
        hid = self._owner(signal_id)
        if hid is None or order.decision is None:
            return
        event = lc.Decided(
            attempt=order.attempt,
            outcome=lc.ExitOutcome(order.decision),
            reason=order.reason,
            detail="",
        )
        self._step(hid, event)

    @precondition(
        lambda self: any(
            o.state in ("unknown", "pending") and s not in self.w.in_flight
            for s, o in self.w.orders.items()
        )
    )
    @rule(data=st.data(), accepted=st.booleans())
    def order_reconciled(self, data: st.DataObject, accepted: bool) -> None:
        """The reconciler (or an operator) settles an order: only its stored state."""
        w = self.w
        open_ = sorted(
            s
            for s, o in w.orders.items()
            if o.state in ("unknown", "pending") and s not in w.in_flight
        )
        signal_id = data.draw(st.sampled_from(open_))
        order = w.orders[signal_id]
        if accepted and order.hid in w.held:
            order.state = "accepted"
            self._fill(order.hid, signal_id)
        else:
            order.state = "rejected"

    @precondition(lambda self: self.w.reads)
    @rule(data=st.data(), error=st.booleans())
    def orders_read(self, data: st.DataObject, error: bool) -> None:
        w = self.w
        hid = data.draw(st.sampled_from(w.reads))
        w.reads.remove(hid)
        holding = w.holdings.get(hid)
        if holding is None:
            return
        if error:
            self._step(hid, lc.OrdersRead(orders=(), error="database down"))
            return
        seen = tuple(
            lc.OrderSeen(
                client_order_id=signal_id,
                state=order.state,
                attempt=holding.attempt_of(signal_id),
            )
            for signal_id, order in sorted(w.orders.items())
            if order.state in lc.UNRESOLVED_ORDER_STATES
            or holding.attempt_of(signal_id) is not None
        )
        self._step(hid, lc.OrdersRead(orders=seen))

    @precondition(lambda self: self.w.lookups)
    @rule(data=st.data())
    def decision_looked_up(self, data: st.DataObject) -> None:
        w = self.w
        hid, signal_id = data.draw(st.sampled_from(w.lookups))
        w.lookups.remove((hid, signal_id))
        holding = w.holdings.get(hid)
        if holding is None:
            return
        order = w.orders.get(signal_id)
        if order is not None and order.decision is not None:
            event: lc.StopEvent = lc.Decided(
                attempt=order.attempt,
                outcome=lc.ExitOutcome(order.decision),
                reason=order.reason,
                detail="",
            )
        else:
            event = lc.DecisionMissing(attempt=holding.life.attempt)
        self._step(hid, event)

    @rule(rekey=st.booleans(), entry_shift=st.sampled_from([0.0, 0.001, -0.002]))
    def positions_fetched(self, rekey: bool, entry_shift: float) -> None:
        """The Portfolio shows what the exchange holds; one holding maybe under a new key
        (another entry time and a slightly different entry price)."""
        w = self.w
        for hid in list(w.holdings):
            holding = w.holdings.get(hid)
            if holding is None:
                continue
            if hid in w.held and rekey and holding.life.may_rekey:
                rekey = False
                vanished = [h for h in w.holdings.values() if h.key != f"{holding.key}~"]
                entry = holding.stop.entry * (1 + entry_shift)
                found = find_rekeyed(
                    [h for h in vanished if h.key == holding.key],
                    SYMBOL,
                    holding.quantity,
                    entry,
                )
                assert found is holding
                carry_over(
                    holding,
                    key=f"{holding.key}~",
                    cycle_id=None,
                    entry=entry,
                    opened_at=None,
                    quantity=holding.quantity,
                    params=PARAMS,
                )
            self._step(hid, lc.PositionsSeen(held=hid in w.held))

    @precondition(lambda self: len(self.w.holdings) < 3)
    @rule(same_quantity=st.booleans(), now=st.integers(0, 3))
    def another_holding_opens(self, same_quantity: bool, now: int) -> None:
        """A BUY opens another holding of the symbol at the current price."""
        if now != 0:
            return
        quantity = 1.0 if same_quantity else 0.7
        self._open(quantity=quantity, entry=self.w.price, clean=True)

    @precondition(lambda self: self.w.held)
    @rule(now=st.integers(0, 6))
    def own_sell_signal_fills(self, now: int) -> None:
        if now == 0:  # rarer than the rest: it ends every stop of the symbol
            self._fill(-1, "sell signal")
            self._open(quantity=1.0, entry=self.w.price, clean=True)

    @rule(keep_aliases=st.booleans(), now=st.integers(0, 2))
    def restart(self, keep_aliases: bool, now: int) -> None:
        """A new process: holdings from their stored records only; no price yet, reads
        and lookups that were in progress are gone (decisions stay stored)."""
        if now != 0:
            return
        w = self.w
        w.reads.clear()
        w.lookups.clear()
        w.price_at = -1e9
        for hid, holding in list(w.holdings.items()):
            record = holding.record()
            if not keep_aliases:
                record.pop("aliases")
            restored, actions = from_record(record, PARAMS, w.now)
            restored.known_since = w.now
            restored.life = replace(restored.life, seen_at=None)
            w.holdings[hid] = restored
            for action in actions:
                if isinstance(action, lc.ReadOrders):
                    w.reads.append(hid)
                elif isinstance(action, lc.LookUpDecision):
                    w.lookups.append((hid, restored.exit_id))

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def one_exit_in_flight_per_holding(self) -> None:
        unsettled: dict[int, int] = {}
        for order in self.w.orders.values():
            if order.state in ("pending", "unknown"):
                unsettled[order.hid] = unsettled.get(order.hid, 0) + 1
        assert all(n <= 1 for n in unsettled.values()), unsettled

    @invariant()
    def a_stop_never_moves_down(self) -> None:
        w = self.w
        for hid, holding in w.holdings.items():
            assert holding.stop.stop >= w.top_stop[hid] - 1e-9, (hid, holding.stop)
            w.top_stop[hid] = max(w.top_stop[hid], holding.stop.stop)


StopLifecycleModel.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# About a minute alone; on a loaded machine (the suite's workers on two cores) twice that.
test_stop_lifecycle_model = pytest.mark.timeout(300)(StopLifecycleModel.TestCase)
