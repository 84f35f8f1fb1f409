"""Configuration: parsed once, every bad value named, secrets never shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from coordinator import cli
from coordinator.cli import main
from coordinator.cluster.lease import LeaseTimings
from coordinator.config import SETTINGS, ConfigError, load_config, redact_url
from coordinator.errors import CoordinatorError
from coordinator.infra.portfolio_client import PortfolioError
from coordinator.infra.store import StoreError
from coordinator.infra.trader_client import TraderReadError
from coordinator.supervisor.directory import ChildUnavailable


def test_defaults_are_the_documented_ones():
    config = load_config({})
    assert config.service.port == 5003
    assert config.service.data_dir == Path(".coordinator")
    assert config.coordination.signal_timeout == 30
    assert config.coordination.max_pending_signals == 100
    assert config.coordination.validation_threads == 4
    assert config.coordination.health_check_interval == 60
    assert config.coordination.universe_update_interval == 3600
    assert config.universe.min_volume_24h == 1_000_000
    assert config.universe.max_spread_percent == 0.1
    assert config.universe.min_market_cap == 50_000_000
    assert config.universe.volatility_range == (0.02, 0.15)
    assert config.universe.correlation_limit == 0.8
    assert config.redis.embedded and config.database.embedded
    assert config.trader.url is None


def test_environment_values_are_parsed_into_frozen_sections():
    config = load_config(
        {
            "TRADING_SYMBOLS": "btcusdc, ETHUSDC,BTCUSDC",
            "TRADING_ENABLED": "no",
            "VOLATILITY_RANGE": "0.01-0.2",
            "MAX_CONCURRENT_TRADES": "7",
            "TRADER_API_URL": "http://trader:5002/",
            "PGHOST": "db",
            "PGPASSWORD": "secret",
        }
    )
    assert config.trading.symbols == ("BTCUSDC", "ETHUSDC")
    assert config.trading.enabled is False
    assert config.universe.volatility_range == (0.01, 0.2)
    assert config.trading.max_concurrent_trades == 7
    assert config.trader.url == "http://trader:5002"
    assert config.database.dsn() == "host=db port=5432 user=postgres dbname=trading password=secret"
    with pytest.raises(AttributeError):
        config.trading.enabled = True  # type: ignore[misc]


def test_symbols_may_be_a_json_array():
    assert load_config({"TRADING_SYMBOLS": '["SOLUSDC", "BNBUSDC"]'}).trading.symbols == (
        "SOLUSDC",
        "BNBUSDC",
    )


def test_config_file_is_read_and_the_environment_wins(tmp_path):
    file = tmp_path / "coordinator.toml"
    file.write_text('signal_timeout = 12\nUNIVERSE_SIZE = 4\nTRADING_SYMBOLS = ["BTCUSDC"]\n')
    config = load_config({"COORDINATOR_CONFIG": str(file), "UNIVERSE_SIZE": "6"})
    assert config.coordination.signal_timeout == 12
    assert config.trading.universe_size == 6
    assert config.trading.symbols == ("BTCUSDC",)
    sources = dict(config.sources)
    assert sources["SIGNAL_TIMEOUT"] == f"file {file}"
    assert sources["UNIVERSE_SIZE"] == "environment"


def test_command_line_wins_over_the_environment():
    config = load_config({"COORDINATOR_PORT": "6000"}, overrides={"COORDINATOR_PORT": "7000"})
    assert config.service.port == 7000


ERROR_CASES = [
    ({"SIGNAL_TIMEOUT": "abc"}, "SIGNAL_TIMEOUT='abc' (from environment) is not valid: expected a number of seconds > 0"),
    ({"SIGNAL_TIMEOUT": "0"}, "SIGNAL_TIMEOUT='0'"),
    ({"SIGNAL_TIMEOUT": "nan"}, "SIGNAL_TIMEOUT='nan'"),
    ({"SIGNAL_TIMEOUT": "inf"}, "SIGNAL_TIMEOUT='inf'"),
    ({"MAX_PENDING_SIGNALS": "1.5"}, "MAX_PENDING_SIGNALS='1.5' (from environment) is not valid: expected an integer from 1 to 100000"),
    ({"VALIDATION_THREADS": "0"}, "VALIDATION_THREADS='0' (from environment) is not valid: expected an integer from 1 to 64"),
    ({"COORDINATOR_PORT": "70000"}, "COORDINATOR_PORT='70000' (from environment) is not valid: expected an integer from 1 to 65535"),
    ({"COORDINATOR_INSTANCES": "two"}, "COORDINATOR_INSTANCES='two' (from environment) is not valid: expected one of single, cluster"),
    ({"TRADING_ENABLED": "maybe"}, "TRADING_ENABLED='maybe' (from environment) is not valid: expected true or false"),
    ({"TRADER_API_URL": "trader:5002"}, "TRADER_API_URL='trader:5002' (from environment) is not valid: expected a URL with scheme http:// or https://"),
    ({"REDIS_URL": "http://redis"}, "REDIS_URL='http://redis' (from environment) is not valid: expected a URL with scheme redis://"),
    ({"DATABASE_URL": "mysql://db"}, "DATABASE_URL='mysql://db' (from environment) is not valid: expected a URL with scheme postgresql://"),
    ({"TRADING_SYMBOLS": "BTC/USDC"}, "TRADING_SYMBOLS='BTC/USDC' (from environment) is not valid: expected comma-separated or JSON-array Binance symbols"),
    ({"TRADING_SYMBOLS": ","}, "TRADING_SYMBOLS=','"),
    ({"VOLATILITY_RANGE": "0.2-0.1"}, "VOLATILITY_RANGE='0.2-0.1' (from environment) is not valid: expected two numbers low-high with 0 <= low < high"),
    ({"VOLATILITY_RANGE": "0.1"}, "VOLATILITY_RANGE='0.1'"),
    ({"CORRELATION_LIMIT": "1.5"}, "CORRELATION_LIMIT='1.5' (from environment) is not valid: expected a number > 0 and <= 1"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' (from environment) is not valid: expected one of auto, json, text, kv"),
    ({"SUPERVISOR_STRATEGY": "all_for_one"}, "expected one of one_for_one, rest_for_one"),
    ({"COORDINATOR_API_TOKEN": "short"}, "COORDINATOR_API_TOKEN=*** (from environment) is not valid: expected a string of at least 16 characters"),
    ({"REDIS_URL": "redis://r:6379", "REDIS_HOST": "r"}, "REDIS_URL and REDIS_HOST are both set"),
    ({"DATABASE_URL": "postgresql://db/x", "PGHOST": "db"}, "DATABASE_URL and PGHOST are both set"),
    ({"PGPORT": "5433"}, "PGPORT set without PGHOST"),
    ({"REDIS_PASSWORD": "x"}, "REDIS_PASSWORD set without REDIS_HOST"),
    ({"SUPERVISOR_LIVENESS_INTERVAL": "10", "SUPERVISOR_LIVENESS_TIMEOUT": "5"}, "SUPERVISOR_LIVENESS_TIMEOUT=5.0 is not valid: expected more than SUPERVISOR_LIVENESS_INTERVAL=10.0"),
    ({"SUPERVISOR_BACKOFF_BASE": "5", "SUPERVISOR_BACKOFF_MAX": "1"}, "SUPERVISOR_BACKOFF_MAX=1.0 is not valid"),
    ({"BREAKER_OPEN_SECONDS": "50", "BREAKER_OPEN_MAX_SECONDS": "10"}, "BREAKER_OPEN_MAX_SECONDS=10.0 is not valid"),
    ({"RESERVATION_LIFETIME": "20", "TRADER_READ_TIMEOUT": "30"}, "RESERVATION_LIFETIME=20.0 is not valid: expected more than TRADER_CONNECT_TIMEOUT + TRADER_READ_TIMEOUT + 5 s for the intent claim = 36"),
    ({"QUANTITY_DECIMALS_BY_SYMBOL": "BTCUSDC=5"}, "QUANTITY_DECIMALS_BY_SYMBOL='BTCUSDC=5' (from environment) is not valid: expected comma-separated SYMBOL:decimals entries"),
    ({"QUANTITY_DECIMALS_BY_SYMBOL": "BTCUSDC:9"}, "QUANTITY_DECIMALS_BY_SYMBOL='BTCUSDC:9'"),
    ({"COORDINATOR_CONFIG": "/nonexistent/coordinator.toml"}, "COORDINATOR_CONFIG='/nonexistent/coordinator.toml' is not valid: the file does not exist"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"), ERROR_CASES, ids=[next(iter(e)) for e, _ in ERROR_CASES]
)
def test_each_bad_value_exits_2_naming_variable_value_and_what_is_allowed(
    env, message, monkeypatch, capsys
):
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.delenv("COORDINATOR_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    assert main(["check-config"]) == 2
    assert main(["run"]) == 2

    err = capsys.readouterr().err
    assert "configuration error" in err
    assert message in err


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config({"SIGNAL_TIMEOUT": "x", "UNIVERSE_SIZE": "-1", "LOG_LEVEL": "loud"})
    assert len(caught.value.errors) == 3


def test_bad_config_file_is_named(tmp_path):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("SIGNAL_TIMEOUTS = 3\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("signal_timeout = \n")
    with pytest.raises(
        ConfigError, match=r"SIGNAL_TIMEOUTS in config file .* is not a known setting"
    ):
        load_config({"COORDINATOR_CONFIG": str(unknown)})
    with pytest.raises(ConfigError, match="expected a TOML file"):
        load_config({}, config_file=broken)


def test_check_config_hides_every_secret(monkeypatch, capsys):
    monkeypatch.setenv("COORDINATOR_API_TOKEN", "a-very-secret-token-123")
    monkeypatch.setenv("DATABASE_URL", "postgresql://trader:pgsecret@db:5432/trading")
    monkeypatch.setenv("REDIS_URL", "redis://:redissecret@redis:6379/0")
    assert main(["check-config", "--json"]) == 0
    out = capsys.readouterr().out
    effective = json.loads(out)
    for secret in ("a-very-secret-token-123", "pgsecret", "redissecret"):
        assert secret not in out
    assert effective["DATABASE_URL"]["value"] == "postgresql://trader:***@db:5432/trading"
    assert effective["COORDINATOR_API_TOKEN"] == {"value": "***", "source": "environment"}
    assert effective["SIGNAL_TIMEOUT"] == {"value": 30.0, "source": "default"}

    assert main(["check-config"]) == 0
    text = capsys.readouterr().out
    assert "a-very-secret-token-123" not in text and "pgsecret" not in text
    assert "COORDINATOR_API_TOKEN" in text and "***" in text


def test_redact_url_keeps_what_helps_diagnosis():
    assert redact_url("redis://:pw@host:1/0") == "redis://:***@host:1/0"
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_url("http://trader:5002") == "http://trader:5002"


def test_the_universe_filters_check_their_parameters_at_load() -> None:
    """The kinds already refuse what the filters would; this is the net under them."""
    from coordinator.config.loading import _universe_chain_errors

    config = load_config(environ={})
    values = {s.name: config.value_of(s) for s in SETTINGS}
    assert _universe_chain_errors(values) == []
    values["VOLATILITY_RANGE"] = (0.2, 0.1)
    assert _universe_chain_errors(values) == [
        "UNIVERSE_FILTERS=volume,spread,market_cap,volatility,score,correlation,top is not "
        "valid: volatility range must have low < high, got 0.2-0.1"
    ]
    values["UNIVERSE_FILTERS"] = ("volume", "top")
    assert _universe_chain_errors(values) == [], "no volatility filter, no check of its range"


def test_quantity_decimals_by_symbol_are_parsed_like_the_stop_rules():
    config = load_config({"QUANTITY_DECIMALS_BY_SYMBOL": "BTCUSDC:5, solusdc:3,"})
    assert config.risk.quantity_decimals_by_symbol == (("BTCUSDC", 5), ("SOLUSDC", 3))
    assert config.risk.quantity_decimals == 8


# --- the order timeout and the reservations -------------------------------------------


def test_the_trader_read_timeout_is_roottradings_15_s_and_reservations_outlive_a_held_order():
    from coordinator.config.modes import held_reservation_seconds

    config = load_config({})
    assert config.execution.read_timeout == 15
    held = held_reservation_seconds(config.execution.connect_timeout, 15)
    assert config.risk.reservation_lifetime > held
    assert not [n for n in config.notes if "RESERVATION_LIFETIME" in n.text]


def test_a_reservation_shorter_than_a_held_order_may_wait_is_a_warning():
    config = load_config({"RESERVATION_LIFETIME": "30"})
    (note,) = [n for n in config.notes if "RESERVATION_LIFETIME" in n.text]
    assert note.level == logging.WARNING
    assert "held after a 5xx" in note.text


def test_a_settle_window_shorter_than_a_restored_held_order_may_wait_is_a_warning():
    assert not [n for n in load_config({}).notes if "FILL_SETTLE_WINDOW" in n.text]
    config = load_config({"FILL_SETTLE_WINDOW": "30", "SIGNAL_TIMEOUT": "60"})
    (note,) = [n for n in config.notes if "FILL_SETTLE_WINDOW" in n.text]
    assert note.level == logging.WARNING
    assert "after a restart (85 s with SIGNAL_TIMEOUT=60" in note.text


def test_the_reservation_check_follows_the_default_read_timeout():
    with pytest.raises(ConfigError, match="= 21"):
        load_config({"RESERVATION_LIFETIME": "20"})


# --- TRADING_SYMBOLS and LOG_LEVEL as RootTrading's env writes them ---------------------


def test_an_empty_trading_symbols_lists_none_and_candidates_come_from_market_data():
    config = load_config({"TRADING_SYMBOLS": ""})
    assert config.trading.symbols == ()
    assert config.universe_manager.candidates == "data"
    assert dict(config.sources)["UNIVERSE_CANDIDATES"] == "derived: TRADING_SYMBOLS is empty"
    assert load_config({"TRADING_SYMBOLS": "  "}).trading.symbols == ()
    assert load_config({"TRADING_SYMBOLS": "[]"}).trading.symbols == ()


def test_unset_trading_symbols_keeps_the_five_defaults():
    config = load_config({})
    assert config.trading.symbols == ("BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC", "BNBUSDC")
    assert config.universe_manager.candidates == "config"


def test_empty_trading_symbols_with_config_candidates_warns_and_loads():
    config = load_config({"TRADING_SYMBOLS": "", "UNIVERSE_CANDIDATES": "config"})
    assert config.trading.symbols == ()
    assert config.universe_manager.candidates == "config"
    (note,) = [n for n in config.notes if "TRADING_SYMBOLS" in n.text]
    assert note.level == logging.WARNING
    assert "CORE_PAIRS (BTCUSDC,ETHUSDC)" in note.text
    redis_candidates = load_config({"TRADING_SYMBOLS": "", "UNIVERSE_CANDIDATES": "redis"})
    assert redis_candidates.universe_manager.candidates == "redis"
    assert not [n for n in redis_candidates.notes if "TRADING_SYMBOLS" in n.text]


def test_an_empty_trading_symbols_in_the_config_file_lists_none(tmp_path):
    file = tmp_path / "coordinator.toml"
    file.write_text("TRADING_SYMBOLS = []\n")
    assert load_config({}, config_file=file).trading.symbols == ()


@pytest.mark.parametrize(
    ("raw", "level"),
    [("DEBUG", "debug"), ("INFO", "info"), ("WARNING", "warning"), ("WARN", "warning"),
     ("ERROR", "error"), ("CRITICAL", "critical"), ("info", "info")],
)  # fmt: skip
def test_log_level_takes_roottradings_spellings(raw, level):
    config = load_config({"LOG_LEVEL": raw, "COORDINATOR_LOG_LEVEL": raw})
    assert config.service.log_level == level
    assert config.service.coordinator_log_level == level


def test_a_bad_coordinator_log_level_is_named():
    with pytest.raises(ConfigError, match="COORDINATOR_LOG_LEVEL='loud'"):
        load_config({"COORDINATOR_LOG_LEVEL": "loud"})


@pytest.fixture
def restored_logging():
    """configure_logging changes the process's logging: put it back for pytest."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("coordinator.flow", "pykka", "waitress", "urllib3", "coordinator.daemon")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _logged(level: str, coordinator_level: str | None) -> list[dict]:
    import io

    from coordinator.logs import configure_logging, message_logger

    stream = io.StringIO()
    configure_logging(level, "json", stream, coordinator_level=coordinator_level)
    message_logger("intake").debug("signal received")
    message_logger("market").info("a candle, at INFO")
    logging.getLogger("pykka").debug("library chatter")
    logging.getLogger("coordinator.daemon").debug("a start-up detail")
    logging.getLogger("coordinator.daemon").info("a start-up line")
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_roottradings_log_level_debug_does_not_turn_on_the_per_message_lines(restored_logging):
    messages = [r["msg"] for r in _logged("debug", None)]
    assert "signal received" not in messages
    assert "library chatter" not in messages
    assert "a candle, at INFO" in messages
    assert "a start-up detail" in messages
    assert "a start-up line" in messages


def test_coordinator_log_level_debug_turns_them_on(restored_logging):
    messages = [r["msg"] for r in _logged("info", "debug")]
    assert "signal received" in messages
    assert "library chatter" in messages
    assert "a start-up detail" in messages


def test_coordinator_log_level_wins_over_log_level_both_ways(restored_logging):
    messages = [r["msg"] for r in _logged("debug", "warning")]
    assert messages == []
    messages = [r["msg"] for r in _logged("error", "info")]
    assert "a start-up line" in messages and "a candle, at INFO" in messages
    assert "a start-up detail" not in messages


def test_check_config_prints_the_start_up_notes(monkeypatch, capsys):
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.delenv("COORDINATOR_CONFIG", raising=False)
    monkeypatch.setenv("REDIS_HOST", "redis")
    monkeypatch.setenv("TRADING_SYMBOLS", "")
    monkeypatch.setenv("UNIVERSE_CANDIDATES", "config")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "# INFO: TRADER_API_URL not set: using RootTrading's default http://trader:5002" in out
    assert "# WARNING: TRADING_SYMBOLS is empty and UNIVERSE_CANDIDATES=config" in out


@pytest.mark.parametrize(
    ("error", "code", "named"),
    [
        (ConfigError(["COORDINATOR_PORT: not a port: 'x'"]), 2, "COORDINATOR_PORT: not a port"),
        (StoreError("database unreachable:\n  connection refused"), 1, "StoreError"),
        (ChildUnavailable("ledger", "restarting"), 1, "ledger: restarting"),
    ],
)
def test_the_command_line_reports_a_coordinator_error_without_a_traceback(
    error, code, named, monkeypatch, capsys
):
    def failing(_args):
        raise error

    monkeypatch.setattr(cli, "_check_config", failing)
    assert main(["check-config"]) == code
    err = capsys.readouterr().err
    assert named in err
    assert "Traceback" not in err
    if code == 1:
        assert err.count("\n") == 1  # one line, even for a message that spans several


def test_every_error_of_the_coordinator_shares_one_base():
    for error in (ConfigError, StoreError, ChildUnavailable, PortfolioError, TraderReadError):
        assert issubclass(error, CoordinatorError)


def test_the_leader_lease_renews_in_under_half_its_duration() -> None:
    assert load_config({}).leader_lease == LeaseTimings(duration=1.5, renew_every=0.5)
    custom = load_config({"LEADER_LEASE_DURATION": "10", "LEADER_LEASE_RENEW": "3"})
    assert custom.leader_lease == LeaseTimings(duration=10.0, renew_every=3.0)
    with pytest.raises(ConfigError) as refused:
        load_config({"LEADER_LEASE_RENEW": "0.75"})
    assert refused.value.errors == [
        "LEADER_LEASE_RENEW=0.75 is not valid: expected under half of LEADER_LEASE_DURATION=1.5"
    ]
