"""The injected clock: a test clock that moves only when advanced, and tickers on it."""

from __future__ import annotations

import queue
import threading

import pytest

from coordinator.clock import ManualClock, SystemClock
from coordinator.supervisor.ticker import Ticker


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
