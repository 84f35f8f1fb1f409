"""What the cluster drill publishes on Redis: signals on the stream and on pub/sub at a
steady rate, and market-data ticks on the held positions, from one thread.

The ticks of a held position follow the drill's phases: ``raise`` moves every price up
a little each round (new peaks), ``hold`` repeats the latest price (no new peak, no
stop reached, so the store settles on the peaks), ``dip`` publishes it 0.1 % lower
(evaluated without moving a peak, so the peaks a new leader holds are the ones it
restored), and a crashed symbol is published far under any stop until it is sold.
The probe positions rise on every one of their (faster) rounds whatever the phase:
their stops move as soon as a leader evaluates them, which is what the failover is
timed by.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import redis

from bench.cluster_checks import Published

__all__ = ["Feed", "signal_body"]

SIGNALS_CHANNEL = "roottrading:signals:filtered"
SIGNALS_STREAM = "roottrading:signals:stream"
ENTRY = 100.0
CRASH = 50.0
_RISE = 1.0005
_PROBE_RISE = 1.0002
_DIP = 0.999


def signal_body(symbol: str, side: str, price: float) -> tuple[str, dict[str, Any]]:
    """An aggregator's consensus signal and its id (``consensus:<id>``)."""
    consensus = f"drill_{uuid.uuid4().hex}"
    body = {
        "strategy": "CONSENSUS",
        "symbol": symbol,
        "side": side,
        "timestamp": int(time.time() * 1000),
        "price": price,
        "confidence": 0.8,
        "strength": "strong",
        "metadata": {
            "consensus_strength": 0.9,
            "strategies_count": 4,
            "consensus_id": consensus,
        },
    }
    return f"consensus:{consensus}", body


def candle(symbol: str, price: float) -> str:
    now_ms = int(time.time() * 1000)
    return json.dumps(
        {
            "symbol": symbol,
            "timeframe": "1m",
            "time": now_ms // 60_000 * 60_000,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 1.0,
            "is_closed": False,
        }
    )


class Feed(threading.Thread):
    def __init__(
        self,
        redis_url: str,
        *,
        held: list[str],
        probes: list[str],
        signal_symbols: list[str],
        signal_rate: float,
        tick_interval: float,
        probe_interval: float,
    ) -> None:
        super().__init__(name="drill-feed", daemon=True)
        self._client = redis.Redis.from_url(redis_url)
        self._lock = threading.Lock()
        self._halted = threading.Event()
        self.held = [s for s in held if s not in probes]
        self.probes = list(probes)
        self.signal_symbols = signal_symbols
        self.signal_rate = signal_rate
        self.tick_interval = tick_interval
        self.probe_interval = probe_interval
        self.prices = dict.fromkeys(held, ENTRY)
        self.highest = dict.fromkeys(held, ENTRY)
        """The highest tick published per symbol."""
        self.raising = True
        self.dipping = False
        self.signals_on = False
        self.crashed: set[str] = set()
        self.published: list[Published] = []
        self.ticks = 0
        self._signal_index = 0
        self.errors = 0

    # --- control, from the main thread --------------------------------------------------

    def set_raising(self, raising: bool) -> None:
        with self._lock:
            self.raising = raising

    def set_dipping(self, dipping: bool) -> None:
        """Publish the held prices 0.1 % under the latest (above any stop, under the
        peak): a leader evaluates them without moving a peak."""
        with self._lock:
            self.dipping = dipping

    def crash(self, symbols: list[str]) -> None:
        with self._lock:
            self.crashed.update(symbols)

    def highest_ticks(self, symbols: list[str]) -> dict[str, float]:
        with self._lock:
            return {s: self.highest[s] for s in symbols}

    def published_signals(self) -> list[Published]:
        with self._lock:
            return list(self.published)

    def halt(self) -> None:
        self._halted.set()
        self.join(10)
        self._client.close()

    def publish_burst(self, count: int) -> list[Published]:
        """``count`` signals on the stream at once, BUY and SELL in turn per symbol."""
        burst = []
        pipe = self._client.pipeline(transaction=False)
        for _ in range(count):
            signal_id, body = self._next_signal()
            pipe.xadd(SIGNALS_STREAM, {"data": json.dumps(body)})
            burst.append(Published(signal_id, "stream"))
            if len(pipe) >= 200:
                pipe.execute()
        pipe.execute()
        with self._lock:
            self.published.extend(burst)
        return burst

    # --- the thread -------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        next_tick = next_probe = next_signal = started
        while not self._halted.is_set():
            now = time.monotonic()
            try:
                if now >= next_probe:
                    self._probe_round()
                    next_probe += self.probe_interval
                if now >= next_tick:
                    self._tick_round()
                    next_tick += self.tick_interval
                if self.signals_on and self.signal_rate > 0 and now >= next_signal:
                    self._one_signal()
                    next_signal = max(next_signal + 1.0 / self.signal_rate, now - 1.0)
                elif not self.signals_on:
                    next_signal = now
            except redis.RedisError:
                self.errors += 1
            wake = min(next_tick, next_probe, next_signal if self.signals_on else next_tick)
            self._halted.wait(max(0.0, wake - time.monotonic()))

    def _next_signal(self) -> tuple[str, dict[str, Any]]:
        index = self._signal_index
        self._signal_index += 1
        symbols = self.signal_symbols
        symbol = symbols[index % len(symbols)]
        side = "BUY" if (index // len(symbols)) % 2 == 0 else "SELL"
        # One price per symbol: a round trip at two prices would pay or lose money, and
        # thousands of them trip the loss guards.
        return signal_body(symbol, side, 10.0 + (index % len(symbols)) % 7)

    def _one_signal(self) -> None:
        signal_id, body = self._next_signal()
        channel = "stream" if self._signal_index % 2 else "pubsub"
        data = json.dumps(body)
        if channel == "stream":
            self._client.xadd(SIGNALS_STREAM, {"data": data})
        else:
            self._client.publish(SIGNALS_CHANNEL, data)
        with self._lock:
            self.published.append(Published(signal_id, channel))

    def _tick_round(self) -> None:
        with self._lock:
            raising, crashed = self.raising, set(self.crashed)
            for symbol in self.held:
                if raising and symbol not in crashed:
                    self.prices[symbol] = round(self.prices[symbol] * _RISE, 6)
            dip = _DIP if self.dipping else 1.0
            batch = [
                (s, CRASH if s in crashed else round(self.prices[s] * dip, 6)) for s in self.held
            ]
        self._send(batch)

    def _probe_round(self) -> None:
        with self._lock:
            for symbol in self.probes:
                if symbol not in self.crashed:
                    self.prices[symbol] = round(self.prices[symbol] * _PROBE_RISE, 6)
            batch = [(s, CRASH if s in self.crashed else self.prices[s]) for s in self.probes]
        self._send(batch)

    def _send(self, batch: list[tuple[str, float]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for symbol, price in batch:
            pipe.publish(f"roottrading:market:data:{symbol.lower()}:1m", candle(symbol, price))
        # Counted as seen once sent: a coordinator may have read any of them.
        with self._lock:
            for symbol, price in batch:
                if price > self.highest[symbol]:
                    self.highest[symbol] = price
            self.ticks += len(batch)
        pipe.execute()
