"""The demo run: the embedded coordinator on paper in its own data directory, a feeder
thread replaying the candles and publishing the rule's signals through the
coordinator's own Redis, and a progress line read from its own API."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from coordinator.config import Config, load_config
from coordinator.demo.feeder import BACKLOG_STEPS, DemoFeeder
from coordinator.demo.progress import Progress
from coordinator.demo.replay import MarketData, load_market

__all__ = ["DEMO_DATA_DIR", "DemoOptions", "demo_environment", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_DATA_DIR = Path(".coordinator-demo")
DEFAULT_CANDLES = Path("..") / "shared" / "data" / "candles"
BTC_RATE = 10_000.0
"""The fixed conversion: one BTC is this much of the quote asset."""

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
    # Its identity is its own data directory's: never a real run's name.
    "COORDINATOR_INSTANCE",
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
    settings in it (those the environment does not set, and the candidates: the replayed
    pairs). Redis, PostgreSQL, the Trader, the Portfolio, paper or live and the data
    directory are never taken from it."""
    inherited = {k: v for k, v in environ.items() if not k.startswith(_NOT_INHERITED)}
    own = {k: v for k, v in _DEMO_DEFAULTS.items() if k not in inherited}
    # The candidates are the replayed pairs, whatever a real run trades.
    own["TRADING_SYMBOLS"] = ",".join(symbols)
    own["CORE_PAIRS"] = next((s for s in symbols if s.startswith("ETH")), symbols[0])
    return {**inherited, **own}, own


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
        "re-stamped to now: each minute one 1m candle a pair",
        f"  history first: {min(BACKLOG_STEPS, len(market.steps) // 2)} candles a pair "
        "as 1m candles over the last 24 h, "
        "for the universe's statistics (too old to be prices: the warnings about stale "
        "candles at start are expected)",
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
