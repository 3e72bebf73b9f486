"""From the ``sources`` section of config.json to running ``Source`` objects, and the checks
that come first.

* ``check_sources(section)`` lists problems as ``(key_path, message)`` pairs, e.g.
  ``("sources.Fronius.serverIP", "required when the source is enabled: ...")``. It contacts
  nothing and loads no network library: it imports only the modules of enabled sources, and
  those import ``requests``/``paho`` on first use.
* ``source_warnings(section)`` lists, as ``(key_path, message)`` pairs, the TWCManager keys
  of enabled sources that twcmaster accepts but does not act on (each class's
  ``unused_keys``), with what the user loses;
* ``source_specs(section)`` is what config.json's loader keeps of the section: one
  ``SourceSpec`` (name, timing, its keys) per enabled source, after the checks above (a
  problem raises ``SourceConfigError``).
* ``build_sources(specs)`` makes one ``Source`` per spec (or per enabled section of a raw
  section, checked first).

Each source class owns its key rules: a classmethod ``check(config) -> [(key, message)]``
(keys relative to its section) and, optionally, ``default_interval_s`` (10 s unless the
class says otherwise, e.g. 90 s for the SolarEdge cloud quota; ``interval_default(config)``
when it depends on the keys). The keys every source takes
are checked here:

* ``interval`` (s between polls; default 10), ``timeout`` (s a request, and a whole poll, may
  take; default 5), ``maxAge`` (s after which the last reading counts as missing; default
  ``max(60, 3 * interval)``); each above 0 and at most ``MAX_TIMING_S`` (a day).

The ``read_*`` and ``check_*`` helpers below are shared by the source classes so that one
kind of key is read and checked one way everywhere (a port is 1..65535, given as a number or
as TWCManager's string ``"80"``).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from twcmaster.numbers import finite_number
from twcmaster.sources import SOURCE_MODULES
from twcmaster.sources.base import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_TIMEOUT_S,
    Source,
    SourceTiming,
)

Problem = tuple[str, str]

MIN_MAX_AGE_INTERVALS = 3  # default maxAge: this many intervals (at least DEFAULT_MAX_AGE_S)
MAX_TIMING_S = 86400.0  # s; a day: a longer interval, timeout or maxAge is a typo
TIMING_KEYS = ("interval", "timeout", "maxAge")

# TWCManager's energy sources (anchors §2.2); those without a twcmaster module are reported
# only when enabled (TWCManager's sample config lists them all, switched off).
TWCMANAGER_SOURCES = (
    "DSMR DSMRreader Efergy EmonCMS Enphase Fronius Growatt HASS IotaWatt Kostal MQTT openHAB"
    " OpenWeatherMap P1Monitor Powerwall2 SmartMe SmartPi SolarEdge SolarLog TED URL Victron"
    " Volkszahler"
).split()


class SourceConfigError(ValueError):
    """The sources section cannot be used; ``problems`` holds (key_path, message) pairs."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        super().__init__(f"{len(problems)} problem(s) in the sources section:\n{lines}")


@dataclass(frozen=True)
class SourceSpec:
    """One enabled source, checked: what ``build_sources`` makes a ``Source`` of."""

    name: str  # its section under ``sources`` (a key of SOURCE_MODULES), e.g. "Fronius"
    timing: SourceTiming
    #: The section's keys (read-only), which the source class reads itself.
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)


# ----------------------------------------------------------------------- public API


def check_sources(sources_section: Any) -> list[Problem]:
    """Every problem in ``sources``: unknown names, and for enabled sources, missing or bad
    keys. Disabled sections are only checked for their name and ``enabled`` switch."""
    if sources_section is None:
        return []
    if not isinstance(sources_section, Mapping):
        return [("sources", f"expected a section {{...}}, got {_describe(sources_section)}")]
    problems: list[Problem] = []
    for name, config in sources_section.items():
        path = f"sources.{name}"
        if not isinstance(config, Mapping):
            problems.append((path, f"expected a section {{...}}, got {_describe(config)}"))
            continue
        enabled = config.get("enabled", False)
        if not isinstance(enabled, bool):
            problems.append((f"{path}.enabled", f"expected true or false, got {enabled!r}"))
            continue
        if name not in SOURCE_MODULES:
            if name in TWCMANAGER_SOURCES:
                if enabled:
                    problems.append((path, _unsupported_message(name)))
            else:
                problems.append((path, _unknown_message(name)))
            continue
        if not enabled:
            continue
        try:
            cls = load_source_class(name)
        except (ImportError, AttributeError) as exc:
            problems.append((path, f"cannot load {SOURCE_MODULES[name]}: {exc}"))
            continue
        problems.extend(_prefixed(path, check_timing(config, cls.interval_default(config))))
        problems.extend(_prefixed(path, cls.check(config)))
    return problems


def source_warnings(sources_section: Any) -> list[Problem]:
    """The keys of enabled sources that are set but not used, with what the user loses."""
    if not isinstance(sources_section, Mapping):
        return []
    warnings: list[Problem] = []
    for name, config in sources_section.items():
        if name not in SOURCE_MODULES or not isinstance(config, Mapping):
            continue
        if config.get("enabled", False) is not True:
            continue
        try:
            cls = load_source_class(name)
        except (ImportError, AttributeError):
            continue  # check_sources reports it
        for key, loss in cls.unused_keys.items():
            if config.get(key) not in (None, ""):
                warnings.append((f"sources.{name}.{key}", f"ignored; you lose {loss}"))
    return warnings


def source_specs(sources_section: Mapping[str, Any] | None) -> tuple[SourceSpec, ...]:
    """One ``SourceSpec`` per enabled section, in the order of the file; SourceConfigError
    listing every problem (``check_sources``)."""
    problems = check_sources(sources_section)
    if problems:
        raise SourceConfigError(problems)
    specs: list[SourceSpec] = []
    for name, config in (sources_section or {}).items():
        if name in SOURCE_MODULES and config.get("enabled", False):
            timing = source_timing(config, load_source_class(name).interval_default(config))
            settings = MappingProxyType(copy.deepcopy(dict(config)))
            specs.append(SourceSpec(name=name, timing=timing, settings=settings))
    return tuple(specs)


def build_sources(
    sources: Iterable[SourceSpec] | Mapping[str, Any] | None,
) -> list[Source]:
    """One ``Source`` per spec (``AppConfig.sources``), in the order of the file. A raw
    ``sources`` section is checked first (``source_specs``)."""
    if sources is None or isinstance(sources, Mapping):
        sources = source_specs(sources)
    return [load_source_class(spec.name)(spec.settings, spec.timing) for spec in sources]


def load_source_class(name: str) -> type[Source]:
    """The class behind ``SOURCE_MODULES[name]`` (imports its module)."""
    module_name, _, class_name = SOURCE_MODULES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def source_timing(config: Mapping[str, Any], default_interval_s: float) -> SourceTiming:
    """``interval`` / ``timeout`` / ``maxAge`` of one section (checked values assumed)."""
    interval_s = read_number(config, "interval", default_interval_s)
    timeout_s = read_number(config, "timeout", DEFAULT_TIMEOUT_S)
    default_max_age_s = max(DEFAULT_MAX_AGE_S, MIN_MAX_AGE_INTERVALS * interval_s)
    max_age_s = read_number(config, "maxAge", default_max_age_s)
    return SourceTiming(interval_s=interval_s, timeout_s=timeout_s, max_age_s=max_age_s)


def check_timing(config: Mapping[str, Any], default_interval_s: float) -> list[Problem]:
    problems: list[Problem] = []
    for key in TIMING_KEYS:
        # Above 0, and at most a day: an interval of 1e308 s is a typo.
        problems += check_number(
            config, key, minimum=0, exclusive=True, maximum=MAX_TIMING_S, unit="seconds"
        )
    if not problems and "maxAge" in config:
        interval_s = read_number(config, "interval", default_interval_s)
        if read_number(config, "maxAge", 0) < interval_s:
            problems.append(
                (
                    "maxAge",
                    f"{config['maxAge']!r} is shorter than interval ({interval_s:g} s): "
                    "every reading would go stale before the next poll",
                )
            )
    return problems


# ------------------------------------------------------ shared key readers and checks


def read_number(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    if value is None or value == "":
        return float(default)
    number = finite_number(value)
    if number is None:
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return number


def read_port(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key)
    if value is None or value == "":
        return default
    port = _to_port(value)
    if port is None:
        raise ValueError(f"{key}: expected a port 1-65535, got {value!r}")
    return port


def read_flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def read_text(config: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = config.get(key)
    if value is None:
        return default
    text = str(value).strip()
    return text or default


def read_verify(config: Mapping[str, Any], default: bool) -> bool | str:
    """TLS verification for a local gateway: ``caFile`` (a CA or the gateway's own
    certificate) wins, else ``verifyTLS``, else ``default`` (False for self-signed
    gateways)."""
    ca_file = read_text(config, "caFile")
    if ca_file:
        return ca_file
    return read_flag(config, "verifyTLS", default)


def check_verify(config: Mapping[str, Any]) -> list[Problem]:
    return check_flag(config, "verifyTLS") + check_file(
        config, "caFile", "a PEM certificate to verify the gateway with"
    )


def check_required(config: Mapping[str, Any], key: str, what: str) -> list[Problem]:
    """A non-empty text (or number, for ids) is required."""
    value = config.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return [(key, f"required when the source is enabled: {what}")]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return [(key, f"expected {what}, got {_describe(value)}")]
    return []


def check_host(config: Mapping[str, Any], key: str, what: str) -> list[Problem]:
    """A host name or IP address (required), without scheme, port or path."""
    value = config.get(key)
    problems = check_required(config, key, what)
    if problems or not isinstance(value, str):
        return problems or [(key, f"expected {what}, got {_describe(value)}")]
    return _host_problems(key, value.strip(), what)


def _host_problems(key: str, host: str, what: str) -> list[Problem]:
    if "://" in host or "/" in host:
        return [(key, f"{host!r}: give only the host name or IP address, not a URL")]
    if any(ch.isspace() for ch in host):
        return [(key, f"{host!r}: a host name or IP address has no spaces")]
    if host.count(":") == 1:
        return [(key, f"{host!r}: put the port in serverPort, not in {key}")]
    return []


def check_hosts(config: Mapping[str, Any], key: str, what: str) -> list[Problem]:
    """A host, or a non-empty list of hosts (TWCManager's Fronius ``serverIP``)."""
    value = config.get(key)
    if isinstance(value, list):
        if not value:
            return [(key, f"required when the source is enabled: {what} (the list is empty)")]
        problems: list[Problem] = []
        for index, item in enumerate(value):
            item_key = f"{key}[{index}]"
            if not isinstance(item, str) or not item.strip():
                problems.append((item_key, f"expected {what}, got {_describe(item)}"))
            else:
                problems += _host_problems(item_key, item.strip(), what)
        return problems
    return check_host(config, key, what)


def read_api_url(config: Mapping[str, Any], default: str) -> str:
    """A cloud source's ``apiURL`` (twcmaster's key: a proxy or a test server), without a
    trailing slash; ``default`` when not set."""
    return (read_text(config, "apiURL") or default).rstrip("/")


def check_api_url(config: Mapping[str, Any]) -> list[Problem]:
    """``apiURL``, when set, is an http(s):// URL."""
    api_url = config.get("apiURL")
    if api_url is None or (
        isinstance(api_url, str) and api_url.startswith(("https://", "http://"))
    ):
        return []
    return [("apiURL", f"expected an http(s):// URL, got {api_url!r}")]


def check_port(config: Mapping[str, Any], key: str) -> list[Problem]:
    value = config.get(key)
    if value is None or value == "" or _to_port(value) is not None:
        return []
    return [(key, f"expected a port number 1-65535, got {_describe(value)}")]


def check_flag(config: Mapping[str, Any], key: str) -> list[Problem]:
    value = config.get(key)
    if value is None or isinstance(value, bool):
        return []
    return [(key, f"expected true or false, got {_describe(value)}")]


def check_number(
    config: Mapping[str, Any],
    key: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive: bool = False,
    unit: str = "",
) -> list[Problem]:
    value = config.get(key)
    if value is None:
        return []
    number = finite_number(value)
    suffix = f" {unit}" if unit else ""
    if number is None:
        return [(key, f"expected a number{suffix}, got {_describe(value)}")]
    if minimum is not None and (number <= minimum if exclusive else number < minimum):
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        return [(key, f"{value!r}: must be {bound}{suffix}")]
    if maximum is not None and number > maximum:
        return [(key, f"{value!r}: must be at most {maximum:g}{suffix}")]
    return []


def check_file(config: Mapping[str, Any], key: str, what: str) -> list[Problem]:
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, str) or not value.strip():
        return [(key, f"expected the path of {what}, got {_describe(value)}")]
    if not os.path.isfile(value):
        return [(key, f"{value!r}: no such file ({what})")]
    return []


# ------------------------------------------------------------------------- internals


def _prefixed(path: str, problems: list[Problem]) -> list[Problem]:
    return [(f"{path}.{key}" if key else path, message) for key, message in problems]


def _to_port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 1 <= value <= 65535:
        return value
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a section {...}"
    if isinstance(value, list):
        return "a list"
    return repr(value)


describe = _describe  # for the source classes' own messages


def _unknown_message(name: str) -> str:
    known = list(SOURCE_MODULES)
    by_lower = {k.lower(): k for k in known}
    suggestion = by_lower.get(name.lower())
    if suggestion is None:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    if suggestion:
        return f'unknown energy source; did you mean "{suggestion}"?'
    return f"unknown energy source; twcmaster reads: {', '.join(known)}"


def _unsupported_message(name: str) -> str:
    return (
        f"TWCManager's {name} source is not supported by twcmaster yet; "
        f"supported: {', '.join(SOURCE_MODULES)}"
    )
