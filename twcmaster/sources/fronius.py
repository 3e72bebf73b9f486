"""Fronius inverters through the local Solar API v1 (HTTP, no authentication).

Config ``sources.Fronius`` (TWCManager's keys):

* ``serverIP``: the inverter's (Datamanager's) address, or a list of them: values are summed,
  as TWCManager does for several inverters;
* ``serverPort``: default 80.

Each poll reads ``GetPowerFlowRealtimeData.fcgi?Scope=System`` from every inverter:

* ``Site.P_PV`` is the generation; it is null at night (the inverter sleeps): 0 W;
* ``Site.P_Load`` is the house load, negative W: consumption is its negation; null when no
  Smart Meter is fitted, and then this source measures generation only;
* ``Site.P_Grid`` is the grid (+ import / - export), null without a meter;
* ``Head.Status.Code`` other than 0 is an error (its ``Reason`` and ``UserMessage`` are shown).

The grid voltage comes from the first inverter's ``GetInverterRealtimeData.cgi``
(``UAC.Value``); it is optional, and a failure there (a sleeping inverter answers with a status
code) only leaves the voltage unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, base_url, number, pick
from twcmaster.sources.registry import Problem, check_hosts, check_port, read_port

DEFAULT_PORT = 80
POWER_FLOW_PATH = "/solar_api/v1/GetPowerFlowRealtimeData.fcgi"
POWER_FLOW_PARAMS = {"Scope": "System"}
INVERTER_PATH = "/solar_api/v1/GetInverterRealtimeData.cgi"
INVERTER_PARAMS = {"Scope": "Device", "DeviceID": "1", "DataCollection": "CommonInverterData"}
STATUS_OK = 0


class FroniusSource(Source):
    name = "Fronius"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        hosts = config.get("serverIP")
        hosts = hosts if isinstance(hosts, list) else [hosts]
        port = read_port(config, "serverPort", DEFAULT_PORT)
        self.base_urls = [base_url(str(host).strip(), port, https=False) for host in hosts]
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        return check_hosts(
            config, "serverIP", "the inverter's IP address or host name (or a list of them)"
        ) + check_port(config, "serverPort")

    def describe(self) -> str:
        return f"Fronius Solar API at {', '.join(self.base_urls)}"

    def fetch(self) -> Reading:
        flows = [
            self.http.get_json(
                url + POWER_FLOW_PATH, params=POWER_FLOW_PARAMS, parse=_parse_power_flow
            )
            for url in self.base_urls
        ]
        return Reading(
            generation_w=sum(flow[0] for flow in flows),
            consumption_w=_sum_or_none(flow[1] for flow in flows),
            grid_w=_sum_or_none(flow[2] for flow in flows),
            voltage_v=self._voltage(),
        )

    def _voltage(self) -> float | None:
        try:
            return self.http.get_json(
                self.base_urls[0] + INVERTER_PATH, params=INVERTER_PARAMS, parse=_parse_voltage
            )
        except SourceError:
            return None  # optional: an inverter asleep at night answers with a status code


def _check_status(doc: Any) -> None:
    status = pick(doc, "Head.Status")
    code = number(status, "Code")
    if code != STATUS_OK:
        words = [str(status.get(k) or "").strip() for k in ("Reason", "UserMessage")]
        detail = ": ".join(w for w in words if w)
        raise ShapeError(f"Fronius status code {code:g}" + (f": {detail}" if detail else ""))


def _parse_power_flow(doc: Any) -> tuple[float, float | None, float | None]:
    _check_status(doc)
    site = pick(doc, "Body.Data.Site")
    generation = number(site, "P_PV", allow_null=True) or 0.0  # null at night
    load = number(site, "P_Load", allow_null=True) if "P_Load" in site else None
    grid = number(site, "P_Grid", allow_null=True) if "P_Grid" in site else None
    return generation, (None if load is None else -load or 0.0), grid


def _parse_voltage(doc: Any) -> float | None:
    _check_status(doc)
    value = number(doc, "Body.Data.UAC.Value", allow_null=True)
    return value if value else None


def _sum_or_none(values: Any) -> float | None:
    """The sum, or None when any inverter lacks the value (a partial sum would mislead)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total
