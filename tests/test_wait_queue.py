"""The Validator's wait queue alone: each symbol's signals in order, held ones left to
the reconciliation, expired ones handed back once."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.trading.signals import Side, Signal
from coordinator.trading.validation import OrderPlan, Reason
from coordinator.trading.wait_queue import Held, SignalQueue, Waiting, expired
from tests.test_validation import make_signal

SYMBOLS = ("BTCUSDC", "ETHUSDC", "SOLUSDC")


def _signal(n: int, symbol: str, timestamp: float = 0.0) -> Signal:
    return make_signal(symbol=symbol, signal_id=f"db:{n}", timestamp=timestamp)


def _held(n: int, reservation_id: str | None = "r") -> Held:
    plan = OrderPlan(
        symbol="SOLUSDC",
        side=Side.SELL,
        quantity=1.0,
        reference_price=1.0,
        notional=1.0,
        category=None,
    )
    return Held(f"coid-{n}", plan, (), reservation_id, "500", 0.0, None)


def _waiting(n: int, symbol: str, *, timestamp: float = 0.0, held: Held | None = None):
    signal = _signal(n, symbol, timestamp)
    return Waiting(signal.signal_id, signal, Reason.TRADER_UNAVAILABLE, "down", held=held)


def test_a_signal_expires_after_its_timeout_from_its_own_timestamp():
    signal = _signal(1, "BTCUSDC", timestamp=100.0)
    assert not expired(signal, 110.0, 10.0)
    assert expired(signal, 110.5, 10.0)


def test_the_queue_finds_its_signals_symbols_and_held_orders():
    queue: SignalQueue[str] = SignalQueue()
    queue.add(_waiting(1, "BTCUSDC"))
    held = _waiting(2, "SOLUSDC", held=_held(2, "res-2"))
    queue.add(held)
    assert queue.has_signal("db:1") and not queue.has_signal("db:3")
    assert queue.has_symbol("SOLUSDC") and not queue.has_symbol("ETHUSDC")
    assert queue.held("coid-2") is held and queue.held("coid-1") is None
    assert queue.holds("res-2") and not queue.holds("res-1")
    queue.remove(held)
    assert len(queue) == 1 and not queue.holds("res-2")


def test_expiry_hands_back_the_expired_and_asks_about_the_held():
    queue: SignalQueue[str] = SignalQueue()
    queue.add(_waiting(1, "BTCUSDC", timestamp=0.0))
    queue.add(_waiting(2, "ETHUSDC", timestamp=50.0))
    queue.add(_waiting(3, "SOLUSDC", timestamp=0.0, held=_held(3)))
    queue.add(_waiting(4, "SOLUSDC", timestamp=0.0, held=_held(4)))
    timed_out: list[str] = []
    queue.expire(
        30.0,
        10.0,
        timed_out=lambda w: timed_out.append(w.message),
        held_too_long=lambda w: w.message == "db:4",
    )
    # A held signal is never expired by its timestamp: only the holding decides it.
    assert timed_out == ["db:1"]
    assert [w.message for w in queue] == ["db:2", "db:3"]


class QueueMachine(RuleBasedStateMachine):
    """Whatever waits again on a retry: no signal is processed while an earlier one of
    its symbol waits, a held signal is never processed, and nothing is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: SignalQueue[str] = SignalQueue()
        self.next = 0
        self.arrived: dict[str, list[int]] = {s: [] for s in SYMBOLS}
        self.done: set[int] = set()
        self.held: set[int] = set()

    def _n(self, waiting: Waiting[str]) -> int:
        return int(waiting.message.removeprefix("db:"))

    @rule(symbol=st.sampled_from(SYMBOLS), held=st.booleans())
    def arrives(self, symbol: str, held: bool) -> None:
        self.next += 1
        self.queue.add(_waiting(self.next, symbol, held=_held(self.next) if held else None))
        self.arrived[symbol].append(self.next)
        if held:
            self.held.add(self.next)

    @rule(again=st.lists(st.booleans(), max_size=12))
    def retried(self, again: list[bool]) -> None:
        answers = iter(again)

        def process(waiting: Waiting[str]) -> None:
            n = self._n(waiting)
            assert n not in self.held
            earlier = [m for m in self.arrived[waiting.signal.symbol] if m < n]
            # A held one of its symbol keeps the later ones behind it too.
            assert all(m in self.done for m in earlier)
            if next(answers, False):
                self.queue.add(waiting)  # waits again, at the back
            else:
                self.done.add(n)

        self.queue.retry(process)

    @rule(data=st.data())
    def held_resolved(self, data: st.DataObject) -> None:
        held = [w for w in self.queue if w.held is not None]
        if not held:
            return
        waiting = data.draw(st.sampled_from(held))
        self.queue.remove(waiting)
        self.held.discard(self._n(waiting))
        self.done.add(self._n(waiting))

    @invariant()
    def nothing_lost_nor_twice(self) -> None:
        waiting = [self._n(w) for w in self.queue]
        assert len(waiting) == len(set(waiting))
        assert set(waiting).isdisjoint(self.done)
        assert set(waiting) | self.done == set(range(1, self.next + 1))


TestQueue = QueueMachine.TestCase
