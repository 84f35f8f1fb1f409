"""The part of the configuration each actor is handed when the tree is built (the
daemon's ``build_tree``): a section, or a small record of what it needs from two or
more, so that no actor reaches into the whole configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.cluster.lease import LeaseTimings
from coordinator.config.identity import InstanceMode
from coordinator.config.sections import (
    Config,
    CoordinationConfig,
    ExecutionConfig,
    HealthConfig,
    InstanceConfig,
    IntakeConfig,
    StopsConfig,
    UniverseManagerConfig,
)

if TYPE_CHECKING:
    from coordinator.trading.stops import StopParams

__all__ = [
    "LEADER_LEASE",
    "ElectorSettings",
    "FeedSettings",
    "HealthSettings",
    "IntakeSettings",
    "Parts",
    "ReconcilerSettings",
    "StopSettings",
    "StoreSettings",
    "UniverseSettings",
    "ValidatorSettings",
    "parts_of",
]


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """ServiceHealth's."""

    health: HealthConfig
    check_interval: float
    """Seconds between dependency probes."""


LEADER_LEASE = "leader"
"""The name of the lease whose holder runs what must run once across the instances."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The StoreWriter's."""

    execution: ExecutionConfig
    intake: IntakeConfig
    signal_timeout: float
    data_dir: Path
    """Where the quarantine journal goes."""
    lease: str = LEADER_LEASE
    """The leader lease: held by a live instance, the orders in flight are not swept
    at start."""


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The MarketFeed's."""

    price_max_age: float
    """The shorter of the two maximum ages a price is used at: the risk checks' and
    the TrailingStop's."""
    timeframe: str
    """Candles of the universe statistics."""
    atr_timeframe: str
    validators: int


@dataclass(frozen=True, slots=True)
class UniverseSettings:
    """The UniverseManager's."""

    manager: UniverseManagerConfig
    update_interval: float
    size: int
    symbols: tuple[str, ...]
    """TRADING_SYMBOLS, the candidates of UNIVERSE_CANDIDATES=config."""
    chain: dict[str, Any]
    """The parameters of the filter chain, as ``build_chain`` takes them."""


@dataclass(frozen=True, slots=True)
class StopSettings:
    """The TrailingStop's."""

    stops: StopsConfig
    params: StopParams
    """The stop rules' parameters."""
    portfolio_timeout: float
    validators: int


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    """The Reconciler's."""

    execution: ExecutionConfig
    validators: int
    identity: InstanceConfig
    """This instance (whose held orders it reconciles as a follower too) and the
    liveness of the others (whose held orders a leader leaves to them)."""


@dataclass(frozen=True, slots=True)
class ValidatorSettings:
    """A Validator's."""

    execution: ExecutionConfig
    signal_timeout: float
    stop_price_max_age: float
    trading_enabled: bool
    universe_override: bool


@dataclass(frozen=True, slots=True)
class ElectorSettings:
    """The LeaderElector's."""

    timings: LeaseTimings
    """How long the lease lasts and how often it is renewed."""
    holder: str
    """This instance's name in the lease: unique among the instances sharing the
    database."""
    lease: str = LEADER_LEASE
    """The lease contended for."""
    mode: InstanceMode = InstanceMode.CLUSTER
    """COORDINATOR_INSTANCES (the daemon passes it): cluster contends for the lease;
    single leads at once without one and never stops leading."""


@dataclass(frozen=True, slots=True)
class IntakeSettings:
    """The SignalIntake's."""

    intake: IntakeConfig
    coordination: CoordinationConfig


@dataclass(frozen=True, slots=True)
class Parts:
    """Every actor's part, cut from one parsed configuration."""

    health: HealthSettings
    store: StoreSettings
    feed: FeedSettings
    universe: UniverseSettings
    stops: StopSettings
    reconciler: ReconcilerSettings
    validator: ValidatorSettings
    intake: IntakeSettings


def parts_of(config: Config) -> Parts:
    """What each actor takes from the sections, in one place."""
    validators = config.coordination.validation_threads
    return Parts(
        health=HealthSettings(config.health, config.coordination.health_check_interval),
        store=StoreSettings(
            config.execution,
            config.intake,
            config.coordination.signal_timeout,
            config.service.data_dir,
        ),
        feed=FeedSettings(
            min(config.risk.market_data_max_age, config.stops.price_max_age),
            config.universe_manager.timeframe,
            config.stops.atr_timeframe,
            validators,
        ),
        universe=UniverseSettings(
            config.universe_manager,
            config.coordination.universe_update_interval,
            config.trading.universe_size,
            config.trading.symbols,
            config.universe_chain_settings(),
        ),
        stops=StopSettings(
            config.stops, config.stop_params(), config.risk.portfolio_timeout, validators
        ),
        reconciler=ReconcilerSettings(config.execution, validators, config.instance),
        validator=ValidatorSettings(
            config.execution,
            config.coordination.signal_timeout,
            config.stops.price_max_age,
            config.trading.enabled,
            config.risk.universe_override,
        ),
        intake=IntakeSettings(config.intake, config.coordination),
    )
