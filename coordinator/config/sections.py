"""The sections: one frozen record per group of settings, grouped by the code that
uses them, and ``Config``, which holds them all once parsed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from coordinator.cluster.lease import LeaseTimings
from coordinator.config.identity import InstanceMode
from coordinator.config.kinds import Url
from coordinator.config.modes import Note
from coordinator.config.settings import SETTINGS, Setting
from coordinator.trading.rate_limit import Rate
from coordinator.trading.sizing import SizingTable
from coordinator.trading.sizing_roottrading import SizingMode
from coordinator.trading.validation import RiskConfig

if TYPE_CHECKING:
    from coordinator.trading.stops import StopParams

__all__ = [
    "SECTION_TYPES",
    "Config",
    "CoordinationConfig",
    "DatabaseConfig",
    "ExecutionConfig",
    "HealthConfig",
    "HttpConfig",
    "HttpServiceConfig",
    "InstanceConfig",
    "IntakeConfig",
    "LeaseTimings",
    "PaperConfig",
    "RedisConfig",
    "RiskConfig",
    "ServiceConfig",
    "StopsConfig",
    "SupervisorConfig",
    "TradingConfig",
    "UniverseConfig",
    "UniverseManagerConfig",
    "build_sections",
    "chain_settings_from",
    "redact_url",
    "stop_params_from",
    "stop_variables",
]


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
class HttpConfig:
    """What one client may ask of the HTTP API, and what the server holds open."""

    rate_limit_mutating: Rate | None
    rate_limit_signals: Rate | None
    rate_limit_clients: int
    max_body_bytes: int
    channel_timeout: int
    connection_limit: int
    cleanup_interval: int
    request_timeout: int


@dataclass(frozen=True, slots=True)
class HttpServiceConfig:
    """A dependency reached over HTTP; ``url`` None means not configured."""

    url: str | None


class _Server:
    """A server given by URL, else by host (and its other settings), else by neither:
    then the coordinator runs its own (embedded)."""

    __slots__ = ()
    url: str | None
    host: str | None

    @property
    def embedded(self) -> bool:
        return self.url is None and self.host is None

    def _address(self, from_host: Callable[[], str]) -> str | None:
        """The URL as given, or built by ``from_host``; None when embedded."""
        if self.url is not None:
            return self.url
        if self.host is None:
            return None
        return from_host()


@dataclass(frozen=True, slots=True)
class RedisConfig(_Server):
    url: str | None
    host: str | None
    port: int
    password: str | None
    db: int

    def connection_url(self) -> str | None:
        auth = f":{self.password}@" if self.password else ""
        return self._address(lambda: f"redis://{auth}{self.host}:{self.port}/{self.db}")


@dataclass(frozen=True, slots=True)
class DatabaseConfig(_Server):
    url: str | None
    host: str | None
    port: int
    user: str
    password: str | None
    name: str

    def dsn(self) -> str | None:
        return self._address(self._libpq_dsn)

    def _libpq_dsn(self) -> str:
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
class InstanceConfig:
    """This coordinator's identity and the heartbeat of its row (the InstanceKeeper's)."""

    name: str
    """COORDINATOR_INSTANCE, or its default (host and data directory)."""
    heartbeat: float
    """Seconds between two heartbeats."""
    liveness: float
    """A heartbeat younger than this is a live coordinator."""
    mode: InstanceMode = InstanceMode.SINGLE
    """COORDINATOR_INSTANCES: alone (always the leader) or one of several."""

    def __post_init__(self) -> None:
        # The settings table parses a choice as its text.
        object.__setattr__(self, "mode", InstanceMode(self.mode))


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
    partitions: int
    partition_stream: str


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    connect_timeout: float
    read_timeout: float
    intent_group_wait: float
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


SECTION_TYPES: dict[str, type] = {
    "service": ServiceConfig,
    "http": HttpConfig,
    "trader": HttpServiceConfig,
    "portfolio": HttpServiceConfig,
    "redis": RedisConfig,
    "database": DatabaseConfig,
    "trading": TradingConfig,
    "coordination": CoordinationConfig,
    "universe": UniverseConfig,
    "health": HealthConfig,
    "instance": InstanceConfig,
    "supervisor": SupervisorConfig,
    "intake": IntakeConfig,
    "risk": RiskConfig,
    "execution": ExecutionConfig,
    "paper": PaperConfig,
    "universe_manager": UniverseManagerConfig,
    "stops": StopsConfig,
    "leader_lease": LeaseTimings,
}


def build_sections(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every section from the parsed settings (by variable name): each row fills the
    field it names, so a new setting is a row in the table and a field in its section.
    ValueError when a section refuses its values."""

    def rows(section: str) -> dict[str, Any]:
        return {s.field: values[s.name] for s in SETTINGS if s.section == section}

    sections = {
        section: section_type(**rows(section))
        for section, section_type in SECTION_TYPES.items()
        if section != "risk"
    }
    sections["risk"] = _risk_section(rows("risk"), sections["trading"], sections["paper"])
    return sections


def _risk_section(rows: dict[str, Any], trading: TradingConfig, paper: PaperConfig) -> RiskConfig:
    """The risk fields that are not one row each: the sizing table of two rows, the
    mode's name, and what the risk checks take from other sections."""
    thresholds = rows.pop("sizing_thresholds")
    percents = rows.pop("sizing_percents")
    mode = SizingMode(rows.pop("sizing_mode"))
    risk_type: type[RiskConfig] = SECTION_TYPES["risk"]
    return risk_type(
        **rows,
        sizing=SizingTable(thresholds, percents),
        sizing_mode=mode,
        max_concurrent_trades=trading.max_concurrent_trades,
        fee_rate=paper.fee_percent / 100.0,
    )


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration; ``sources`` says where each variable came from."""

    service: ServiceConfig
    http: HttpConfig
    trader: HttpServiceConfig
    portfolio: HttpServiceConfig
    redis: RedisConfig
    database: DatabaseConfig
    trading: TradingConfig
    coordination: CoordinationConfig
    universe: UniverseConfig
    health: HealthConfig
    instance: InstanceConfig
    supervisor: SupervisorConfig
    intake: IntakeConfig
    risk: RiskConfig
    execution: ExecutionConfig
    paper: PaperConfig
    universe_manager: UniverseManagerConfig
    stops: StopsConfig
    leader_lease: LeaseTimings
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

    def stop_params(self) -> StopParams:
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
    if isinstance(value, Rate):
        return value.describe()
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


def stop_variables() -> dict[str, str]:
    """StopParams' fields and the variables that fill them: the stops section's rows
    of the same field names, so a new stop parameter is a row and a field."""
    from coordinator.trading.stops import StopParams

    names = {f.name for f in fields(StopParams)}
    return {s.field: s.name for s in SETTINGS if s.section == "stops" and s.field in names}


def stop_params_from(values: Mapping[str, Any]) -> StopParams:
    """The StopParams of the settings (ValueError naming what does not fit)."""
    from coordinator.trading.stops import StopParams

    return StopParams(**{field: values[name] for field, name in stop_variables().items()})
