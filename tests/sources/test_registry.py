"""check_sources / build_sources: every problem with its key path; timing defaults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from twcmaster.sources.enphase import EnphaseSource
from twcmaster.sources.fronius import FroniusSource
from twcmaster.sources.powerwall import PowerwallSource
from twcmaster.sources.registry import (
    SourceConfigError,
    SourceSpec,
    build_sources,
    check_sources,
    source_specs,
    source_timing,
)
from twcmaster.sources.solaredge import SolarEdgeSource

VALID = {
    "Fronius": {"enabled": True, "serverIP": "192.0.2.10", "serverPort": "80"},
    "SolarEdge": {"enabled": True, "apiKey": "L4QLVQ1LOKCQX2193VSEICXW61NP6B1O", "siteID": 123},
    "Enphase": {"enabled": True, "serverIP": "192.0.2.11", "token": "eyJ.x.y"},
    "Powerwall2": {
        "enabled": True,
        "serverIP": "192.0.2.12",
        "serverPort": "443",
        "password": "pw12345",
        "minBatteryLevel": 50,
    },
}


def problems(name: str, **config) -> list[tuple[str, str]]:
    return check_sources({name: {"enabled": True, **config}})


def paths(found: list[tuple[str, str]]) -> list[str]:
    return [path for path, _ in found]


def test_valid_configs_have_no_problems():
    assert check_sources(VALID) == []
    assert check_sources({}) == []
    assert check_sources(None) == []


def test_twcmanager_sample_sections_switched_off_are_fine():
    sample = {
        "Fronius": {"enabled": False, "serverIP": "192.168.1.2"},
        "Growatt": {"enabled": False, "username": "", "password": ""},
        "SolarEdge": {"enabled": False, "apiKey": "", "siteID": ""},
        "Powerwall2": {"enabled": False},
        "Victron": {"enabled": False},
    }
    assert check_sources(sample) == []


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Fronious", '"Fronius"'), ("fronius", '"Fronius"'), ("PowerWall2", '"Powerwall2"')],
)
def test_unknown_source_name_with_a_suggestion(name, suggestion):
    [(path, message)] = check_sources({name: {"enabled": False}})
    assert path == f"sources.{name}"
    assert message == f"unknown energy source; did you mean {suggestion}?"


def test_unknown_source_name_without_a_close_match():
    [(path, message)] = check_sources({"Toaster": {"enabled": True}})
    assert path == "sources.Toaster"
    assert message.startswith("unknown energy source; twcmaster reads: Fronius, SolarEdge")


def test_twcmanager_source_not_supported_yet(monkeypatch):
    # Every TWCManager source has a module now; the message stays for one that would not.
    from twcmaster.sources import SOURCE_MODULES

    monkeypatch.delitem(SOURCE_MODULES, "Growatt")
    [(path, message)] = check_sources({"Growatt": {"enabled": True, "username": "u"}})
    assert path == "sources.Growatt"
    assert "TWCManager's Growatt source is not supported by twcmaster yet" in message


@pytest.mark.parametrize(
    ("section", "path", "text"),
    [
        ("on", "sources.Fronius", "expected a section {...}, got 'on'"),
        ({"enabled": "yes"}, "sources.Fronius.enabled", "expected true or false, got 'yes'"),
    ],
)
def test_malformed_sections(section, path, text):
    assert check_sources({"Fronius": section}) == [(path, text)]


def test_sources_not_a_section():
    assert check_sources(["Fronius"]) == [("sources", "expected a section {...}, got a list")]


@pytest.mark.parametrize(
    ("name", "config", "path", "text"),
    [
        ("Fronius", {}, "sources.Fronius.serverIP", "required when the source is enabled"),
        ("Fronius", {"serverIP": "  "}, "sources.Fronius.serverIP", "required"),
        ("Fronius", {"serverIP": []}, "sources.Fronius.serverIP", "the list is empty"),
        (
            "Fronius",
            {"serverIP": ["192.0.2.1", 7]},
            "sources.Fronius.serverIP[1]",
            "expected the inverter's IP address",
        ),
        (
            "Fronius",
            {"serverIP": "http://192.0.2.1/"},
            "sources.Fronius.serverIP",
            "not a URL",
        ),
        (
            "Fronius",
            {"serverIP": "192.0.2.1:8080"},
            "sources.Fronius.serverIP",
            "put the port in serverPort",
        ),
        ("SolarEdge", {"siteID": 1}, "sources.SolarEdge.apiKey", "required"),
        ("SolarEdge", {"apiKey": "k" * 32}, "sources.SolarEdge.siteID", "required"),
        (
            "SolarEdge",
            {"apiKey": "k" * 32, "siteID": 1, "apiURL": "monitoringapi.solaredge.com"},
            "sources.SolarEdge.apiURL",
            "expected an http(s):// URL",
        ),
        (
            "SolarEdge",
            {"inverterHost": "192.0.2.5", "inverterPort": 70000},
            "sources.SolarEdge.inverterPort",
            "expected a port number",
        ),
        ("Enphase", {}, "sources.Enphase.serverIP", "required"),
        (
            "Enphase",
            {"apiKey": "k" * 32, "systemID": "1"},
            "sources.Enphase.userID",
            "required",
        ),
        ("Enphase", {"serverIP": "e", "useHttps": "true"}, "sources.Enphase.useHttps", "true or"),
        ("Enphase", {"serverIP": "e", "token": ""}, "sources.Enphase.token", "required"),
        ("Powerwall2", {}, "sources.Powerwall2.serverIP", "required"),
        ("Powerwall2", {"serverIP": "p", "password": ""}, "sources.Powerwall2.password", "req"),
        (
            "Powerwall2",
            {"serverIP": "p", "minBatteryLevel": "half"},
            "sources.Powerwall2.minBatteryLevel",
            "expected a number %",
        ),
        (
            "Powerwall2",
            {"serverIP": "p", "minBatteryLevel": -1},
            "sources.Powerwall2.minBatteryLevel",
            "must be at least 0 %",
        ),
        ("Powerwall2", {"serverIP": "p", "verifyTLS": 1}, "sources.Powerwall2.verifyTLS", "true"),
        (
            "Powerwall2",
            {"serverIP": "p", "caFile": "/nonexistent/gateway.pem"},
            "sources.Powerwall2.caFile",
            "no such file",
        ),
    ],
)
def test_source_key_problems(name, config, path, text):
    found = problems(name, **config)
    assert paths(found) == [path]
    assert text in found[0][1]


@pytest.mark.parametrize("port", ["eighty", 0, 70000, True, 80.5, -443])
@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("Fronius", {"serverIP": "f"}),
        ("Enphase", {"serverIP": "e"}),
        ("Powerwall2", {"serverIP": "p"}),
    ],
)
def test_bad_ports(name, base, port):
    [(path, message)] = problems(name, **base, serverPort=port)
    assert path == f"sources.{name}.serverPort"
    assert message.startswith("expected a port number 1-65535, got ")


@pytest.mark.parametrize("key", ["interval", "timeout", "maxAge"])
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0: must be greater than 0 seconds"),
        (-5, "-5: must be greater than 0 seconds"),
        ("soon", "expected a number seconds, got 'soon'"),
        (True, "expected a number seconds, got true"),
        ([10], "expected a number seconds, got a list"),
    ],
)
def test_bad_timing(key, value, text):
    assert problems("Fronius", serverIP="f", **{key: value}) == [(f"sources.Fronius.{key}", text)]


def test_max_age_shorter_than_interval():
    [(path, message)] = problems("Fronius", serverIP="f", interval=30, maxAge=20)
    assert path == "sources.Fronius.maxAge"
    assert "shorter than interval (30 s)" in message
    # SolarEdge polls every 90 s by default: a maxAge of 60 would always be stale.
    [(path, _)] = problems("SolarEdge", apiKey="k" * 32, siteID=1, maxAge=60)
    assert path == "sources.SolarEdge.maxAge"


def test_several_problems_are_all_reported():
    found = check_sources(
        {
            "Fronius": {"enabled": True, "serverPort": "x", "interval": 0},
            "SolarEdge": {"enabled": True},
            "Frnius": {"enabled": True},
        }
    )
    assert paths(found) == [
        "sources.Fronius.interval",
        "sources.Fronius.serverIP",
        "sources.Fronius.serverPort",
        "sources.SolarEdge.apiKey",
        "sources.SolarEdge.siteID",
        "sources.Frnius",
    ]


def test_build_sources_with_timing_defaults():
    sources = build_sources(
        {
            **VALID,
            "Fronius": {**VALID["Fronius"], "interval": 5, "timeout": "3"},
            "HASS": {"enabled": False},
        }
    )

    assert [type(s) for s in sources] == [
        FroniusSource,
        SolarEdgeSource,
        EnphaseSource,
        PowerwallSource,
    ]
    fronius, solaredge, enphase, powerwall = sources
    assert (fronius.timing.interval_s, fronius.timing.timeout_s) == (5.0, 3.0)
    assert fronius.timing.max_age_s == 60.0  # max(60, 3 x 5)
    assert (solaredge.timing.interval_s, solaredge.timing.max_age_s) == (90.0, 270.0)
    assert (enphase.timing.interval_s, enphase.timing.timeout_s) == (10.0, 5.0)
    assert powerwall.min_battery_pct == 50.0
    assert "pw12345" not in powerwall.describe()
    assert VALID["SolarEdge"]["apiKey"] not in solaredge.describe()


def test_build_sources_contacts_nothing(http_server):
    build_sources(
        {"Fronius": {"enabled": True, "serverIP": "127.0.0.1", "serverPort": http_server.port}}
    )
    assert http_server.requests == []


def test_build_sources_refuses_a_bad_section():
    with pytest.raises(SourceConfigError) as caught:
        build_sources({"Fronius": {"enabled": True}, "Powerwall2": {"enabled": True}})

    assert paths(caught.value.problems) == [
        "sources.Fronius.serverIP",
        "sources.Powerwall2.serverIP",
    ]
    assert "sources.Fronius.serverIP: required" in str(caught.value)


def test_source_specs_type_each_enabled_section_once():
    section = {**VALID, "HASS": {"enabled": False}, "Fronius": {**VALID["Fronius"], "timeout": 3}}
    specs = source_specs(section)
    assert [spec.name for spec in specs] == ["Fronius", "SolarEdge", "Enphase", "Powerwall2"]
    fronius = specs[0]
    assert (fronius.timing.interval_s, fronius.timing.timeout_s) == (10.0, 3.0)
    assert specs[1].timing.interval_s == 90.0  # SolarEdge's own default
    assert fronius.settings == section["Fronius"]
    with pytest.raises(TypeError):
        fronius.settings["serverIP"] = "elsewhere"  # type: ignore[index]
    assert hash(fronius) == hash(SourceSpec("Fronius", fronius.timing, {}))
    assert [type(s) for s in build_sources(specs)] == [type(s) for s in build_sources(section)]


def test_timing_bounds_and_spec_problems_by_key_path():
    section = {"Fronius": {"enabled": True, "serverIP": "f", "interval": 1e308, "maxAge": "x"}}
    with pytest.raises(SourceConfigError) as caught:
        source_specs(section)
    assert caught.value.problems == [  # each key once, in the file's order
        ("sources.Fronius.interval", "1e+308: must be at most 86400 seconds"),
        ("sources.Fronius.maxAge", "expected a number seconds, got 'x'"),
    ]
    assert source_specs({"Fronius": {"enabled": False, "interval": 1e308}}) == ()


def test_explicit_max_age_and_timing_helper():
    timing = source_timing({"interval": 30, "maxAge": 45}, 10.0)
    assert (timing.interval_s, timing.timeout_s, timing.max_age_s) == (30.0, 5.0, 45.0)
    assert source_timing({"interval": 30}, 10.0).max_age_s == 90.0


def test_checking_loads_no_network_library():
    """check-config must not import requests/urllib3/paho (nor contact anything)."""
    script = f"""
import json, sys
from twcmaster.sources.registry import check_sources
config = json.loads({json.dumps(json.dumps(VALID))})
config["Fronius"]["serverIP"] = ""
found = check_sources(config)
assert [p for p, _ in found] == ["sources.Fronius.serverIP"], found
loaded = sorted(m for m in ("requests", "urllib3", "paho") if m in sys.modules)
print(",".join(loaded))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


class _Held:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_close_ends_what_a_source_reads_through_once():
    """Every source's HTTP session and Modbus connection are ended by Source.close (none of
    them keeps a close of its own for that)."""
    source = FroniusSource(VALID["Fronius"], source_timing(VALID["Fronius"], 5.0))
    http, modbus = _Held(), _Held()
    source.http, source.modbus = http, modbus
    source.close()
    assert (http.closed, modbus.closed) == (1, 1)
    bare = FroniusSource(VALID["Fronius"], source_timing(VALID["Fronius"], 5.0))
    bare.http = None
    bare.close()  # nothing held: nothing to end
