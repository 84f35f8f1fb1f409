"""The injected clock: a test clock that moves only when advanced, and tickers on it."""

from __future__ import annotations

import queue
import threading

import pytest

from coordinator.clock import ManualClock, SystemClock
from coordinator.supervisor.ticker import Alarm, Ticker


def test_a_manual_clock_moves_only_when_advanced_and_both_readings_together() -> None:
    clock = ManualClock(monotonic=50.0, wall=1_700_000_000.0)
    assert (clock.monotonic(), clock.time()) == (50.0, 1_700_000_000.0)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.time()) == (52.5, 1_700_000_002.5)
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1)


def test_a_ticker_on_a_manual_clock_ticks_once_per_interval_advanced() -> None:
    clock = ManualClock()
    ticks: queue.Queue[float] = queue.Queue()
    ticker = Ticker(30.0, lambda: ticks.put(clock.monotonic()), name="t", clock=clock).start()
    try:
        # Advanced before the ticker's thread waits: the tick still falls due.
        clock.advance(30.0)
        assert ticks.get(timeout=5) == 1_030.0
        clock.advance(29.0)
        with pytest.raises(queue.Empty):
            ticks.get(timeout=0.2)
        # Two intervals at once: both ticks, as a late wake-up would deliver them.
        clock.advance(31.0)
        assert ticks.get(timeout=5) == 1_090.0
        assert ticks.get(timeout=5) == 1_090.0
    finally:
        ticker.stop()


def test_a_ticker_on_a_manual_clock_stops_without_the_clock_moving() -> None:
    clock = ManualClock()
    ticks: list[None] = []
    ticker = Ticker(10.0, lambda: ticks.append(None), name="t", clock=clock).start(immediately=True)
    ticker.stop()
    ticker._thread.join(timeout=5)
    assert not ticker._thread.is_alive()
    clock.advance(100.0)
    assert ticks == [None]


def test_a_ticker_on_the_system_clock_ticks_in_real_time() -> None:
    ticked = threading.Event()
    ticker = Ticker(0.01, ticked.set, name="t", clock=SystemClock()).start()
    try:
        assert ticked.wait(5)
    finally:
        ticker.stop()


def test_settle_waits_for_every_tick_due_to_have_done_its_work() -> None:
    """Settled, a test knows the ticks due were told: an actor asked after that has
    handled them, and a check that nothing happened on them means it."""
    clock = ManualClock()
    entered, go = threading.Event(), threading.Event()
    ticks: list[float] = []

    def tick() -> None:
        entered.set()
        assert go.wait(10)
        ticks.append(clock.monotonic())

    ticker = Ticker(10.0, tick, name="t", clock=clock).start()
    try:
        clock.settle()  # nothing due yet
        clock.advance(30.0)
        settled = threading.Thread(target=clock.settle)
        settled.start()
        assert entered.wait(5)
        settled.join(0.3)
        assert settled.is_alive(), "settled while a tick was still at work"
        go.set()
        settled.join(10)
        assert not settled.is_alive()
        assert ticks == [1_030.0] * 3, "every tick due, not only the first"
    finally:
        ticker.stop()


def test_settle_covers_a_timer_whose_thread_has_not_run_yet_and_ends_when_it_stops() -> None:
    clock = ManualClock()
    rung: list[str] = []
    ticker = Ticker(5.0, lambda: rung.append("tick"), name="t", clock=clock)
    ticker.start(immediately=True)
    Alarm(7.0, lambda: rung.append("alarm"), name="a", clock=clock).start()
    cancelled = Alarm(7.0, lambda: rung.append("cancelled"), name="c", clock=clock).start()
    cancelled.cancel()
    clock.settle()
    assert rung == ["tick"], "the immediate tick, and nothing else due"
    clock.advance(7.0)
    clock.settle()
    assert sorted(rung) == ["alarm", "tick", "tick"]
    ticker.stop()
    clock.advance(100.0)
    clock.settle()  # a stopped ticker holds nothing
    assert sorted(rung) == ["alarm", "tick", "tick"]


def test_settle_names_the_timers_still_at_work_when_it_gives_up() -> None:
    clock = ManualClock()
    go = threading.Event()

    def tick() -> None:
        go.wait(10)

    ticker = Ticker(1.0, tick, name="t", clock=clock).start()
    try:
        clock.advance(1.0)
        with pytest.raises(TimeoutError, match="1 timer"):
            clock.settle(timeout=0.2)
    finally:
        go.set()
        ticker.stop()
