"""COORDINATOR_INSTANCE: named after the host and the data directory unless set, checked,
and the stream consumer name unless SIGNALS_STREAM_CONSUMER is set."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.cli import main
from coordinator.config import ConfigError, load_config
from coordinator.config.identity import INSTANCE_PATTERN, default_instance


def test_the_default_is_the_host_and_a_hash_of_the_resolved_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config({"COORDINATOR_DATA_DIR": "data"})
    name = config.instance.name
    host = socket.gethostname()
    assert name.startswith(f"{host}-")
    assert re.fullmatch(r"[0-9a-f]{8}", name.removeprefix(f"{host}-"))
    assert name == default_instance(host, tmp_path / "data")
    sources = dict(config.sources)
    assert sources["COORDINATOR_INSTANCE"] == (
        f"derived: host name and data directory {tmp_path / 'data'}"
    )
    # The same directory by another path: the same identity (a restart keeps it).
    again = load_config({"COORDINATOR_DATA_DIR": str(tmp_path / "x" / ".." / "data")})
    assert again.instance.name == name


def test_two_data_dirs_of_one_host_are_two_identities(tmp_path):
    one = load_config({"COORDINATOR_DATA_DIR": str(tmp_path / "one")}).instance.name
    two = load_config({"COORDINATOR_DATA_DIR": str(tmp_path / "two")}).instance.name
    assert one != two


@given(host=st.text(max_size=300), data_dir=st.text(min_size=1, max_size=50))
def test_any_host_name_gives_a_valid_default(host, data_dir):
    name = default_instance(host, Path("/") / data_dir)
    assert re.fullmatch(INSTANCE_PATTERN, name)
    assert name == default_instance(host, Path("/") / data_dir)


def test_a_set_instance_is_kept_and_is_the_stream_consumer():
    config = load_config({"COORDINATOR_INSTANCE": "coord-a.eu:1_x"})
    assert config.instance.name == "coord-a.eu:1_x"
    assert config.intake.stream_consumer == "coord-a.eu:1_x"
    sources = dict(config.sources)
    assert sources["COORDINATOR_INSTANCE"] == "environment"
    assert sources["SIGNALS_STREAM_CONSUMER"] == "derived: COORDINATOR_INSTANCE"


def test_an_explicit_stream_consumer_still_wins():
    config = load_config({"COORDINATOR_INSTANCE": "a", "SIGNALS_STREAM_CONSUMER": "coordinator-1"})
    assert config.instance.name == "a"
    assert config.intake.stream_consumer == "coordinator-1"
    assert load_config({}).intake.stream_consumer == load_config({}).instance.name


@pytest.mark.parametrize("bad", ["two words", "x" * 101, "café", "a/b", "a'b"])
def test_a_bad_instance_is_refused_naming_the_variable_and_what_is_allowed(bad):
    with pytest.raises(ConfigError) as raised:
        load_config({"COORDINATOR_INSTANCE": bad})
    assert raised.value.errors == [
        f"COORDINATOR_INSTANCE={bad!r} (from environment) is not valid: "
        "expected 1 to 100 of A-Z a-z 0-9 _ . : -"
    ]


def test_heartbeat_and_liveness_defaults_and_their_check():
    config = load_config({})
    assert (config.instance.heartbeat, config.instance.liveness) == (1.0, 5.0)
    with pytest.raises(
        ConfigError, match=re.escape("INSTANCE_LIVENESS=3.0 is not valid: expected at")
    ):
        load_config({"INSTANCE_HEARTBEAT": "2", "INSTANCE_LIVENESS": "3"})
    with pytest.raises(ConfigError, match="INSTANCE_HEARTBEAT='0'"):
        load_config({"INSTANCE_HEARTBEAT": "0"})


def test_run_with_a_bad_instance_exits_2_before_starting_anything(monkeypatch, capsys):
    monkeypatch.setenv("COORDINATOR_INSTANCE", "no spaces please")
    assert main(["run"]) == 2
    assert "COORDINATOR_INSTANCE='no spaces please'" in capsys.readouterr().err


def test_check_config_shows_the_instance_and_where_it_came_from(monkeypatch, capsys):
    monkeypatch.setenv("COORDINATOR_INSTANCE", "coordinator-eu-1")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"COORDINATOR_INSTANCE +coordinator-eu-1 +\[environment\]", out), out
    assert re.search(
        r"SIGNALS_STREAM_CONSUMER +coordinator-eu-1 +\[derived: COORDINATOR_INSTANCE\]", out
    ), out
