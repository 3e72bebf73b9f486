"""TWCManager users' config files, as they have them: TWCManager's own sample (with its
missing comma, then fixed) and a corpus of realistic variants, one per source module, policy
feature and other module. Each loads with warnings only; every ignored setting's warning
says what the user loses; only a really invalid value is an error."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from twcmaster.config import ConfigError, config_from_dict, load_config
from twcmaster.config.jsonc import parse_config_text
from twcmaster.config.migration import IGNORED, twcmanager_diff

SAMPLE = Path(__file__).parent / "data" / "twcmanager" / "config.sample.json"
GENERIC_WARNING = "not used by twcmaster (ignored)"


def fixed_sample_text() -> str:
    lines = SAMPLE.read_text().split("\n")
    index = next(i for i, line in enumerate(lines) if line.strip() == '"TeslaMate": {')
    closing = max(i for i in range(index) if lines[i].strip() == "}")
    lines[closing] += ","
    return "\n".join(lines)


def fixed_sample() -> dict[str, Any]:
    return parse_config_text(fixed_sample_text(), source="sample")


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ------------------------------------------------------------------------------ the sample


def test_the_sample_as_shipped_fails_at_its_missing_comma():
    with pytest.raises(ConfigError) as caught:
        load_config(SAMPLE)
    message = str(caught.value)
    line = 1 + SAMPLE.read_text().split("\n").index('        "TeslaMate": {')
    assert f"line {line}, column 9" in message
    assert "missing comma before line" in message
    assert '"TeslaMate": {' in message


def test_the_sample_with_the_comma_loads_with_warnings_only(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(fixed_sample_text())
    loaded = load_config(path)  # no ConfigError
    by_path = {w.key_path: w.message for w in loaded.warnings}
    # Its placeholder wiring (6 A) under its 12 A floor: the floor comes down, never up.
    assert "lowered to 6 A" in by_path["config.minAmpsPerTWC"]
    assert loaded.settings.min_amps_per_twc == 6
    assert loaded.settings.wiring.max_amps_per_twc == 6
    for key_path, message in by_path.items():
        assert message != GENERIC_WARNING, key_path


# ------------------------------------------------------------------------------ the corpus

SOURCE_VARIANTS: dict[str, dict[str, Any]] = {
    "DSMR": {"enabled": True, "serialPort": "/dev/ttyUSB1", "baudrate": 115200},
    "DSMRreader": {
        "enabled": True,
        "brokerIP": "192.168.1.10",
        "brokerPort": 1883,
        "username": "dsmr",
        "password": "secret",
        "topic": "dsmr/json",
    },
    "Efergy": {"enabled": True, "token": "abcdef0123456789"},
    "EmonCMS": {
        "enabled": True,
        "serverIP": "192.168.1.20",
        "serverPort": 80,
        "serverPath": "/emoncms",
        "useHttps": False,
        "apiKey": "0123456789abcdef",
        "consumptionFeed": 1,
        "generationFeed": 2,
    },
    "Enphase": {"enabled": True, "serverIP": "192.168.1.30", "serverPort": 80},
    "Fronius": {"enabled": True, "serverIP": "192.168.1.40", "serverPort": 80},
    "Growatt": {"enabled": True, "username": "me@example.com", "password": "secret"},
    "HASS": {
        "enabled": True,
        "serverIP": "192.168.1.50",
        "serverPort": 8123,
        "useHttps": False,
        "apiKey": "eyJhbGciOi.long.lived",
        "hassEntityConsumption": "sensor.house_power",
        "hassEntityGeneration": "sensor.solar_power",
    },
    "IotaWatt": {
        "enabled": True,
        "serverIP": "192.168.1.60",
        "outputConsumption": "Total_Consumption",
        "outputGeneration": "Solar",
    },
    "Kostal": {"enabled": True, "serverIP": "192.168.1.70", "modbusPort": 1502, "unitID": 71},
    "MQTT": {
        "enabled": True,
        "brokerIP": "192.168.1.10",
        "brokerPort": 1883,
        "username": "twc",
        "password": "secret",
        "topicConsumption": "house/power",
        "topicGeneration": "solar/power",
    },
    "openHAB": {
        "enabled": True,
        "serverIP": "192.168.1.80",
        "serverPort": 8080,
        "consumptionItem": "House_Power",
        "generationItem": "Solar_Power",
    },
    "OpenWeatherMap": {
        "enabled": True,
        "APIKey": "0123456789abcdef0123456789abcdef",
        "Latitude": 46.8,
        "Longitude": 6.9,
        "PeakKW": 8.5,
    },
    "P1Monitor": {"enabled": True, "serverIP": "192.168.1.90", "samples": 3},
    "Powerwall2": {
        "enabled": True,
        "serverIP": "192.168.1.100",
        "serverPort": 443,
        "password": "ABCDE",
        "minBatteryLevel": 90,
    },
    "SmartMe": {
        "enabled": True,
        "username": "me@example.com",
        "password": "secret",
        "serialNumber": "1234567",
    },
    "SmartPi": {
        "enabled": True,
        "serverIP": "192.168.1.110",
        "serverPort": 1080,
        "showConsumption": True,
    },
    "SolarEdge": {"enabled": True, "apiKey": "ABCDEFGHIJKLMNOP", "siteID": "123456"},
    "SolarLog": {
        "enabled": True,
        "serverIP": "192.168.1.120",
        "excludeConsumptionInverters": [2],
    },
    "TED": {"enabled": True, "serverIP": "192.168.1.130", "serverPort": 80},
    "URL": {
        "enabled": True,
        "url": "http://192.168.1.140/",
        "consumptionItem": "consumption",
        "generationItem": "generation",
    },
    "Victron": {"enabled": True, "serverIP": "192.168.1.150", "serverPort": 502, "unitID": 100},
    "Volkszahler": {
        "enabled": True,
        "serverIP": "192.168.1.160",
        "serverPort": 80,
        "uuidPhotovoltaikW": "aaaa-bbbb",
        "uuidTotalGridW": "cccc-dddd",
    },
}

POLICY_VARIANTS: dict[str, dict[str, Any]] = {
    "override": {
        "override": [
            {
                "name": "Charge Now",
                "match": ["settings.chargeNowAmps", "settings.chargeNowTimeEnd"],
                "condition": ["gt", "gt"],
                "value": [0, "now"],
                "charge_amps": "settings.chargeNowAmps",
            },
            {
                "name": "Non Scheduled Charging",
                "match": ["none"],
                "condition": ["none"],
                "value": [0],
                "charge_amps": "settings.nonScheduledAmpsMax",
            },
        ]
    },
    "extend.emergency": {
        "extend": {
            "emergency": [
                {
                    "name": "Grid outage",
                    "match": ["modules.TeslaPowerwall2.gridStatus"],
                    "condition": ["eq"],
                    "value": [False],
                    "charge_amps": 0,
                }
            ]
        }
    },
    "extend.before": {
        "extend": {
            "before": [
                {
                    "name": "Storm Watch",
                    "match": ["modules.TeslaPowerwall2.stormWatch"],
                    "condition": ["eq"],
                    "value": [True],
                    "charge_amps": "settings.chargeNowAmps",
                    "charge_limit": 90,
                }
            ]
        }
    },
    "extend.after": {
        "extend": {
            "after": [
                {
                    "name": "Night top-up",
                    "match": ["tm_hour", "tm_hour"],
                    "condition": ["gte", "lt"],
                    "value": [1, 5],
                    "charge_amps": 16,
                    "latch_period": 30,
                    "allowed_flex": 4,
                }
            ]
        }
    },
    "sub-lists (TWCManager's Powerwall Full)": {
        "extend": {
            "after": [
                {
                    "name": "Powerwall Full",
                    "match": [
                        "modules.TeslaPowerwall2.batteryLevel",
                        ["modules.TeslaPowerwall2.exportW", "modules.TeslaPowerwall2.gridStatus"],
                    ],
                    "condition": ["gte", ["gte", "eq"]],
                    "value": [95, [1500, False]],
                    "charge_amps": "config.minAmpsPerTWC",
                    "charge_limit": 90,
                    "latch_period": 30,
                }
            ]
        }
    },
    "a rule's webhooks and background task": {
        "extend": {
            "before": [
                {
                    "name": "Low battery",
                    "match": ["modules.TeslaAPI.minBatteryLevelAtHome"],
                    "condition": ["lt"],
                    "value": [20],
                    "charge_amps": 24,
                    "background_task": "checkCharge",
                    "webhooks": {"enter": "http://192.168.1.5/low", "exit": "http://h/ok"},
                }
            ]
        }
    },
    "green rule on the surplus": {
        "extend": {
            "before": [
                {
                    "name": "Big surplus",
                    "match": ["getMaxAmpsToDivideGreenEnergy()", "tm_wday"],
                    "condition": ["gt", "lt"],
                    "value": [20, 5],
                    "background_task": "checkGreenEnergy",
                    "allowed_flex": "config.greenEnergyFlexAmps",
                }
            ]
        }
    },
    "restrictions": {
        "extend": {
            "restrictions": {
                "Charge Now": {
                    "match": ["modules.TeslaPowerwall2.gridStatus"],
                    "condition": ["eq"],
                    "value": [True],
                }
            }
        }
    },
    "webhooks": {
        "extend": {
            "webhooks": {
                "Scheduled Charging": {
                    "start": "http://192.168.1.5/hooks/start?token=t",
                    "stop": "http://192.168.1.5/hooks/stop?token=t",
                    "enter": "http://192.168.1.5/hooks/enter?token=t",
                    "exit": "http://192.168.1.5/hooks/exit?token=t",
                }
            }
        }
    },
    "policyCheckInterval": {"engine": {"policyCheckInterval": 60}},
    "alwaysPollEMS": {"alwaysPollEMS": True},
    "config reference": {
        "override": [
            {
                "name": "Track Green Energy",
                "match": ["tm_hour", "config.myOwnThreshold"],
                "condition": ["gte", "gt"],
                "value": [6, 0],
                "charge_amps": "getMaxAmpsToDivideGreenEnergy()",
                "background_task": "checkGreenEnergy",
            }
        ]
    },
}

OTHER_VARIANTS: dict[str, dict[str, Any]] = {
    "logging.FileLogger": {
        "logging": {"FileLogger": {"enabled": True, "path": "/etc/twcmanager/log"}}
    },
    "logging.CSV": {"logging": {"CSV": {"enabled": True, "path": "/etc/twcmanager/csv"}}},
    "logging.MySQL": {
        "logging": {
            "MySQL": {
                "enabled": True,
                "host": "192.168.1.5",
                "port": 3306,
                "database": "twcmanager",
                "username": "twc",
                "password": "secret",
            }
        }
    },
    "logging.SQLite": {
        "logging": {"SQLite": {"enabled": True, "path": "/etc/twcmanager/twc.sqlite"}}
    },
    "logging.Console.mute": {
        "logging": {"Console": {"enabled": True, "mute": {"SlaveStatus": True}}}
    },
    "status.HASS": {
        "status": {
            "HASS": {
                "enabled": True,
                "serverIP": "192.168.1.50",
                "serverPort": 8123,
                "apiKey": "eyJhbGciOi.long.lived",
                "msgRateInSeconds": 60,
            }
        }
    },
    "status.OTEL": {"status": {"OTEL": {"enabled": True, "exporter": "otlp"}}},
    "vehicle.TeslaMate": {
        "vehicle": {
            "TeslaMate": {
                "enabled": True,
                "syncTokens": True,
                "db_host": "192.168.1.6",
                "db_name": "teslamate",
                "db_user": "teslamate",
                "db_pass": "secret",
                "encryption_key": "key",
            }
        }
    },
    "vehicle.HomeAssistant": {
        "vehicle": {
            "HomeAssistant": {
                "enabled": True,
                "url": "http://192.168.1.50:8123",
                "longLivedToken": "abcdef",
            }
        }
    },
    "vehicle.teslaFleetTelemetryMQTT": {
        "vehicle": {
            "teslaFleetTelemetryMQTT": {
                "enabled": True,
                "mqtt_host": "192.168.1.10",
                "mqtt_prefix": "telemetry",
            }
        }
    },
    "config.moduleConfiguration": {
        "config": {"moduleConfiguration": {"TeslaBLE": {"commandTimeout": 10, "maxRetries": 5}}}
    },
    "config.debugOutputToFile": {"config": {"debugOutputToFile": True}},
    "config charge limits": {
        "config": {"chargeNowLimit": 90, "greenEnergyLimit": 80, "scheduledLimit": 70}
    },
    "config Tesla OAuth app": {
        "config": {
            "teslaApiClientID": "abc",
            "teslaApiClientSecret": "secret",
            "teslaApiRegion": "eu",
            "teslaApiRedirectUri": "https://example.com/callback",
        }
    },
    "pricing.aWATTar": {"pricing": {"aWATTar": {"enabled": True}}},
    "pricing.Static": {"pricing": {"Static": {"enabled": True, "peak": {"import": 0.3}}}},
    "controller.Gen3TWCs": {
        "controller.Gen3TWCs": {
            "enabled": True,
            "devices": [{"ip": "192.168.1.170", "fuseAmps": 32, "phases": 1}],
        }
    },
    "interface.TCP": {"interface": {"TCP": {"enabled": True, "listen": True}}},
    "interface.RS485.device": {"interface": {"RS485": {"device": "/dev/ttyUSB3"}}},
    "config.maxAmpsAllowedFromGrid": {"config": {"maxAmpsAllowedFromGrid": 20}},
}


def _disable_sample_sources(data: dict[str, Any]) -> dict[str, Any]:
    """The sample with every source off, so that a variant's one source is the only one."""
    for section in data.get("sources", {}).values():
        if isinstance(section, dict):
            section["enabled"] = False
    return data


def _variants() -> list[Any]:
    out = [(f"sources.{name}", {"sources": {name: keys}}) for name, keys in SOURCE_VARIANTS.items()]
    # Issue 14 part 2's two modes that were refused before.
    out.append(
        (
            "sources.SolarEdge (inverter Modbus)",
            {"sources": {"SolarEdge": {"enabled": True, "inverterHost": "192.168.1.180"}}},
        )
    )
    out.append(
        (
            "sources.Enphase (cloud)",
            {
                "sources": {
                    "Enphase": {"enabled": True, "apiKey": "k", "systemID": 1, "userID": "u"}
                }
            },
        )
    )
    out += [(f"policy {name}", {"policy": patch}) for name, patch in POLICY_VARIANTS.items()]
    out += list(OTHER_VARIANTS.items())
    return out


VARIANTS = _variants()


def test_the_corpus_has_one_variant_per_module_and_feature():
    assert len(VARIANTS) >= 40
    assert len(SOURCE_VARIANTS) == 23  # every TWCManager energy source


def _id(variant: Any) -> str:
    return variant.id if hasattr(variant, "id") else variant[0]


@pytest.mark.parametrize(("name", "patch"), VARIANTS, ids=[_id(v) for v in VARIANTS])
def test_each_variant_loads_with_warnings_only(name, patch, tmp_path):
    data = merged(_disable_sample_sources(fixed_sample()), patch)
    loaded = config_from_dict(data, str(tmp_path))  # raises ConfigError on any error
    for warning in loaded.warnings:
        assert warning.message != GENERIC_WARNING, warning.key_path


def test_every_ignored_setting_says_what_is_lost():
    data = merged(_disable_sample_sources(fixed_sample()), {})
    data = merged(data, {"policy": POLICY_VARIANTS["override"]})
    for patch in OTHER_VARIANTS.values():
        data = merged(data, patch)
    loaded = config_from_dict(data, "/tmp")
    warned = {w.key_path: w.message for w in loaded.warnings}
    for path in ("config.debugOutputToFile", "logging.MySQL", "controller.Gen3TWCs"):
        assert "you lose" in warned[path], path
        assert IGNORED[path] in warned[path]


@pytest.mark.parametrize(
    ("patch", "key_path"),
    [
        ({"config": {"wiringMaxAmpsAllTWCs": "forty"}}, "config.wiringMaxAmpsAllTWCs"),
        ({"config": {"minAmpsPerTWC": 3}}, "config.minAmpsPerTWC"),
        ({"config": {"wiringMaxAmpsPerTWCs": 32}}, "config.wiringMaxAmpsPerTWCs"),  # a typo
        ({"interface": {"RS485": {"port": "COM3:"}}}, "interface.RS485.port"),
    ],
)
def test_a_really_invalid_value_or_an_unknown_key_is_still_an_error(patch, key_path):
    data = merged(fixed_sample(), patch)
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, "/tmp")
    assert key_path in [p.key_path for p in caught.value.problems]


def test_the_rs485_device_key_of_twcmanagers_docs_is_used_as_the_port():
    data = merged(fixed_sample(), {"interface": {"RS485": {"device": "/dev/ttyUSB3"}}})
    data["interface"]["RS485"].pop("port", None)
    loaded = config_from_dict(data, "/tmp")
    assert loaded.settings.rs485.port == "/dev/ttyUSB3"
    assert "interface.RS485.device" in [w.key_path for w in loaded.warnings]


# ------------------------------------------------------------------------------ the command


def _check_config(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twcmaster", "check-config", "--config", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_errors_and_warnings_are_printed_together(tmp_path):
    data = merged(fixed_sample(), {"config": {"wiringMaxAmpsAllTWCs": "forty"}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    done = _check_config(path)
    assert done.returncode == 2
    assert "config.wiringMaxAmpsAllTWCs" in done.stderr
    assert "warning: config.cloudUpdateInterval: ignored; you lose" in done.stderr
    assert "warning: logging.Sentry: enabled, but ignored" in done.stderr


def test_twcmanager_diff_lists_what_behaves_differently(tmp_path):
    data = merged(
        fixed_sample(),
        {"config": {"startStopDelay": 60, "debugOutputToFile": True}, "policy": {}},
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    done = _check_config(path, "--twcmanager-diff")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "compared with TWCManager" in out
    assert "Read differently from TWCManager:\n" in out
    assert "  config.startStopDelay: TWCManager held every start/stop decision" in out
    assert "Ignored (what you lose):\n" in out
    assert "  config.debugOutputToFile: ignored; you lose TWCManager's debug output" in out
    assert "  logging.Sentry: ignored; you lose error reports to Sentry" in out
    assert "  policy:" not in out  # an empty policy section changes nothing
    # The same lines as the library function gives.
    assert len(twcmanager_diff(data)) == int(out.split("compared with TWCManager: ")[1].split()[0])


def test_the_file_logger_keys_choose_the_log_folder():
    def loaded(file_logger):
        return config_from_dict(
            merged(fixed_sample(), {"logging": {"FileLogger": file_logger}}), "/"
        )

    assert loaded({"enabled": False, "path": "/var/log/twc"}).settings.log_file_dir is None
    assert loaded({"enabled": True}).settings.log_file_dir == "/etc/twcmanager/log"
    assert loaded({"enabled": True, "path": "/var/log/twc"}).settings.log_file_dir == "/var/log/twc"
    with pytest.raises(ConfigError) as caught:
        loaded({"enabled": True, "path": "log"})
    assert [p.key_path for p in caught.value.problems] == ["logging.FileLogger.path"]
    muted = loaded({"enabled": True, "mute": {"SlavePower": True}})
    assert "logging.FileLogger.mute" in [w.key_path for w in muted.warnings]


def test_twcmanager_diff_says_how_policy_rules_differ():
    data = merged(fixed_sample(), {"policy": POLICY_VARIANTS["restrictions"]})
    (line,) = [line for line in twcmanager_diff(data) if line.path == "policy"]
    assert line.kind == "different"
    assert "applied as in TWCManager" in line.text and "modules.X.Y" in line.text


@pytest.mark.parametrize("name", list(POLICY_VARIANTS))
def test_each_policy_variant_is_applied_not_ignored(name):
    sample = _disable_sample_sources(fixed_sample())
    data = merged(sample, {"policy": POLICY_VARIANTS[name]})
    rules = config_from_dict(data, "/tmp").settings.policy_rules
    assert rules != config_from_dict(sample, "/tmp").settings.policy_rules
