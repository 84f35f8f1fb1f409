"""Configuration: every setting parsed once, validated, and frozen into sections.

Sources, strongest first: command-line flags, environment variables, the optional
TOML config file (``COORDINATOR_CONFIG`` or ``--config``), then the defaults of the
settings table. ``kinds`` parses values, ``settings`` is the table, ``sections`` the
records the code takes, ``loading`` reads the sources, ``modes`` what the settings
mean together, ``parts`` the part each actor is handed.
"""

from coordinator.config.kinds import Kind
from coordinator.config.loading import ConfigError, describe_settings, load_config
from coordinator.config.modes import Note
from coordinator.config.sections import (
    Config,
    CoordinationConfig,
    DatabaseConfig,
    ExecutionConfig,
    HealthConfig,
    HttpConfig,
    HttpServiceConfig,
    InstanceConfig,
    IntakeConfig,
    PaperConfig,
    RedisConfig,
    RiskConfig,
    ServiceConfig,
    StopsConfig,
    SupervisorConfig,
    TradingConfig,
    UniverseConfig,
    UniverseManagerConfig,
    chain_settings_from,
    redact_url,
    stop_params_from,
)
from coordinator.config.settings import CONFIG_FILE_VARIABLE, SETTINGS, SETTINGS_BY_NAME, Setting

__all__ = [
    "CONFIG_FILE_VARIABLE",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Config",
    "ConfigError",
    "CoordinationConfig",
    "DatabaseConfig",
    "ExecutionConfig",
    "HealthConfig",
    "HttpConfig",
    "HttpServiceConfig",
    "InstanceConfig",
    "IntakeConfig",
    "Kind",
    "Note",
    "PaperConfig",
    "RedisConfig",
    "RiskConfig",
    "ServiceConfig",
    "Setting",
    "StopsConfig",
    "SupervisorConfig",
    "TradingConfig",
    "UniverseConfig",
    "UniverseManagerConfig",
    "chain_settings_from",
    "describe_settings",
    "load_config",
    "redact_url",
    "stop_params_from",
]
