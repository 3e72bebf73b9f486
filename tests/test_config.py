"""config.json -> typed settings: comment-tolerant parsing, validation, TWCManager compatibility."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twcmaster.config import (
    AppConfig,
    ConfigError,
    LoadedConfig,
    Problem,
    config_from_dict,
    default_config_path,
    load_config,
    parse_config_text,
)
from twcmaster.config.policyrules import PolicyRules

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "etc" / "twcmanager" / "config.json"
WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32}


def load(config: dict | None = None, base_dir: str = "/srv/twc", **sections) -> LoadedConfig:
    """Validate a config made of WIRING, ``config`` and other top-level sections."""
    return config_from_dict({"config": {**WIRING, **(config or {})}, **sections}, base_dir)


def errors_of(config: dict | None = None, **sections) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load(config, **sections)
    return caught.value.problems


def paths(problems) -> list[str]:
    return [problem.key_path for problem in problems]


# ----------------------------------------------------------------- shipped default


def test_shipped_default_loads_with_no_errors_and_no_warnings():
    loaded = load_config(SHIPPED)
    assert loaded.warnings == ()
    assert loaded.path == str(SHIPPED)
    settings = loaded.settings
    assert settings.wiring.max_amps_all_twcs == 6
    assert settings.wiring.max_amps_per_twc == 6
    assert settings.min_amps_per_twc <= settings.wiring.max_amps_per_twc
    assert settings.rs485.port == "/dev/ttyUSB0"
    assert settings.rs485.enabled is True
    assert settings.settings_path == str(SHIPPED.parent)


def test_shipped_default_is_installed_byte_identical_as_package_data():
    packaged = Path(default_config_path())
    assert packaged == REPO / "twcmaster" / "data" / "config.json"
    assert packaged.read_bytes() == SHIPPED.read_bytes()


def test_shipped_default_uses_both_comment_styles_and_documents_every_used_key():
    text = SHIPPED.read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("#") for line in lines)
    assert any(line.startswith("//") for line in lines)
    used = (
        "wiringMaxAmpsAllTWCs wiringMaxAmpsPerTWC minAmpsPerTWC maxAmpsPerTWC"
        " nonScheduledAmpsMax startStopDelay defaultVoltage numberOfPhases settingsPath"
        " logLevel displayMilliseconds fakeMaster spikeAmpsProactively spikeAmpsReactively"
        " spikeAmps greenEnergyFlexAmps useFlexAmpsToStartCharge enabled port baud"
        " subtractChargerLoad treatGenerationAsGridDelivery greenEnergyAmpsOffset"
        " greenEnergySafeAmps greenEnergyStartMarginAmps greenEnergyStartDelay"
        " greenEnergyMinOnTime greenEnergyMinOffTime greenEnergySmoothingSeconds greenEnergyLatch"
        " slaveTimeout masterTWCID masterSign trailerByte format"
    )
    for key in used.split():
        assert f'"{key}"' in text, key


# -------------------------------------------------------------------- comments


def test_whole_line_and_trailing_comments_are_removed():
    text = """
    # a hash comment line
    // a slash comment line
    {
        # indented hash comment
        "a": 1,   # trailing hash comment
        "b": 2,   // trailing slash comment
            // indented slash comment
        "c": [1, 2] # after a list
    }
    """
    assert parse_config_text(text) == {"a": 1, "b": 2, "c": [1, 2]}


def test_hash_and_double_slash_inside_strings_survive():
    text = r"""{
        "password": "pa#ss//word",  # the comment goes, the hash in the value stays
        "url": "http://x/y#anchor",
        "quoted": "say \"#hi\" // here"
    }"""
    assert parse_config_text(text) == {
        "password": "pa#ss//word",
        "url": "http://x/y#anchor",
        "quoted": 'say "#hi" // here',
    }


def test_trailing_commas_are_tolerated_outside_strings_only():
    text = """{
        "list": [1, 2, 3,],
        "rules": [
            {"match": ["a", "b",],},
            # a comment between the last item and the bracket
        ],
        "text": "keep ,} and ,] as written",
        "nested": {"x": 1,
        },
    }"""
    assert parse_config_text(text) == {
        "list": [1, 2, 3],
        "rules": [{"match": ["a", "b"]}],
        "text": "keep ,} and ,] as written",
        "nested": {"x": 1},
    }


def test_windows_line_endings_and_a_byte_order_mark_are_accepted():
    text = '\ufeff{\r\n  # comment\r\n  "a": "x#y", # trailing\r\n  "b": [1,],\r\n}\r\n'
    assert parse_config_text(text) == {"a": "x#y", "b": [1]}


def test_tabs_inside_values_are_accepted_as_twcmanager_did():
    assert parse_config_text('{\t"dsn":\t"a\tb"}') == {"dsn": "a\tb"}


# ---------------------------------------------------------------- syntax errors


def test_syntax_error_names_file_line_column_and_shows_the_line():
    text = '{\n  "config": {\n    "wiringMaxAmpsAllTWCs": 40;\n  }\n}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, source="/etc/twcmanager/config.json")
    message = str(caught.value)
    assert "/etc/twcmanager/config.json, line 3, column 31" in message
    assert '    3 |     "wiringMaxAmpsAllTWCs": 40;' in message
    caret_line = message.splitlines()[-1]
    assert caret_line.index("^") == message.splitlines()[-2].index(";")


def test_missing_comma_between_blocks_is_pointed_out():
    # TWCManager's own sample once lacked this comma between two vehicle blocks.
    text = """{
      "vehicle": {
        "HomeAssistant": {
          "enabled": false
        }
        # a comment line between the blocks
        "TeslaMate": {
          "enabled": false
        }
      }
    }"""
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, source="config.json")
    message = str(caught.value)
    assert "line 7, column 9" in message
    assert "missing comma before line 7?" in message
    assert '"TeslaMate": {' in message


def test_unclosed_string_is_reported_where_it_starts():
    with pytest.raises(ConfigError) as caught:
        parse_config_text('{\n  "port": "/dev/ttyUSB0,\n  "baud": 9600\n}', source="c.json")
    assert "c.json, line 2, column 11: string not closed" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("{'a': 1}", "double quotes"),
        ('{"a": True}', "lower case"),
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("[1, 2]", "{...} object"),
    ],
)
def test_common_syntax_mistakes_get_a_hint(text, hint):
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text)
    assert hint in str(caught.value)


# -------------------------------------------------------------- value errors


@pytest.mark.parametrize(
    ("config", "key_path", "expected_text"),
    [
        ({"wiringMaxAmpsAllTWCs": "forty"}, "config.wiringMaxAmpsAllTWCs", 'got "forty"'),
        ({"wiringMaxAmpsAllTWCs": 0}, "config.wiringMaxAmpsAllTWCs", "got 0"),
        ({"wiringMaxAmpsPerTWC": -3}, "config.wiringMaxAmpsPerTWC", "got -3"),
        ({"wiringMaxAmpsPerTWC": True}, "config.wiringMaxAmpsPerTWC", "got true"),
        ({"minAmpsPerTWC": 4}, "config.minAmpsPerTWC", "from 5 (the lowest a TWC accepts)"),
        ({"maxAmpsPerTWC": "32"}, "config.maxAmpsPerTWC", 'got "32"'),
        ({"nonScheduledAmpsMax": 41}, "config.nonScheduledAmpsMax", "0 to wiringMaxAmps"),
        ({"startStopDelay": -1}, "config.startStopDelay", "seconds from 0"),
        ({"defaultVoltage": 0.24}, "config.defaultVoltage", "volts"),
        ({"numberOfPhases": 2.5}, "config.numberOfPhases", "1, 2 or 3"),
        ({"numberOfPhases": 4}, "config.numberOfPhases", "got 4"),
        ({"logLevel": 0}, "config.logLevel", "level number"),
        ({"logLevel": "LOUD"}, "config.logLevel", 'got "LOUD"'),
        ({"displayMilliseconds": "yes"}, "config.displayMilliseconds", "true or false"),
        ({"spikeAmpsReactively": 2}, "config.spikeAmpsReactively", "true or false"),
        ({"spikeAmps": 3}, "config.spikeAmps", "from 5 to 80"),
        ({"greenEnergyFlexAmps": -1}, "config.greenEnergyFlexAmps", "from 0 to 480"),
        ({"useFlexAmpsToStartCharge": "no"}, "config.useFlexAmpsToStartCharge", "true or"),
        ({"settingsPath": ""}, "config.settingsPath", "non-empty string"),
        ({"fakeMaster": 0}, "config.fakeMaster", "supports only 1"),
        ({"fakeMaster": 2}, "config.fakeMaster", "listen only"),
        ({"fakeMaster": [1]}, "config.fakeMaster", "supports only 1"),
        ({"wiringMaxAmpsAllTWCs": float("nan")}, "config.wiringMaxAmpsAllTWCs", "NaN"),
        ({"subtractChargerLoad": "yes"}, "config.subtractChargerLoad", "true or false"),
        ({"treatGenerationAsGridDelivery": 2}, "config.treatGenerationAsGridDelivery", "true"),
        ({"greenEnergyAmpsOffset": "2"}, "config.greenEnergyAmpsOffset", "number of amps"),
        ({"greenEnergyLatch": -5}, "config.greenEnergyLatch", "minutes from 0"),
        ({"greenEnergySafeAmps": 41}, "config.greenEnergySafeAmps", "0 to wiringMaxAmps"),
        ({"greenEnergySafeAmps": -1}, "config.greenEnergySafeAmps", "got -1"),
        ({"greenEnergyStartMarginAmps": -1}, "config.greenEnergyStartMarginAmps", "from 0"),
        ({"greenEnergyStartDelay": -1}, "config.greenEnergyStartDelay", "seconds from 0"),
        ({"greenEnergyMinOnTime": "long"}, "config.greenEnergyMinOnTime", "seconds from 0"),
        ({"greenEnergyMinOffTime": -60}, "config.greenEnergyMinOffTime", "seconds from 0"),
        ({"greenEnergySmoothingSeconds": -1}, "config.greenEnergySmoothingSeconds", "from 0"),
        # Impossible amps, absurd durations, NaN and infinities (JSON's Infinity is parsed).
        ({"wiringMaxAmpsAllTWCs": 1e308}, "config.wiringMaxAmpsAllTWCs", "from 1 to 480"),
        ({"wiringMaxAmpsAllTWCs": 481}, "config.wiringMaxAmpsAllTWCs", "got 481"),
        ({"wiringMaxAmpsPerTWC": 81}, "config.wiringMaxAmpsPerTWC", "from 1 to 80"),
        ({"wiringMaxAmpsPerTWC": 1e308}, "config.wiringMaxAmpsPerTWC", "got 1e+308"),
        ({"wiringMaxAmpsPerTWC": -math.inf}, "config.wiringMaxAmpsPerTWC", "got -Infinity"),
        ({"minAmpsPerTWC": 1e308}, "config.minAmpsPerTWC", "accepts) to 80"),
        ({"minAmpsPerTWC": math.nan}, "config.minAmpsPerTWC", "got NaN"),
        ({"maxAmpsPerTWC": 81}, "config.maxAmpsPerTWC", "from 1 to 80"),
        ({"nonScheduledAmpsMax": 1e308}, "config.nonScheduledAmpsMax", "0 to wiringMaxAmps"),
        ({"spikeAmps": 81}, "config.spikeAmps", "from 5 to 80"),
        ({"startStopDelay": 1e308}, "config.startStopDelay", "seconds from 0 to 86400"),
        ({"startStopDelay": math.inf}, "config.startStopDelay", "got Infinity"),
        ({"defaultVoltage": math.inf}, "config.defaultVoltage", "got Infinity"),
        ({"debugLevel": -1}, "config.debugLevel", "got -1"),
        ({"greenEnergyFlexAmps": 1e308}, "config.greenEnergyFlexAmps", "from 0 to 480"),
        ({"greenEnergyAmpsOffset": 481}, "config.greenEnergyAmpsOffset", "from -480 to 480"),
        ({"greenEnergyAmpsOffset": -1e308}, "config.greenEnergyAmpsOffset", "got -1e+308"),
        ({"greenEnergyLatch": 1e308}, "config.greenEnergyLatch", "minutes from 0 to 1440"),
        ({"greenEnergySafeAmps": 1e308}, "config.greenEnergySafeAmps", "0 to wiringMaxAmps"),
        ({"greenEnergyStartMarginAmps": 481}, "config.greenEnergyStartMarginAmps", "0 to 480"),
        ({"greenEnergyStartDelay": 86401}, "config.greenEnergyStartDelay", "0 to 86400"),
        ({"greenEnergyMinOnTime": 1e308}, "config.greenEnergyMinOnTime", "0 to 86400"),
        ({"greenEnergyMinOffTime": math.inf}, "config.greenEnergyMinOffTime", "Infinity"),
        ({"greenEnergySmoothingSeconds": 1e308}, "config.greenEnergySmoothingSeconds", "86400"),
        ({"greenEnergyRaiseDelay": 1e308}, "config.greenEnergyRaiseDelay", "0 to 86400"),
        ({"greenEnergyRaiseDelay": -1}, "config.greenEnergyRaiseDelay", "got -1"),
    ],
)
def test_each_bad_value_is_an_error_naming_key_path_value_and_expectation(
    config, key_path, expected_text
):
    problems = errors_of(config)
    assert paths(problems) == [key_path]
    assert expected_text in problems[0].message
    assert str(problems[0]).startswith(f"{key_path}: ")


@pytest.mark.parametrize(
    ("rs485", "key_path", "expected_text"),
    [
        ({"port": "ttyUSB0"}, "interface.RS485.port", "device path"),
        ({"port": "tcp://host:4001"}, "interface.RS485.port", "pyserial URL"),
        ({"port": "socket://host"}, "interface.RS485.port", "host:port"),
        ({"port": "rfc2217://host:70000"}, "interface.RS485.port", "1 to 65535"),
        ({"port": 5}, "interface.RS485.port", "got 5"),
        ({"baud": 0}, "interface.RS485.baud", "baud rate"),
        ({"baud": "fast"}, "interface.RS485.baud", 'got "fast"'),
        ({"slaveTimeout": 0}, "interface.RS485.slaveTimeout", "seconds > 0"),
        ({"enabled": "on"}, "interface.RS485.enabled", "true or false"),
        ({"masterSign": "777"}, "interface.RS485.masterSign", "2 hex digits"),
        ({"trailerByte": "C0"}, "interface.RS485.trailerByte", "open a new frame"),
        ({"trailerByte": 254}, "interface.RS485.trailerByte", "2 hex digits"),
        ({"slaveTimeout": 1e308}, "interface.RS485.slaveTimeout", "at most 86400"),
        ({"slaveTimeout": math.nan}, "interface.RS485.slaveTimeout", "got NaN"),
        ({"baud": 1e308}, "interface.RS485.baud", "baud rate"),
        ({"baud": "1e308"}, "interface.RS485.baud", "baud rate"),
    ],
)
def test_bad_rs485_values_name_their_key_path(rs485, key_path, expected_text):
    problems = errors_of(interface={"RS485": rs485})
    assert paths(problems) == [key_path]
    assert expected_text in problems[0].message


def test_required_wiring_limits_are_reported_when_missing():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"config": {}}, "/srv")
    assert paths(caught.value.problems) == [
        "config.wiringMaxAmpsAllTWCs",
        "config.wiringMaxAmpsPerTWC",
    ]
    assert all("missing" in p.message for p in caught.value.problems)


def test_several_problems_are_reported_at_once_one_per_line():
    data = {
        "config": {
            "wiringMaxAmpsAllTWCs": "forty",
            "wiringMaxAmpsPerTWC": 32,
            "minAmpsPerTWC": 3,
            "wiringMaxAmpsPerTwc": 32,
            "maxAmpsAllowedFromGrid": 15,
        },
        "interface": {"RS485": {"baud": -1, "masterTWCID": "0000"}},
        "logging": {"format": "xml"},
    }
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, "/srv")
    error = caught.value
    assert sorted(paths(error.problems)) == sorted(
        [
            "config.wiringMaxAmpsPerTwc",
            "config.wiringMaxAmpsAllTWCs",
            "config.minAmpsPerTWC",
            "interface.RS485.baud",
            "interface.RS485.masterTWCID",
            "logging.format",
        ]
    )
    assert str(error).splitlines() == [str(p) for p in error.problems]
    assert paths(error.warnings) == ["config.maxAmpsAllowedFromGrid"]


def test_load_config_error_lists_every_problem_under_a_header_naming_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"config": {"wiringMaxAmpsAllTWCs": 0, "numberOfPhases": 9}}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 3 problems in the configuration:"
    assert lines[1:] == ["  " + str(p) for p in caught.value.problems]


def test_missing_file_message_names_the_shipped_default(tmp_path):
    missing = tmp_path / "nope" / "config.json"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    message = str(caught.value)
    assert str(missing) in message
    assert default_config_path() in message
    assert "etc/twcmanager/config.json" in message


# ---------------------------------------------------------- cross-field rules


def test_per_twc_wiring_above_total_is_clamped_with_a_warning():
    loaded = load({"wiringMaxAmpsAllTWCs": 24, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6})
    assert loaded.settings.wiring.max_amps_per_twc == 24
    assert paths(loaded.warnings) == ["config.wiringMaxAmpsPerTWC"]


def test_floor_above_the_wiring_limit_is_lowered_to_the_wiring_with_a_warning():
    # TWCManager's own sample (6 A wiring placeholder, 12 A floor) starts, as in TWCManager,
    # and the floor comes down to the wiring: never the wiring up to the floor.
    loaded = config_from_dict(
        {"config": {"wiringMaxAmpsAllTWCs": 6, "wiringMaxAmpsPerTWC": 6}}, "/"
    )
    assert loaded.settings.min_amps_per_twc == 6
    (warning,) = [w for w in loaded.warnings if w.key_path == "config.minAmpsPerTWC"]
    assert "12 A (the default) is above wiringMaxAmpsPerTWC (6 A)" in warning.message
    assert "lowered to 6 A" in warning.message
    loaded = load({"wiringMaxAmpsAllTWCs": 10, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 12})
    assert loaded.settings.min_amps_per_twc == 10  # against the per-TWC limit once clamped
    assert load({"minAmpsPerTWC": 32}).settings.min_amps_per_twc == 32  # equal is fine


def test_a_wiring_limit_below_any_floor_is_an_error():
    problems = errors_of({"wiringMaxAmpsAllTWCs": 4, "wiringMaxAmpsPerTWC": 4})
    assert "config.minAmpsPerTWC" in paths(problems)


def test_fractional_amps_are_rounded_down_with_a_warning():
    loaded = load({"wiringMaxAmpsAllTWCs": 40.8, "wiringMaxAmpsPerTWC": 32.5})
    assert loaded.settings.wiring == type(loaded.settings.wiring)(40, 32)
    assert paths(loaded.warnings) == ["config.wiringMaxAmpsAllTWCs", "config.wiringMaxAmpsPerTWC"]


def test_physical_maxima_are_accepted():
    settings = load(
        {
            "wiringMaxAmpsAllTWCs": 480,
            "wiringMaxAmpsPerTWC": 80,
            "minAmpsPerTWC": 80,
            "maxAmpsPerTWC": 80,
            "startStopDelay": 86400,
            "greenEnergyLatch": 1440,
            "greenEnergyAmpsOffset": -480,
            "greenEnergyFlexAmps": 480,
        },
        interface={"RS485": {"slaveTimeout": 86400, "baud": 4_000_000}},
    ).settings
    assert (settings.wiring.max_amps_all_twcs, settings.wiring.max_amps_per_twc) == (480, 80)
    assert settings.min_amps_per_twc == 80 and settings.start_stop_delay_s == 86400


def test_source_timing_is_bounded_too():
    problems = errors_of(
        sources={"Fronius": {"enabled": True, "serverIP": "10.0.0.2", "interval": 1e308}}
    )
    assert paths(problems) == ["sources.Fronius.interval"]
    assert "at most 86400 seconds" in problems[0].message


def test_spike_amps_above_the_per_twc_wiring_limit_is_clamped_with_a_warning():
    loaded = load({"spikeAmps": 40})
    assert loaded.settings.spike_amps == 32
    assert paths(loaded.warnings) == ["config.spikeAmps"]


def test_optional_settings_default_and_null_means_default():
    settings = load({"startStopDelay": None, "nonScheduledAmpsMax": None}).settings
    assert settings.min_amps_per_twc == 12
    assert settings.max_amps_per_twc == 32
    assert settings.non_scheduled_amps_max is None
    assert settings.start_stop_delay_s == 60.0
    assert settings.default_voltage_v == 240.0
    assert settings.number_of_phases == 1
    assert settings.log_level == 20
    assert settings.display_milliseconds is False
    assert settings.spike_amps_proactively is True
    assert settings.spike_amps_reactively is True
    assert settings.spike_amps is None
    assert settings.green_energy_flex_amps == 0.0
    assert settings.use_flex_amps_to_start_charge is False
    assert settings.log_format == "auto"
    rs485 = settings.rs485
    assert (rs485.enabled, rs485.port, rs485.baud, rs485.slave_timeout_s) == (
        True,
        "/dev/ttyUSB0",
        9600,
        26.0,
    )
    assert (rs485.master_twcid, rs485.master_sign, rs485.trailer_byte) == (0x7777, 0x77, None)


def test_float_settings_are_floats_even_when_written_as_integers():
    settings = load(
        {"startStopDelay": 5, "defaultVoltage": 230, "greenEnergyFlexAmps": 2},
        interface={"RS485": {"slaveTimeout": 30}},
    ).settings
    floats = (
        settings.start_stop_delay_s,
        settings.default_voltage_v,
        settings.green_energy_flex_amps,
        settings.rs485.slave_timeout_s,
    )
    assert [type(value) for value in floats] == [float] * 4


def test_green_energy_keys_have_documented_defaults_matching_the_policy():
    from twcmaster.control import policy

    settings = load().settings
    assert settings.subtract_charger_load is False
    assert settings.treat_generation_as_grid_delivery is False
    assert settings.green_energy_amps_offset == 0.0
    assert settings.green_energy_latch_min == 0.0
    assert settings.green_energy_safe_amps == 0.0
    # The documented defaults (policy.py's docstring), as the loader and the policy apply them.
    unset = policy.PolicyConfig(wiring_max_amps_all_twcs=32)
    assert settings.green_energy_start_margin_amps == unset.start_margin_amps == 0.0
    assert settings.green_energy_start_delay_s == unset.start_delay_s == 60.0
    assert settings.green_energy_min_on_time_s == unset.min_on_time_s == 0.0
    assert settings.green_energy_hold_wh == unset.hold_wh == 14.0
    assert settings.green_energy_hold_growth == unset.hold_growth == 1.3
    assert settings.green_energy_start_margin_per_start_amps == 0.75
    assert unset.start_margin_per_start_amps == 0.75
    assert settings.green_energy_rotate_kwh == 8.0
    assert settings.charge_priority == ()
    assert settings.green_energy_min_off_time_s == unset.min_off_time_s == 60.0
    assert settings.green_energy_smoothing_s == unset.smoothing_s == 0.0
    assert settings.green_energy_raise_delay_s == unset.raise_delay_s == 20.0
    assert settings.start_stop_delay_s == 60.0  # the controller's stop hold after a start
    # The shipped file spells out the same values.
    shipped = load_config(SHIPPED).settings
    for name in (
        "green_energy_start_delay_s", "green_energy_min_on_time_s",
        "green_energy_min_off_time_s", "green_energy_smoothing_s", "green_energy_safe_amps",
        "green_energy_hold_wh", "green_energy_hold_growth",
        "green_energy_start_margin_per_start_amps", "green_energy_rotate_kwh",
    ):  # fmt: skip
        assert getattr(shipped, name) == getattr(settings, name), name


def test_one_table_of_defaults_is_what_an_absent_key_gives():
    from twcmaster.config.defaults import DEFAULTS
    from twcmaster.config.schema import KNOWN_KEYS
    from twcmaster.control.policy import PolicyConfig

    for key in DEFAULTS:  # config keys by name, others by their dotted path
        *sections, name = key.split(".") if "." in key else ["config", key]
        node = KNOWN_KEYS
        for part in sections:
            node = node[part]
        assert name in node, key
    settings = load().settings
    read = {
        "minAmpsPerTWC": settings.min_amps_per_twc,
        "startStopDelay": settings.start_stop_delay_s,
        "greenEnergyStartDelay": settings.green_energy_start_delay_s,
        "greenEnergyMinOnTime": settings.green_energy_min_on_time_s,
        "greenEnergyMinOffTime": settings.green_energy_min_off_time_s,
        "greenEnergySmoothingSeconds": settings.green_energy_smoothing_s,
        "greenEnergyStartMarginAmps": settings.green_energy_start_margin_amps,
        "greenEnergyRaiseDelay": settings.green_energy_raise_delay_s,
        "logging.format": settings.log_format,
        "interface.RS485.slaveTimeout": settings.rs485.slave_timeout_s,
    }
    assert read == {key: DEFAULTS[key] for key in read}
    assert DEFAULTS["greenEnergyStartDelay"] == 60.0
    assert PolicyConfig.from_app_config(load().settings) == PolicyConfig(
        wiring_max_amps_all_twcs=WIRING["wiringMaxAmpsAllTWCs"]
    )


def test_green_energy_keys_are_typed():
    settings = load(
        {
            "subtractChargerLoad": True,
            "treatGenerationAsGridDelivery": 1,
            "greenEnergyAmpsOffset": -2.5,
            "greenEnergyLatch": 15,
            "greenEnergySafeAmps": 6,
            "greenEnergyStartMarginAmps": 1,
            "greenEnergyStartDelay": 45,
            "greenEnergyMinOnTime": 600,
            "greenEnergyMinOffTime": 120,
            "greenEnergySmoothingSeconds": 20,
        }
    ).settings
    assert settings.subtract_charger_load is True
    assert settings.treat_generation_as_grid_delivery is True
    assert settings.green_energy_amps_offset == -2.5
    assert settings.green_energy_latch_min == 15.0
    assert settings.green_energy_safe_amps == 6.0
    assert settings.green_energy_start_margin_amps == 1.0
    assert settings.green_energy_start_delay_s == 45.0
    assert settings.green_energy_min_on_time_s == 600.0
    assert settings.green_energy_min_off_time_s == 120.0
    assert settings.green_energy_smoothing_s == 20.0
    assert type(settings.green_energy_start_delay_s) is float


def test_export_meter_without_subtract_charger_load_is_a_warning():
    loaded = load({"treatGenerationAsGridDelivery": True})
    assert paths(loaded.warnings) == ["config.treatGenerationAsGridDelivery"]
    assert "subtractChargerLoad" in loaded.warnings[0].message
    both = {"treatGenerationAsGridDelivery": True, "subtractChargerLoad": True}
    assert load(both).warnings == ()


def test_settings_path_defaults_to_the_config_folder_and_resolves_relative_paths(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": WIRING}))
    assert load_config(path).settings.settings_path == str(tmp_path)
    assert load({"settingsPath": "state"}).settings.settings_path == "/srv/twc/state"
    assert load({"settingsPath": "/var/lib/twc"}).settings.settings_path == "/var/lib/twc"


# ---------------------------------------------------------------- RS-485 section


@pytest.mark.parametrize(
    "port",
    [
        "/dev/ttyUSB0",
        "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        "socket://192.168.1.50:4001",
        "rfc2217://rs485.lan:2217",
        "loop://",
    ],
)
def test_device_paths_and_pyserial_urls_are_accepted(port):
    assert load(interface={"RS485": {"port": port}}).settings.rs485.port == port


@pytest.mark.parametrize(
    ("twcid", "reason"),
    [
        ("0000", "slaves have been seen addressing 0000"),
        ("C012", "C0, the frame delimiter"),
        ("12DB", "DB, the escape byte"),
        ("777", "4 hex digits"),
        ("77777", "4 hex digits"),
        ("ZZZZ", "4 hex digits"),
        (7777, "in quotes"),
    ],
)
def test_master_twcid_rejections_give_the_reason(twcid, reason):
    problems = errors_of(interface={"RS485": {"masterTWCID": twcid}})
    assert paths(problems) == ["interface.RS485.masterTWCID"]
    assert reason in problems[0].message


@pytest.mark.parametrize(("twcid", "value"), [("7778", 0x7778), ("abcd", 0xABCD), ("C1DA", 0xC1DA)])
def test_master_twcid_is_parsed_as_two_bytes(twcid, value):
    assert load(interface={"RS485": {"masterTWCID": twcid}}).settings.rs485.master_twcid == value


def test_sign_and_trailer_bytes_are_parsed():
    rs485 = load(interface={"RS485": {"masterSign": "66", "trailerByte": "FE"}}).settings.rs485
    assert (rs485.master_sign, rs485.trailer_byte) == (0x66, 0xFE)


def test_baud_given_as_a_string_is_accepted_as_pyserial_does_and_odd_rates_warn():
    assert load(interface={"RS485": {"baud": "9600"}}).warnings == ()
    loaded = load(interface={"RS485": {"baud": 19200}})
    assert loaded.settings.rs485.baud == 19200
    assert paths(loaded.warnings) == ["interface.RS485.baud"]


def test_twcmanager_legacy_port_and_baud_keys_are_used_with_a_warning():
    loaded = load({"rs485adapter": "/dev/ttyAMA0", "baud": 9600})
    assert loaded.settings.rs485.port == "/dev/ttyAMA0"
    assert paths(loaded.warnings) == ["config.rs485adapter", "config.baud"]
    assert "interface.RS485.port" in loaded.warnings[0].message
    # interface.RS485 wins when both are set, as in TWCManager
    both = load({"rs485adapter": "/dev/ttyAMA0"}, interface={"RS485": {"port": "/dev/ttyS1"}})
    assert both.settings.rs485.port == "/dev/ttyS1"


# ----------------------------------------------------------- log level, format


@pytest.mark.parametrize(("given", "level"), [(9, 9), (12, 12), (19, 19), (30, 30), ("INFO4", 17)])
def test_twcmanager_log_levels_are_accepted(given, level):
    assert load({"logLevel": given}).settings.log_level == level


@pytest.mark.parametrize(("debug_level", "level"), [(0, 40), (1, 20), (9, 12), (11, 9), (20, 9)])
def test_deprecated_debug_level_is_mapped_like_twcmanager_with_a_warning(debug_level, level):
    loaded = load({"debugLevel": debug_level})
    assert loaded.settings.log_level == level
    assert paths(loaded.warnings) == ["config.debugLevel"]
    assert f'"logLevel": {level}' in loaded.warnings[0].message


def test_debug_level_is_ignored_with_a_warning_when_log_level_is_set():
    loaded = load({"debugLevel": 11, "logLevel": 20})
    assert loaded.settings.log_level == 20
    assert "ignored" in loaded.warnings[0].message


@pytest.mark.parametrize("log_format", ["auto", "console", "json"])
def test_log_formats(log_format):
    assert load(logging={"format": log_format}).settings.log_format == log_format


# ------------------------------------------------------- unknown vs known keys


def test_unknown_key_is_an_error_with_a_suggestion():
    problems = errors_of({"minAmpsPerTwc": 6})
    assert paths(problems) == ["config.minAmpsPerTwc"]
    assert 'did you mean "minAmpsPerTWC"?' in problems[0].message


def test_unknown_keys_in_unparsed_sections_are_still_errors():
    problems = errors_of(
        sources={"Fronius": {"enabled": True, "serverIp": "10.0.0.2"}, "SMA": {}},
        status={"MQTT": {"brokerIp": "10.0.0.3"}},
        sourcse={},
    )
    messages = {p.key_path: p.message for p in problems}
    assert 'did you mean "serverIP"?' in messages["sources.Fronius.serverIp"]
    assert 'did you mean "brokerIP"?' in messages["status.MQTT.brokerIp"]
    assert "Fronius" in messages["sources.SMA"] and "SolarEdge" in messages["sources.SMA"]
    assert 'did you mean "sources"?' in messages["sourcse"]


def test_key_written_in_the_wrong_section_points_to_where_it_belongs():
    problems = errors_of(interface={"RS485": {"slaveTimeOut": 30, "minAmpsPerTWC": 6}})
    messages = {p.key_path: p.message for p in problems}
    assert 'did you mean "slaveTimeout"?' in messages["interface.RS485.slaveTimeOut"]
    assert "config.minAmpsPerTWC" in messages["interface.RS485.minAmpsPerTWC"]


def test_a_known_section_holding_a_non_object_is_an_error():
    problems = errors_of(sources=["Fronius"], interface={"RS485": "/dev/ttyUSB0"})
    assert paths(problems) == ["sources", "interface.RS485"]


@pytest.mark.parametrize(
    "source",
    [
        "DSMRreader", "Efergy", "EmonCMS", "Enphase", "Fronius", "Growatt", "HASS",
        "IotaWatt", "Kostal", "MQTT", "openHAB", "OpenWeatherMap", "P1Monitor", "Powerwall2",
        "SmartMe", "SmartPi", "SolarEdge", "SolarLog", "TED", "URL", "Victron", "Volkszahler",
    ],
)  # fmt: skip
def test_every_twcmanager_source_is_accepted_and_checked_or_warned_when_enabled(source):
    from twcmaster.sources import SOURCE_MODULES

    assert load(sources={source: {"enabled": False}}).warnings == ()
    if source in SOURCE_MODULES:
        # A source twcmaster runs: enabled without its address is an error naming the key.
        problems = errors_of(sources={source: {"enabled": True}})
        assert problems and all(p.key_path.startswith(f"sources.{source}") for p in problems)
        return
    loaded = load(sources={source: {"enabled": True}})
    assert paths(loaded.warnings) == [f"sources.{source}"]
    assert "you lose this green-energy input" in loaded.warnings[0].message


def test_known_but_unused_config_keys_are_warnings_naming_the_key():
    loaded = load(
        {"cloudUpdateInterval": 1800, "realPowerFactorMinAmps": 1, "teslaApiRedirectUri": "x"}
    )
    assert paths(loaded.warnings) == [
        "config.cloudUpdateInterval",
        "config.realPowerFactorMinAmps",
        "config.teslaApiRedirectUri",
    ]
    assert all("ignored; you lose" in w.message for w in loaded.warnings)
    assert "power-factor correction" in loaded.warnings[1].message


def test_other_interfaces_point_to_rs485_urls():
    loaded = load(interface={"TCP": {"enabled": True, "server": "10.0.0.9"}})
    assert paths(loaded.warnings) == ["interface.TCP"]
    assert "socket://host:port" in loaded.warnings[0].message


def test_user_keys_referenced_by_policy_rules_are_kept_with_a_warning():
    rule = {"name": "Price cap", "match": ["getImportPrice()"], "condition": ["gt"],
            "value": ["config.myPriceCap"], "charge_amps": 0}  # fmt: skip
    loaded = load({"myPriceCap": 0.3}, policy={"extend": {"emergency": [rule]}})
    assert paths(loaded.warnings) == ["config.myPriceCap", "policy.extend.emergency[0].match[0]"]
    assert "policy rules" in loaded.warnings[0].message
    assert "compared as the text itself" in loaded.warnings[1].message


def test_gen3_section_is_accepted_under_twcmanagers_dotted_top_level_name():
    gen3 = {"enabled": True, "port": "/dev/ttyUSB1", "devices": [{"ip": "10.0.0.7"}]}
    loaded = load(**{"controller.Gen3TWCs": gen3})
    assert paths(loaded.warnings) == ["controller.Gen3TWCs"]
    assert paths(load(controller={"Gen3TWCs": gen3}).warnings) == ["controller.Gen3TWCs"]


def test_raw_sections_stay_available_and_read_only():
    mqtt = {"enabled": False, "brokerIP": "10.0.0.3", "topicPrefix": "TWC"}
    settings = load(status={"MQTT": mqtt}).settings
    assert settings.raw_section("status", "MQTT") == mqtt
    assert settings.raw_section("sources", "Fronius") == {}
    with pytest.raises(TypeError):
        settings.raw["status"] = {}  # type: ignore[index]
    assert isinstance(settings, AppConfig)


def test_enabled_sources_are_typed_at_load_time():
    fronius = {"enabled": True, "serverIP": "10.0.0.2", "interval": "5"}
    settings = load(sources={"Fronius": fronius, "HASS": {"enabled": False}}).settings
    [spec] = settings.sources
    assert (spec.name, spec.timing.interval_s, spec.timing.max_age_s) == ("Fronius", 5.0, 60.0)
    assert spec.settings == fronius
    assert load().settings.sources == ()


# ---------------------------------------------- a realistic TWCManager config.json

REALISTIC_TWCMANAGER_CONFIG = """\
{
    "config": {
        # where the web UI keeps its state
        "settingsPath": "/etc/twcmanager",
        "wiringMaxAmpsAllTWCs": 40,
        "wiringMaxAmpsPerTWC": 40,
        "maxAmpsAllowedFromGrid": 15,
        "minAmpsPerTWC": 12,
        //"startStopDelay": 60,
        "defaultVoltage": 230,
        "numberOfPhases": 1,
        "greenEnergyAmpsOffset": 0,
        "greenEnergyFlexAmps": 2,
        "useFlexAmpsToStartCharge": false,
        "subtractChargerLoad": true,
        "treatGenerationAsGridDelivery": false,
        "cloudUpdateInterval": 1800,
        "onlyChargeMultiCarsAtHome": true,
        "teslaApiClientID": "client-id",
        "teslaProxy": "https://localhost:4443",
        "logLevel": 19,
        "displayMilliseconds": false,
        "webhookMethod": "POST",
        "fakeMaster": 1
    },
    "interface": {
      "Dummy": { "enabled": false, "twcID": "AB" },
      "RS485": {
        "enabled": true,
        "baud": 9600,
        "slaveTimeout": 30,
        "port": "rfc2217://rs485.lan:4001"
      },
      "TCP": { "enabled": false, "listen": false, "server": "192.168.1.2" }
    },
    "control": {
      "HTTP": { "enabled": true, "listenPort": 8080 },
      "MQTT": { "enabled": false, "brokerIP": "192.168.1.2", "topicPrefix": "TWC",
                "username": "mqttuser", "password": "pass#word" },
      "OCPP": { "enabled": false, "serverPort": 9000 }
    },
    "policy": {
      "engine": { "policyCheckInterval": 30 },
      "extend": {
        "emergency": [
          { "name": "Charge Now with Grid power limit",
            "match": [ "settings.chargeNowAmps", "settings.chargeNowTimeEnd", ],
            "condition": ["gt", "gt"],
            "value": [0, "now"],
            "background_task": "checkMaxPowerFromGrid",
            "charge_amps": "settings.chargeNowAmps",
            "charge_limit": "config.chargeNowLimit"},
        ],
        "before": [],
        "after": [],
        "restrictions": {},
        "webhooks": { "Charge Now": { "start": "http://hooks.lan/start#now" } }
      }
    },
    "logging": {
        "Console": { "enabled": true },
        "FileLogger": {
          "enabled": false,
          "path": "/etc/twcmanager/log",
          "mute": { "ChargeSessions": false, "GreenEnergy": false, "SlavePower": false,
                    "SlaveStatus": false, "DebugLogLevelGreaterThan": 1 }
        },
        "Sentry": {
\t  "enabled": false,
\t  "DSN": ""
        },
        "MySQL": { "enabled": false, "host": "1.2.3.4", "port": 3306, "database": "twc",
                   "username": "twc", "password": "secret" }
    },
    "sources": {
        "Fronius": { "enabled": true, "serverIP": ["192.168.1.20", "192.168.1.21"],
                     "serverPort": "80" },
        "Growatt": { "enabled": false, "username": "u", "password": "p",
                     "useBatteryAt": "80", "batteryMaxOutput": "4800",
                     "useBatteryBefore": "15:00" },
        "HASS": { "enabled": false, "serverIP": "192.168.1.1", "serverPort": "8123",
                  "useHttps": false, "apiKey": "ABC123",
                  "hassEntityConsumption": "sensor.meter_power_live",
                  "hassEntityGeneration": "sensor.inverter_power_live" },
        "SolarLog": { "enabled": false, "serverIP": "192.168.1.2",
                      "excludeConsumptionInverters": [ 2 ] # indices of devices to skip
        },
        "OpenWeatherMap": { "enabled": false, "Latitude": 41.87, "Longitude": 11.85,
                            "APIKey": "xyz",
                            "PeakKW": [2, 4, 6, 6, 6.5, 6.9, 6.5, 6, 5.5, 4.5, 3, 2] },
        "SolarEdge": { "enabled": false, "apiKey": "", "siteID": "",
                       "smartMeters": [{ "name": "Meter1", "type": "export" }] },
    },
    "status": {
        "HASS": { "enabled": false, "serverIP": "192.168.1.1", "serverPort": "8123",
                  "useHttps": false, "msgRateInSeconds": 60, "resendRateInSeconds": 3600,
                  "retryRateInSeconds": 60, "apiKey": "ABC123" },
        "MQTT": { "enabled": true, "brokerIP": "192.168.1.1", "brokerPort": 1883,
                  "topicPrefix": "TWC", "ratelimit": 60, "homeassistantDiscovery": true,
                  "discoveryPrefix": "homeassistant", "deviceNamePrefix": "TWC" }
    },
    "vehicle": {
        "teslaAPI": { "enabled": true },
        "HomeAssistant": { "enabled": false, "url": "http://ha.lan:8123",
                           "longLivedToken": "token" },
        "TeslaMate": { "enabled": false, "syncTokens": false, "db_host": "192.168.1.1",
                       "db_name": "teslamate", "db_pass": "teslamate", "db_user": "teslamate",
                       "syncTelemetry": false, "mqtt_host": "192.168.1.1",
                       "mqtt_user": "teslamate", "mqtt_pass": "teslamate",
                       "mqtt_prefix": "teslamate" }
    },
    "pricing": { "aWATTar": { "enabled": false } }
}
"""


def test_realistic_twcmanager_config_loads_with_only_warnings(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(REALISTIC_TWCMANAGER_CONFIG)
    loaded = load_config(path)
    settings = loaded.settings
    assert settings.wiring.max_amps_all_twcs == 40
    assert settings.min_amps_per_twc == 12
    assert settings.default_voltage_v == 230.0
    assert settings.green_energy_flex_amps == 2.0
    assert settings.log_level == 19
    assert settings.settings_path == "/etc/twcmanager"
    assert settings.rs485.port == "rfc2217://rs485.lan:4001"
    assert settings.rs485.slave_timeout_s == 30.0
    assert settings.raw_section("control", "MQTT")["password"] == "pass#word"
    # Now used: TWCManager's HTTP API on loopback, its MQTT status with discovery.
    assert settings.http is not None and settings.http.listen_port == 8080
    assert settings.http.listen_ip == "127.0.0.1"
    assert settings.mqtt_status is not None and settings.mqtt_status.ha_discovery
    assert settings.mqtt_status.broker.host == "192.168.1.1"
    assert settings.mqtt_control is None  # disabled in that file
    webhooks = settings.raw_section("policy", "extend", "webhooks")
    assert webhooks["Charge Now"]["start"] == "http://hooks.lan/start#now"
    assert settings.max_amps_allowed_from_grid == 15  # the grid cap, with a source to measure it
    assert paths(loaded.warnings) == [
        "config.cloudUpdateInterval",
        "config.onlyChargeMultiCarsAtHome",
        "vehicle.teslaAPI.homeLatitude",  # no home: a TWC without a VIN is left to the bus
        "policy.extend.emergency[0].charge_limit",
        "policy.extend.emergency[0].background_task",
    ]
    # The policy rules are applied: the emergency rule, the Charge Now webhook.
    rules = settings.policy_rules
    assert [rule.name for rule in rules.emergency] == ["Charge Now with Grid power limit"]
    assert rules.builtin_webhooks("Charge Now").start == "http://hooks.lan/start#now"
    assert rules.check_interval_s == 30
    # TWCManager's own car-API keys carry over to the Tesla module.
    tesla = settings.tesla_api
    assert tesla is not None and tesla.base_url == "https://localhost:4443"
    assert tesla.client_id == "client-id" and tesla.refresh_token is None


# ------------------------------------------------------------------ round trip


def _escape_free(twcid: int) -> bool:
    return not {twcid >> 8, twcid & 0xFF} & {0xC0, 0xDB}


@st.composite
def valid_settings(draw):
    all_twcs = draw(st.integers(5, 480))
    per_twc = draw(st.integers(5, min(all_twcs, 80)))
    return {
        "wiringMaxAmpsAllTWCs": all_twcs,
        "wiringMaxAmpsPerTWC": per_twc,
        "minAmpsPerTWC": draw(st.integers(5, per_twc)),
        "maxAmpsPerTWC": draw(st.integers(1, 80)),
        "nonScheduledAmpsMax": draw(st.none() | st.integers(0, all_twcs)),
        "startStopDelay": draw(st.floats(0, 3600)),
        "defaultVoltage": draw(st.floats(50, 500)),
        "numberOfPhases": draw(st.integers(1, 3)),
        "logLevel": draw(st.integers(1, 50)),
        "spikeAmps": draw(st.none() | st.integers(5, per_twc)),
        "greenEnergyFlexAmps": draw(st.floats(0, 100)),
        "slaveTimeout": draw(st.floats(0.1, 600)),
        "masterTWCID": draw(st.integers(1, 0xFFFF).filter(_escape_free)),
        "masterSign": draw(st.integers(0, 0xFF)),
    }  # fmt: skip


@given(valid_settings())
def test_valid_numeric_settings_round_trip(values):
    rs485 = {
        "slaveTimeout": values.pop("slaveTimeout"),
        "masterTWCID": f"{values.pop('masterTWCID'):04X}",
        "masterSign": f"{values.pop('masterSign'):02x}",
    }
    text = "# generated\n" + json.dumps({"config": values, "interface": {"RS485": rs485}})
    loaded = config_from_dict(parse_config_text(text), "/srv")
    settings = loaded.settings
    assert loaded.warnings == ()
    assert settings.wiring.max_amps_all_twcs == values["wiringMaxAmpsAllTWCs"]
    assert settings.wiring.max_amps_per_twc == values["wiringMaxAmpsPerTWC"]
    assert settings.min_amps_per_twc == values["minAmpsPerTWC"]
    assert settings.max_amps_per_twc == values["maxAmpsPerTWC"]
    assert settings.non_scheduled_amps_max == values["nonScheduledAmpsMax"]
    assert settings.start_stop_delay_s == values["startStopDelay"]
    assert settings.default_voltage_v == values["defaultVoltage"]
    assert settings.number_of_phases == values["numberOfPhases"]
    assert settings.log_level == values["logLevel"]
    assert settings.spike_amps == values["spikeAmps"]
    assert settings.green_energy_flex_amps == values["greenEnergyFlexAmps"]
    assert settings.rs485.slave_timeout_s == rs485["slaveTimeout"]
    assert settings.rs485.master_twcid == int(rs485["masterTWCID"], 16)
    assert settings.rs485.master_sign == int(rs485["masterSign"], 16)


def test_loaded_config_is_immutable():
    settings = load().settings
    with pytest.raises(AttributeError):
        settings.min_amps_per_twc = 5  # type: ignore[misc]
    assert hash(settings) == hash(load().settings)
    assert os.fspath(Path(default_config_path())).endswith("config.json")


def test_a_password_or_token_of_the_wrong_type_is_not_echoed():
    problems = errors_of(
        status={"MQTT": {"enabled": True, "brokerIP": "b", "password": 918273645}},
        control={"HTTP": {"enabled": True, "token": ["s3cr3t-token-0123456789"]}},
    )
    assert paths(problems) == ["status.MQTT.password", "control.HTTP.token"]
    assert not any("918273645" in p.message or "s3cr3t" in p.message for p in problems)


# ------------------------------------------------------------------------- policy rules


def _rule(**more) -> dict:
    return {"name": "R", "match": ["tm_hour"], "condition": ["gte"], "value": [6], **more}


def _policy_errors(policy: dict) -> list[tuple[str, str]]:
    return [(p.key_path, p.message) for p in errors_of(policy=policy)]


@pytest.mark.parametrize(
    ("policy", "key_path", "words"),
    [
        ({"extend": {"before": [_rule(condition=["equals"])]}},
         "policy.extend.before[0].condition[0]", 'unknown operator "equals"'),
        ({"extend": {"after": [_rule(), _rule(match=["tm_hour", "tm_min"],
                                              condition=["gte", "lt"], value=[6])]}},
         "policy.extend.after[1].condition", "as many entries each; got 2, 2 and 1"),
        ({"extend": {"emergency": [_rule(match=["tm_hour", ["tm_min", "tm_hour"]],
                                         condition=["gte", ["lt", "bigger"]],
                                         value=[6, [30, 8]])]}},
         "policy.extend.emergency[0].condition[1][1]", "unknown operator"),
        ({"extend": {"before": [_rule(match=[["tm_min"]], condition=["lt"], value=[[3]])]}},
         "policy.extend.before[0].condition[0]", "lists in match, condition and value alike"),
        ({"extend": {"restrictions": {"Charge Later": {"match": [], "condition": [],
                                                        "value": []}}}},
         "policy.extend.restrictions.Charge Later", "no built-in policy is called"),
        ({"extend": {"webhooks": {"Green": {"enter": "http://h/e"}}}},
         "policy.extend.webhooks.Green", "Track Green Energy"),
        ({"extend": {"webhooks": {"Charge Now": {"begin": "http://h/e"}}}},
         "policy.extend.webhooks.Charge Now.begin", "unknown event"),
        ({"override": [_rule(webhooks={"enter": "ftp://h/e"})]},
         "policy.override[0].webhooks.enter", "http:// or https:// URL"),
        ({"override": [_rule(charge_amp=16)]},
         "policy.override[0].charge_amp", 'did you mean "charge_amps"?'),
        ({"override": [_rule(charge_amps="value")]},
         "policy.override[0].charge_amps", "expected amps"),
        ({"override": [_rule(charge_amps=-3)]}, "policy.override[0].charge_amps", "expected amps"),
        ({"override": [_rule(latch_period="ten")]},
         "policy.override[0].latch_period", "expected minutes"),
        ({"override": [{"match": [], "condition": [], "value": []}]},
         "policy.override[0].name", "expected the policy's name"),
        ({"override": [_rule(match=["settings.a.b"])]},
         "policy.override[0].match[0]", "not a reference"),
        ({"override": {"name": "R"}}, "policy.override", "expected a list of policy rules"),
        ({"engine": {"policyCheckInterval": -1}}, "policy.engine.policyCheckInterval",
         "expected seconds"),
        ({"alwaysPollEMS": "yes"}, "policy.alwaysPollEMS", "expected true or false"),
    ],
)  # fmt: skip
def test_a_bad_policy_rule_is_an_error_naming_its_key_path(policy, key_path, words):
    found = _policy_errors(policy)
    assert key_path in [path for path, _ in found], found
    assert any(words in message for path, message in found if path == key_path), found


def test_policy_rules_load_typed():
    rule = _rule(match=["tm_hour", ["settings.a", "config.b"]],
                 condition=["gte", ["eq", "lt"]], value=[6, [1, 3]],
                 charge_amps="settings.chargeNowAmps", allowed_flex=2, latch_period=15,
                 webhooks={"enter": "http://hooks.lan/in", "exit": ""})  # fmt: skip
    loaded = load(
        {"webhookMethod": "GET"},
        policy={
            "engine": {"policyCheckInterval": 60},
            "alwaysPollEMS": True,
            "extend": {
                "before": [rule],
                "restrictions": {"Charge Now": {"match": ["tm_hour"], "condition": ["lt"],
                                                "value": [22]}},
                "webhooks": {"Track Green Energy": {"start": "https://h/s"}},
            },
        },
    )  # fmt: skip
    assert loaded.warnings == ()
    rules = loaded.settings.policy_rules
    (before,) = rules.before
    assert (before.charge_amps, before.allowed_flex, before.latch_min) == (
        "settings.chargeNowAmps", 2, 15.0,
    )  # fmt: skip
    assert before.webhooks.enter == "http://hooks.lan/in" and before.webhooks.exit is None
    group = before.conditions
    assert not group.any_of and group.items[1].any_of
    assert [c.key_path for c in group.items[1].items] == [
        "policy.extend.before[0].condition[1][0]", "policy.extend.before[0].condition[1][1]",
    ]  # fmt: skip
    assert rules.restriction("Charge Now").items[0].value == 22
    assert rules.builtin_webhooks("Track Green Energy").start == "https://h/s"
    assert (rules.check_interval_s, rules.always_poll_ems, rules.webhook_method) == (
        60, True, "GET",
    )  # fmt: skip


def test_without_a_policy_section_the_rules_change_nothing():
    rules = load().settings.policy_rules
    assert rules == PolicyRules() and not rules.changes_the_order and not rules.has_webhooks


def test_policy_rules_say_what_twcmaster_does_not_apply():
    rule = _rule(match=["modules.TeslaPowerwall2.gridStatus"], condition=["eq"], value=[True],
                 charge_limit=80, background_task="checkCharge")  # fmt: skip
    loaded = load(policy={"extend": {"emergency": [rule, _rule(match=["tm_hours"])]}})
    warned = {w.key_path: w.message for w in loaded.warnings}
    assert "never matches" in warned["policy.extend.emergency[0].match[0]"]
    assert "charge limit" in warned["policy.extend.emergency[0].charge_limit"]
    assert "battery level" in warned["policy.extend.emergency[0].background_task"]
    assert "not a time field" in warned["policy.extend.emergency[1].match[0]"]


def test_override_ignores_extend_with_a_warning_as_twcmanager_does():
    loaded = load(policy={"override": [_rule(charge_amps=8)],
                          "extend": {"before": [_rule()]}})  # fmt: skip
    assert paths(loaded.warnings) == ["policy.extend"]
    rules = loaded.settings.policy_rules
    assert [r.charge_amps for r in rules.override] == [8] and rules.before == ()


def test_the_shipped_commented_policy_example_loads_when_uncommented():
    text = SHIPPED.read_text()
    block = text[text.index('    # "policy": {') : text.index('    "logging": {')]
    body = "\n".join(line.strip()[2:] for line in block.strip().splitlines())
    policy = parse_config_text("{" + body.rstrip().rstrip(",") + "}")["policy"]
    fronius = {"Fronius": {"enabled": True, "serverIP": "192.168.1.2"}}
    loaded = load(policy=policy, sources=fronius)
    assert paths(loaded.warnings) == []
    rules = loaded.settings.policy_rules
    assert [r.name for r in rules.after] == ["Night top-up"] and rules.check_interval_s == 30
