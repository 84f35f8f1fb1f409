"""The settings table and the sections agree: each setting fills one field of its
section, each field is one setting's, and a new setting is a row and a field."""

from __future__ import annotations

import dataclasses

import pytest

from coordinator.config import SETTINGS, ConfigError, Setting, load_config, sections
from coordinator.config import loading as config_loading
from coordinator.config.kinds import Number
from coordinator.config.sections import SECTION_TYPES
from coordinator.daemon import build_tree
from coordinator.trading.validation import RiskConfig

DERIVED = {"risk": {"sizing", "max_concurrent_trades", "fee_rate"}}
"""Fields built from other rows or sections (``sections._risk_section``)."""


@pytest.mark.parametrize("section", sorted(SECTION_TYPES))
def test_every_field_of_a_section_is_exactly_one_setting(section: str) -> None:
    section_type = SECTION_TYPES[section]
    rows = [s.field for s in SETTINGS if s.section == section]
    fields = {f.name for f in dataclasses.fields(section_type)} - DERIVED.get(section, set())
    # A row whose field is derived reads back through a property (SIZING_THRESHOLDS).
    read_back = {n for n, v in vars(section_type).items() if isinstance(v, property)}
    assert len(rows) == len(set(rows)), f"a field of {section} filled by two settings"
    assert fields <= set(rows), f"fields of {section} no setting fills"
    assert set(rows) <= fields | read_back, f"settings of {section} with no field"


def test_every_setting_names_a_section_and_reads_back_from_it() -> None:
    config = load_config({})
    for setting in SETTINGS:
        assert setting.section in SECTION_TYPES, setting.name
        config.value_of(setting)


def test_a_field_default_of_a_section_is_its_settings_default() -> None:
    config = load_config({})
    for setting in SETTINGS:
        for f in dataclasses.fields(SECTION_TYPES[setting.section]):
            if f.name == setting.field and f.default is not dataclasses.MISSING:
                assert f.default == config.value_of(setting), setting.name


def test_the_risk_section_is_what_the_risk_checks_take() -> None:
    config = load_config({"MAX_CONCURRENT_TRADES": "7", "PAPER_FEE_PERCENT": "0.075"})
    assert type(config.risk) is RiskConfig
    assert config.risk.max_concurrent_trades == 7
    assert config.risk.fee_rate == pytest.approx(0.00075)
    assert config.risk.sizing_thresholds == (1.0, 1.5, 2.2)


def test_a_new_setting_is_a_row_and_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    extended = dataclasses.make_dataclass(
        "ExtendedRisk",
        [("max_leverage", float, dataclasses.field(default=1.0))],
        bases=(RiskConfig,),
        frozen=True,
        slots=True,
    )
    row = Setting("MAX_LEVERAGE", "risk", "max_leverage", Number(above=0), 1.0, "leverage")
    table = (*SETTINGS, row)
    monkeypatch.setitem(SECTION_TYPES, "risk", extended)
    monkeypatch.setattr(sections, "SETTINGS", table)
    monkeypatch.setattr(config_loading, "SETTINGS", table)
    monkeypatch.setitem(config_loading.SETTINGS_BY_NAME, row.name, row)

    config = load_config({"MAX_LEVERAGE": "2.5"})
    assert config.risk.max_leverage == 2.5
    assert config.redacted()["MAX_LEVERAGE"] == {"value": 2.5, "source": "environment"}
    assert load_config({}).risk.max_leverage == 1.0
    with pytest.raises(ConfigError, match="MAX_LEVERAGE='-1'"):
        load_config({"MAX_LEVERAGE": "-1"})


def test_each_child_is_handed_the_part_of_the_configuration_it_declares() -> None:
    config = load_config({"VALIDATION_THREADS": "2"})
    handed = {}
    for spec in build_tree(config):
        declared = vars(spec.actor_class).get("__annotations__", {}).get("settings")
        given = spec.kwargs.get("settings")
        assert (declared is None) == (given is None), spec.name
        if given is not None:
            assert type(given).__name__ == declared, spec.name
            handed[spec.name] = given
    assert handed["ledger"] is config.risk
    assert handed["trailing_stop"].stops is config.stops
    assert handed["validator-1"].signal_timeout == config.coordination.signal_timeout


def test_every_stop_parameter_is_a_setting_of_the_stops_section() -> None:
    from coordinator.trading.stops import StopParams

    variables = sections.stop_variables()
    assert set(variables) == {f.name for f in dataclasses.fields(StopParams)}
    config = load_config({"STOP_LOSS_PERCENT": "7", "PROFIT_LADDER": "3:1"})
    assert config.stop_params() == StopParams(stop_loss_percent=7.0, ladder=((3.0, 1.0),))
