"""Configuration: every setting parsed once, validated, and frozen into sections.

Sources, strongest first: command-line flags, environment variables, the optional
TOML config file (``COORDINATOR_CONFIG`` or ``--config``), then the defaults below.
A bad value never falls back to a default: start-up stops with every error named.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from coordinator.config_modes import Note, resolve_environment

__all__ = [
    "SETTINGS",
    "Config",
    "ConfigError",
    "Note",
    "Setting",
    "load_config",
]


class ConfigError(Exception):
    """One or more settings are invalid; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --- value kinds: each parses a raw value and says what it allows ---------------------


class Kind:
    allowed: str = ""
    accepts_empty: bool = False
    """Whether a set-but-empty value means something (else it counts as not set)."""

    def parse(self, raw: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int | None = None
    maximum: int | None = None

    @property
    def allowed(self) -> str:
        return _bounds_text("an integer", self.minimum, self.maximum)

    def parse(self, raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        value = int(str(raw).strip().replace("_", "")) if not isinstance(raw, int) else raw
        _check_bounds(value, self.minimum, self.maximum)
        return value


@dataclass(frozen=True)
class Number(Kind):
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # exclusive lower bound
    unit: str = ""

    @property
    def allowed(self) -> str:
        text = "a number" + (f" of {self.unit}" if self.unit else "")
        if self.above is not None:
            text += f" > {self.above:g}"
            if self.maximum is not None:
                text += f" and <= {self.maximum:g}"
            return text
        return _bounds_text(text, self.minimum, self.maximum)

    def parse(self, raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError
        value = float(str(raw).strip().replace("_", ""))
        if not math.isfinite(value):
            raise ValueError
        if self.above is not None and value <= self.above:
            raise ValueError
        _check_bounds(value, self.minimum, self.maximum)
        return value


class Boolean(Kind):
    allowed = "true or false (also 1/0, yes/no, on/off)"
    _TRUE = frozenset({"1", "true", "yes", "on"})
    _FALSE = frozenset({"0", "false", "no", "off"})

    def parse(self, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in self._TRUE:
            return True
        if text in self._FALSE:
            return False
        raise ValueError


@dataclass(frozen=True)
class Text(Kind):
    allowed: str = "a non-empty string"
    pattern: str | None = None

    def parse(self, raw: Any) -> str:
        text = str(raw).strip()
        if not text:
            raise ValueError
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError
        return text


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in self.choices:
            raise ValueError
        return text


class LogLevel(Kind):
    """A level as Python's logging spells it, in any case (RootTrading's env writes
    DEBUG, INFO...), WARN and FATAL included."""

    allowed = "one of debug, info, warning, error, critical (any case; also warn, fatal)"
    _ALIASES = {"warn": "warning", "fatal": "critical"}
    _LEVELS = ("debug", "info", "warning", "error", "critical")

    def parse(self, raw: Any) -> str:
        text = str(raw).strip().lower()
        text = self._ALIASES.get(text, text)
        if text not in self._LEVELS:
            raise ValueError
        return text


@dataclass(frozen=True)
class Url(Kind):
    schemes: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "a URL with scheme " + " or ".join(f"{s}://" for s in self.schemes) + " and a host"

    def parse(self, raw: Any) -> str:
        text = str(raw).strip()
        parts = urlsplit(text)
        if parts.scheme not in self.schemes or not (parts.hostname or parts.path):
            raise ValueError
        if parts.scheme in ("http", "https") and not parts.hostname:
            raise ValueError
        return text.rstrip("/") if parts.scheme in ("http", "https") else text


@dataclass(frozen=True)
class Symbols(Kind):
    accepts_empty: bool = False
    """An empty value lists no symbol (RootTrading's services read an empty
    TRADING_SYMBOLS so) instead of standing for the default."""

    @property
    def allowed(self) -> str:
        text = "comma-separated or JSON-array Binance symbols such as BTCUSDC,ETHUSDC"
        return text + (", or empty for none" if self.accepts_empty else "")

    def parse(self, raw: Any) -> tuple[str, ...]:
        if isinstance(raw, list | tuple):
            items = [str(item) for item in raw]
            if not items and self.accepts_empty:
                return ()
        else:
            text = str(raw).strip()
            if not text and self.accepts_empty:
                return ()
            if text.startswith("["):
                import json

                loaded = json.loads(text)
                if not isinstance(loaded, list):
                    raise ValueError
                items = [str(item) for item in loaded]
            else:
                items = text.split(",")
        symbols = tuple(dict.fromkeys(item.strip().upper() for item in items if item.strip()))
        if not symbols and not items and self.accepts_empty:
            return ()
        if not symbols or not all(_SYMBOL.fullmatch(s) for s in symbols):
            raise ValueError
        return symbols


_SYMBOL = re.compile(r"[A-Z0-9]{5,20}")


class Range(Kind):
    allowed = "two numbers low-high with 0 <= low < high, such as 0.02-0.15"

    def parse(self, raw: Any) -> tuple[float, float]:
        if isinstance(raw, list | tuple):
            parts = [str(p) for p in raw]
        else:
            parts = re.split(r"\s*[,;]\s*|(?<=\d)\s*-\s*(?=\d)", str(raw).strip())
        if len(parts) != 2:
            raise ValueError
        low, high = (float(p) for p in parts)
        if not (math.isfinite(low) and math.isfinite(high)) or not 0 <= low < high:
            raise ValueError
        return (low, high)


@dataclass(frozen=True)
class Numbers(Kind):
    count: int
    minimum: float
    maximum: float
    increasing: bool = False

    @property
    def allowed(self) -> str:
        order = " increasing" if self.increasing else ""
        return (
            f"{self.count} comma-separated{order} numbers from {self.minimum:g} to {self.maximum:g}"
        )

    def parse(self, raw: Any) -> tuple[float, ...]:
        parts = list(raw) if isinstance(raw, list | tuple) else str(raw).split(",")
        values = tuple(float(str(p).strip()) for p in parts)
        if len(values) != self.count or not all(
            math.isfinite(v) and self.minimum <= v <= self.maximum for v in values
        ):
            raise ValueError
        if self.increasing and any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError
        return values


@dataclass(frozen=True)
class Names(Kind):
    """Comma-separated names, each one of ``choices``, none twice."""

    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "comma-separated names among " + ", ".join(self.choices)

    def parse(self, raw: Any) -> tuple[str, ...]:
        parts = list(raw) if isinstance(raw, list | tuple) else str(raw).split(",")
        names = tuple(str(p).strip() for p in parts if str(p).strip())
        if not names or len(set(names)) != len(names) or not set(names) <= set(self.choices):
            raise ValueError
        return names


@dataclass(frozen=True)
class Weights(Kind):
    """``name=number`` pairs, comma-separated, names among ``keys``, numbers >= 0."""

    keys: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "comma-separated name=weight pairs, names among " + ", ".join(self.keys)

    def parse(self, raw: Any) -> tuple[tuple[str, float], ...]:
        if isinstance(raw, dict):
            items: Any = raw.items()
        elif isinstance(raw, list | tuple):
            items = raw
        else:
            items = (p.split("=", 1) for p in str(raw).split(",") if p.strip())
        weights = {}
        for item in items:
            key, value = (str(x).strip() for x in item)
            number = float(value)
            if key not in self.keys or not math.isfinite(number) or number < 0 or key in weights:
                raise ValueError
            weights[key] = number
        if not weights or sum(weights.values()) <= 0:
            raise ValueError
        return tuple(sorted(weights.items()))


_STOP_RULES = ("stoploss", "percent", "atr", "ladder", "breakeven")


class Ladder(Kind):
    """``gain:lock`` steps in percent, comma-separated, gains increasing, lock < gain."""

    allowed = "comma-separated gain:lock percent steps, gains increasing, each lock below its gain, such as 2:0.5,4:2"

    def parse(self, raw: Any) -> tuple[tuple[float, float], ...]:
        if isinstance(raw, list | tuple):
            pairs = [tuple(float(x) for x in item) for item in raw]
        else:
            pairs = [
                tuple(float(x) for x in part.split(":"))
                for part in str(raw).split(",")
                if part.strip()
            ]
        previous = 0.0
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError
            gain, lock = pair
            if not (math.isfinite(gain) and math.isfinite(lock)):
                raise ValueError
            if gain <= previous or not 0 <= lock < gain:
                raise ValueError
            previous = gain
        return tuple((gain, lock) for gain, lock in pairs)


class SymbolRules(Kind):
    """``SYMBOL=rule+rule`` entries, comma-separated; each rule set includes stoploss."""

    allowed = (
        "comma-separated SYMBOL=rule+rule entries, rules among "
        + ", ".join(_STOP_RULES)
        + ", each set with stoploss, such as BTCUSDC=stoploss+atr"
    )

    def parse(self, raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if isinstance(raw, dict):
            items = [
                (k, v if isinstance(v, list | tuple) else str(v).split("+")) for k, v in raw.items()
            ]
        elif isinstance(raw, list | tuple):
            items = [(k, v) for k, v in raw]
        else:
            items = []
            for part in str(raw).split(","):
                if not part.strip():
                    continue
                symbol, _, rules = part.partition("=")
                items.append((symbol, rules.split("+")))
        out = {}
        for symbol, rules in items:
            name = str(symbol).strip().upper()
            names = tuple(str(r).strip() for r in rules if str(r).strip())
            if not re.fullmatch(r"[A-Z0-9]{5,20}", name) or name in out:
                raise ValueError
            if not names or len(set(names)) != len(names) or not set(names) <= set(_STOP_RULES):
                raise ValueError
            if "stoploss" not in names:
                raise ValueError
            out[name] = names
        return tuple(sorted(out.items()))


class SymbolDecimals(Kind):
    """``SYMBOL:decimals`` entries, comma-separated."""

    allowed = (
        "comma-separated SYMBOL:decimals entries, decimals from 0 to 8, such as BTCUSDC:5,SOLUSDC:3"
    )

    def parse(self, raw: Any) -> tuple[tuple[str, int], ...]:
        if isinstance(raw, dict):
            items = list(raw.items())
        elif isinstance(raw, list | tuple):
            items = [(k, v) for k, v in raw]
        else:
            items = []
            for part in str(raw).split(","):
                if not part.strip():
                    continue
                symbol, separator, decimals = part.partition(":")
                if not separator:
                    raise ValueError
                items.append((symbol, decimals))
        out: dict[str, int] = {}
        for symbol, decimals in items:
            name = str(symbol).strip().upper()
            if not re.fullmatch(r"[A-Z0-9]{5,20}", name) or name in out:
                raise ValueError
            if isinstance(decimals, bool) or not re.fullmatch(r"[0-8]", str(decimals).strip()):
                raise ValueError
            out[name] = int(str(decimals).strip())
        return tuple(sorted(out.items()))


class AnyPath(Kind):
    allowed = "a file-system path"

    def parse(self, raw: Any) -> Path:
        text = str(raw).strip()
        if not text:
            raise ValueError
        return Path(text).expanduser()


def _bounds_text(what: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    if low is not None:
        return f"{what} >= {low:g}"
    if high is not None:
        return f"{what} <= {high:g}"
    return what


def _check_bounds(value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError


# --- the settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One configuration variable: its environment name, kind, default and meaning."""

    name: str
    section: str
    field: str
    kind: Kind
    default: Any
    help: str
    secret: bool = False


_SECONDS = Number(above=0, unit="seconds")


def _s(
    name: str,
    section: str,
    field: str,
    kind: Kind,
    default: Any,
    help: str,
    *,
    secret: bool = False,
) -> Setting:
    return Setting(name, section, field, kind, default, help, secret)


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # service
    _s("COORDINATOR_HOST", "service", "host", Text(), "127.0.0.1", "HTTP API bind address"),
    _s("COORDINATOR_PORT", "service", "port", Integer(1, 65535), 5003, "HTTP API port"),
    _s(
        "COORDINATOR_DATA_DIR",
        "service",
        "data_dir",
        AnyPath(),
        ".coordinator",
        "data of the embedded Redis and PostgreSQL servers",
    ),
    _s(
        "COORDINATOR_API_TOKEN",
        "service",
        "api_token",
        Text(allowed="a string of at least 16 characters", pattern=r".{16,}"),
        None,
        "bearer token for mutating endpoints; unset: they answer 403",
        secret=True,
    ),
    _s(
        "COORDINATOR_DRILLS",
        "service",
        "drills",
        Boolean(),
        False,
        "enable /drills/actors/{name}/... fault injection",
    ),
    _s("LOG_LEVEL", "service", "log_level", LogLevel(), "info", "log level (RootTrading's variable; per-message lines stay off below INFO unless COORDINATOR_LOG_LEVEL asks)"),
    _s("COORDINATOR_LOG_LEVEL", "service", "coordinator_log_level", LogLevel(), None, "log level of this service, wins over LOG_LEVEL; debug also turns on the per-message lines (each signal, each tick)"),
    _s("LOG_FORMAT", "service", "log_format", Choice(("json", "kv")), "json", "JSON lines or key=value lines"),
    _s("HTTP_THREADS", "service", "http_threads", Integer(1, 64), 8, "waitress worker threads"),
    _s(
        "HTTP_ASK_TIMEOUT",
        "service",
        "ask_timeout",
        Number(above=0, maximum=10, unit="seconds"),
        0.5,
        "how long a route waits for an actor before answering 503",
    ),
    _s("HTTP_SNAPSHOT_TTL", "service", "snapshot_ttl", Number(minimum=0, maximum=5, unit="seconds"), 0.25, "how long read-only routes reuse an answer; 0: never"),
    # dependencies
    _s("TRADER_API_URL", "trader", "url", Url(("http", "https")), None, "Trader service base URL; unset, unless on paper: RootTrading's http://trader:5002"),
    _s("PORTFOLIO_API_URL", "portfolio", "url", Url(("http", "https")), None, "Portfolio service base URL; unset, unless on paper: RootTrading's http://portfolio:8000"),
    _s("REDIS_URL", "redis", "url", Url(("redis", "rediss", "unix")), None, "Redis URL; unset with no REDIS_HOST: embedded Redis"),
    _s("REDIS_HOST", "redis", "host", Text(), None, "Redis host (instead of REDIS_URL)"),
    _s("REDIS_PORT", "redis", "port", Integer(1, 65535), 6379, "Redis port, with REDIS_HOST"),
    _s("REDIS_PASSWORD", "redis", "password", Text(allowed="a string"), None, "Redis password, with REDIS_HOST", secret=True),
    _s("REDIS_DB", "redis", "db", Integer(0, 15), 0, "Redis database number, with REDIS_HOST"),
    _s("DATABASE_URL", "database", "url", Url(("postgresql", "postgres")), None, "PostgreSQL URL; unset with no PGHOST: embedded PostgreSQL"),
    _s("PGHOST", "database", "host", Text(), None, "PostgreSQL host (instead of DATABASE_URL)"),
    _s("PGPORT", "database", "port", Integer(1, 65535), 5432, "PostgreSQL port, with PGHOST"),
    _s("PGUSER", "database", "user", Text(), "postgres", "PostgreSQL user, with PGHOST"),
    _s("PGPASSWORD", "database", "password", Text(allowed="a string"), None, "PostgreSQL password, with PGHOST", secret=True),
    _s("PGDATABASE", "database", "name", Text(), "trading", "PostgreSQL database, with PGHOST"),
    # trading
    _s("MAX_CONCURRENT_TRADES", "trading", "max_concurrent_trades", Integer(1, 1000), 5, "open positions at most"),
    _s("UNIVERSE_SIZE", "trading", "universe_size", Integer(1, 500), 10, "symbols in the trading universe at most"),
    _s(
        "TRADING_SYMBOLS",
        "trading",
        "symbols",
        Symbols(accepts_empty=True),
        ("BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC", "BNBUSDC"),
        "candidate symbols; set but empty: none listed (UNIVERSE_CANDIDATES then defaults to data)",
    ),
    _s("TRADING_ENABLED", "trading", "enabled", Boolean(), True, "false: shadow mode, decide and record but send no order"),
    # coordination (the seed's settings)
    _s("SIGNAL_TIMEOUT", "coordination", "signal_timeout", _SECONDS, 30.0, "a signal older than this is stale"),
    _s("MAX_PENDING_SIGNALS", "coordination", "max_pending_signals", Integer(1, 100_000), 100, "signals in flight at most"),
    _s("VALIDATION_THREADS", "coordination", "validation_threads", Integer(1, 64), 4, "Validator actors"),
    _s("HEALTH_CHECK_INTERVAL", "coordination", "health_check_interval", _SECONDS, 60.0, "seconds between dependency probes"),
    _s(
        "UNIVERSE_UPDATE_INTERVAL",
        "coordination",
        "universe_update_interval",
        _SECONDS,
        3600.0,
        "seconds between universe rotations",
    ),
    # universe criteria
    _s("MIN_VOLUME_24H", "universe", "min_volume_24h", Number(minimum=0, unit="USDC"), 1_000_000.0, "24 h quote volume at least"),
    _s("MAX_SPREAD_PERCENT", "universe", "max_spread_percent", Number(above=0, unit="percent"), 0.1, "bid/ask spread at most"),
    _s("MIN_MARKET_CAP", "universe", "min_market_cap", Number(minimum=0, unit="USD"), 50_000_000.0, "market capitalisation at least"),
    _s("VOLATILITY_RANGE", "universe", "volatility_range", Range(), (0.02, 0.15), "volatility low-high"),
    _s("CORRELATION_LIMIT", "universe", "correlation_limit", Number(above=0, maximum=1), 0.8, "correlation with a kept symbol at most"),
    # health
    _s("HEALTH_PROBE_TIMEOUT", "health", "probe_timeout", Number(above=0, maximum=30, unit="seconds"), 2.0, "timeout of one probe"),
    _s("BREAKER_FAILURE_THRESHOLD", "health", "failure_threshold", Integer(1, 100), 3, "consecutive failures that open a breaker"),
    _s("BREAKER_OPEN_SECONDS", "health", "open_seconds", _SECONDS, 10.0, "first open period of a breaker"),
    _s("BREAKER_OPEN_MAX_SECONDS", "health", "open_max_seconds", _SECONDS, 300.0, "longest open period of a breaker"),
    # supervisor
    _s("SUPERVISOR_STRATEGY", "supervisor", "strategy", Choice(("one_for_one", "rest_for_one")), "one_for_one", "restart strategy"),
    _s("SUPERVISOR_START_TIMEOUT", "supervisor", "start_timeout", _SECONDS, 30.0, "a child must answer its readiness Ping within this"),
    _s("SUPERVISOR_STOP_TIMEOUT", "supervisor", "stop_timeout", _SECONDS, 5.0, "wait for each child to stop at most"),
    _s("SUPERVISOR_LIVENESS_INTERVAL", "supervisor", "liveness_interval", _SECONDS, 5.0, "seconds between liveness Pings"),
    _s("SUPERVISOR_LIVENESS_TIMEOUT", "supervisor", "liveness_timeout", _SECONDS, 15.0, "an unanswered Ping older than this marks the child hung"),
    _s("SUPERVISOR_BACKOFF_BASE", "supervisor", "backoff_base", Number(minimum=0, unit="seconds"), 0.5, "first restart delay"),
    _s("SUPERVISOR_BACKOFF_MAX", "supervisor", "backoff_max", Number(minimum=0, unit="seconds"), 30.0, "longest restart delay"),
    _s("SUPERVISOR_BACKOFF_JITTER", "supervisor", "backoff_jitter", Number(minimum=0, maximum=1), 0.2, "fraction of the delay taken off at random"),
    _s("SUPERVISOR_BACKOFF_RESET", "supervisor", "backoff_reset", _SECONDS, 60.0, "running this long resets a child's backoff"),
    _s("SUPERVISOR_MAX_RESTARTS", "supervisor", "max_restarts", Integer(0, 10_000), 10, "restarts allowed within the window"),
    _s("SUPERVISOR_RESTART_WINDOW", "supervisor", "restart_window", _SECONDS, 60.0, "window of the restart intensity"),
    _s(
        "SUPERVISOR_MAX_START_FAILURES",
        "supervisor",
        "max_start_failures",
        Integer(1, 1000),
        6,
        "consecutive failed starts of one child before escalation",
    ),
    # intake
    _s("SIGNALS_CHANNEL", "intake", "channel", Text(), "roottrading:signals:filtered", "Redis pub/sub channel of the aggregator's signals"),
    _s("SIGNALS_STREAM_ENABLED", "intake", "stream_enabled", Boolean(), True, "also read the durable Redis Stream"),
    _s("SIGNALS_STREAM", "intake", "stream", Text(), "roottrading:signals:stream", "Redis Stream of signals (field 'data' holds the JSON)"),
    _s("SIGNALS_STREAM_GROUP", "intake", "stream_group", Text(), "coordinator", "consumer group on the stream"),
    _s("SIGNALS_STREAM_CONSUMER", "intake", "stream_consumer", Text(pattern=r"[A-Za-z0-9_.:-]{1,100}", allowed="1 to 100 of A-Z a-z 0-9 _ . : -"), "coordinator-1", "this coordinator's consumer name; keep it across restarts"),
    _s("STREAM_CLAIM_IDLE", "intake", "claim_idle", _SECONDS, 30.0, "entries pending this long with a dead consumer are taken over"),
    _s("DEDUP_WINDOW", "intake", "dedup_window", _SECONDS, 3600.0, "a signal id seen within this is a duplicate"),
    _s("MAX_SIGNAL_BYTES", "intake", "max_signal_bytes", Integer(1024), 1024 * 1024, "a signal payload over this many bytes is rejected as invalid, whichever way it comes"),
    _s("EVENTS_CHANNEL", "intake", "events_channel", Text(), "roottrading:coordinator:events", "Redis channel of the coordinator's events"),
    # risk, portfolio, market conditions, sizing
    _s("QUOTE_ASSET", "risk", "quote_asset", Text(pattern=r"[A-Z]{3,6}", allowed="3 to 6 capital letters"), "USDC", "asset orders are sized in"),
    _s("MIN_ORDER_NOTIONAL", "risk", "min_notional", Number(minimum=0, unit="quote asset"), 15.0, "smallest order"),
    _s("MAX_EXPOSURE_PERCENT", "risk", "max_exposure_percent", Number(above=0, maximum=100, unit="percent"), 35.0, "one asset's share of equity at most"),
    _s("MAX_ORDERS_PER_MINUTE", "risk", "max_orders_per_minute", Integer(1, 10_000), 30, "BUY orders in any minute at most"),
    _s("DAILY_LOSS_LIMIT_PERCENT", "risk", "daily_loss_limit_percent", Number(above=0, maximum=100, unit="percent"), 5.0, "no BUY once today's loss reaches this share of equity"),
    _s("MAX_DRAWDOWN_PERCENT", "risk", "max_drawdown_percent", Number(above=0, maximum=100, unit="percent"), 15.0, "no BUY once equity is this far below its peak"),
    _s("STOP_LOSS_COOLDOWN", "risk", "stop_loss_cooldown", Number(minimum=0, unit="seconds"), 1800.0, "no BUY of a symbol this long after its stop-loss"),
    _s("REQUIRE_MARKET_DATA", "risk", "require_market_data", Boolean(), True, "a BUY needs a market price to compare with"),
    _s("MAX_PRICE_DEVIATION_PERCENT", "risk", "max_price_deviation_percent", Number(above=0, unit="percent"), 1.0, "signal price vs market price at most"),
    _s("MARKET_DATA_MAX_AGE", "risk", "market_data_max_age", _SECONDS, 180.0, "a market price older than this is stale"),
    _s("SIZING_THRESHOLDS", "risk", "sizing_thresholds", Numbers(3, 0, 1000, increasing=True), (1.0, 1.5, 2.2), "signal force limits of WEAK, MODERATE, STRONG"),
    _s("SIZING_PERCENTS", "risk", "sizing_percents", Numbers(4, 0.01, 100), (12.0, 18.0, 22.0, 28.0), "percent of free quote per category WEAK..VERY_STRONG"),
    _s("SIZING_MODE", "risk", "sizing_mode", Choice(("roottrading", "table")), "roottrading", "rootTrading: RootTrading's force, categories and amount (see Sizing); table: SIZING_THRESHOLDS and SIZING_PERCENTS"),
    _s("UNIVERSE_OVERRIDE", "risk", "universe_override", Boolean(), True, "a consensus BUY of force >= 2 with >= 5 strategies may enter outside the universe (RootTrading's override; a blacklist still refuses)"),
    _s("PORTFOLIO_CACHE_TTL", "risk", "portfolio_cache_ttl", _SECONDS, 2.0, "balances and positions are fetched again after this"),
    _s("PORTFOLIO_MAX_AGE", "risk", "portfolio_max_age", _SECONDS, 30.0, "a BUY needs a portfolio view at most this old"),
    _s("PORTFOLIO_MAX_AGE_EXIT", "risk", "portfolio_max_age_exit", _SECONDS, 600.0, "a SELL may size on a view this old"),
    _s("PORTFOLIO_TIMEOUT", "risk", "portfolio_timeout", Number(above=0, maximum=30, unit="seconds"), 2.0, "timeout of a Portfolio request"),
    _s("RESERVATION_LIFETIME", "risk", "reservation_lifetime", Number(minimum=10, maximum=3600, unit="seconds"), 90.0, "an order's reservation not settled after this is released with a warning (longer than the Trader timeouts and the intent claim; a WARNING at start when shorter than an order held after a 5xx may wait)"),
    _s("FILL_SETTLE_WINDOW", "risk", "fill_settle_window", Number(minimum=10, maximum=3600, unit="seconds"), 180.0, "our fill is laid over the Portfolio's view until both its positions and balances show it, at most this long"),
    _s("QUANTITY_DECIMALS", "risk", "quantity_decimals", Integer(0, 8), 8, "order quantities are floored to this many decimals"),
    _s("QUANTITY_DECIMALS_BY_SYMBOL", "risk", "quantity_decimals_by_symbol", SymbolDecimals(), (), "decimals of particular symbols"),
    # execution and storage
    _s("TRADER_CONNECT_TIMEOUT", "execution", "connect_timeout", Number(above=0, maximum=30, unit="seconds"), 1.0, "connect timeout of POST /order"),
    _s("TRADER_READ_TIMEOUT", "execution", "read_timeout", Number(above=0, maximum=120, unit="seconds"), 15.0, "read timeout of POST /order (past it the order is unknown and reconciled); RootTrading's Trader fills on Binance before it answers"),
    _s("STORE_FLUSH_INTERVAL", "execution", "flush_interval", Number(above=0, maximum=5, unit="seconds"), 0.02, "the store writer flushes its batch this often"),
    _s("STORE_BATCH_SIZE", "execution", "batch_size", Integer(1, 100_000), 2000, "or as soon as it holds this many records"),
    # paper exchange
    _s("PAPER_TRADING", "paper", "trading", Boolean(), None, "true: orders go to the in-process paper exchange (not with TRADER_API_URL/PORTFOLIO_API_URL); unset: paper only when nothing is configured (all embedded), else the Trader and Portfolio at their URLs or RootTrading's http://trader:5002 and http://portfolio:8000"),
    _s("PAPER_STARTING_BALANCE", "paper", "starting_balance", Number(minimum=0, unit="quote asset"), 10_000.0, "paper exchange starting balance"),
    _s("PAPER_FEE_PERCENT", "paper", "fee_percent", Number(minimum=0, maximum=10, unit="percent"), 0.1, "paper exchange fee per fill"),
    _s("PAPER_FEE_IN_BASE", "paper", "fee_in_base", Boolean(), False, "paper exchange takes a BUY's fee in the base asset (the free balance is then under the position)"),
    # universe manager
    _s("UNIVERSE_CANDIDATES", "universe_manager", "candidates", Choice(("config", "redis", "data")), "config", "candidates: TRADING_SYMBOLS, the trading:symbols Redis key, or every symbol with data"),
    _s("UNIVERSE_TIMEFRAME", "universe_manager", "timeframe", Choice(("1m", "3m", "5m", "15m", "1h")), "15m", "candle timeframe of the statistics"),
    _s("VOLATILITY_WINDOW", "universe_manager", "window", Integer(10, 10_000), 96, "candles of the volatility and correlation window"),
    _s("UNIVERSE_FILTERS", "universe_manager", "filters", Names(("volume", "spread", "market_cap", "volatility", "score", "correlation", "top")), ("volume", "spread", "market_cap", "volatility", "score", "correlation", "top"), "the filter chain, in order"),
    _s("UNIVERSE_SCORE_WEIGHTS", "universe_manager", "score_weights", Weights(("volume", "volatility", "momentum")), (("momentum", 0.2), ("volatility", 0.3), ("volume", 0.5)), "weights of the score"),
    _s("UNKNOWN_SPREAD_POLICY", "universe_manager", "unknown_spread", Choice(("keep", "drop")), "keep", "a symbol with no fresh bid/ask"),
    _s("UNKNOWN_MARKET_CAP_POLICY", "universe_manager", "unknown_market_cap", Choice(("keep", "drop")), "keep", "a symbol whose market cap is unknown"),
    _s("BOOK_TICKER_KEY", "universe_manager", "book_ticker_key", Text(), "roottrading:market:book_ticker", "Redis hash: symbol -> {bid, ask, time} JSON"),
    _s("SPREAD_MAX_AGE", "universe_manager", "spread_max_age", _SECONDS, 300.0, "a bid/ask older than this is unknown"),
    _s("MARKET_CAP_KEY", "universe_manager", "market_cap_key", Text(), "roottrading:market:cap", "Redis hash: base asset or symbol -> market cap in USD"),
    _s("MARKET_CAP_FILE", "universe_manager", "market_cap_file", AnyPath(), None, "JSON file {asset or symbol: market cap in USD}, read at each rotation"),
    _s("CORE_PAIRS", "universe_manager", "core_pairs", Symbols(), ("BTCUSDC", "ETHUSDC"), "always in the universe"),
    _s("UNIVERSE_ENTRY_ROTATIONS", "universe_manager", "entry_rotations", Integer(1, 100), 2, "rotations in a row a symbol must qualify to enter"),
    _s("UNIVERSE_ENTRY_MARGIN", "universe_manager", "entry_margin", Number(minimum=0, maximum=10), 0.2, "or enter at once by beating the weakest member by this fraction"),
    _s("UNIVERSE_EXIT_MISSES", "universe_manager", "exit_misses", Integer(1, 100), 2, "rotations in a row a member may miss before it leaves"),
    _s("UNIVERSE_MAX_CHANGES", "universe_manager", "max_changes", Integer(1, 1000), 3, "additions and removals per rotation at most"),
    _s("UNIVERSE_MIN_RESIDENCY", "universe_manager", "min_residency", Number(minimum=0, unit="seconds"), 7200.0, "a member stays at least this long"),
    _s("AUTO_BLACKLIST_STOP_LOSSES", "universe_manager", "auto_stop_losses", Integer(1, 1000), 3, "stop-losses on a symbol that blacklist it"),
    _s("AUTO_BLACKLIST_WINDOW", "universe_manager", "auto_window", _SECONDS, 86400.0, "within this"),
    _s("AUTO_BLACKLIST_COOLDOWN", "universe_manager", "auto_cooldown", _SECONDS, 86400.0, "for this long"),
    # trailing stops
    _s("STOP_RULES", "stops", "rules", Names(_STOP_RULES), ("stoploss", "breakeven", "percent"), "the stop rules of a position by default (stoploss required)"),
    _s("STOP_RULES_BY_SYMBOL", "stops", "rules_by_symbol", SymbolRules(), (), "rule sets of particular symbols"),
    _s("STOP_LOSS_PERCENT", "stops", "stop_loss_percent", Number(above=0, maximum=99, unit="percent"), 5.0, "hard stop-loss under the entry price"),
    _s("TRAILING_STOP_PERCENT", "stops", "trail_percent", Number(above=0, maximum=99, unit="percent"), 2.0, "percent rule: trail this far under the peak"),
    _s("TRAILING_STOP_OFFSET_PERCENT", "stops", "trail_offset_percent", Number(minimum=0, maximum=1000, unit="percent"), 1.0, "percent rule: once the peak is this far over the entry"),
    _s("ATR_MULTIPLIER", "stops", "atr_multiple", Number(above=0, maximum=100), 3.0, "atr rule: trail this many ATRs under the peak"),
    _s("ATR_PERIOD", "stops", "atr_period", Integer(1, 1000), 14, "candles of the ATR (Wilder)"),
    _s("ATR_TIMEFRAME", "stops", "atr_timeframe", Choice(("1m", "3m", "5m", "15m")), "5m", "candle timeframe of the ATR"),
    _s("PROFIT_LADDER", "stops", "ladder", Ladder(), ((2.0, 0.5), (4.0, 2.0), (8.0, 5.0)), "ladder rule: gain:lock steps in percent"),
    _s("BREAKEVEN_AFTER_PERCENT", "stops", "breakeven_after_percent", Number(above=0, maximum=1000, unit="percent"), 1.5, "breakeven rule: once the peak is this far over the entry"),
    _s("BREAKEVEN_OFFSET_PERCENT", "stops", "breakeven_offset_percent", Number(minimum=0, maximum=1000, unit="percent"), 0.2, "breakeven rule: the stop goes this far over the entry (fees)"),
    _s("STOP_PRICE_MAX_AGE", "stops", "price_max_age", _SECONDS, 90.0, "a price older than this is stale: no stop decision on it"),
    _s("POSITIONS_REFRESH_INTERVAL", "stops", "refresh_interval", _SECONDS, 10.0, "open positions are fetched again this often (and soon after our orders)"),
    _s("STOP_EXIT_RETRY_BASE", "stops", "retry_base", _SECONDS, 1.0, "first wait before an exit is tried again after a failure"),
    _s("STOP_EXIT_RETRY_MAX", "stops", "retry_max", _SECONDS, 60.0, "longest wait between exit attempts"),
    _s("STOP_EXIT_TIMEOUT", "stops", "exit_timeout", _SECONDS, 90.0, "an exit with no outcome after this is looked at again"),
    _s("STOP_EXIT_SETTLE", "stops", "exit_settle", _SECONDS, 90.0, "a position still held this long after it was sold is watched again, with an alert (its next exit reads the stored orders first)"),
    _s("STOP_STATE_FLUSH_INTERVAL", "stops", "flush_interval", Number(above=0, maximum=10, unit="seconds"), 0.25, "stop state is written to PostgreSQL this often"),
)
# fmt: on

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
CONFIG_FILE_VARIABLE = "COORDINATOR_CONFIG"


# --- sections -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    host: str
    port: int
    data_dir: Path
    api_token: str | None
    drills: bool
    log_level: str
    coordinator_log_level: str | None
    log_format: str
    http_threads: int
    ask_timeout: float
    snapshot_ttl: float


@dataclass(frozen=True, slots=True)
class HttpServiceConfig:
    """A dependency reached over HTTP; ``url`` None means not configured."""

    url: str | None


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str | None
    host: str | None
    port: int
    password: str | None
    db: int

    @property
    def embedded(self) -> bool:
        return self.url is None and self.host is None

    def connection_url(self) -> str | None:
        if self.url is not None:
            return self.url
        if self.host is None:
            return None
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str | None
    host: str | None
    port: int
    user: str
    password: str | None
    name: str

    @property
    def embedded(self) -> bool:
        return self.url is None and self.host is None

    def dsn(self) -> str | None:
        if self.url is not None:
            return self.url
        if self.host is None:
            return None
        parts = [
            f"host={self.host}",
            f"port={self.port}",
            f"user={self.user}",
            f"dbname={self.name}",
        ]
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class TradingConfig:
    max_concurrent_trades: int
    universe_size: int
    symbols: tuple[str, ...]
    enabled: bool


@dataclass(frozen=True, slots=True)
class CoordinationConfig:
    signal_timeout: float
    max_pending_signals: int
    validation_threads: int
    health_check_interval: float
    universe_update_interval: float


@dataclass(frozen=True, slots=True)
class UniverseConfig:
    min_volume_24h: float
    max_spread_percent: float
    min_market_cap: float
    volatility_range: tuple[float, float]
    correlation_limit: float


@dataclass(frozen=True, slots=True)
class HealthConfig:
    probe_timeout: float
    failure_threshold: int
    open_seconds: float
    open_max_seconds: float


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    channel: str
    stream_enabled: bool
    stream: str
    stream_group: str
    stream_consumer: str
    claim_idle: float
    dedup_window: float
    events_channel: str
    max_signal_bytes: int


@dataclass(frozen=True, slots=True)
class RiskSettings:
    quote_asset: str
    min_notional: float
    max_exposure_percent: float
    max_orders_per_minute: int
    daily_loss_limit_percent: float
    max_drawdown_percent: float
    stop_loss_cooldown: float
    require_market_data: bool
    max_price_deviation_percent: float
    market_data_max_age: float
    sizing_thresholds: tuple[float, ...]
    sizing_percents: tuple[float, ...]
    sizing_mode: str
    universe_override: bool
    portfolio_cache_ttl: float
    portfolio_max_age: float
    portfolio_max_age_exit: float
    portfolio_timeout: float
    reservation_lifetime: float
    fill_settle_window: float
    quantity_decimals: int
    quantity_decimals_by_symbol: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    connect_timeout: float
    read_timeout: float
    flush_interval: float
    batch_size: int


@dataclass(frozen=True, slots=True)
class UniverseManagerConfig:
    candidates: str
    timeframe: str
    window: int
    filters: tuple[str, ...]
    score_weights: tuple[tuple[str, float], ...]
    unknown_spread: str
    unknown_market_cap: str
    book_ticker_key: str
    spread_max_age: float
    market_cap_key: str
    market_cap_file: Path | None
    core_pairs: tuple[str, ...]
    entry_rotations: int
    entry_margin: float
    exit_misses: int
    max_changes: int
    min_residency: float
    auto_stop_losses: int
    auto_window: float
    auto_cooldown: float


@dataclass(frozen=True, slots=True)
class StopsConfig:
    rules: tuple[str, ...]
    rules_by_symbol: tuple[tuple[str, tuple[str, ...]], ...]
    stop_loss_percent: float
    trail_percent: float
    trail_offset_percent: float
    atr_multiple: float
    atr_period: int
    atr_timeframe: str
    ladder: tuple[tuple[float, float], ...]
    breakeven_after_percent: float
    breakeven_offset_percent: float
    price_max_age: float
    refresh_interval: float
    retry_base: float
    retry_max: float
    exit_timeout: float
    exit_settle: float
    flush_interval: float

    def rules_for(self, symbol: str) -> tuple[str, ...]:
        return dict(self.rules_by_symbol).get(symbol, self.rules)


@dataclass(frozen=True, slots=True)
class PaperConfig:
    trading: bool
    """Resolved at load: the setting, or whether everything is embedded."""
    starting_balance: float
    fee_percent: float
    fee_in_base: bool


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    strategy: str
    start_timeout: float
    stop_timeout: float
    liveness_interval: float
    liveness_timeout: float
    backoff_base: float
    backoff_max: float
    backoff_jitter: float
    backoff_reset: float
    max_restarts: int
    restart_window: float
    max_start_failures: int


_SECTION_TYPES: dict[str, type] = {
    "service": ServiceConfig,
    "trader": HttpServiceConfig,
    "portfolio": HttpServiceConfig,
    "redis": RedisConfig,
    "database": DatabaseConfig,
    "trading": TradingConfig,
    "coordination": CoordinationConfig,
    "universe": UniverseConfig,
    "health": HealthConfig,
    "supervisor": SupervisorConfig,
    "intake": IntakeConfig,
    "risk": RiskSettings,
    "execution": ExecutionConfig,
    "paper": PaperConfig,
    "universe_manager": UniverseManagerConfig,
    "stops": StopsConfig,
}


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration; ``sources`` says where each variable came from."""

    service: ServiceConfig
    trader: HttpServiceConfig
    portfolio: HttpServiceConfig
    redis: RedisConfig
    database: DatabaseConfig
    trading: TradingConfig
    coordination: CoordinationConfig
    universe: UniverseConfig
    health: HealthConfig
    supervisor: SupervisorConfig
    intake: IntakeConfig
    risk: RiskSettings
    execution: ExecutionConfig
    paper: PaperConfig
    universe_manager: UniverseManagerConfig
    stops: StopsConfig
    sources: tuple[tuple[str, str], ...] = ()
    config_file: Path | None = None
    notes: tuple[Note, ...] = ()
    """What the operator should read at start: defaults taken in their stead, settings
    that load but may not do what they seem to."""

    @property
    def paper_trading(self) -> bool:
        """Whether orders go to the in-process paper exchange (no real money)."""
        return self.paper.trading

    def value_of(self, setting: Setting) -> Any:
        return getattr(getattr(self, setting.section), setting.field)

    def stop_params(self) -> Any:
        """The trailing-stop parameters (coordinator.trading.stops.StopParams)."""
        return stop_params_from({s.name: self.value_of(s) for s in SETTINGS})

    def universe_chain_settings(self) -> dict[str, Any]:
        """The parameters of the universe filters, as ``build_chain`` takes them."""
        return chain_settings_from({s.name: self.value_of(s) for s in SETTINGS})

    def redacted(self) -> dict[str, dict[str, Any]]:
        """Every variable with its effective value and source, secrets hidden."""
        sources = dict(self.sources)
        out: dict[str, dict[str, Any]] = {}
        for setting in SETTINGS:
            value = self.value_of(setting)
            out[setting.name] = {
                "value": _redact(setting, value),
                "source": sources.get(setting.name, "default"),
            }
        return out


def _redact(setting: Setting, value: Any) -> Any:
    if value is None:
        return None
    if setting.secret:
        return "***"
    if isinstance(setting.kind, Url):
        return redact_url(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def redact_url(url: str) -> str:
    """Hide the password of a URL, keep the rest for diagnosis."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# --- loading --------------------------------------------------------------------------


def load_config(
    environ: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Parse every setting once; raise ConfigError listing every bad value."""
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    raw: dict[str, tuple[Any, str]] = {}

    file_path = config_file
    if file_path is None and environ.get(CONFIG_FILE_VARIABLE, "").strip():
        file_path = Path(environ[CONFIG_FILE_VARIABLE].strip()).expanduser()
    if file_path is not None:
        for name, value in _read_config_file(file_path, errors).items():
            raw[name] = (value, f"file {file_path}")

    for setting in SETTINGS:
        if setting.name in environ and (
            environ[setting.name].strip() != "" or setting.kind.accepts_empty
        ):
            raw[setting.name] = (environ[setting.name], "environment")
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = (value, "command line")

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name not in raw:
            default = setting.default
            values[setting.name] = None if default is None else setting.kind.parse(default)
            continue
        value, source = raw[setting.name]
        try:
            values[setting.name] = setting.kind.parse(value)
        except (ValueError, TypeError, OverflowError):
            shown = "***" if setting.secret else repr(value)
            errors.append(
                f"{setting.name}={shown} (from {source}) is not valid: "
                f"expected {setting.kind.allowed}"
            )

    if not errors:
        errors.extend(_cross_checks(values, raw))
    derived: dict[str, str] = {}
    notes: list[Note] = []
    if not errors:
        errors.extend(resolve_environment(values, raw, derived, notes))
    if errors:
        raise ConfigError(errors)

    sections: dict[str, Any] = {}
    for section, section_type in _SECTION_TYPES.items():
        kwargs = {s.field: values[s.name] for s in SETTINGS if s.section == section}
        sections[section] = section_type(**kwargs)
    sources = {name: source for name, (_, source) in raw.items()} | derived
    return Config(
        **sections,
        sources=tuple(sorted(sources.items())),
        config_file=file_path,
        notes=tuple(notes),
    )


def _read_config_file(path: Path, errors: list[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        errors.append(f"{CONFIG_FILE_VARIABLE}={str(path)!r} is not valid: the file does not exist")
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        errors.append(
            f"{CONFIG_FILE_VARIABLE}={str(path)!r} is not valid: expected a TOML file ({exc})"
        )
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.upper()
        if name not in SETTINGS_BY_NAME:
            errors.append(
                f"{key} in config file {path} is not a known setting: "
                "expected one of the variables listed by `coordinator check-config`"
            )
            continue
        out[name] = value
    return out


def _cross_checks(values: dict[str, Any], raw: Mapping[str, tuple[Any, str]]) -> list[str]:
    errors = []
    pairs: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("REDIS_URL", "REDIS_HOST", ("REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB")),
        ("DATABASE_URL", "PGHOST", ("PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")),
    )
    for url_name, host_name, parts in pairs:
        if values[url_name] is not None and values[host_name] is not None:
            errors.append(
                f"{url_name} and {host_name} are both set: "
                "expected only one way to reach the server"
            )
        if values[url_name] is None and values[host_name] is None:
            given = [p for p in parts if p in raw]
            if given:
                errors.append(
                    f"{', '.join(given)} set without {host_name}: expected {host_name} too, "
                    f"or nothing for the embedded server"
                )
    # A reservation outlives the longest an order may take to be answered (connect and
    # read timeouts, with room for the intent claim), or an order on its way loses it.
    order_time = values["TRADER_CONNECT_TIMEOUT"] + values["TRADER_READ_TIMEOUT"] + 5.0
    checks: tuple[tuple[bool, str], ...] = (
        (
            values["RESERVATION_LIFETIME"] <= order_time,
            "RESERVATION_LIFETIME={} is not valid: expected more than TRADER_CONNECT_TIMEOUT + "
            "TRADER_READ_TIMEOUT + 5 s for the intent claim = {:g}".format(
                values["RESERVATION_LIFETIME"], order_time
            ),
        ),
        (
            values["SUPERVISOR_LIVENESS_TIMEOUT"] <= values["SUPERVISOR_LIVENESS_INTERVAL"],
            "SUPERVISOR_LIVENESS_TIMEOUT={} is not valid: expected more than "
            "SUPERVISOR_LIVENESS_INTERVAL={}".format(
                values["SUPERVISOR_LIVENESS_TIMEOUT"], values["SUPERVISOR_LIVENESS_INTERVAL"]
            ),
        ),
        (
            values["SUPERVISOR_BACKOFF_MAX"] < values["SUPERVISOR_BACKOFF_BASE"],
            "SUPERVISOR_BACKOFF_MAX={} is not valid: expected at least "
            "SUPERVISOR_BACKOFF_BASE={}".format(
                values["SUPERVISOR_BACKOFF_MAX"], values["SUPERVISOR_BACKOFF_BASE"]
            ),
        ),
        (
            values["BREAKER_OPEN_MAX_SECONDS"] < values["BREAKER_OPEN_SECONDS"],
            "BREAKER_OPEN_MAX_SECONDS={} is not valid: expected at least "
            "BREAKER_OPEN_SECONDS={}".format(
                values["BREAKER_OPEN_MAX_SECONDS"], values["BREAKER_OPEN_SECONDS"]
            ),
        ),
    )
    errors.extend(message for failed, message in checks if failed)
    errors.extend(_universe_chain_errors(values))
    errors.extend(_stop_errors(values))
    return errors


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(name, default, allowed, meaning) for every setting: the README's table."""
    rows = []
    for s in SETTINGS:
        default = s.default
        if s.name == "VOLATILITY_RANGE":
            shown = "{:g}-{:g}".format(*default)
        elif s.name == "UNIVERSE_SCORE_WEIGHTS":
            shown = ",".join(f"{k}={v:g}" for k, v in default)
        elif s.name == "PROFIT_LADDER":
            shown = ",".join(f"{gain:g}:{lock:g}" for gain, lock in default)
        elif isinstance(default, tuple):
            shown = ",".join(f"{d:g}" if isinstance(d, float) else str(d) for d in default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, float):
            shown = str(int(default)) if default.is_integer() else str(default)
        else:
            shown = "" if default is None else str(default)
        rows.append((s.name, shown, s.kind.allowed, s.help))
    return rows


def _universe_chain_errors(values: Mapping[str, Any]) -> list[str]:
    """The filters check their own parameters; ask them now, so that a bad combination
    stops the start with the settings named instead of failing the UniverseManager."""
    from coordinator.trading.universe_filters import build_chain

    try:
        build_chain(values["UNIVERSE_FILTERS"], chain_settings_from(values))
    except ValueError as exc:
        return [f"UNIVERSE_FILTERS={','.join(values['UNIVERSE_FILTERS'])} is not valid: {exc}"]
    return []


def chain_settings_from(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of the universe filters, by the names ``build_chain`` takes."""
    return {
        "min_volume_24h": values["MIN_VOLUME_24H"],
        "max_spread_percent": values["MAX_SPREAD_PERCENT"],
        "unknown_spread": values["UNKNOWN_SPREAD_POLICY"],
        "min_market_cap": values["MIN_MARKET_CAP"],
        "unknown_market_cap": values["UNKNOWN_MARKET_CAP_POLICY"],
        "volatility_range": values["VOLATILITY_RANGE"],
        "score_weights": dict(values["UNIVERSE_SCORE_WEIGHTS"]),
        "correlation_limit": values["CORRELATION_LIMIT"],
        "universe_size": values["UNIVERSE_SIZE"],
    }


def _stop_errors(values: Mapping[str, Any]) -> list[str]:
    errors = []
    if "stoploss" not in values["STOP_RULES"]:
        errors.append(
            f"STOP_RULES={','.join(values['STOP_RULES'])} is not valid: expected stoploss "
            "among the rules (every position keeps a hard stop-loss)"
        )
    try:
        stop_params_from(values)
    except ValueError as exc:
        # StopParams speaks of its fields; the operator knows the variables.
        text = str(exc)
        for field, name in _STOP_FIELDS.items():
            text = re.sub(rf"\b{field}\b", name, text)
        errors.append(f"the trailing-stop settings do not fit together: {text}")
    return errors


_STOP_FIELDS = {
    "stop_loss_percent": "STOP_LOSS_PERCENT",
    "trail_offset_percent": "TRAILING_STOP_OFFSET_PERCENT",
    "trail_percent": "TRAILING_STOP_PERCENT",
    "atr_multiple": "ATR_MULTIPLIER",
    "breakeven_after_percent": "BREAKEVEN_AFTER_PERCENT",
    "breakeven_offset_percent": "BREAKEVEN_OFFSET_PERCENT",
    "ladder": "PROFIT_LADDER",
}


def stop_params_from(values: Mapping[str, Any]) -> Any:
    """The StopParams of the settings (ValueError naming what does not fit)."""
    from coordinator.trading.stops import StopParams

    return StopParams(
        stop_loss_percent=values["STOP_LOSS_PERCENT"],
        trail_percent=values["TRAILING_STOP_PERCENT"],
        trail_offset_percent=values["TRAILING_STOP_OFFSET_PERCENT"],
        atr_multiple=values["ATR_MULTIPLIER"],
        ladder=values["PROFIT_LADDER"],
        breakeven_after_percent=values["BREAKEVEN_AFTER_PERCENT"],
        breakeven_offset_percent=values["BREAKEVEN_OFFSET_PERCENT"],
    )
