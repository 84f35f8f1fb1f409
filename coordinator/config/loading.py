"""Loading: the settings read from the TOML file, the environment and the flags,
strongest last, each parsed by its kind, checked together, and frozen into sections.
A bad value never falls back to a default: start-up stops with every error named."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.config.modes import Note, resolve_environment
from coordinator.config.sections import (
    Config,
    build_sections,
    chain_settings_from,
    stop_params_from,
    stop_variables,
)
from coordinator.config.settings import CONFIG_FILE_VARIABLE, SETTINGS, SETTINGS_BY_NAME
from coordinator.errors import CoordinatorError

__all__ = ["ConfigError", "describe_settings", "load_config"]


class ConfigError(CoordinatorError):
    """One or more settings are invalid; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


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

    try:
        sections = build_sections(values)
    except ValueError as exc:
        raise ConfigError([f"the settings do not fit together: {exc}"]) from exc
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
            # One late heartbeat must not make a live coordinator look dead.
            values["INSTANCE_LIVENESS"] < 2 * values["INSTANCE_HEARTBEAT"],
            "INSTANCE_LIVENESS={} is not valid: expected at least twice "
            "INSTANCE_HEARTBEAT={}".format(
                values["INSTANCE_LIVENESS"], values["INSTANCE_HEARTBEAT"]
            ),
        ),
        (
            # One lost renewal must leave time for the next before the lease lapses.
            values["LEADER_LEASE_RENEW"] >= values["LEADER_LEASE_DURATION"] / 2,
            "LEADER_LEASE_RENEW={} is not valid: expected under half of "
            "LEADER_LEASE_DURATION={}".format(
                values["LEADER_LEASE_RENEW"], values["LEADER_LEASE_DURATION"]
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
        for field, name in stop_variables().items():
            text = re.sub(rf"\b{field}\b", name, text)
        errors.append(f"the trailing-stop settings do not fit together: {text}")
    return errors
