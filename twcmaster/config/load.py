"""config.json -> typed, validated settings.

The file is TWCManager's ``/etc/twcmanager/config.json``: JSON plus ``#`` / ``//`` comment
lines, trailing ``#`` comments and trailing commas. Users migrate with the same file, so:

* every key TWCManager knows is accepted; the ones twcmaster does not use (yet) give a
  warning naming the key, never an error;
* a key nobody knows is an error with a "did you mean" suggestion (typos in a safety
  setting must not be ignored silently);
* every problem is collected and reported at once, each naming key path, value and
  what was expected.

This module reads the values (the ``config`` section, logging, the energy sources) into the
model; ``jsonc`` parses the text, ``schema`` checks the key names, ``rs485`` reads
``interface.RS485``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from twcmaster.config.defaults import DEFAULTS
from twcmaster.config.fields import ABSENT, REQUIRED, Section, section
from twcmaster.config.interfaces import parse_http, parse_mqtt_control, parse_mqtt_status
from twcmaster.config.jsonc import (
    CONFIG_MAX_BYTES,
    FileRejectedError,
    parse_config_text,
    read_regular_file,
)
from twcmaster.config.limits import (
    MAX_AMPS_ALL_TWCS,
    MAX_PRIORITY,
    MAX_TWCS,
    MAX_WAIT_S,
    TWC_MAX_AMPS,
    TWC_MIN_AMPS,
)
from twcmaster.config.logsettings import parse_log_file, parse_log_format
from twcmaster.config.model import AppConfig, LoadedConfig, WiringConfig
from twcmaster.config.policyparse import parse_policy_rules
from twcmaster.config.problems import ConfigError, Problem, Report, describe_value, kind
from twcmaster.config.rs485 import parse_rs485
from twcmaster.config.schema import check_keys, warn_unused
from twcmaster.config.vehicle import parse_charge_stop_mode, parse_tesla_api, parse_tesla_ble

if TYPE_CHECKING:
    from twcmaster.sources.registry import SourceSpec

# TWCManager's level numbers: INFO2..INFO9 = 19..12, DEBUG2 = 9.
_LOG_LEVEL_NAMES = {
    "CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20,
    **{f"INFO{n}": 21 - n for n in range(2, 10)},
    "DEBUG": 10, "DEBUG2": 9,
}  # fmt: skip
# TWCManager's deprecated debugLevel 0..11 -> logLevel.
_DEBUG_LEVEL_TO_LOG_LEVEL = (40, 20, 19, 18, 17, 16, 15, 14, 13, 12, 10, 9)
_SECONDS = f"seconds from 0 to {MAX_WAIT_S:g} (a day)"
MAX_GRID_AMPS = 5000  # A; a site's grid connection beyond it is a typo


def _seconds_ok(value: float) -> bool:
    return 0 <= value <= MAX_WAIT_S


def _amps_up_to(limit: float) -> Callable[[float], bool]:
    return lambda value: 0 <= value <= limit


def _parse_app_config(
    data: Mapping[str, Any], base_dir: str, report: Report, sources: tuple[SourceSpec, ...]
) -> AppConfig | None:
    cfg = Section(section(data, "config"), "config", report)
    wiring = _parse_wiring(cfg)
    per_twc = wiring.max_amps_per_twc if wiring else None
    min_amps = _parse_min_amps(cfg, per_twc)
    max_amps = cfg.amps(
        "maxAmpsPerTWC", DEFAULTS["maxAmpsPerTWC"], f"a number of amps from 1 to {TWC_MAX_AMPS}",
        lambda x: 1 <= x <= TWC_MAX_AMPS,
    )  # fmt: skip
    fields = dict(
        wiring=wiring,
        min_amps_per_twc=min_amps,
        max_amps_per_twc=max_amps,
        non_scheduled_amps_max=_parse_non_scheduled(cfg, wiring),
        start_stop_delay_s=_seconds(cfg, "startStopDelay"),
        default_voltage_v=_number(
            cfg, "defaultVoltage", "volts between 50 and 500", lambda x: 50 <= x <= 500
        ),
        number_of_phases=cfg.whole(
            "numberOfPhases", DEFAULTS["numberOfPhases"], "1, 2 or 3", lambda x: 1 <= x <= 3
        ),
        settings_path=_parse_settings_path(cfg, base_dir),
        log_level=_parse_log_level(cfg),
        display_milliseconds=_boolean(cfg, "displayMilliseconds"),
        spike_amps_proactively=_boolean(cfg, "spikeAmpsProactively"),
        spike_amps_reactively=_boolean(cfg, "spikeAmpsReactively"),
        spike_amps=_parse_spike_amps(cfg, per_twc),
        green_energy_flex_amps=_number(
            cfg,
            "greenEnergyFlexAmps",
            f"a number of amps from 0 to {MAX_AMPS_ALL_TWCS}",
            _amps_up_to(MAX_AMPS_ALL_TWCS),
        ),  # fmt: skip
        use_flex_amps_to_start_charge=_boolean(cfg, "useFlexAmpsToStartCharge"),
        **_parse_green(cfg, wiring),
        max_amps_allowed_from_grid=_parse_grid_cap(cfg, sources),
        rs485=parse_rs485(data, report),
        log_format=parse_log_format(data, report),
        log_file_dir=parse_log_file(data, report),
        mqtt_status=parse_mqtt_status(data, report),
        mqtt_control=parse_mqtt_control(data, report),
        http=parse_http(data, report),
        tesla_api=parse_tesla_api(data, report),
        tesla_ble=parse_tesla_ble(data, report),
        charge_stop_mode=parse_charge_stop_mode(data, report),
        policy_rules=parse_policy_rules(data, report),
    )
    _check_fake_master(cfg)
    if report.errors:
        return None
    if fields["tesla_api"] is not None:  # one reading of chargeStopMode, shown in both places
        mode = fields["charge_stop_mode"]
        fields["tesla_api"] = dataclasses.replace(fields["tesla_api"], charge_stop_mode=mode)
    return AppConfig(**fields, sources=sources, raw=MappingProxyType(copy.deepcopy(dict(data))))


def _parse_green(cfg: Section, wiring: WiringConfig | None) -> dict[str, Any]:
    limit = wiring.max_amps_all_twcs if wiring else MAX_AMPS_ALL_TWCS
    any_amps = f"a number of amps from 0 to {MAX_AMPS_ALL_TWCS}"
    subtract = _boolean(cfg, "subtractChargerLoad")
    treat = _boolean(cfg, "treatGenerationAsGridDelivery")
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
        green_energy_amps_offset=_number(
            cfg, "greenEnergyAmpsOffset",
            f"a number of amps from -{MAX_AMPS_ALL_TWCS} to {MAX_AMPS_ALL_TWCS}",
            lambda x: abs(x) <= MAX_AMPS_ALL_TWCS,
        ),
        green_energy_latch_min=_number(
            cfg, "greenEnergyLatch", f"minutes from 0 to {MAX_WAIT_S / 60:g} (a day)",
            lambda x: 0 <= x <= MAX_WAIT_S / 60,
        ),
        green_energy_safe_amps=_number(
            cfg, "greenEnergySafeAmps", f"amps from 0 to wiringMaxAmpsAllTWCs ({limit:g})",
            _amps_up_to(limit),
        ),
        green_energy_start_margin_amps=_number(
            cfg, "greenEnergyStartMarginAmps", any_amps, _amps_up_to(MAX_AMPS_ALL_TWCS)
        ),
        green_energy_start_delay_s=_seconds(cfg, "greenEnergyStartDelay"),
        green_energy_min_on_time_s=_seconds(cfg, "greenEnergyMinOnTime"),
        green_energy_min_off_time_s=_seconds(cfg, "greenEnergyMinOffTime"),
        green_energy_smoothing_s=_seconds(cfg, "greenEnergySmoothingSeconds"),
        green_energy_raise_delay_s=_seconds(cfg, "greenEnergyRaiseDelay"),
        green_energy_hold_wh=_number(
            cfg, "greenEnergyHoldWh", "watt-hours from 0 to 10000", lambda x: 0 <= x <= 10000
        ),
        green_energy_hold_growth=_number(
            cfg, "greenEnergyHoldGrowth", "a factor from 1 to 10", lambda x: 1 <= x <= 10
        ),
        green_energy_start_margin_per_start_amps=_number(
            cfg, "greenEnergyStartMarginPerStart", any_amps, _amps_up_to(MAX_AMPS_ALL_TWCS)
        ),
        green_energy_rotate_kwh=_number(
            cfg, "greenEnergyRotateKWh", "kilowatt-hours from 0.1 to 1000",
            lambda x: 0.1 <= x <= 1000,
        ),
        charge_priority=_parse_charge_priority(cfg),
    )  # fmt: skip


_PRIORITY_KEY = "a TWCID (4 hex digits, as the console shows it) or a VIN (17 characters)"


def _parse_charge_priority(cfg: Section) -> tuple[tuple[str, int], ...]:
    """chargePriority: {"0A1B": 2, "5YJ3E1EA7KF000001": 1}: who goes first, higher first."""
    raw = cfg.raw("chargePriority")
    if raw is ABSENT:
        return ()
    if not isinstance(raw, dict):
        cfg.bad("chargePriority", raw, f"an object of {_PRIORITY_KEY} -> a whole number")
        return ()
    priorities: dict[str, int] = {}
    for name, value in raw.items():
        key = str(name).strip().upper()
        path = f"{cfg.key_path('chargePriority')}.{name}"
        twcid = len(key) == 4 and all(c in "0123456789ABCDEF" for c in key)
        if not (twcid or (len(key) == 17 and key.isalnum())):
            cfg.report.error(path, f"expected {_PRIORITY_KEY}, got {name!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
            bound = MAX_PRIORITY
            cfg.report.error(
                path, f"expected a whole number from -{bound} to {bound}, got {value!r}"
            )
        else:
            priorities[key] = value
    return tuple(priorities.items())


def _parse_grid_cap(cfg: Section, sources: tuple[SourceSpec, ...]) -> float | None:
    """maxAmpsAllowedFromGrid: amps the whole site may import (control/gridcap.py)."""
    cap = _number(
        cfg, "maxAmpsAllowedFromGrid",
        f"amps from 0 to {MAX_GRID_AMPS} that the site (house and chargers) may draw from "
        "the grid, or null for no limit",
        lambda x: 0 <= x <= MAX_GRID_AMPS,
    )  # fmt: skip
    if cap is not None and not sources:
        cfg.report.warn(
            cfg.key_path("maxAmpsAllowedFromGrid"),
            "no energy source is enabled under sources, so twcmaster run never measures the "
            "grid draw: the chargers get at most greenEnergySafeAmps (0 A by default) in every "
            "policy; enable the meter that sees the house's consumption (simulate and demo use "
            "their simulated sky)",
        )
    return cap


def _number(cfg: Section, key: str, expected: str, valid: Callable[[float], bool]) -> float | None:
    """A number of the ``config`` section, its default from ``DEFAULTS``."""
    return cfg.number(key, DEFAULTS[key], expected, valid)


def _seconds(cfg: Section, key: str) -> float | None:
    return _number(cfg, key, _SECONDS, _seconds_ok)


def _boolean(cfg: Section, key: str) -> bool | None:
    return cfg.boolean(key, DEFAULTS[key])


def _parse_wiring(cfg: Section) -> WiringConfig | None:
    # Finite and physically possible: a limit of 1e308 A would make every check pass.
    all_twcs = cfg.amps(
        "wiringMaxAmpsAllTWCs",
        REQUIRED,
        f"a number of amps from 1 to {MAX_AMPS_ALL_TWCS} (80 % of the breaker rating; "
        f"at most {MAX_TWCS} TWCs x {TWC_MAX_AMPS} A)",
        lambda x: 1 <= x <= MAX_AMPS_ALL_TWCS,
    )
    per_twc = cfg.amps(
        "wiringMaxAmpsPerTWC", REQUIRED,
        f"a number of amps from 1 to {TWC_MAX_AMPS} (80 % of the breaker rating; a TWC "
        f"delivers at most {TWC_MAX_AMPS} A)",
        lambda x: 1 <= x <= TWC_MAX_AMPS,
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


def _parse_min_amps(cfg: Section, per_twc: int | None) -> int | None:
    expected = f"a number of amps from {TWC_MIN_AMPS} (the lowest a TWC accepts) to {TWC_MAX_AMPS}"
    min_amps = cfg.amps(
        "minAmpsPerTWC",
        DEFAULTS["minAmpsPerTWC"],
        expected,
        lambda x: TWC_MIN_AMPS <= x <= TWC_MAX_AMPS,
    )
    if min_amps is not None and per_twc is not None and min_amps > per_twc:
        given = "" if "minAmpsPerTWC" in cfg.values else " (the default)"
        if per_twc < TWC_MIN_AMPS:  # no floor fits: nothing could ever charge
            cfg.report.error(
                cfg.key_path("minAmpsPerTWC"),
                f"{min_amps} A{given} is above wiringMaxAmpsPerTWC ({per_twc} A), so no TWC "
                "would ever be offered current; set the wiring limits of your circuit",
            )
            return None
        # A warning, as in TWCManager, so its sample (6 A placeholder wiring, 12 A floor)
        # starts; the floor comes down to the wiring, never the wiring up to the floor.
        cfg.report.warn(
            cfg.key_path("minAmpsPerTWC"),
            f"{min_amps} A{given} is above wiringMaxAmpsPerTWC ({per_twc} A): the floor is "
            f"lowered to {per_twc} A; set the wiring limits of your circuit (6 A is "
            "TWCManager's sample placeholder) or lower minAmpsPerTWC",
        )
        return per_twc
    return min_amps


def _parse_non_scheduled(cfg: Section, wiring: WiringConfig | None) -> int | None:
    if wiring is None:
        return None
    limit = wiring.max_amps_all_twcs
    return cfg.amps(
        "nonScheduledAmpsMax", DEFAULTS["nonScheduledAmpsMax"],
        f"amps from 0 to wiringMaxAmpsAllTWCs ({limit})", lambda x: 0 <= x <= limit,
    )  # fmt: skip


def _parse_spike_amps(cfg: Section, per_twc: int | None) -> int | None:
    expected = (
        f"a number of amps from {TWC_MIN_AMPS} to {TWC_MAX_AMPS}, or null for the built-in default"
    )
    spike = cfg.amps(
        "spikeAmps", DEFAULTS["spikeAmps"], expected, lambda x: TWC_MIN_AMPS <= x <= TWC_MAX_AMPS
    )
    if spike is not None and per_twc is not None and spike > per_twc:
        cfg.report.warn(
            cfg.key_path("spikeAmps"),
            f"{spike} A is above wiringMaxAmpsPerTWC; using {per_twc} A",
        )
        return per_twc
    return spike


def _parse_settings_path(cfg: Section, base_dir: str) -> str | None:
    path = cfg.text("settingsPath", base_dir)
    return None if path is None else os.path.normpath(os.path.join(base_dir, path))


def _parse_log_level(cfg: Section) -> int | None:
    expected = 'a level number 1..50 (TWCManager\'s 9..30 included) or a name like "INFO"'
    value = cfg.raw("logLevel")
    if value is ABSENT:
        return _legacy_debug_level(cfg)
    if "debugLevel" in cfg.values:
        cfg.report.warn(cfg.key_path("debugLevel"), "ignored because logLevel is set")
    if isinstance(value, str) and value.strip().upper() in _LOG_LEVEL_NAMES:
        return _LOG_LEVEL_NAMES[value.strip().upper()]
    return cfg.whole("logLevel", DEFAULTS["logLevel"], expected, lambda x: 1 <= x <= 50)


def _legacy_debug_level(cfg: Section) -> int | None:
    expected = "a number 0..11 (more counts as 11)"
    debug = cfg.number("debugLevel", None, expected, lambda x: x >= 0)
    if debug is None:
        return DEFAULTS["logLevel"]
    level = _DEBUG_LEVEL_TO_LOG_LEVEL[min(max(math.ceil(debug), 0), 11)]
    cfg.report.warn(
        cfg.key_path("debugLevel"),
        f'deprecated; using it as "logLevel": {level} (write that instead)',
    )
    return level


def _check_fake_master(cfg: Section) -> None:
    value = cfg.raw("fakeMaster")
    if value is ABSENT or (type(value) is int and value == 1):
        return
    meanings = {0: " (pretend to be a slave)", 2: " (listen only)"}
    meaning = meanings.get(value, "") if type(value) is int else ""
    cfg.report.error(
        cfg.key_path("fakeMaster"),
        f"{describe_value(value)}{meaning} is not supported; twcmaster supports only 1 "
        "(act as the master of the bus)",
    )


# ------------------------------------------------------------------------ entry points


def default_config_path() -> str:
    """The commented default shipped with the package (a copy of etc/twcmanager/config.json)."""
    return str(Path(__file__).parent.parent / "data" / "config.json")


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


def _parse_sources(data: Mapping[str, Any], report: Report) -> tuple[SourceSpec, ...]:
    """The enabled energy sources, typed by the registry's schema (required host, ids,
    intervals ...); each problem by key path."""
    from twcmaster.sources import SOURCE_MODULES
    from twcmaster.sources.registry import (  # no network
        SourceConfigError,
        source_specs,
        source_warnings,
    )

    sources = data.get("sources")
    if not isinstance(sources, Mapping):
        return ()
    # Sections of sources twcmaster does not have (yet) are the "not used yet" warnings of
    # warn_unused, and unknown names are already errors: check the ones twcmaster runs.
    ours = {name: value for name, value in sources.items() if name in SOURCE_MODULES}
    for key_path, message in source_warnings(ours):
        report.warn(key_path, message)
    try:
        return source_specs(ours)
    except SourceConfigError as exc:
        already = {problem.key_path for problem in report.errors}
        for key_path, message in exc.problems:
            if key_path not in already:
                report.error(key_path, message)
                already.add(key_path)
        return ()


def _load(data: Mapping[str, Any], base_dir: str, path: str | None) -> LoadedConfig:
    if not isinstance(data, Mapping):
        raise ConfigError([Problem("", f"expected a {{...}} object, got {kind(data)}")], path)
    report = Report()
    check_keys(data, report)
    sources = _parse_sources(data, report)
    warn_unused(data, report)
    settings = _parse_app_config(data, base_dir, report, sources)
    if settings is None or report.errors:
        raise ConfigError(report.errors, path, tuple(report.warnings))
    return LoadedConfig(settings=settings, warnings=tuple(report.warnings), path=path)
