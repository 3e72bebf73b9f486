"""config.json -> typed, validated settings.

The file is TWCManager's ``/etc/twcmanager/config.json``: JSON plus ``#`` / ``//`` comment
lines, trailing ``#`` comments and trailing commas. Users migrate with the same file, so:

* every key TWCManager knows is accepted; the ones twcmaster does not use (yet) give a
  warning naming the key, never an error;
* a key nobody knows is an error with a "did you mean" suggestion (typos in a safety
  setting must not be ignored silently);
* every problem is collected and reported at once, each naming key path, value and
  what was expected.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONFIG_MAX_BYTES",
    "MAX_NESTING_DEPTH",
    "AppConfig",
    "ConfigError",
    "DuplicateKeysError",
    "FileRejectedError",
    "LoadedConfig",
    "Problem",
    "RS485Config",
    "WiringConfig",
    "config_from_dict",
    "default_config_path",
    "load_config",
    "loads_without_duplicates",
    "nesting_too_deep_at",
    "parse_config_text",
    "read_regular_file",
]

CONFIG_MAX_BYTES = 1 << 20  # 1 MiB; TWCManager's commented sample config.json is ~36 kB
# Levels of {...} / [...]; TWCManager's deepest (policy rules) are ~6. Also keeps json,
# deepcopy and our walks far from Python's recursion limit.
MAX_NESTING_DEPTH = 64


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One finding about the configuration; ``key_path`` is "" for file-level problems."""

    key_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.key_path}: {self.message}" if self.key_path else self.message


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` lists every error found."""

    def __init__(
        self,
        problems: list[Problem],
        source: str | None = None,
        warnings: tuple[Problem, ...] = (),
    ) -> None:
        self.problems = list(problems)
        self.source = source
        self.warnings = tuple(warnings)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        if self.source is None:
            return "\n".join(lines)
        count = len(lines)
        header = f"{self.source}: {count} problem{'s' if count != 1 else ''} in the configuration:"
        return "\n".join([header, *("  " + line for line in lines)])


class _Report:
    """Collects errors and warnings while the config is checked."""

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, key_path: str, message: str) -> None:
        self.errors.append(Problem(key_path, message))

    def warn(self, key_path: str, message: str) -> None:
        self.warnings.append(Problem(key_path, message))


# ----------------------------------------------------------- JSON with comments -> dict


def parse_config_text(text: str, source: str = "<config>") -> dict:
    """Parse TWCManager's "JSON with comments"; raise ConfigError naming line and column,
    or the key path of a duplicated key."""
    # Split on "\n" only: json counts lines that way, and CRs of CRLF files are dropped.
    original_lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    stripped_lines = []
    for number, line in enumerate(original_lines, start=1):
        stripped, open_quote = _strip_comment(line)
        if open_quote is not None:
            message = "string not closed (a string must end on the line it starts)"
            raise _syntax_error(source, original_lines, number, open_quote + 1, message)
        stripped_lines.append(stripped)
    cleaned = _drop_trailing_commas("\n".join(stripped_lines))
    if not cleaned.strip():
        raise ConfigError([Problem("", f"{source}: the file is empty (or holds only comments)")])
    deep_at = nesting_too_deep_at(cleaned)
    if deep_at is not None:
        line = cleaned.count("\n", 0, deep_at) + 1
        column = deep_at - cleaned.rfind("\n", 0, deep_at)
        message = f"nested deeper than {MAX_NESTING_DEPTH} levels of {{...}} / [...]"
        raise _syntax_error(source, original_lines, line, column, message)
    try:
        # strict=False lets tabs inside strings through, as TWCManager's loader did.
        data = loads_without_duplicates(cleaned, strict=False)
    except json.JSONDecodeError as exc:
        message = exc.msg + _syntax_hint(exc, stripped_lines)
        raise _syntax_error(source, original_lines, exc.lineno, exc.colno, message) from None
    except DuplicateKeysError as exc:
        problems = [
            Problem(path, _duplicate_message(count, last)) for path, count, last in exc.found
        ]
        raise ConfigError(problems, source) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("", f"{source}: expected one {{...}} object at the top, got {_kind(data)}")]
        )
    return data


def _duplicate_message(count: int, last: Any) -> str:
    return (
        f"duplicate key: written {count} times; JSON keeps only the last "
        f"({describe_value(last)}) and silently ignores the others; keep one"
    )


def _strip_comment(line: str) -> tuple[str, int | None]:
    """Blank a whole-line comment, or cut a trailing one found outside strings.

    Returns the kept text (columns unchanged) and the index of a quote left open at the end
    of the line, if any. Unlike TWCManager, a ``#`` inside a quoted value (a password, a URL)
    survives.
    """
    if line.lstrip().startswith(("#", "//")):
        return "", None
    open_quote = None
    escaped = False
    for index, char in enumerate(line):
        if open_quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                open_quote = None
        elif char == '"':
            open_quote = index
        elif char == "#" or line.startswith("//", index):
            return line[:index], None
    return line, open_quote


_CLOSER_AHEAD = re.compile(r"\s*[}\]]")


def _outside_strings(text: str) -> Iterator[tuple[int, str]]:
    """(index, char) of every character that is not part of a JSON string."""
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            yield index, char


def _drop_trailing_commas(text: str) -> str:
    """Replace a comma that directly precedes ``}`` or ``]`` with a space (keeps columns)."""
    chars = list(text)
    for index, char in _outside_strings(text):
        if char == "," and _CLOSER_AHEAD.match(text, index + 1):
            chars[index] = " "
    return "".join(chars)


def nesting_too_deep_at(text: str, limit: int = MAX_NESTING_DEPTH) -> int | None:
    """Index of the first ``{`` or ``[`` nested deeper than ``limit`` in JSON text, or None.

    Checked before json.loads, which would raise RecursionError (a traceback, not a
    message) on a few thousand levels."""
    depth = 0
    for index, char in _outside_strings(text):
        if char in "{[":
            depth += 1
            if depth > limit:
                return index
        elif char in "}]":
            depth -= 1
    return None


class DuplicateKeysError(ValueError):
    """Keys written twice in one object. ``found``: (key path, times written, last value)."""

    def __init__(self, found: list[tuple[str, int, Any]]) -> None:
        self.found = found
        super().__init__(", ".join(f"{path} ({count} times)" for path, count, _ in found))


def loads_without_duplicates(text: str, **kwargs: Any) -> Any:
    """json.loads, but a key written twice in one object raises DuplicateKeysError.

    Plain json keeps the last of two ``"wiringMaxAmpsAllTWCs"`` silently; a safety limit
    must not change by a forgotten line further down."""
    repeats: list[tuple[dict, str, Any]] = []  # (object, key, the value it replaced)

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj: dict = {}
        for key, value in pairs:
            if key in obj:
                repeats.append((obj, key, obj[key]))
            obj[key] = value
        return obj

    data = json.loads(text, object_pairs_hook=pairs_hook, **kwargs)
    if repeats:
        raise DuplicateKeysError(_duplicate_paths(data, repeats))
    return data


def _duplicate_paths(data: Any, repeats: list[tuple[dict, str, Any]]) -> list[tuple[str, int, Any]]:
    """Key paths of the repeated keys, in file order (the hook cannot know them)."""
    by_object: dict[int, dict[str, list[Any]]] = {}
    for obj, key, replaced in repeats:
        by_object.setdefault(id(obj), {}).setdefault(key, []).append(replaced)
    found = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:  # no recursion: the depth is bounded, but stay away from the limit anyway
        node, path = stack.pop()
        children: list[tuple[Any, str]] = []
        if isinstance(node, dict):
            for key, replaced in by_object.get(id(node), {}).items():
                key_path = f"{path}.{key}" if path else key
                found.append((key_path, len(replaced) + 1, node[key]))
                children += [(value, key_path) for value in replaced]  # repeats inside them
            children += [(v, f"{path}.{k}" if path else k) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node)]
        stack.extend(reversed(children))
    return found


def _syntax_hint(exc: json.JSONDecodeError, lines: list[str]) -> str:
    """Explain the usual mistakes behind json's terse messages."""
    rest = exc.doc[exc.pos : exc.pos + 5]
    if exc.msg == "Expecting ',' delimiter":
        previous = _last_code_line(lines, exc.lineno - 1, exc.colno - 1)
        if previous < exc.lineno:
            return (
                f" (missing comma before line {exc.lineno}?"
                f" the value before it ends on line {previous})"
            )
        return " (missing comma?)"
    if rest.startswith("'"):
        return " (JSON needs double quotes around keys and strings)"
    if rest.startswith(("True", "False", "None")):
        return " (write true, false and null in lower case)"
    if exc.msg.startswith("Expecting property name") and rest[:1].isalpha():
        return " (keys need double quotes)"
    return ""


def _last_code_line(lines: list[str], line_index: int, column: int) -> int:
    """1-based number of the last line with code before the given 0-based position."""
    if lines[line_index][:column].strip():
        return line_index + 1
    for index in range(line_index - 1, -1, -1):
        if lines[index].strip():
            return index + 1
    return line_index + 1


_SHOWN_LINE_CHARS = 100  # of a long line, the part around the error is shown


def _syntax_error(
    source: str, lines: list[str], line: int, column: int, message: str
) -> ConfigError:
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = column
    if len(shown) > _SHOWN_LINE_CHARS:  # a minified or hostile one-line file
        start = max(column - 1 - _SHOWN_LINE_CHARS // 2, 0)
        head = "..." if start > 0 else ""
        tail = "..." if start + _SHOWN_LINE_CHARS < len(shown) else ""
        shown = head + shown[start : start + _SHOWN_LINE_CHARS] + tail
        caret = column - start + len(head)
    gutter = f"{line:>5} | "
    text = (
        f"{source}, line {line}, column {column}: {message}\n"
        f"{gutter}{shown}\n"
        f"{' ' * (len(gutter) - 2)}| {' ' * (caret - 1)}^"
    )
    return ConfigError([Problem("", text)])


# ------------------------------------------------------------------------ known keys


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
        # legacy homes of interface.RS485.baud / .port, still read by TWCManager
        " baud rs485adapter"
    ),
    "interface": _keys(
        "",
        RS485=_keys("enabled port baud slaveTimeout"),
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
        SmartPi=_keys("enabled serverIP serverPort"),
        SolarEdge=_keys("enabled apiKey siteID inverterHost inverterPort smartMeters"),
        SolarLog=_keys("enabled serverIP excludeConsumptionInverters"),
        TED=_keys("enabled serverIP serverPort"),
        URL=_keys("enabled url consumptionItem generationItem"),
        Victron=_keys(
            "enabled serverIP serverPort unitID timeout consumptionRegisters generationRegisters"
        ),
        Volkszahler=_keys("enabled serverIP serverPort uuidPhotovoltaikW uuidTotalGridW"),
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
        "nonScheduledAmpsMax spikeAmpsProactively spikeAmpsReactively spikeAmps"
        " greenEnergySafeAmps greenEnergyStartMarginAmps greenEnergyStartDelay"
        " greenEnergyMinOnTime greenEnergyMinOffTime greenEnergySmoothingSeconds"
        " greenEnergyRaiseDelay"
    ),
    "interface": {"RS485": _keys("masterTWCID masterSign trailerByte")},
    "logging": _keys("format"),
    # Every source: polling interval, request timeout, and the age after which its reading
    # counts as missing (s); plus each module's own options.
    "sources": {
        name: _keys("interval timeout maxAge " + extra)
        for name, extra in {
            "Fronius": "",
            "SolarEdge": "apiURL",
            "Enphase": "useHttps verifyTLS caFile",
            "Powerwall2": "verifyTLS caFile",
            "HASS": "verifyTLS caFile",
            "MQTT": "consumptionPath generationPath unit",
            "URL": "consumptionPath generationPath unit headers verifyTLS caFile",
            "openHAB": "apiKey",
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
    " greenEnergyMinOffTime greenEnergySmoothingSeconds greenEnergyRaiseDelay".split()
)
_USED_MODULES = frozenset(
    {"interface.RS485", "logging.Console"}
    | {
        f"sources.{name}"
        for name in ("Fronius", "SolarEdge", "Enphase", "Powerwall2", "HASS", "MQTT", "URL")
    }
    | {"sources.openHAB"}
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


_KNOWN_KEYS = _merge(_TWCMANAGER_KEYS, _TWCMASTER_EXTRAS)


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
    for keys, _ in _walk_schema(_KNOWN_KEYS):
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


def _check_keys(
    node: Mapping[str, Any],
    schema: dict[str, Any],
    prefix: str,
    report: _Report,
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


def _warn_unused(data: Mapping[str, Any], report: _Report) -> None:
    """Warn about TWCManager settings that twcmaster accepts but does not act on yet."""
    for key in _section(data, "config"):
        if key in _TWCMANAGER_KEYS["config"] and key not in _USED_CONFIG_KEYS:
            report.warn(f"config.{key}", "not used by twcmaster yet (ignored)")
    for keys in _MODULES:
        path = ".".join(keys)
        module = _section(data, *keys)
        if path in _USED_MODULES or not module:
            continue
        # Only a module that would run matters; TWCManager's sample lists many switched off.
        if module.get("enabled", path in _ENABLED_BY_DEFAULT):
            report.warn(path, _unused_module_message(path))
    for keys in (
        ("policy",),
        ("vehicle", "commandPolicy"),
        ("pricing", "policy"),
        ("logging", "use_icons"),
        ("logging", "Console", "simple"),
    ):
        if _section(data, *keys[:-1]).get(keys[-1]):
            report.warn(".".join(keys), "not used by twcmaster yet (ignored)")
    if _section(data, "logging", "Console").get("enabled", True) is False:
        report.warn(
            "logging.Console.enabled",
            "twcmaster always logs to stderr; set logging.format to choose human lines or JSON",
        )


def _unused_module_message(path: str) -> str:
    if path in ("interface.TCP", "interface.Dummy"):
        return (
            "enabled, but twcmaster talks to the bus through interface.RS485 only; for a "
            "network adapter set interface.RS485.port to socket://host:port or "
            "rfc2217://host:port"
        )
    return "enabled, but not used by twcmaster yet (ignored)"


# --------------------------------------------------------------------- typed settings


@dataclass(frozen=True)
class WiringConfig:
    """Hard limits of the installation; every offer is clamped to them."""

    max_amps_all_twcs: int
    max_amps_per_twc: int


@dataclass(frozen=True)
class RS485Config:
    enabled: bool
    port: str  # device path or pyserial URL (socket://host:port, rfc2217://host:port)
    baud: int
    slave_timeout_s: float
    master_twcid: int  # 2 bytes, e.g. 0x7777
    master_sign: int  # 1 byte
    trailer_byte: int | None  # sent after the closing C0; None = send none


@dataclass(frozen=True)
class AppConfig:
    wiring: WiringConfig
    min_amps_per_twc: int
    max_amps_per_twc: int
    non_scheduled_amps_max: int | None
    start_stop_delay_s: float
    default_voltage_v: float
    number_of_phases: int
    settings_path: str
    log_level: int
    display_milliseconds: bool
    spike_amps_proactively: bool
    spike_amps_reactively: bool
    spike_amps: int | None
    green_energy_flex_amps: float
    use_flex_amps_to_start_charge: bool
    rs485: RS485Config
    log_format: str  # "auto", "console" or "json"
    # The whole file as loaded, for sections later modules parse themselves.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)
    # Green-energy tracking (control/green.py, control/policy.py; defaults = policy.DEFAULT_*).
    subtract_charger_load: bool = False
    treat_generation_as_grid_delivery: bool = False
    green_energy_amps_offset: float = 0.0  # A; + means more consumption
    green_energy_latch_min: float = 0.0  # minutes; 0 = off
    green_energy_safe_amps: float = 0.0  # A while the energy reading is stale or missing
    green_energy_start_margin_amps: float = 0.0
    green_energy_start_delay_s: float = 60.0
    green_energy_min_on_time_s: float = 1800.0
    green_energy_min_off_time_s: float = 60.0
    green_energy_smoothing_s: float = 0.0  # 0 = off
    green_energy_raise_delay_s: float = 20.0

    def raw_section(self, *keys: str) -> Mapping[str, Any]:
        """``raw[k1][k2]...`` or an empty mapping when absent or not a section."""
        return _section(self.raw, *keys)


@dataclass(frozen=True)
class LoadedConfig:
    settings: AppConfig
    warnings: tuple[Problem, ...]
    path: str | None


# Values a setting may take when its key is absent.
_REQUIRED = object()
_ABSENT = object()

# TWCManager's level numbers: INFO2..INFO9 = 19..12, DEBUG2 = 9.
_LOG_LEVEL_NAMES = {
    "CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20,
    **{f"INFO{n}": 21 - n for n in range(2, 10)},
    "DEBUG": 10, "DEBUG2": 9,
}  # fmt: skip
# TWCManager's deprecated debugLevel 0..11 -> logLevel.
_DEBUG_LEVEL_TO_LOG_LEVEL = (40, 20, 19, 18, 17, 16, 15, 14, 13, 12, 10, 9)
_LOG_FORMATS = ("auto", "console", "json")
_TWC_MIN_AMPS = 5  # lowest current a Gen2 TWC accepts (protocol v1; v2 says 6)
_TWC_MAX_AMPS = 80  # highest current a Gen2 TWC delivers (a 100 A breaker x 0.8)
_MAX_TWCS = 6  # slaves one master can hold on the bus
_MAX_AMPS_ALL_TWCS = _MAX_TWCS * _TWC_MAX_AMPS  # 480 A: beyond it a limit is a typo
_MAX_WAIT_S = 86400.0  # s; a day: a longer delay, latch or timeout is a typo
_MAX_BAUD = 4_000_000  # beyond any RS-485 adapter
_SECONDS = f"seconds from 0 to {_MAX_WAIT_S:g} (a day)"
_TWC_BAUD = 9600
_FRAME_DELIMITER = 0xC0
_ESCAPE_BYTE = 0xDB
_PYSERIAL_URL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "alt", "hwgrep", "cp2110")


def _anything(_: float) -> bool:
    return True


def _seconds_ok(value: float) -> bool:
    return 0 <= value <= _MAX_WAIT_S


def _amps_up_to(limit: float) -> Callable[[float], bool]:
    return lambda value: 0 <= value <= limit


class _Section:
    """Typed reads from one section; a bad value is reported and read back as None."""

    def __init__(self, values: Mapping[str, Any], path: str, report: _Report) -> None:
        self.values = values
        self.path = path
        self.report = report

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}"

    def raw(self, key: str) -> Any:
        value = self.values.get(key)
        return _ABSENT if value is None else value  # null means "use the default"

    def bad(self, key: str, value: Any, expected: str) -> None:
        self.report.error(self.key_path(key), f"expected {expected}, got {describe_value(value)}")

    def number(
        self,
        key: str,
        default: Any,
        expected: str,
        valid: Callable[[float], bool] = _anything,
        from_string: bool = False,
    ) -> Any:
        """A finite number as float; ``default`` when absent (or ``_REQUIRED``)."""
        value = self.raw(key)
        if value is _ABSENT:
            if default is _REQUIRED:
                self.report.error(self.key_path(key), f"missing; expected {expected}")
            return None if default is _REQUIRED else default
        number = _as_number(value, from_string)
        if number is None or not valid(number):
            self.bad(key, value, expected)
            return None
        return float(number)

    def whole(
        self,
        key: str,
        default: Any,
        expected: str,
        valid: Callable[[float], bool] = _anything,
        from_string: bool = False,
    ) -> int | None:
        number = self.number(key, default, expected, valid, from_string)
        if number is None or number == int(number):
            return None if number is None else int(number)
        self.bad(key, self.values[key], expected)
        return None

    def amps(
        self, key: str, default: Any, expected: str, valid: Callable[[float], bool] = _anything
    ) -> int | None:
        """Whole amps; a fractional value is rounded down, the safe direction."""
        number = self.number(key, default, expected, valid)
        if number is None:
            return None
        if number != int(number):
            self.report.warn(
                self.key_path(key),
                f"{describe_value(number)} A rounded down to "
                f"{math.floor(number)} A (twcmaster works in whole amps)",
            )
        return math.floor(number)

    def boolean(self, key: str, default: bool) -> bool | None:
        value = self.raw(key)
        if value is _ABSENT:
            return default
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):  # TWCManager's settings use 0/1
            return bool(value)
        self.bad(key, value, "true or false")
        return None

    def text(self, key: str, default: str) -> str | None:
        value = self.raw(key)
        if value is _ABSENT:
            return default
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.bad(key, value, "a non-empty string")
        return None

    def hex_bytes(self, key: str, default: str | None, size: int) -> int | None:
        value = self.raw(key)
        if value is _ABSENT:
            value = default
        if value is None:
            return None
        digits = 2 * size
        if isinstance(value, str) and re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", value):
            return int(value, 16)
        example = "7777"[:digits]
        self.bad(key, value, f'{digits} hex digits in quotes, like "{example}"')
        return None


def _as_number(value: Any, from_string: bool) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and from_string:
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _parse_app_config(data: Mapping[str, Any], base_dir: str, report: _Report) -> AppConfig | None:
    cfg = _Section(_section(data, "config"), "config", report)
    wiring = _parse_wiring(cfg)
    per_twc = wiring.max_amps_per_twc if wiring else None
    min_amps = _parse_min_amps(cfg, per_twc)
    max_amps = cfg.amps(
        "maxAmpsPerTWC", 32, f"a number of amps from 1 to {_TWC_MAX_AMPS}",
        lambda x: 1 <= x <= _TWC_MAX_AMPS,
    )  # fmt: skip
    fields = dict(
        wiring=wiring,
        min_amps_per_twc=min_amps,
        max_amps_per_twc=max_amps,
        non_scheduled_amps_max=_parse_non_scheduled(cfg, wiring),
        start_stop_delay_s=cfg.number("startStopDelay", 60.0, _SECONDS, _seconds_ok),
        default_voltage_v=cfg.number(
            "defaultVoltage", 240.0, "volts between 50 and 500", lambda x: 50 <= x <= 500
        ),
        number_of_phases=cfg.whole("numberOfPhases", 1, "1, 2 or 3", lambda x: 1 <= x <= 3),
        settings_path=_parse_settings_path(cfg, base_dir),
        log_level=_parse_log_level(cfg),
        display_milliseconds=cfg.boolean("displayMilliseconds", False),
        spike_amps_proactively=cfg.boolean("spikeAmpsProactively", True),
        spike_amps_reactively=cfg.boolean("spikeAmpsReactively", True),
        spike_amps=_parse_spike_amps(cfg, per_twc),
        green_energy_flex_amps=cfg.number(
            "greenEnergyFlexAmps",
            0.0,
            f"a number of amps from 0 to {_MAX_AMPS_ALL_TWCS}",
            _amps_up_to(_MAX_AMPS_ALL_TWCS),
        ),  # fmt: skip
        use_flex_amps_to_start_charge=cfg.boolean("useFlexAmpsToStartCharge", False),
        **_parse_green(cfg, wiring),
        rs485=_parse_rs485(data, report),
        log_format=_parse_log_format(data, report),
    )
    _check_fake_master(cfg)
    if report.errors:
        return None
    return AppConfig(**fields, raw=MappingProxyType(copy.deepcopy(dict(data))))


def _parse_green(cfg: _Section, wiring: WiringConfig | None) -> dict[str, Any]:
    limit = wiring.max_amps_all_twcs if wiring else _MAX_AMPS_ALL_TWCS
    any_amps = f"a number of amps from 0 to {_MAX_AMPS_ALL_TWCS}"
    subtract = cfg.boolean("subtractChargerLoad", False)
    treat = cfg.boolean("treatGenerationAsGridDelivery", False)
    if treat and subtract is False:
        cfg.report.warn(
            cfg.key_path("treatGenerationAsGridDelivery"),
            "an export meter's value already has the chargers' load taken off; without "
            '"subtractChargerLoad": true it is not added back, so the budget falls as the car '
            "draws more (TWCManager behaves the same); set subtractChargerLoad too",
        )
    return dict(
        subtract_charger_load=subtract,
        treat_generation_as_grid_delivery=treat,
        green_energy_amps_offset=cfg.number(
            "greenEnergyAmpsOffset", 0.0,
            f"a number of amps from -{_MAX_AMPS_ALL_TWCS} to {_MAX_AMPS_ALL_TWCS}",
            lambda x: abs(x) <= _MAX_AMPS_ALL_TWCS,
        ),
        green_energy_latch_min=cfg.number(
            "greenEnergyLatch", 0.0, f"minutes from 0 to {_MAX_WAIT_S / 60:g} (a day)",
            lambda x: 0 <= x <= _MAX_WAIT_S / 60,
        ),
        green_energy_safe_amps=cfg.number(
            "greenEnergySafeAmps", 0.0,
            f"amps from 0 to wiringMaxAmpsAllTWCs ({limit:g})", _amps_up_to(limit),
        ),
        green_energy_start_margin_amps=cfg.number(
            "greenEnergyStartMarginAmps", 0.0, any_amps, _amps_up_to(_MAX_AMPS_ALL_TWCS)
        ),
        green_energy_start_delay_s=cfg.number(
            "greenEnergyStartDelay", 60.0, _SECONDS, _seconds_ok
        ),
        green_energy_min_on_time_s=cfg.number(
            "greenEnergyMinOnTime", 1800.0, _SECONDS, _seconds_ok
        ),
        green_energy_min_off_time_s=cfg.number(
            "greenEnergyMinOffTime", 60.0, _SECONDS, _seconds_ok
        ),
        green_energy_smoothing_s=cfg.number(
            "greenEnergySmoothingSeconds", 0.0, _SECONDS, _seconds_ok
        ),
        green_energy_raise_delay_s=cfg.number(
            "greenEnergyRaiseDelay", 20.0, _SECONDS, _seconds_ok
        ),
    )  # fmt: skip


def _parse_wiring(cfg: _Section) -> WiringConfig | None:
    # Finite and physically possible: a limit of 1e308 A would make every check pass.
    all_twcs = cfg.amps(
        "wiringMaxAmpsAllTWCs",
        _REQUIRED,
        f"a number of amps from 1 to {_MAX_AMPS_ALL_TWCS} (80 % of the breaker rating; "
        f"at most {_MAX_TWCS} TWCs x {_TWC_MAX_AMPS} A)",
        lambda x: 1 <= x <= _MAX_AMPS_ALL_TWCS,
    )
    per_twc = cfg.amps(
        "wiringMaxAmpsPerTWC", _REQUIRED,
        f"a number of amps from 1 to {_TWC_MAX_AMPS} (80 % of the breaker rating; a TWC "
        f"delivers at most {_TWC_MAX_AMPS} A)",
        lambda x: 1 <= x <= _TWC_MAX_AMPS,
    )  # fmt: skip
    if all_twcs is None or per_twc is None:
        return None
    if per_twc > all_twcs:
        cfg.report.warn(
            cfg.key_path("wiringMaxAmpsPerTWC"),
            f"{per_twc} A is above wiringMaxAmpsAllTWCs ({all_twcs} A); using {all_twcs} A",
        )
        per_twc = all_twcs
    return WiringConfig(max_amps_all_twcs=all_twcs, max_amps_per_twc=per_twc)


def _parse_min_amps(cfg: _Section, per_twc: int | None) -> int | None:
    expected = (
        f"a number of amps from {_TWC_MIN_AMPS} (the lowest a TWC accepts) to {_TWC_MAX_AMPS}"
    )
    min_amps = cfg.amps(
        "minAmpsPerTWC", 12, expected, lambda x: _TWC_MIN_AMPS <= x <= _TWC_MAX_AMPS
    )
    if min_amps is not None and per_twc is not None and min_amps > per_twc:
        given = "" if "minAmpsPerTWC" in cfg.values else " (the default)"
        # An error, not TWCManager's warning: nothing would ever charge, and TWCManager's
        # sample (6 A placeholder wiring, 12 A floor) gets here only if the wiring was not set.
        cfg.report.error(
            cfg.key_path("minAmpsPerTWC"),
            f"{min_amps} A{given} is above wiringMaxAmpsPerTWC ({per_twc} A), so no TWC would "
            "ever be offered current; lower minAmpsPerTWC or set the wiring limits of your "
            "circuit",
        )
        return None
    return min_amps


def _parse_non_scheduled(cfg: _Section, wiring: WiringConfig | None) -> int | None:
    if wiring is None:
        return None
    limit = wiring.max_amps_all_twcs
    return cfg.amps(
        "nonScheduledAmpsMax", None, f"amps from 0 to wiringMaxAmpsAllTWCs ({limit})",
        lambda x: 0 <= x <= limit,
    )  # fmt: skip


def _parse_spike_amps(cfg: _Section, per_twc: int | None) -> int | None:
    expected = (
        f"a number of amps from {_TWC_MIN_AMPS} to {_TWC_MAX_AMPS}, or null for the built-in "
        "default"
    )
    spike = cfg.amps("spikeAmps", None, expected, lambda x: _TWC_MIN_AMPS <= x <= _TWC_MAX_AMPS)
    if spike is not None and per_twc is not None and spike > per_twc:
        cfg.report.warn(
            cfg.key_path("spikeAmps"),
            f"{spike} A is above wiringMaxAmpsPerTWC; using {per_twc} A",
        )
        return per_twc
    return spike


def _parse_settings_path(cfg: _Section, base_dir: str) -> str | None:
    path = cfg.text("settingsPath", base_dir)
    return None if path is None else os.path.normpath(os.path.join(base_dir, path))


def _parse_log_level(cfg: _Section) -> int | None:
    expected = 'a level number 1..50 (TWCManager\'s 9..30 included) or a name like "INFO"'
    value = cfg.raw("logLevel")
    if value is _ABSENT:
        return _legacy_debug_level(cfg)
    if "debugLevel" in cfg.values:
        cfg.report.warn(cfg.key_path("debugLevel"), "ignored because logLevel is set")
    if isinstance(value, str) and value.strip().upper() in _LOG_LEVEL_NAMES:
        return _LOG_LEVEL_NAMES[value.strip().upper()]
    return cfg.whole("logLevel", 20, expected, lambda x: 1 <= x <= 50)


def _legacy_debug_level(cfg: _Section) -> int | None:
    expected = "a number 0..11 (more counts as 11)"
    debug = cfg.number("debugLevel", None, expected, lambda x: x >= 0)
    if debug is None:
        return 20
    level = _DEBUG_LEVEL_TO_LOG_LEVEL[min(max(math.ceil(debug), 0), 11)]
    cfg.report.warn(
        cfg.key_path("debugLevel"),
        f'deprecated; using it as "logLevel": {level} (write that instead)',
    )
    return level


def _check_fake_master(cfg: _Section) -> None:
    value = cfg.raw("fakeMaster")
    if value is _ABSENT or (type(value) is int and value == 1):
        return
    meanings = {0: " (pretend to be a slave)", 2: " (listen only)"}
    meaning = meanings.get(value, "") if type(value) is int else ""
    cfg.report.error(
        cfg.key_path("fakeMaster"),
        f"{describe_value(value)}{meaning} is not supported; twcmaster supports only 1 "
        "(act as the master of the bus)",
    )


def _parse_rs485(data: Mapping[str, Any], report: _Report) -> RS485Config | None:
    bus = _Section(_section(data, "interface", "RS485"), "interface.RS485", report)
    legacy = _Section(_section(data, "config"), "config", report)
    port = _parse_port(bus, legacy)
    baud = _parse_baud(bus, legacy)
    twcid = bus.hex_bytes("masterTWCID", "7777", size=2)
    trailer = bus.hex_bytes("trailerByte", None, size=1)
    fields = dict(
        enabled=bus.boolean("enabled", True),
        port=port,
        baud=baud,
        slave_timeout_s=bus.number(
            "slaveTimeout",
            26.0,
            f"seconds > 0, at most {_MAX_WAIT_S:g} (a day)",
            lambda x: 0 < x <= _MAX_WAIT_S,
        ),  # fmt: skip
        master_twcid=_check_master_twcid(bus, twcid),
        master_sign=bus.hex_bytes("masterSign", "77", size=1),
        trailer_byte=trailer,
    )
    if trailer == _FRAME_DELIMITER:
        report.error(bus.key_path("trailerByte"), '"C0" would open a new frame; use "FE" or null')
        return None
    if any(value is None for key, value in fields.items() if key != "trailer_byte"):
        return None
    return RS485Config(**fields)


def _parse_port(bus: _Section, legacy: _Section) -> str | None:
    source = bus if bus.raw("port") is not _ABSENT else legacy
    key = "port" if source is bus else "rs485adapter"
    if source is legacy and legacy.raw(key) is not _ABSENT:
        legacy.report.warn(
            legacy.key_path(key), "old place for the port; move it to interface.RS485.port"
        )
    port = source.text(key, "/dev/ttyUSB0")
    if port is None:
        return None
    if "://" not in port:
        if port.startswith("/"):
            return port
        source.bad(key, port, "a device path like /dev/ttyUSB0 or a URL like socket://host:port")
        return None
    problem = _port_url_problem(port)
    if problem:
        source.bad(key, port, problem)
        return None
    return port


def _port_url_problem(url: str) -> str | None:
    """Why pyserial would refuse this URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in _PYSERIAL_URL_SCHEMES:
        return f"a device path or a pyserial URL ({', '.join(_PYSERIAL_URL_SCHEMES)})"
    if parts.scheme in ("socket", "rfc2217"):
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            return f"{parts.scheme}://host:port with a port from 1 to 65535"
    return None


def _parse_baud(bus: _Section, legacy: _Section) -> int | None:
    source = bus if bus.raw("baud") is not _ABSENT else legacy
    if source is legacy and legacy.raw("baud") is not _ABSENT:
        legacy.report.warn(
            "config.baud", "old place for the baud rate; move it to interface.RS485.baud"
        )
    # pyserial takes "9600" as well as 9600, so TWCManager configs may hold either.
    baud = source.whole(
        "baud", _TWC_BAUD, "a baud rate like 9600", lambda x: 0 < x <= _MAX_BAUD, True
    )
    if baud is not None and baud != _TWC_BAUD:
        source.report.warn(
            source.key_path("baud"),
            f"{baud}: TWCs talk at {_TWC_BAUD} baud; "
            "change it only for an adapter that converts the rate",
        )
    return baud


def _check_master_twcid(bus: _Section, twcid: int | None) -> int | None:
    if twcid is None:
        return None
    path = bus.key_path("masterTWCID")
    if twcid == 0:
        bus.report.error(
            path,
            '"0000" cannot be the master ID: slaves have been seen '
            'addressing 0000, so it does not identify us; the default is "7777"',
        )
        return None
    for byte in (twcid >> 8, twcid & 0xFF):
        if byte in (_FRAME_DELIMITER, _ESCAPE_BYTE):
            role = "frame delimiter" if byte == _FRAME_DELIMITER else "escape byte"
            bus.report.error(
                path,
                f'"{twcid:04X}" contains {byte:02X}, the {role}: every '
                "frame carrying the ID would need escaping; choose another ID",
            )
            return None
    return twcid


def _parse_log_format(data: Mapping[str, Any], report: _Report) -> str | None:
    log = _Section(_section(data, "logging"), "logging", report)
    value = log.raw("format")
    if value is _ABSENT:
        return "auto"
    if isinstance(value, str) and value in _LOG_FORMATS:
        return value
    log.bad("format", value, " or ".join(f'"{name}"' for name in _LOG_FORMATS))
    return None


# ----------------------------------------------------------------------- helpers


def _section(data: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    node: Any = data
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a value")


def describe_value(value: Any) -> str:
    """A value as the user wrote it in JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------ entry points


def default_config_path() -> str:
    """The commented default shipped with the package (a copy of etc/twcmanager/config.json)."""
    return str(Path(__file__).with_name("data") / "config.json")


def config_from_dict(data: dict, base_dir: str) -> LoadedConfig:
    """Validate parsed config data; relative paths and the default settingsPath use base_dir."""
    return _load(data, base_dir, path=None)


def load_config(path: str | os.PathLike) -> LoadedConfig:
    """Read, parse and validate a config file; raise ConfigError listing every problem."""
    path = os.fspath(path)
    try:
        text = read_regular_file(path, CONFIG_MAX_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", (
            f"{path}: no such file. Start from the shipped default: copy "
            f"{default_config_path()} (etc/twcmanager/config.json in the source tree) "
            f"to {path}, then set the wiring limits for your breaker."
        ))]) from None  # fmt: skip
    except FileRejectedError as exc:
        raise ConfigError(
            [Problem("", f"{path}: cannot use it as the config file: {exc}")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("", f"{path}: cannot read the file: {exc}")]) from None
    data = parse_config_text(text, source=path)
    return _load(data, os.path.dirname(os.path.abspath(path)), path=path)


class FileRejectedError(ValueError):
    """The path opens, but not to a file we read: not a regular file, or too large."""


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The content of a regular file of at most ``max_bytes``; FileRejectedError otherwise.

    The checks are made on the opened descriptor, so the file cannot be swapped between a
    check and the open. O_NONBLOCK keeps the open of a FIFO from waiting for a writer (and
    does nothing to a regular file); nothing but a regular file is read (a symlink to
    /dev/zero never ends). OSError (FileNotFoundError ...) passes through.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRejectedError(f"not a regular file but {_file_kind(path, mode)}")
        chunks = []
        left = max_bytes + 1  # one byte more than allowed tells "too large" from "just fits"
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        if left == 0:
            raise FileRejectedError(f"larger than {_size_text(max_bytes)}, the limit for it")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _file_kind(path: str | os.PathLike, mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((text for test, text in kinds if test(mode)), "not a file")
    target = os.path.realpath(path)  # for the message only
    return f"{kind} ({target})" if os.path.islink(path) else kind


def _size_text(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    return f"{size >> 10} KiB" if size % (1 << 10) == 0 else f"{size} bytes"


def _check_sources(data: Mapping[str, Any], report: _Report) -> None:
    """Each energy source's own rules (required host, ids, intervals), by key path."""
    from twcmaster.sources import SOURCE_MODULES
    from twcmaster.sources.registry import check_sources  # imports no network library

    sources = data.get("sources")
    if not isinstance(sources, Mapping):
        return
    # Sections of sources twcmaster does not have (yet) are the "not used yet" warnings of
    # _warn_unused, and unknown names are already errors: check the ones twcmaster runs.
    ours = {name: value for name, value in sources.items() if name in SOURCE_MODULES}
    already = {problem.key_path for problem in report.errors}
    for key_path, message in [*check_sources(ours), *_source_timing_bounds(ours)]:
        if key_path not in already:
            report.error(key_path, message)
            already.add(key_path)


def _source_timing_bounds(sources: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The upper bound registry.check_timing lacks: an interval of 1e308 s is a typo."""
    from twcmaster.sources.registry import check_number

    for name, section in sources.items():
        if isinstance(section, Mapping) and section.get("enabled") is True:
            for key in ("interval", "timeout", "maxAge"):
                for _, message in check_number(section, key, maximum=_MAX_WAIT_S, unit="seconds"):
                    yield f"sources.{name}.{key}", message


def _load(data: Mapping[str, Any], base_dir: str, path: str | None) -> LoadedConfig:
    if not isinstance(data, Mapping):
        raise ConfigError([Problem("", f"expected a {{...}} object, got {_kind(data)}")], path)
    report = _Report()
    _check_keys(data, _KNOWN_KEYS, "", report, _policy_config_refs(data))
    _check_sources(data, report)
    _warn_unused(data, report)
    settings = _parse_app_config(data, base_dir, report)
    if settings is None or report.errors:
        raise ConfigError(report.errors, path, tuple(report.warnings))
    return LoadedConfig(settings=settings, warnings=tuple(report.warnings), path=path)
