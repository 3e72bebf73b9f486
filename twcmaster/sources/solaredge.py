"""SolarEdge through the cloud monitoring API, or on the local network over Modbus TCP.

Config ``sources.SolarEdge`` (TWCManager's keys): ``apiKey``, ``siteID`` for the cloud;
``inverterHost``, ``inverterPort`` (default 1502) and ``smartMeters`` for Modbus TCP, which
wins when ``inverterHost`` is set (as in TWCManager); ``pollMode`` (0 auto, 1 overview only,
2 power flow only) for the cloud. ``debugMode`` is accepted and unused. twcmaster adds
``apiURL`` (default ``https://monitoringapi.solaredge.com``, for a proxy or a test server).
The API allows about 300 requests a day per key, so this source polls every 90 s by default
(``interval``), like TWCManager's cache.

``GET /site/{siteID}/currentPowerFlow?api_key=...`` gives ``siteCurrentPowerFlow`` with
``unit`` ("W" or "kW", honoured), ``PV.currentPower`` (generation), ``LOAD.currentPower``
(consumption) and ``GRID.currentPower`` as a magnitude whose direction comes from the
``connections`` (``{"from": "GRID", "to": "Load"}`` is import; ``to: "Grid"`` is export; case
varies). A site without a consumption meter has no ``LOAD``: the source then switches, for
good, to ``GET /site/{siteID}/overview`` and its ``overview.currentPower.power`` (W) as the
generation, as TWCManager's poll-mode detection does.

HTTP 429 (quota used up) is a ``SourceError`` saying "rate limited"; the runner's back-off
then spaces the next attempts.

**Local Modbus TCP** (enabled on the inverter with SetApp; one client at a time): the inverter
speaks SunSpec at 40000 behind unit id 1 (read by ``sunspec.SunSpecReader``). The generation
is the inverter model's ``W`` times 10^``W_SF`` (solaredge_modbus's ``power_ac`` and
``power_ac_scale``), polled every 10 s by default. ``smartMeters`` lists the meters on the
inverter's bus as ``{"name": "Meter1", "type": "consumption"}`` or ``"type": "export"``;
``Meter1``..``Meter3`` are the first to third SunSpec meter models in the inverter's map (40188,
40362, 40536 when all three are fitted). A meter's ``W`` is taken as SolarEdge reports it:
consumption meters add up to the consumption; an export meter reads positive when power goes
to the grid, so with one the consumption is the consumption meters plus the generation minus
the export, and the grid is minus the export (+ import / - export). Without meters this
source measures generation only. A meter named but not found, or a value not implemented, is
an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.logs import get_logger
from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, entries, pick, section
from twcmaster.sources.registry import (
    Problem,
    check_api_url,
    check_host,
    check_port,
    check_required,
    describe,
    read_api_url,
    read_port,
    read_text,
)

DEFAULT_API_URL = "https://monitoringapi.solaredge.com"
DEFAULT_INTERVAL_S = 90.0  # ~300 requests/day quota: 960 polls a day would be refused
MODBUS_INTERVAL_S = 10.0  # the local inverter has no quota (TWCManager: 10 s)
MODBUS_PORT = 1502
MODBUS_UNIT = 1
METER_NAMES = ("Meter1", "Meter2", "Meter3")
METER_TYPES = ("consumption", "export")
POLL_MODES = (0, 1, 2)
UNIT_FACTORS = {"W": 1.0, "kW": 1000.0, "MW": 1_000_000.0}
GRID = "grid"
STATUS_HINTS = {
    403: "the API key was refused or cannot see this site: check apiKey and siteID",
    429: "rate limited: the monitoring API allows about 300 requests a day",
}

_log = get_logger(__name__)


class SolarEdgeSource(Source):
    name = "SolarEdge"
    default_interval_s = DEFAULT_INTERVAL_S

    unused_keys = {
        "debugMode": "TWCManager's file of every request and answer, for developers "
        "(twcmaster logs each failed request with its cause)",
    }

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.local = _is_local(config)
        self.modbus = None
        if self.local:
            from twcmaster.sources.modbus import ModbusReader
            from twcmaster.sources.sunspec import SunSpecReader

            host = read_text(config, "inverterHost") or ""
            port = read_port(config, "inverterPort", MODBUS_PORT)
            self.modbus = ModbusReader(self.name, host, port, timing)
            self.sunspec = SunSpecReader(self.modbus, base_address=40000)
            self.meters = [
                (str(m["name"]), str(m["type"])) for m in config.get("smartMeters") or []
            ]
        self.api_key = read_text(config, "apiKey") or ""
        self.site_id = read_text(config, "siteID") or ""
        api_url = read_api_url(config, DEFAULT_API_URL)
        self.site_url = f"{api_url}/site/{self.site_id}"
        poll_mode = int(config.get("pollMode") or 0)
        self.overview_only = poll_mode == 1  # also set once the site turns out to have no LOAD
        self.flow_only = poll_mode == 2
        self.http = HttpClient(self.name, timing, secrets=[self.api_key], status_hints=STATUS_HINTS)

    @classmethod
    def interval_default(cls, config: Mapping[str, Any]) -> float:
        return MODBUS_INTERVAL_S if _is_local(config) else DEFAULT_INTERVAL_S

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        mode = config.get("pollMode")
        problems: list[Problem] = []
        if mode is not None and (isinstance(mode, bool) or mode not in POLL_MODES):
            problems.append(("pollMode", f"expected 0 (auto), 1 or 2, got {describe(mode)}"))
        if _is_local(config):
            return problems + _check_local(config)
        problems += check_required(config, "apiKey", "the site's monitoring API key")
        problems += check_required(config, "siteID", "the monitoring site id")
        problems += check_api_url(config)
        return problems

    def describe(self) -> str:
        if self.modbus is not None:
            return f"SolarEdge inverter over Modbus TCP at {self.modbus.describe()}"
        return f"SolarEdge monitoring API, site {self.site_id}"

    def fetch(self) -> Reading:
        if self.modbus is not None:
            try:
                return self._fetch_local()
            except SourceError:
                self.sunspec.forget()
                raise
        if not self.overview_only:
            reading = self.http.get_json(
                f"{self.site_url}/currentPowerFlow",
                secret_params={"api_key": self.api_key},
                parse=_parse_power_flow,
            )
            if reading is not None:
                return reading
            if self.flow_only:
                raise SourceError(
                    f"{self.name}: pollMode is 2 but the site reports no consumption (no LOAD)"
                )
            self.overview_only = True
            _log.info(
                "SolarEdge site reports no consumption (no LOAD): reading generation from "
                "the site overview from now on",
                site=self.site_id,
            )
        generation = self.http.get_json(
            f"{self.site_url}/overview",
            secret_params={"api_key": self.api_key},
            parse=_parse_overview,
        )
        return Reading(generation_w=generation)

    def _fetch_local(self) -> Reading:
        power, voltage = self.sunspec.inverter(MODBUS_UNIT)
        generation = max(0.0, power)
        if not self.meters:
            return Reading(generation_w=generation, voltage_v=voltage)
        found = self.sunspec.meters(MODBUS_UNIT)
        consumption = export = 0.0
        export_metered = False
        for name, kind in self.meters:
            index = METER_NAMES.index(name)
            if index >= len(found):
                raise self.modbus.error(
                    f"unit {MODBUS_UNIT}",
                    f"smart meter {name} not found: the inverter reports {len(found)} meter(s)",
                )
            meter_w, meter_voltage = self.sunspec.meter(MODBUS_UNIT, found[index])
            voltage = meter_voltage or voltage
            if kind == "export":
                export_metered = True
                export += meter_w
            else:
                consumption += meter_w
        if export_metered:
            return Reading(
                generation_w=generation,
                consumption_w=max(0.0, consumption + generation - export),
                grid_w=-export,
                voltage_v=voltage,
            )
        return Reading(generation_w=generation, consumption_w=consumption, voltage_v=voltage)


def _is_local(config: Mapping[str, Any]) -> bool:
    host = config.get("inverterHost")
    return bool(host.strip()) if isinstance(host, str) else host is not None


def _check_local(config: Mapping[str, Any]) -> list[Problem]:
    problems = check_host(config, "inverterHost", "the inverter's IP address or host name")
    problems += check_port(config, "inverterPort")
    meters = config.get("smartMeters")
    if meters is None:
        return problems
    if not isinstance(meters, list):
        return problems + [("smartMeters", f"expected a list of meters, got {describe(meters)}")]
    for index, meter in enumerate(meters):
        key = f"smartMeters[{index}]"
        if not isinstance(meter, Mapping):
            problems.append((key, f'expected {{"name": ..., "type": ...}}, got {describe(meter)}'))
            continue
        if meter.get("name") not in METER_NAMES:
            problems.append(
                (
                    f"{key}.name",
                    f"expected one of {', '.join(METER_NAMES)}, got {describe(meter.get('name'))}",
                )
            )
        if meter.get("type") not in METER_TYPES:
            problems.append(
                (
                    f"{key}.type",
                    f"expected consumption or export, got {describe(meter.get('type'))}",
                )
            )
    return problems


def _parse_power_flow(doc: Any) -> Reading | None:
    """The reading, or None when the site has no consumption meter (no LOAD)."""
    flow = section(doc, "siteCurrentPowerFlow")
    if "LOAD" not in flow:
        return None
    unit = pick(flow, "unit")
    factor = UNIT_FACTORS.get(unit)
    if factor is None:
        raise ShapeError(f"unknown unit {unit!r}, expected one of {', '.join(UNIT_FACTORS)}")

    def power(node: str) -> float | None:
        if node not in flow:
            return None
        value = pick(flow, f"{node}.currentPower")
        return None if value is None else as_number(value, f"{node}.currentPower") * factor

    return Reading(
        generation_w=power("PV") or 0.0,
        consumption_w=power("LOAD"),
        grid_w=_grid(flow, power("GRID")),
    )


def _grid(flow: Mapping[str, Any], magnitude_w: float | None) -> float | None:
    """+ import / - export: the direction is the connection into or out of the grid."""
    if magnitude_w is None:
        return None
    if magnitude_w == 0:
        return 0.0
    connections = entries(flow, "connections") if "connections" in flow else []
    ends = [(str(c.get("from", "")).lower(), str(c.get("to", "")).lower()) for c in connections]
    if any(source == GRID for source, _ in ends):
        return abs(magnitude_w)
    if any(target == GRID for _, target in ends):
        return -abs(magnitude_w)
    return None  # power on the grid but no connection saying which way


def _parse_overview(doc: Any) -> float:
    value = pick(doc, "overview.currentPower.power")
    return as_number(value, "overview.currentPower.power") if value is not None else 0.0
