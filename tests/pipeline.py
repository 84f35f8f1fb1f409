"""A whole coordinator in the test process, on the session's servers, with its own
paper exchange (real HTTP) and its own Redis channel and stream."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests

from coordinator.config import load_config
from coordinator.daemon import Coordinator
from coordinator.infra.embedded import free_port
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.pipeline import GetStoreSnapshot
from tests.trees import FAST_HEALTH
from tests.waiting import wait_for

TOKEN = "pipeline-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SYMBOLS = ("BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC", "BNBUSDC", "ADAUSDC", "DOGEUSDC", "LTCUSDC")
PRICES = {
    "BTCUSDC": 65000.0,
    "ETHUSDC": 3200.0,
    "SOLUSDC": 150.0,
    "XRPUSDC": 0.6,
    "BNBUSDC": 580.0,
    "ADAUSDC": 0.45,
    "DOGEUSDC": 0.15,
    "LTCUSDC": 80.0,
}


def market_channel(symbol: str, timeframe: str = "1m") -> str:
    return f"roottrading:market:data:{symbol.lower()}:{timeframe}"


def candle_json(
    symbol: str,
    close: float,
    *,
    time_ms: int,
    timeframe: str = "1m",
    high: float | None = None,
    low: float | None = None,
    volume: float = 1.0,
    closed: bool = False,
) -> str:
    """A RootTrading market-data candle, as published on its channel."""
    return json.dumps(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "time": time_ms,
            "open": close,
            "high": close if high is None else high,
            "low": close if low is None else low,
            "close": close,
            "volume": volume,
            "is_closed": closed,
        }
    )


def next_event(events: Any, kind: str) -> dict[str, Any]:
    """The first event of ``kind`` on ``events``, a pub/sub subscribed to the events
    channel (the others read on the way are dropped)."""
    return wait_for(
        lambda: next(
            (
                body
                for message in iter(lambda: events.get_message(timeout=0.1), None)
                if message["type"] == "message"
                and (body := json.loads(message["data"]))["type"] == kind
            ),
            None,
        ),
        message=f"{kind} on the events channel",
    )


def signal_payload(
    symbol: str = "BTCUSDC",
    side: str = "BUY",
    *,
    price: float | None = None,
    consensus_id: str | None = None,
    timestamp_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The aggregator's real shape: every metadata key of DESIGN section 3."""
    payload = {
        "strategy": "CONSENSUS",
        "symbol": symbol,
        "side": side,
        "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "price": price if price is not None else PRICES[symbol],
        "confidence": 0.82,
        "strength": "strong",
        "metadata": {
            "consensus_strength": 0.91,
            "strategies_count": 5,
            "avg_confidence": 0.78,
            "type": "CONSENSUS",
            "consensus_id": consensus_id or uuid.uuid4().hex,
            "stop_price": round((price or PRICES[symbol]) * 0.97, 8),
            "trailing_delta": 1.5,
        },
    }
    payload.update(extra)
    return payload


class Pipeline:
    def __init__(
        self,
        *,
        redis_url: str,
        database_dsn: str,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        paper: PaperExchange | None = None,
        lease: str | None = None,
        lead: bool = True,
    ) -> None:
        """``lease``: the leader lease to contend for; by default one of this
        coordinator's own, so that it leads alone, whatever else runs on the session's
        database. ``lead``: wait until it leads (its stops and rotations run only then);
        a coordinator started to follow another on a shared ``lease`` passes False."""
        self.started_at = time.time()
        tag = uuid.uuid4().hex[:8]
        self.channel = f"test:{tag}:signals"
        self.stream = f"test:{tag}:stream"
        self.events_channel = f"test:{tag}:events"
        self.redis = redis.Redis.from_url(redis_url)
        self.paper = paper or PaperExchange(redis_url=None).start()
        for symbol, price in PRICES.items():
            self.paper.set_price(symbol, price)
        settings = {
            **FAST_HEALTH,
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_dsn,
            "TRADER_API_URL": self.paper.url,
            "PORTFOLIO_API_URL": self.paper.url,
            "COORDINATOR_PORT": str(free_port()),
            "COORDINATOR_DATA_DIR": str(data_dir),
            "COORDINATOR_API_TOKEN": TOKEN,
            "COORDINATOR_DRILLS": "1",
            "HTTP_SNAPSHOT_TTL": "0",
            # The routes answer 503 when an actor takes longer than this: half a second
            # by default, which a busy intake on a loaded machine (the suite runs three
            # workers on two cores) sometimes does. These tests are about what is
            # decided; the tests of the routes' own timeouts set theirs.
            "HTTP_ASK_TIMEOUT": "5",
            "SIGNALS_CHANNEL": self.channel,
            "SIGNALS_STREAM": self.stream,
            "SIGNALS_STREAM_CONSUMER": f"consumer-{tag}",
            "EVENTS_CHANNEL": self.events_channel,
            "TRADING_SYMBOLS": ",".join(SYMBOLS),
            "MAX_CONCURRENT_TRADES": "8",
            "MAX_ORDERS_PER_MINUTE": "1000",
            "MAX_EXPOSURE_PERCENT": "100",
            "REQUIRE_MARKET_DATA": "false",
            "PORTFOLIO_CACHE_TTL": "0.2",
            "SIGNAL_TIMEOUT": "30",
            # Unknown orders are ruled out once the Trader's window after the send has
            # passed: it is max(15 s, read timeout + 10 s), 25 s with the default 15 s.
            # The paper exchange answers at once, so 5 s is ample and the window 15 s.
            "TRADER_READ_TIMEOUT": "5",
            "STREAM_CLAIM_IDLE": "1",
            # The tests' sizes were worked out with the table (tests/test_sizing_modes.py
            # runs RootTrading's sizing, the default, in a whole coordinator).
            "SIZING_MODE": "table",
            # The session's database is shared: another test's coordinator may be live
            # on it (one killed a moment ago, say), which a lone one refuses to start
            # beside. Each pipeline leads under a lease of its own instead.
            "COORDINATOR_INSTANCES": "cluster",
            **(env or {}),
        }
        self.config = load_config({k: v for k, v in settings.items() if v != ""})
        self.coordinator = Coordinator(self.config, lease=lease or f"leader-{tag}")
        self.coordinator.start()
        assert self.coordinator.http is not None
        self.url = self.coordinator.http.url
        self.directory = self.coordinator.directory
        if lead:
            wait_for(lambda: self.role() == "leader", timeout=20, message="it to lead")

    # --- sending ----------------------------------------------------------------------

    def publish(self, payload: Any) -> None:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        wait_for(
            lambda: self.redis.publish(self.channel, data) > 0,
            message="the intake to be subscribed",
        )

    def add_to_stream(self, payload: Any) -> str:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        return self.redis.xadd(self.stream, {"data": data}).decode()

    def post(self, payload: Any) -> requests.Response:
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        return requests.post(self.url + "/signals", data=data, headers=AUTH, timeout=10)

    def publish_price(self, symbol: str, price: float) -> None:
        candle = candle_json(symbol, price, time_ms=int(time.time() * 1000) - 10_000)
        self.redis.publish(market_channel(symbol), candle)

    # --- reading ----------------------------------------------------------------------

    def stored(self, signal_id: str) -> dict[str, Any] | None:
        response = requests.get(f"{self.url}/signals/{signal_id}", timeout=10)
        if response.status_code in (404, 503):  # not there yet, or the store restarts
            return None
        response.raise_for_status()
        return response.json()

    def decision(self, signal_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The stored decision of ``signal_id`` (with its signal and order), once there."""
        return wait_for(
            lambda: (record := self.stored(signal_id)) and record["decision"] and record,
            timeout=timeout,
            message=f"a decision for {signal_id}",
        )

    def decisions(self, **params: Any) -> list[dict[str, Any]]:
        """``GET /decisions``, keeping those made since this coordinator started: the
        session's database also holds the decisions of earlier tests."""
        response = requests.get(self.url + "/decisions", params=params, timeout=10)
        response.raise_for_status()
        return [
            d
            for d in response.json()["decisions"]
            if datetime.fromisoformat(d["decided_at"]).timestamp() >= self.started_at
        ]

    def role(self) -> str:
        """``leader`` or ``follower``, as ``/status`` says; ``unavailable (503)`` while it
        answers an error, as it does when an actor it asks is slow on a loaded machine, so
        that a wait for a role keeps waiting through it."""
        response = requests.get(self.url + "/status", timeout=10)
        if response.status_code != 200:
            return f"unavailable ({response.status_code})"
        role: str = response.json()["role"]
        return role

    def stats(self) -> dict[str, Any]:
        return requests.get(self.url + "/stats", timeout=10).json()

    def store_snapshot(self) -> Any:
        return self.directory.ask("store_writer", GetStoreSnapshot(), timeout=5)

    def positions(self) -> dict[str, float]:
        rows = requests.get(self.paper.url + "/positions/active", timeout=5).json()
        return {row["symbol"]: row["quantity"] for row in rows}

    def drill(self, actor: str, kind: str = "crash") -> None:
        response = requests.post(
            f"{self.url}/drills/actors/{actor}/{kind}", headers=AUTH, timeout=5
        )
        assert response.status_code == 202, response.text

    def stop(self) -> None:
        self.coordinator.stop()
        self.paper.stop()
        self.redis.close()
