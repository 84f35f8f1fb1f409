"""The load of the soak: market-data ticks, RootTrading signals on the stream and on
pub/sub, and an observer of what the coordinator and the exchange do meanwhile."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import redis
import requests

from bench.soak_stack import EVENTS_CHANNEL, SIGNALS_CHANNEL, SIGNALS_STREAM
from coordinator.infra.redis_bus import Subscription

__all__ = ["Holdings", "Market", "Observer", "PublishedSignal", "SignalSource"]

# RootTrading's signal shapes (rt-contract/signals), beside the repository by default.
FIXTURES = (
    Path(
        os.environ.get("COORDINATOR_RT_CONTRACT_DIR")
        or Path(__file__).resolve().parent.parent.parent / "shared" / "rt-contract"
    )
    / "signals"
)
SYMBOLS = {
    "SOLUSDC": 200.0,
    "ETHUSDC": 3900.0,
    "BTCUSDC": 110000.0,
    "XRPUSDC": 2.6,
    "BNBUSDC": 1100.0,
    "ADAUSDC": 0.65,
    "LINKUSDC": 18.0,
    "AVAXUSDC": 20.0,
}


class Holdings:
    """The symbols the exchange holds, as last seen (replaced whole, read by any thread)."""

    symbols: frozenset[str] = frozenset()


class _Publisher:
    """A Redis client that survives the server's restarts (each call may fail)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


class _AggregatorTable:
    """The aggregator's ``trading_signals`` consensus rows, written on a connection that
    survives PostgreSQL's restarts (a write may fail)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        self.failed = 0

    def store(self, row_id: int, body: dict[str, Any]) -> bool:
        """The consensus row of ``body`` under ``row_id``, as the aggregator writes it
        (its metadata, without db_id, under ``original_metadata``)."""
        inner = {k: v for k, v in body["metadata"].items() if k != "db_id"}
        try:
            if self._conn is None:
                self._conn = psycopg2.connect(self._dsn, connect_timeout=1)
                self._conn.autocommit = True
            with self._conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO trading_signals (id, strategy, symbol, side, timestamp,"
                    " confidence, price, metadata) VALUES (%s, 'CONSENSUS', %s, %s,"
                    " (now() AT TIME ZONE 'UTC'), %s, %s, %s)",
                    (
                        row_id,
                        body["symbol"],
                        body["side"],
                        round(float(body["confidence"]), 2),
                        body["price"],
                        json.dumps({"original_metadata": inner}),
                    ),
                )
            return True
        except psycopg2.Error:
            self.failed += 1
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return False


class Market:
    """Random walks published as 1m candles; shocks push held symbols through their stops."""

    def __init__(self, url: str, rng: random.Random, held: Holdings) -> None:
        self.prices = dict(SYMBOLS)
        self.rng = rng
        self.held = held
        self.calm = False
        self.ticks = 0
        self.failed = 0
        self.shocks = 0
        self._redis = _Publisher(url)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-market", daemon=True)

    def price(self, symbol: str) -> float:
        with self._lock:
            return self.prices[symbol]

    def start(self) -> Market:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        next_shock = time.monotonic() + 5
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                for symbol, base in SYMBOLS.items():
                    if self.calm:
                        continue
                    drift = 0.02 * math.log(base / self.prices[symbol])  # back toward base
                    self.prices[symbol] *= math.exp(drift + self.rng.gauss(0, 0.0015))
                held = sorted(self.held.symbols)
                if not self.calm and held and now >= next_shock:
                    # A drop under the stop-loss of a held position, or a rise that
                    # arms the trailing rules before a fall.
                    symbol = self.rng.choice(held)
                    self.prices[symbol] *= self.rng.choice((0.95, 0.96, 1.03))
                    self.shocks += 1
                    next_shock = now + self.rng.uniform(4, 10)
                prices = dict(self.prices)
            minute = int(time.time() // 60 * 60_000)
            try:
                pipe = self._redis.client.pipeline(transaction=False)
                for symbol, price in prices.items():
                    pipe.publish(
                        f"roottrading:market:data:{symbol.lower()}:1m",
                        _candle(symbol, price, minute),
                    )
                pipe.execute()
                self.ticks += len(prices)
            except (redis.RedisError, OSError):
                self.failed += 1


def _candle(symbol: str, price: float, minute_ms: int) -> str:
    return json.dumps(
        {
            "symbol": symbol,
            "timeframe": "1m",
            "time": minute_ms,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 10.0,
            "is_closed": False,
        }
    )


@dataclass
class PublishedSignal:
    signal_id: str
    symbol: str
    side: str
    valid: bool
    at: float
    """Monotonic time of publication."""
    on_stream: bool = False
    """XADD answered with an entry id: durably on the stream."""
    receivers: int | None = None
    """Subscribers PUBLISH reached (None: not sent on pub/sub, or it failed)."""


class SignalSource:
    """RootTrading consensus signals (the fixtures' shapes) at a steady rate."""

    def __init__(
        self,
        url: str,
        rng: random.Random,
        market: Market,
        held: Holdings,
        rate: float,
        dsn: str,
    ) -> None:
        self.rng = rng
        self.market = market
        self.held = held
        self.rate = rate
        self.published: list[PublishedSignal] = []
        self.failed = 0
        self._buy = json.loads((FIXTURES / "buy_consensus.json").read_text())
        self._buy_no_id = json.loads((FIXTURES / "buy_consensus_no_db_id.json").read_text())
        self._sell = json.loads((FIXTURES / "sell_consensus.json").read_text())
        self._next_id = rng.randrange(10**8, 9 * 10**8)
        self._redis = _Publisher(url)
        self._rows = _AggregatorTable(dsn)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-signals", daemon=True)

    def start(self) -> SignalSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.rng.expovariate(self.rate)):
            self.publish_one()

    def _body(self, valid: bool) -> tuple[dict[str, Any], str]:
        held = sorted(self.held.symbols)
        roll = self.rng.random()
        if roll < 0.25 and held:
            symbol, template = self.rng.choice(held), self._sell
        elif roll < 0.32:
            symbol, template = self.rng.choice(sorted(SYMBOLS)), self._sell
        else:
            # Mostly symbols not held, so that most BUYs can become orders.
            free = sorted(set(SYMBOLS) - set(held))
            pool = free if free and self.rng.random() < 0.8 else sorted(SYMBOLS)
            symbol = self.rng.choice(pool)
            template = self._buy_no_id if self.rng.random() < 0.2 else self._buy
        body = copy.deepcopy(template)
        self._next_id += 1
        body["symbol"] = symbol
        body["price"] = round(self.market.price(symbol) * (1 + self.rng.uniform(-0.001, 0.001)), 8)
        body["timestamp"] = dt.datetime.now(dt.UTC).isoformat()
        metadata = body["metadata"]
        metadata["consensus_id"] = f"consensus_soak{self._next_id}"
        # As the aggregator: the consensus stored first; db_id only when that worked. (A
        # body made invalid below stands for one the aggregator could not have stored.)
        if "db_id" in metadata and not (valid and self._rows.store(self._next_id, body)):
            del metadata["db_id"]
        if "db_id" in metadata:
            metadata["db_id"] = self._next_id
            signal_id = f"db:{self._next_id}"
        else:
            signal_id = f"consensus:consensus_soak{self._next_id}"
        return body, signal_id

    def publish_one(self) -> None:
        valid = self.rng.random() >= 0.02
        body, signal_id = self._body(valid)
        if not valid:
            body["price"] = "not a number"
        data = json.dumps(body).encode()
        if not valid:
            signal_id = "raw:" + hashlib.sha256(data).hexdigest()
        record = PublishedSignal(signal_id, body["symbol"], body["side"], valid, time.monotonic())
        roll = self.rng.random()
        client = self._redis.client
        if roll < 0.65:
            try:
                client.xadd(SIGNALS_STREAM, {"data": data})
                record.on_stream = True
            except (redis.RedisError, OSError):
                self.failed += 1
        if roll >= 0.45:
            try:
                record.receivers = int(client.publish(SIGNALS_CHANNEL, data))
            except (redis.RedisError, OSError):
                self.failed += 1
        if record.on_stream or record.receivers:
            self.published.append(record)


@dataclass
class Observer:
    """Watches the coordinator's events, the exchange's positions and the store's unknown
    orders while the soak runs."""

    redis_url: str
    paper_url: str
    dsn: str
    held: Holdings
    decided_events: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unknown_seen: dict[str, float] = field(default_factory=dict)
    """client order id -> monotonic time it was first seen unknown in the store."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._subscription = Subscription(
            self.redis_url,
            channels=(EVENTS_CHANNEL,),
            on_message=self._on_event,
            name="soak-events",
        )
        self._thread = threading.Thread(target=self._run, name="soak-observer", daemon=True)

    def start(self) -> Observer:
        self._subscription.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._subscription.stop()
        self._thread.join(5)

    def _on_event(self, _channel: str, data: bytes) -> None:
        try:
            event = json.loads(data)
            kind = str(event.get("type"))
        except (ValueError, AttributeError):
            return
        with self._lock:
            self.events[kind] += 1
            if kind == "SignalDecided":
                self.decided_events[str(event.get("signal_id"))].append(
                    {k: event.get(k) for k in ("outcome", "reason", "decided_by", "source")}
                )

    def _run(self) -> None:
        polls = 0
        while not self._stop.wait(1.0):
            polls += 1
            try:
                rows = requests.get(self.paper_url + "/positions/active", timeout=2).json()
                symbols = {row["symbol"] for row in rows}
                self.held.symbols = frozenset(symbols)
            except (requests.RequestException, ValueError, KeyError, TypeError):
                pass
            if polls % 2 == 0:
                self.poll_unknown()

    def poll_unknown(self) -> None:
        try:
            with psycopg2.connect(self.dsn, connect_timeout=2) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT client_order_id FROM coordinator_orders WHERE state = 'unknown'"
                )
                ids = [row[0] for row in cur.fetchall()]
            conn.close()
        except psycopg2.Error:
            return
        now = time.monotonic()
        for client_id in ids:
            self.unknown_seen.setdefault(client_id, now)
