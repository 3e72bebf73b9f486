"""The key schema: every key TWCManager or twcmaster knows, by section.

* ``check_keys``: a key nobody knows is an error with a "did you mean" suggestion (a typo in
  a safety setting must not be ignored silently); a section that is not an object is an error;
* ``warn_unused``: a key or module TWCManager knows and twcmaster does not act on (yet) is a
  warning naming it, never an error, so users migrate with the same file.

Only names are checked here; values are the loader's business (``load.py``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from twcmaster.config.fields import section as _section
from twcmaster.config.migration import ignored_message
from twcmaster.config.problems import Report, describe_value
from twcmaster.sources import SOURCE_MODULES  # names only: imports no source module

__all__ = ["KNOWN_KEYS", "check_keys", "warn_unused"]


def _keys(names: str, **sections: Any) -> dict[str, Any]:
    """A section of the key tree: leaf names (value not checked here) plus sub-sections."""
    return {**dict.fromkeys(names.split()), **sections}


_MUTE = _keys("ChargeSessions GreenEnergy SlavePower SlaveStatus DebugLogLevelGreaterThan")
_GEN3 = _keys("enabled port baudrate stopbits bytesize parity devices")

# Every key TWCManager reads, by section (from its sample config.json, docs and module
# sources). A dict is a section whose keys are checked; None is a leaf, and also marks
# free-form subtrees such as policy rule lists.
_TWCMANAGER_KEYS: dict[str, Any] = {
    "config": _keys(
        "settingsPath wiringMaxAmpsAllTWCs wiringMaxAmpsPerTWC maxAmpsAllowedFromGrid"
        " maxAmpsPerTWC minAmpsPerTWC startStopDelay greenEnergyFlexAmps"
        " useFlexAmpsToStartCharge greenEnergyLatch subtractChargerLoad"
        " treatGenerationAsGridDelivery greenEnergyAmpsOffset defaultVoltage numberOfPhases"
        " realPowerFactorMinAmps realPowerFactorMaxAmps atHomeRadius minChargeLevel"
        " respectVehicleSchedule chargeNowLimit scheduledLimit greenEnergyLimit"
        " nonScheduledLimit cloudUpdateInterval wakeDelayMins teslaApiClientID"
        " teslaApiRedirectUri teslaApiClientSecret teslaApiRegion teslaApiScope teslaProxy"
        " teslaProxyCert teslaControlPath logLevel debugLevel displayMilliseconds"
        " webhookMethod fakeMaster onlyChargeMultiCarsAtHome maxImportPrice"
        " debugOutputToFile debugFile moduleConfiguration"
        # legacy homes of interface.RS485.baud / .port, still read by TWCManager
        " baud rs485adapter"
    ),
    "interface": _keys(
        "",
        # "device" is what TWCManager's interface docs call the port (its code reads "port").
        RS485=_keys("enabled port baud slaveTimeout device"),
        TCP=_keys("enabled listen server"),
        Dummy=_keys("enabled twcID"),
    ),
    "control": _keys(
        "",
        HTTP=_keys("enabled listenPort"),
        MQTT=_keys("enabled brokerIP brokerPort brokerTLS topicPrefix username password"),
        OCPP=_keys("enabled serverPort"),
        IPC=_keys("enabled"),
    ),
    "status": _keys(
        "",
        MQTT=_keys(
            "enabled brokerIP brokerPort brokerTLS topicPrefix username password ratelimit"
            " homeassistantDiscovery discoveryPrefix deviceNamePrefix"
        ),
        HASS=_keys(
            "enabled serverIP serverPort useHttps apiKey msgRateInSeconds"
            " resendRateInSeconds retryRateInSeconds"
        ),
        OTEL=_keys("enabled exporter otlpEndpoint jaegerEndpoint serviceName serviceVersion"),
    ),
    "policy": _keys(
        "alwaysPollEMS override",
        engine=_keys("policyCheckInterval"),
        extend=_keys("emergency before after restrictions webhooks"),
    ),
    "logging": _keys(
        "use_icons",
        Console=_keys("enabled simple", mute=_MUTE),
        FileLogger=_keys("enabled path", mute=_MUTE),
        CSV=_keys("enabled path", mute=_MUTE),
        MySQL=_keys("enabled host port database username password", mute=_MUTE),
        SQLite=_keys("enabled path", mute=_MUTE),
        Sentry=_keys("enabled DSN", mute=_MUTE),
    ),
    "sources": _keys(
        "",
        DSMR=_keys("enabled serialPort baudrate"),
        DSMRreader=_keys("enabled brokerIP brokerPort username password topic"),
        Efergy=_keys("enabled token"),
        EmonCMS=_keys(
            "enabled serverIP serverPort serverPath useHttps apiKey consumptionFeed generationFeed"
        ),
        Enphase=_keys("enabled apiKey systemID userID serverIP serverPort token"),
        Fronius=_keys("enabled serverIP serverPort"),
        Growatt=_keys(
            "enabled username password useBatteryAt useBatteryTill batteryMaxOutput"
            " useBatteryBefore"
        ),
        HASS=_keys(
            "enabled serverIP serverPort useHttps apiKey hassEntityConsumption hassEntityGeneration"
        ),
        IotaWatt=_keys("enabled serverIP outputConsumption outputGeneration"),
        Kostal=_keys("enabled serverIP modbusPort unitID"),
        MQTT=_keys(
            "enabled brokerIP brokerPort username password topicConsumption topicGeneration"
        ),
        openHAB=_keys("enabled serverIP serverPort consumptionItem generationItem"),
        OpenWeatherMap=_keys("enabled Latitude Longitude APIKey PeakKW"),
        P1Monitor=_keys("enabled serverIP samples"),
        Powerwall2=_keys("enabled serverIP serverPort password minBatteryLevel cloudID"),
        SmartMe=_keys("enabled username password serialNumber"),
        SmartPi=_keys("enabled serverIP serverPort showConsumption"),
        SolarEdge=_keys(
            "enabled apiKey siteID inverterHost inverterPort smartMeters pollMode debugMode"
        ),
        SolarLog=_keys("enabled serverIP excludeConsumptionInverters"),
        TED=_keys("enabled serverIP serverPort"),
        URL=_keys("enabled url consumptionItem generationItem"),
        Victron=_keys(
            "enabled serverIP serverPort unitID timeout consumptionRegisters generationRegisters"
        ),
        Volkszahler=_keys("enabled serverIP serverPort uuidPhotovoltaikW uuidTotalGridW"),
        # TWCManager's replay of recorded readings, for its own tests.
        ScenarioEMS=_keys("enabled stepFile"),
    ),
    "vehicle": _keys(
        "commandPolicy",
        teslaAPI=_keys("enabled"),
        teslaBLE=_keys("enabled"),
        teslaFleetTelemetryMQTT=_keys(
            "enabled syncTelemetry mqtt_host mqtt_user mqtt_pass mqtt_prefix"
        ),
        HomeAssistant=_keys("enabled url longLivedToken"),
        TeslaMate=_keys(
            "enabled syncTokens db_host db_name db_user db_pass encryption_key syncTelemetry"
            " mqtt_host mqtt_user mqtt_pass mqtt_prefix"
        ),
    ),
    "pricing": _keys(
        "",
        policy=_keys("multiPrice"),
        aWATTar=_keys("enabled"),
        Static=_keys("enabled", peak=_keys("import export")),
        PVPCes=_keys("enabled token"),
        Amber=_keys("enabled token siteId cacheTime"),
    ),
    # TWCManager's docs put the Gen3 section at the top level under this dotted name.
    "controller.Gen3TWCs": _GEN3,
    "controller": _keys("", Gen3TWCs=_GEN3),
}

# Keys only twcmaster reads.
_TWCMASTER_EXTRAS: dict[str, Any] = {
    "config": _keys(
        "nonScheduledAmpsMax spikeAmpsProactively spikeAmpsReactively spikeAmps chargeStopMode"
        " greenEnergySafeAmps greenEnergyStartMarginAmps greenEnergyStartDelay"
        " greenEnergyMinOnTime greenEnergyMinOffTime greenEnergySmoothingSeconds"
        " greenEnergyRaiseDelay greenEnergyHoldWh greenEnergyHoldGrowth"
        " greenEnergyStartMarginPerStart greenEnergyRotateKWh chargePriority"
    ),
    "interface": {"RS485": _keys("masterTWCID masterSign trailerByte")},
    "control": {
        "HTTP": _keys("listenIP token tokenRequiredForGet"),
        "MQTT": _keys("caFile allowStop"),
    },
    "status": {"MQTT": _keys("caFile")},
    "logging": _keys("format"),
    "vehicle": {
        "teslaAPI": _keys(
            "baseURL authURL clientID refreshToken tokenFile privateKeyFile proxyCert"
            " homeLatitude homeLongitude homeRadiusM dailyCallBudget dailyWakeBudget"
            " chargeStopMode wakeDelayS timeoutS"
        ),
        "teslaBLE": _keys("privateKeyFile vins adapter scanTimeoutS commandTimeoutS"),
    },
    # Every source: polling interval, request timeout, and the age after which its reading
    # counts as missing (s); plus each module's own options.
    "sources": {
        name: _keys("interval timeout maxAge " + extra)
        for name, extra in {
            "Fronius": "",
            "SolarEdge": "apiURL",
            "Enphase": "useHttps verifyTLS caFile apiURL",
            "Powerwall2": "verifyTLS caFile",
            "HASS": "verifyTLS caFile",
            "MQTT": "consumptionPath generationPath unit",
            "URL": "consumptionPath generationPath unit headers verifyTLS caFile",
            "openHAB": "apiKey",
            "P1Monitor": "serverPort",
            "IotaWatt": "serverPort",
            "SolarLog": "serverPort",
            "EmonCMS": "",
            "SmartPi": "",
            "TED": "",
            "Volkszahler": "",
            "DSMRreader": "",
            "DSMR": "",
            "Kostal": "",
            "Victron": "",
            "SmartMe": "apiURL",
            "Efergy": "apiURL",
            "OpenWeatherMap": "apiURL",
            "Growatt": "apiURL",
            "SunSpec": "enabled serverIP serverPort unitID meterUnitID meterLocation meterSign"
            " baseAddress",
        }.items()
    },
}

# What twcmaster reads today; every other known key gets a "not used yet" warning.
_USED_CONFIG_KEYS = frozenset(
    "settingsPath wiringMaxAmpsAllTWCs wiringMaxAmpsPerTWC minAmpsPerTWC maxAmpsPerTWC"
    " nonScheduledAmpsMax startStopDelay defaultVoltage numberOfPhases logLevel debugLevel"
    " displayMilliseconds fakeMaster spikeAmpsProactively spikeAmpsReactively spikeAmps"
    " greenEnergyFlexAmps useFlexAmpsToStartCharge baud rs485adapter"
    " subtractChargerLoad treatGenerationAsGridDelivery greenEnergyAmpsOffset greenEnergyLatch"
    " greenEnergySafeAmps greenEnergyStartMarginAmps greenEnergyStartDelay greenEnergyMinOnTime"
    " greenEnergyMinOffTime greenEnergySmoothingSeconds greenEnergyRaiseDelay"
    " greenEnergyHoldWh greenEnergyHoldGrowth greenEnergyStartMarginPerStart"
    " greenEnergyRotateKWh chargePriority"
    " maxAmpsAllowedFromGrid teslaApiClientID teslaProxy teslaProxyCert wakeDelayMins"
    " chargeStopMode webhookMethod".split()
)
_USED_MODULES = frozenset(
    {"interface.RS485", "logging.Console", "logging.FileLogger", "control.HTTP", "control.MQTT"}
    | {"status.MQTT"}
    | {"vehicle.teslaAPI", "vehicle.teslaBLE"}
    | {f"sources.{name}" for name in SOURCE_MODULES}
)
# Modules TWCManager runs when their "enabled" key is absent; all others default to off.
_ENABLED_BY_DEFAULT = frozenset({"interface.RS485", "vehicle.teslaAPI"})


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


KNOWN_KEYS = _merge(_TWCMANAGER_KEYS, _TWCMASTER_EXTRAS)


def _walk_schema(
    schema: dict[str, Any], parents: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (keys, sub-schema) pair; keys are kept apart as a top-level key may hold a dot."""
    for key, sub in schema.items():
        keys = (*parents, key)
        yield keys, sub
        if isinstance(sub, dict):
            yield from _walk_schema(sub, keys)


def _paths_by_name() -> dict[str, list[str]]:
    """Key name -> full paths, to point at a key written in the wrong section."""
    index: dict[str, list[str]] = {}
    for keys, _ in _walk_schema(KNOWN_KEYS):
        paths = index.setdefault(keys[-1], [])
        if ".".join(keys) not in paths:
            paths.append(".".join(keys))
    return index


_PATHS_BY_NAME = _paths_by_name()
# Sections with an "enabled" switch: TWCManager's loadable modules.
_MODULES = tuple(
    keys
    for keys, sub in _walk_schema(_TWCMANAGER_KEYS)
    if isinstance(sub, dict) and "enabled" in sub
)


# ------------------------------------------------------------------- key checking


def check_keys(data: Mapping[str, Any], report: Report) -> None:
    """Unknown keys (errors, or warnings for names policy rules refer to) and sections that
    are not objects, anywhere in the file."""
    _check_keys(data, KNOWN_KEYS, "", report, _policy_config_refs(data))


def _check_keys(
    node: Mapping[str, Any],
    schema: dict[str, Any],
    prefix: str,
    report: Report,
    policy_refs: frozenset[str],
) -> None:
    """Report unknown keys (errors) and sections that are not objects, recursively."""
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in schema:
            if path in policy_refs:
                report.warn(
                    path,
                    "not a TWCManager or twcmaster setting; kept for the policy "
                    f"rules that refer to {path}",
                )
            else:
                report.error(path, _unknown_key_message(key, schema, prefix))
            continue
        sub = schema[key]
        if not isinstance(sub, dict):
            continue
        if isinstance(value, Mapping):
            _check_keys(value, sub, path, report, policy_refs)
        else:
            report.error(path, f"expected a section {{...}}, got {describe_value(value)}")


def _unknown_key_message(key: str, schema: dict[str, Any], prefix: str) -> str:
    candidates = list(schema)
    suggestion = _suggest(key, candidates)
    if suggestion:
        return f'unknown key; did you mean "{suggestion}"?'
    elsewhere = _PATHS_BY_NAME.get(key)
    if elsewhere:
        return f"unknown key here; did you mean {' or '.join(elsewhere[:3])}?"
    where = f'in "{prefix}"' if prefix else "at the top level"
    if 0 < len(candidates) <= 25:
        return f"unknown key; known keys {where}: {', '.join(candidates)}"
    return f"unknown key {where} (neither TWCManager nor twcmaster uses it)"


def _suggest(key: str, candidates: list[str]) -> str | None:
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _policy_config_refs(data: Mapping[str, Any]) -> frozenset[str]:
    """``config.X`` names used by policy rules: users add their own keys for them."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, str):
            found.update(re.findall(r"\bconfig\.\w+", value))
        elif isinstance(value, Mapping):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(data.get("policy"))
    return frozenset(found)


def warn_unused(data: Mapping[str, Any], report: Report) -> None:
    """Warn about TWCManager settings that twcmaster accepts but does not act on, each
    saying what the user loses (``migration.IGNORED``)."""
    for key in _section(data, "config"):
        if key in _TWCMANAGER_KEYS["config"] and key not in _USED_CONFIG_KEYS:
            report.warn(f"config.{key}", ignored_message(f"config.{key}"))
    for keys in _MODULES:
        path = ".".join(keys)
        module = _section(data, *keys)
        if path in _USED_MODULES or not module:
            continue
        # Only a module that would run matters; TWCManager's sample lists many switched off.
        if module.get("enabled", path in _ENABLED_BY_DEFAULT):
            report.warn(path, "enabled, but " + ignored_message(path))
    for keys in (
        ("vehicle", "commandPolicy"),
        ("pricing", "policy"),
        ("logging", "use_icons"),
        ("logging", "Console", "simple"),
        ("logging", "Console", "mute"),
        ("logging", "FileLogger", "mute"),
    ):
        parent = _section(data, *keys[:-1])
        if keys[1] == "FileLogger" and not parent.get("enabled"):
            continue  # the file is off: its muting changes nothing
        if parent.get(keys[-1]):
            report.warn(".".join(keys), ignored_message(".".join(keys)))
    if _section(data, "logging", "Console").get("enabled", True) is False:
        report.warn(
            "logging.Console.enabled",
            "twcmaster always logs to stderr; set logging.format to choose human lines or JSON",
        )
