"""The demo's feeder: a thread that publishes the history, then the live replay and the
rule's signals, through the coordinator's Redis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from coordinator.demo.replay import MarketData, MinuteCandles, backlog_messages, step_candles
from coordinator.demo.rules import EmaCross, signal_message

__all__ = ["BACKLOG_STEPS", "DemoFeeder", "FeedCounts"]

BACKLOG_STEPS = 1440
"""Source candles of history published before the live replay: a day of 1m candles,
so the universe has a 24 h volume and change at once."""


@dataclass
class FeedCounts:
    """What the feeder has published so far (read by the progress line)."""

    backlog: int = 0
    candles: int = 0
    signals: int = 0
    step: int = 0
    """Source steps replayed."""
    replaying_ms: int | None = None
    """The source open time being replayed."""
    finished: bool = False


class DemoFeeder:
    """Publishes the history, then the live replay and its signals, on a thread."""

    def __init__(
        self,
        market: MarketData,
        *,
        redis_url: str,
        signals_channel: str,
        speed: float,
        backlog_steps: int = BACKLOG_STEPS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.market = market
        self.counts = FeedCounts()
        self.backlog_steps = min(backlog_steps, len(market.steps) // 2)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._channel = signals_channel
        self._interval = market.timeframe_ms / 1000.0 / speed
        self._clock = clock
        self._stop = threading.Event()
        self._rules = {symbol: EmaCross() for symbol in market.series}
        self._minutes = MinuteCandles()
        self._source_tf = f"{market.timeframe_ms // 60_000}m"
        self._thread = threading.Thread(target=self._run, name="demo-feeder", daemon=True)
        self.error: str | None = None

    def start(self) -> DemoFeeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._redis.close()

    def _run(self) -> None:
        try:
            self._backlog()
            self._live()
        except redis.RedisError as exc:
            # The coordinator's Redis went away (it is stopping): the replay ends.
            self.error = f"the replay stopped: {exc}"
        self.counts.finished = True

    def _backlog(self) -> None:
        now_ms = int(self._clock() * 1000)
        pipe = self._redis.pipeline(transaction=False)
        for n, (channel, payload) in enumerate(
            backlog_messages(self.market, self.backlog_steps, now_ms), start=1
        ):
            pipe.publish(channel, payload)
            if n % 1000 == 0:
                pipe.execute()
            self.counts.backlog = n
        pipe.execute()
        # The averages start from the history, so the first live cross is a real one.
        for step in self.market.steps[: self.backlog_steps]:
            for symbol, candle in step_candles(self.market, step):
                self._rules[symbol].update(candle.close)

    def _live(self) -> None:
        started = self._clock()
        steps = self.market.steps[self.backlog_steps :]
        for index, step in enumerate(steps):
            due = started + index * self._interval
            if self._stop.wait(max(0.0, due - self._clock())):
                return
            self._publish_step(step)
            self.counts.step = index + 1
            self.counts.replaying_ms = step
        # The last minute closes when it is over.
        while not self._stop.wait(1.0):
            for channel, payload in self._minutes.close_finished(int(self._clock() * 1000)):
                self._redis.publish(channel, payload)
            if not self._minutes:
                return

    def _publish_step(self, step: int) -> None:
        now = self._clock()
        now_ms = int(now * 1000)
        pipe = self._redis.pipeline(transaction=False)
        signals = []
        for symbol, candle in step_candles(self.market, step):
            for channel, payload in self._minutes.add(symbol, candle, now_ms):
                pipe.publish(channel, payload)
                self.counts.candles += 1
            side = self._rules[symbol].update(candle.close)
            if side is not None:
                signals.append(
                    signal_message(symbol, side, candle.close, now=now, timeframe=self._source_tf)
                )
        pipe.execute()
        # After the prices they are priced at, so the coordinator has that price first.
        for message in signals:
            self._redis.publish(self._channel, json.dumps(message))
            self.counts.signals += 1

    @property
    def total_steps(self) -> int:
        return len(self.market.steps) - self.backlog_steps
