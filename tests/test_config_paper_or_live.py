"""Paper or live: where orders go, as RootTrading's compose runs the coordinator."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.cli import main
from coordinator.config import SETTINGS, ConfigError, load_config

# --- paper or live, as RootTrading's compose runs it ----------------------------------

ROOTTRADING_ENV = {
    # RootTrading's env.example, as its compose hands it to the coordinator service.
    "REDIS_HOST": "redis",
    "REDIS_PORT": "6379",
    "REDIS_PASSWORD": "",
    "REDIS_DB": "0",
    "PGUSER": "postgres",
    "PGPASSWORD": "postgres",
    "PGDATABASE": "trading",
    "PGHOST": "db",
    "PGPORT": "5432",
    "LOG_LEVEL": "DEBUG",
    "TRADING_SYMBOLS": "BTCUSDC,ETHUSDC,SOLUSDC,XRPUSDC,NEARUSDC,LINKUSDC,AAVEUSDC,DOGEUSDC",
    "COORDINATOR_PORT": "5003",
    "TRADING_ENABLED": "true",
}


def test_nothing_configured_trades_on_paper():
    config = load_config({})
    assert config.paper_trading is True
    assert config.trader.url is None and config.portfolio.url is None
    assert dict(config.sources)["PAPER_TRADING"].startswith("derived: nothing configured")


def test_roottrading_compose_env_trades_live_at_its_trader_and_portfolio():
    config = load_config(ROOTTRADING_ENV)
    assert config.paper_trading is False
    assert config.trader.url == "http://trader:5002"
    assert config.portfolio.url == "http://portfolio:8000"
    sources = dict(config.sources)
    assert sources["TRADER_API_URL"] == "default: RootTrading's service"
    assert sources["PORTFOLIO_API_URL"] == "default: RootTrading's service"
    texts = [note.text for note in config.notes]
    assert any("http://trader:5002" in t for t in texts)
    assert any("http://portfolio:8000" in t for t in texts)
    assert config.service.log_level == "debug"
    assert config.trading.symbols[-1] == "DOGEUSDC"


@pytest.mark.parametrize(
    "configured",
    [
        {"REDIS_URL": "redis://redis:6379/0"},
        {"REDIS_HOST": "redis"},
        {"DATABASE_URL": "postgresql://db/trading"},
        {"PGHOST": "db"},
        {"TRADER_API_URL": "http://trader:5002"},
        {"PORTFOLIO_API_URL": "http://portfolio:8000"},
    ],
    ids=lambda env: next(iter(env)),
)
def test_anything_configured_means_live_with_the_missing_urls_defaulted(configured):
    config = load_config(configured)
    assert config.paper_trading is False
    assert config.trader.url is not None and config.portfolio.url is not None


def test_paper_on_purpose_with_redis_and_postgresql_configured():
    config = load_config({"REDIS_HOST": "redis", "PGHOST": "db", "PAPER_TRADING": "true"})
    assert config.paper_trading is True
    assert config.trader.url is None and config.portfolio.url is None
    assert load_config({"PGHOST": "db"}, overrides={"PAPER_TRADING": True}).paper_trading


def test_paper_trading_false_with_nothing_configured_goes_live():
    config = load_config({"PAPER_TRADING": "false"})
    assert config.paper_trading is False
    assert config.trader.url == "http://trader:5002"


@pytest.mark.parametrize(
    ("env", "argv", "named"),
    [
        ({"PAPER_TRADING": "true", "TRADER_API_URL": "http://t:1"}, ["run"], ["TRADER_API_URL"]),
        (
            {
                "PAPER_TRADING": "yes",
                "PORTFOLIO_API_URL": "http://p:1",
                "TRADER_API_URL": "http://t:1",
            },
            ["run"],
            ["TRADER_API_URL", "PORTFOLIO_API_URL"],
        ),
        ({"PORTFOLIO_API_URL": "http://p:1"}, ["run", "--paper"], ["PORTFOLIO_API_URL"]),
    ],
    ids=["env", "both-urls", "--paper"],
)
def test_paper_with_an_explicit_service_url_exits_2_naming_both(
    env, argv, named, monkeypatch, capsys
):
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.delenv("COORDINATOR_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "PAPER_TRADING=true" in err
    source = "command line" if "--paper" in argv else "environment"
    assert f"PAPER_TRADING=true ({source})" in err
    for name in named:
        assert f"{name}={env[name]} (environment)" in err
    assert "are both set" in err


def test_check_config_shows_paper_and_where_it_came_from(monkeypatch, capsys):
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.delenv("COORDINATOR_CONFIG", raising=False)
    monkeypatch.setenv("PGHOST", "db")
    assert main(["check-config", "--json"]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert effective["PAPER_TRADING"]["value"] is False
    assert effective["TRADER_API_URL"] == {
        "value": "http://trader:5002",
        "source": "default: RootTrading's service",
    }
    assert main(["check-config", "--json", "--paper"]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert effective["PAPER_TRADING"] == {"value": True, "source": "command line"}
    assert effective["TRADER_API_URL"]["value"] is None


_DEPLOYMENT = {
    "REDIS_URL": "redis://redis:6379/0",
    "REDIS_HOST": "redis",
    "DATABASE_URL": "postgresql://db/trading",
    "PGHOST": "db",
    "TRADER_API_URL": "http://trader.example:5002",
    "PORTFOLIO_API_URL": "http://portfolio.example:8000",
}


@given(
    configured=st.sets(st.sampled_from(sorted(_DEPLOYMENT))),
    paper=st.sampled_from([None, "true", "false"]),
    flag=st.booleans(),
)
def test_orders_go_to_paper_only_when_asked_or_all_embedded(configured, paper, flag):
    if {"REDIS_URL", "REDIS_HOST"} <= configured or {"DATABASE_URL", "PGHOST"} <= configured:
        return  # both ways to one server: a configuration error of its own
    env = {name: _DEPLOYMENT[name] for name in configured}
    if paper is not None:
        env["PAPER_TRADING"] = paper
    overrides = {"PAPER_TRADING": True} if flag else None
    asked = flag or paper == "true"
    urls = configured & {"TRADER_API_URL", "PORTFOLIO_API_URL"}
    try:
        config = load_config(env, overrides=overrides)
    except ConfigError as exc:
        # Only paper asked for together with a service URL is refused, naming both.
        assert asked and urls
        (error,) = exc.errors
        assert "PAPER_TRADING=true" in error and all(name in error for name in urls)
        return
    assert not (asked and urls)
    wanted_paper = asked or (paper is None and not configured)
    assert config.paper_trading is wanted_paper
    if config.paper_trading:
        assert config.trader.url is None and config.portfolio.url is None
    else:
        # Live: both services have an address, the given one or RootTrading's.
        defaults = {
            "TRADER_API_URL": "http://trader:5002",
            "PORTFOLIO_API_URL": "http://portfolio:8000",
        }
        expected = {name: env.get(name, default) for name, default in defaults.items()}
        assert {
            "TRADER_API_URL": config.trader.url,
            "PORTFOLIO_API_URL": config.portfolio.url,
        } == expected
