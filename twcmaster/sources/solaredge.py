"""SolarEdge through the cloud monitoring API.

Config ``sources.SolarEdge`` (TWCManager's keys): ``apiKey``, ``siteID``. twcmaster adds
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
then spaces the next attempts. TWCManager's local Modbus keys (``inverterHost``,
``inverterPort``, ``smartMeters``) are not supported yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.logs import get_logger
from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, entries, pick, section
from twcmaster.sources.registry import Problem, check_required, read_text

DEFAULT_API_URL = "https://monitoringapi.solaredge.com"
DEFAULT_INTERVAL_S = 90.0  # ~300 requests/day quota: 960 polls a day would be refused
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

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.api_key = read_text(config, "apiKey") or ""
        self.site_id = read_text(config, "siteID") or ""
        api_url = (read_text(config, "apiURL") or DEFAULT_API_URL).rstrip("/")
        self.site_url = f"{api_url}/site/{self.site_id}"
        self.overview_only = False  # set once the site turns out to have no LOAD meter
        self.http = HttpClient(self.name, timing, secrets=[self.api_key], status_hints=STATUS_HINTS)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        if not config.get("apiKey") and config.get("inverterHost"):
            return [
                (
                    "inverterHost",
                    "SolarEdge local Modbus is not supported by twcmaster yet; "
                    "use the monitoring API (apiKey and siteID)",
                )
            ]
        problems = check_required(config, "apiKey", "the site's monitoring API key")
        problems += check_required(config, "siteID", "the monitoring site id")
        api_url = config.get("apiURL")
        if api_url is not None and (
            not isinstance(api_url, str) or not api_url.startswith(("https://", "http://"))
        ):
            problems.append(("apiURL", f"expected an http(s):// URL, got {api_url!r}"))
        return problems

    def describe(self) -> str:
        return f"SolarEdge monitoring API, site {self.site_id}"

    def close(self) -> None:
        self.http.close()

    def fetch(self) -> Reading:
        if not self.overview_only:
            reading = self.http.get_json(
                f"{self.site_url}/currentPowerFlow",
                secret_params={"api_key": self.api_key},
                parse=_parse_power_flow,
            )
            if reading is not None:
                return reading
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
