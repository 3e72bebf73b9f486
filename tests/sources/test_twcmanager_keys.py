"""TWCManager users' source sections, as they write them, load into twcmaster: the keys
twcmaster acts on are used, the ones it does not are warnings naming what the user loses,
and none is an error unless its value is really invalid."""

from __future__ import annotations

import pytest

from twcmaster.config import ConfigError, config_from_dict

WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32}

# One realistic section per source (TWCManager's keys, plus twcmaster's where noted), and the
# keys among them that twcmaster accepts without using.
SECTIONS = {
    "SolarEdge (cloud, debugMode)": (
        "SolarEdge",
        {"enabled": True, "apiKey": "abcdef", "siteID": "ghijec", "debugMode": True},
        ["debugMode"],
    ),
    "SolarEdge (Modbus TCP)": (
        "SolarEdge",
        {
            "enabled": True,
            "inverterHost": "192.168.1.40",
            "inverterPort": 1502,
            "smartMeters": [{"name": "Meter1", "type": "export"}],
        },
        [],
    ),
    "DSMR": ("DSMR", {"enabled": True, "serialPort": "/dev/ttyUSB2", "baudrate": 115200}, []),
    "DSMRreader": (
        "DSMRreader",
        {
            "enabled": True,
            "brokerIP": "192.168.1.10",
            "brokerPort": 1883,
            "username": "dsmr",
            "password": "secret",
            "topic": "dsmr/json",
        },
        [],
    ),
    "EmonCMS": (
        "EmonCMS",
        {
            "enabled": True,
            "serverIP": "192.168.1.11",
            "serverPort": "80",
            "serverPath": "/emoncms",
            "useHttps": False,
            "apiKey": "abc",
            "consumptionFeed": "1",
            "generationFeed": "2",
        },
        [],
    ),
    "IotaWatt": (
        "IotaWatt",
        {
            "enabled": True,
            "serverIP": "192.168.1.12",
            "outputConsumption": "Consumption",
            "outputGeneration": "Solar",
        },
        [],
    ),
    "P1Monitor": ("P1Monitor", {"enabled": True, "serverIP": "192.168.1.13", "samples": 3}, []),
    "SmartPi": (
        "SmartPi",
        {
            "enabled": True,
            "serverIP": "192.168.1.14",
            "serverPort": "1080",
            "showConsumption": True,
        },
        [],
    ),
    "SolarLog": (
        "SolarLog",
        {"enabled": True, "serverIP": "192.168.1.15", "excludeConsumptionInverters": [2]},
        [],
    ),
    "TED": ("TED", {"enabled": True, "serverIP": "192.168.1.16", "serverPort": "80"}, []),
    "Volkszahler": (
        "Volkszahler",
        {
            "enabled": True,
            "serverIP": "192.168.1.17",
            "serverPort": "80",
            "uuidPhotovoltaikW": "82c0c870-e1a3-11e3-8f10-3d6d0fd5a6a9",
            "uuidTotalGridW": "a5bcd3b0-e1a3-11e3-9c25-7b1b8a1e2b0f",
        },
        [],
    ),
    "Kostal": (
        "Kostal",
        {"enabled": True, "serverIP": "192.168.1.18", "modbusPort": 1502, "unitID": 71},
        [],
    ),
    "Victron": (
        "Victron",
        {
            "enabled": True,
            "serverIP": "192.168.1.19",
            "serverPort": 502,
            "unitID": 100,
            "timeout": 10,
            "consumptionRegisters": [[817, 100], [818, 100], [819, 100]],
            "generationRegisters": [[808, 100], [809, 100], [810, 100]],
        },
        [],
    ),
    "SmartMe": (
        "SmartMe",
        {"enabled": True, "username": "me", "password": "pw", "serialNumber": "1234567"},
        [],
    ),
    "Efergy": ("Efergy", {"enabled": True, "token": "a1b2c3"}, []),
    "OpenWeatherMap": (
        "OpenWeatherMap",
        {
            "enabled": True,
            "Latitude": 52.37,
            "Longitude": 4.89,
            "APIKey": "2f5d1c0a",
            "PeakKW": [2, 3, 4.5, 5.5, 6, 6.5, 6.5, 6, 5, 4, 2.5, 2],
        },
        [],
    ),
    "Enphase (cloud)": (
        "Enphase",
        {"enabled": True, "apiKey": "abcdef", "systemID": 1234, "userID": 1234},
        [],
    ),
    "Growatt": (
        "Growatt",
        {
            "enabled": True,
            "username": "me",
            "password": "pw",
            "useBatteryAt": 50,
            "useBatteryTill": 30,
            "batteryMaxOutput": 2500,
            "useBatteryBefore": "06:30",
        },
        [],
    ),
    "SunSpec (twcmaster's own)": (
        "SunSpec",
        {"enabled": True, "serverIP": "192.168.1.41", "unitID": 126, "meterSign": "import"},
        [],
    ),
}


def load(name: str, section: dict):
    return config_from_dict({"config": dict(WIRING), "sources": {name: section}}, "/srv/twc")


@pytest.mark.parametrize("case", list(SECTIONS))
def test_twcmanager_source_sections_load_with_warnings_only(case):
    name, section, unused = SECTIONS[case]

    loaded = load(name, section)

    assert [spec.name for spec in loaded.settings.sources] == [name]
    warned = [w.key_path for w in loaded.warnings if w.key_path.startswith("sources.")]
    assert warned == [f"sources.{name}.{key}" for key in unused]
    for warning in loaded.warnings:
        if warning.key_path.startswith("sources."):
            assert warning.message.startswith("ignored; you lose ")


@pytest.mark.parametrize("case", list(SECTIONS))
def test_switched_off_sections_give_no_warning(case):
    name, section, _ = SECTIONS[case]

    loaded = load(name, {**section, "enabled": False})

    assert [w for w in loaded.warnings if w.key_path.startswith("sources.")] == []


def test_an_invalid_value_is_still_an_error():
    with pytest.raises(ConfigError) as caught:
        load("SunSpec", {"enabled": True, "serverIP": "192.168.1.41", "unitID": 999})
    assert [p.key_path for p in caught.value.problems] == ["sources.SunSpec.unitID"]


# The sections of TWCManager's sample config.json (etc/twcmanager/config.json), values as it
# ships them (numbers as strings where it writes them so), switched on one at a time.
TWCMANAGER_SAMPLE = {
    "DSMRreader": {
        "brokerIP": "192.168.1.2",
        "username": "mqttuser",
        "password": "mqttpass",
        "topic": "dsmr/json",
    },
    "Efergy": {"token": "abcd1234"},
    "Enphase": {"apiKey": "ABC123", "systemID": "12345", "userID": "4d6a51330a"},
    "Growatt": {
        "username": "username",
        "password": "password",
        "useBatteryAt": "80",
        "batteryMaxOutput": "4800",
        "useBatteryBefore": "15:00",
    },
    "IotaWatt": {
        "serverIP": "192.168.1.1",
        "outputConsumption": "Total_Consumption",
        "outputGeneration": "Solar",
    },
    "P1Monitor": {"serverIP": "192.168.1.2", "samples": 1},
    "OpenWeatherMap": {
        "Latitude": 41.870978,
        "Longitude": 11.853508,
        "APIKey": "xyz-EDIT-ME-xyz",
        "PeakKW": [2, 4, 6, 6, 6.5, 6.9, 6.5, 6.0, 5.5, 4.5, 3, 2],
    },
    "SmartMe": {"username": "username", "password": "password", "serialNumber": "ABC1234"},
    "SmartPi": {"serverIP": "192.168.1.2", "serverPort": "1080"},
    "SolarLog": {"serverIP": "192.168.1.2", "excludeConsumptionInverters": [2]},
    "TED": {"serverIP": "192.168.1.1", "serverPort": "80"},
    "Volkszahler": {
        "serverIP": "127.0.0.1",
        "serverPort": "80",
        "uuidPhotovoltaikW": "00000006-0002-1570-ffff-0123456789ab",
        "uuidTotalGridW": "1cbbe494-a049-11eb-bcbc-0242ac130002",
    },
}


@pytest.mark.parametrize("name", list(TWCMANAGER_SAMPLE))
def test_twcmanager_sample_sections_switched_on_load_and_build(name):
    from twcmaster.sources.registry import build_sources

    loaded = load(name, {"enabled": True, **TWCMANAGER_SAMPLE[name]})

    [spec] = loaded.settings.sources
    [source] = build_sources([spec])
    assert source.name == name
    assert source.describe()
    source.close()


def test_every_twcmanager_source_has_a_module():
    from twcmaster.sources import SOURCE_MODULES
    from twcmaster.sources.registry import TWCMANAGER_SOURCES

    assert set(TWCMANAGER_SOURCES) <= set(SOURCE_MODULES)


def test_twcmanager_diff_names_the_sources_that_read_differently():
    from twcmaster.config.migration import twcmanager_diff

    data = {
        "sources": {
            name: {"enabled": True, **TWCMANAGER_SAMPLE[name]}
            for name in ("EmonCMS", "Growatt", "OpenWeatherMap", "TED")
            if name in TWCMANAGER_SAMPLE
        }
    }
    data["sources"]["EmonCMS"] = {"enabled": True, "serverIP": "h", "generationFeed": "1"}
    lines = {line.path: line for line in twcmanager_diff(data)}

    assert lines["sources.EmonCMS"].kind == "different"
    assert "swapped" in lines["sources.EmonCMS"].text
    assert lines["sources.Growatt"].kind == "different"
    assert lines["sources.OpenWeatherMap"].kind == "different"
    assert "sources.TED" not in lines  # read as TWCManager reads it
