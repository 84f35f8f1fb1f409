"""The demo run: the embedded coordinator on paper in its own data directory, a feeder
thread replaying the candles and publishing the rule's signals through the
coordinator's own Redis, and a progress line read from its own API."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import redis
import requests

from coordinator.config import Config, load_config
from coordinator.demo.replay import (
    MarketData,
    MinuteCandles,
    backlog_messages,
    load_market,
    step_candles,
)
from coordinator.demo.rules import EmaCross, signal_message

__all__ = [
    "DEMO_DATA_DIR",
    "DemoFeeder",
    "demo_environment",
    "run_demo",
]

logger = logging.getLogger(__name__)

DEMO_DATA_DIR = Path(".coordinator-demo")
DEFAULT_CANDLES = Path("..") / "shared" / "data" / "candles"
BTC_RATE = 10_000.0
"""The fixed conversion: one BTC is this much of the quote asset."""
BACKLOG_STEPS = 1440
"""Source candles of history published before the live replay: a day of 1m candles,
so the universe has a 24 h volume and change at once."""

# Variables the demo never takes from the environment: it runs the embedded servers and
# the paper exchange, whatever a real run of this machine is configured with.
_NOT_INHERITED = (
    "REDIS_",
    "DATABASE_URL",
    "PG",
    "TRADER_API_URL",
    "PORTFOLIO_API_URL",
    "PAPER_TRADING",
    "COORDINATOR_DATA_DIR",
    "COORDINATOR_CONFIG",
)

# The demo's own defaults, for whatever the environment does not set: a universe built
# from 1m candles and rotated every 20 s, entries and exits without waiting, and stops
# close enough to the price to trail and fire within minutes of replay.
_DEMO_DEFAULTS = {
    "UNIVERSE_CANDIDATES": "config",
    "UNIVERSE_TIMEFRAME": "1m",
    "VOLATILITY_WINDOW": "30",
    "VOLATILITY_RANGE": "0.01-5",
    "UNIVERSE_UPDATE_INTERVAL": "20",
    "UNIVERSE_SIZE": "4",
    "UNIVERSE_ENTRY_ROTATIONS": "1",
    "UNIVERSE_EXIT_MISSES": "1",
    "UNIVERSE_MIN_RESIDENCY": "40",
    "UNIVERSE_MAX_CHANGES": "2",
    "STOP_LOSS_PERCENT": "2",
    "TRAILING_STOP_PERCENT": "1",
    "TRAILING_STOP_OFFSET_PERCENT": "0.5",
    "BREAKEVEN_AFTER_PERCENT": "0.8",
    "STOP_LOSS_COOLDOWN": "60",
    "AUTO_BLACKLIST_COOLDOWN": "300",
    "POSITIONS_REFRESH_INTERVAL": "2",
    "LOG_LEVEL": "warning",
}


def demo_environment(
    environ: Mapping[str, str], symbols: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The environment the demo's coordinator is configured from, and the demo's own
    settings in it (those the environment does not set). Redis, PostgreSQL, the Trader,
    the Portfolio, paper or live and the data directory are never taken from it."""
    inherited = {k: v for k, v in environ.items() if not k.startswith(_NOT_INHERITED)}
    own = {
        **_DEMO_DEFAULTS,
        "TRADING_SYMBOLS": ",".join(symbols),
        "CORE_PAIRS": symbols[0] if "ETHUSDC" not in symbols else "ETHUSDC",
    }
    own = {k: v for k, v in own.items() if k not in inherited}
    return {**inherited, **own}, own


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


class Progress:
    """The progress line: the replay's position and the coordinator's counts, rewritten
    in place on a terminal, one line every ``every`` seconds otherwise."""

    def __init__(self, feeder: DemoFeeder, api: str, out: TextIO, *, every: float = 10.0) -> None:
        self._feeder = feeder
        self._api = api
        self._out = out
        self._terminal = out.isatty()
        self._every = 1.0 if self._terminal else every
        self._stop = threading.Event()
        self._said_finished = False
        self._thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._terminal:
            self._out.write("\n")
            self._out.flush()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(self._every):
            line = progress_line(self._feeder, self._counts(session))
            if self._terminal:
                self._out.write("\r\x1b[2K" + line)
            else:
                self._out.write(line + "\n")
            feed = self._feeder.counts
            if feed.finished and not self._said_finished:
                self._said_finished = True
                why = self._feeder.error or "end of the data"
                self._out.write(
                    f"\n{why}: the coordinator keeps running on the last prices "
                    f"({self._api}/); Ctrl-C to stop\n"
                )
            self._out.flush()
        session.close()

    def _counts(self, session: requests.Session) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for path in ("/stats", "/trailing-stops"):
            try:
                answer = session.get(self._api + path, timeout=2).json()
            except (requests.RequestException, ValueError):
                continue
            if isinstance(answer, dict):
                counts.update({f"{path}:{k}": v for k, v in answer.items()})
        return counts


def progress_line(feeder: DemoFeeder, api: Mapping[str, Any]) -> str:
    """One line: where the replay is, what it published, what the coordinator did."""
    feed = feeder.counts
    total = max(feeder.total_steps, 1)
    if feed.replaying_ms is None:
        where = f"history {feed.backlog} candles"
    else:
        moment = datetime.fromtimestamp(feed.replaying_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        where = f"replay {moment} ({100 * feed.step / total:.0f}%)"

    def shown(key: str) -> str:
        value = api.get(key)
        return "?" if value is None else str(value)

    return (
        f"{where} | candles {feed.candles} signals {feed.signals} | "
        f"orders {shown('/stats:orders_sent')} rejected {shown('/stats:signals_rejected')} | "
        f"positions {shown('/trailing-stops:count')} stops fired "
        f"{shown('/trailing-stops:exits_triggered')} | universe {shown('/stats:universe_size')}"
    )


@dataclass(frozen=True)
class DemoOptions:
    candles: Path | None
    speed: float
    port: int | None
    data_dir: Path | None
    host: str | None = None


def candles_folder(given: Path | None) -> Path:
    """``--candles``, else ``../shared/data/candles`` of the project (the directory the
    demo runs from, or the one this package was installed from in development)."""
    if given is not None:
        return given
    here = Path.cwd() / DEFAULT_CANDLES
    if here.is_dir():
        return here
    checkout = Path(__file__).resolve().parents[2] / DEFAULT_CANDLES
    return checkout if checkout.is_dir() else here


def run_demo(options: DemoOptions, *, out: TextIO = sys.stdout) -> int:
    """The demo until SIGINT or SIGTERM: 0 after a clean stop, 1 when it could not
    start, 2 for a bad option or setting."""
    from coordinator.config import ConfigError
    from coordinator.daemon import Coordinator, set_after
    from coordinator.demo.replay import DemoDataError
    from coordinator.logs import configure_logging

    if not options.speed > 0:
        print(f"--speed must be above 0, got {options.speed:g}", file=sys.stderr)
        return 2
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    try:
        quote = load_config(environ).risk.quote_asset
        folder = candles_folder(options.candles)
        market = load_market(folder, quote_asset=quote, rate=BTC_RATE)
        symbols = sorted(market.series)
        env, own = demo_environment(environ, symbols)
        config = load_config(
            env,
            overrides={
                "COORDINATOR_DATA_DIR": str(options.data_dir or DEMO_DATA_DIR),
                "COORDINATOR_PORT": options.port,
                "COORDINATOR_HOST": options.host,
                "PAPER_TRADING": True,
            },
        )
    except ConfigError as exc:
        print("configuration error(s), the demo did not start:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    except (DemoDataError, OSError) as exc:
        print(f"coordinator demo: {exc}", file=sys.stderr)
        return 2
    url = f"http://{_browsable(config.service.host)}:{config.service.port}/"
    _introduce(out, config, market, folder, options.speed, own, url)
    configure_logging(
        config.service.log_level,
        config.service.log_format,
        coordinator_level=config.service.coordinator_log_level,
    )
    stop = threading.Event()
    _on_stop_signals(stop)
    coordinator = Coordinator(config)
    try:
        coordinator.start()
    except Exception as exc:
        logger.critical("could not start: %s", exc)
        return 1
    threading.Thread(
        target=set_after, args=(coordinator.outcome.finished, stop), daemon=True
    ).start()
    assert coordinator.services is not None
    feeder = DemoFeeder(
        market,
        redis_url=coordinator.services.endpoints.redis_url,
        signals_channel=config.intake.channel,
        speed=options.speed,
    ).start()
    progress = Progress(feeder, url.rstrip("/"), out).start()
    out.write(f"running: open {url}  (Ctrl-C stops)\n")
    out.flush()
    try:
        stop.wait()
    finally:
        progress.stop()
        feeder.stop()
        coordinator.stop()
    failure = coordinator.outcome.failure
    if failure is not None:
        logger.critical("the supervisor gave up: %s", failure)
        return 3
    out.write("demo stopped\n")
    return 0


def _browsable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _introduce(
    out: TextIO,
    config: Config,
    market: MarketData,
    folder: Path,
    speed: float,
    own: Mapping[str, str],
    url: str,
) -> None:
    quote = config.risk.quote_asset
    first = datetime.fromtimestamp(market.steps[0] / 1000, UTC).strftime("%Y-%m-%d")
    last = datetime.fromtimestamp(market.steps[-1] / 1000, UTC).strftime("%Y-%m-%d")
    tf_minutes = market.timeframe_ms // 60_000
    lines = [
        "coordinator demo: the embedded coordinator on paper, fed with replayed real candles",
        f"  candles: {folder} ({len(market.series)} pairs, {tf_minutes}m, {first} to {last})",
        f"  prices: pairs quoted in BTC shown in {quote} at 1 BTC = {BTC_RATE:,.0f} {quote} "
        f"(prices x{BTC_RATE:,.0f}, ETHBTC -> ETH{quote})",
        f"  speed: {speed:g}x (a {tf_minutes}m candle every {tf_minutes * 60 / speed:g} s), "
        "re-stamped to now as 1m candles; a day of history first for the universe",
        "  signals: EMA 9/21 cross on the closes (BUY up, SELL down), published on "
        f"{config.intake.channel}",
        f"  data directory: {config.service.data_dir} (embedded Redis and PostgreSQL)",
        "  the demo's settings (the environment overrides them): "
        + " ".join(f"{k}={v}" for k, v in sorted(own.items())),
    ]
    lines += [f"  skipped: {why}" for why in market.skipped]
    lines.append(f"  dashboard: {url}")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _on_stop_signals(stop: threading.Event) -> None:
    first: dict[str, float] = {}

    def on_signal(_signum: int, _frame: Any) -> None:
        now = time.monotonic()
        if "at" in first and now - first["at"] > 2.0:
            os.write(2, b"second stop signal: exiting at once\n")
            os._exit(1)
        first.setdefault("at", now)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
