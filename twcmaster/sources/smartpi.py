"""SmartPi (nD-enerserve) energy meters on the local network (TWCManager's ``SmartPi``).

Config ``sources.SmartPi`` (TWCManager's keys):

* ``serverIP``; ``serverPort`` (default 80; SmartPi's own API listens on 1080 unless a proxy
  serves it on 80, give the port your meter answers on);
* ``showConsumption``: also report the consumption (default false, as in TWCManager).

``GET /api/all/power/now`` answers ``{"datasets": [{"time": ..., "phases": [{"phase": 1,
"name": "phase 1", "values": [{"type": "power", "unity": "W", "info": "", "data": -1234.5}]},
...]}]}``. The meter sits at the grid connection: per phase, a negative ``data`` is power fed
into the grid, counted as generation (its magnitude), and a positive one is power drawn,
counted as consumption. As in TWCManager, set ``config.treatGenerationAsGridDelivery``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url, entries
from twcmaster.sources.registry import (
    Problem,
    check_flag,
    check_host,
    check_port,
    read_flag,
    read_port,
    read_text,
)

DEFAULT_PORT = 80
PATH = "/api/all/power/now"


class SmartPiSource(Source):
    name = "SmartPi"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.url = base_url(host, read_port(config, "serverPort", DEFAULT_PORT), https=False)
        self.url += PATH
        self.show_consumption = read_flag(config, "showConsumption", False)
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the SmartPi's IP address or host name")
        return problems + check_port(config, "serverPort") + check_flag(config, "showConsumption")

    def describe(self) -> str:
        return f"SmartPi at {self.url}"

    def fetch(self) -> Reading:
        generation, consumption = self.http.get_json(self.url, parse=_parse)
        return Reading(
            generation_w=generation, consumption_w=consumption if self.show_consumption else None
        )


def _parse(doc: Any) -> tuple[float, float]:
    datasets = entries(doc, "datasets")
    if not datasets:
        raise ShapeError("datasets is empty")
    fed = drawn = 0.0
    for index, phase in enumerate(entries(datasets[0], "phases")):
        values = entries(phase, "values")
        if not values or "data" not in values[0]:
            raise ShapeError(f"phases[{index}] has no values[0].data")
        watts = as_number(values[0]["data"], f"phases[{index}].values[0].data")
        if watts < 0:
            fed -= watts
        else:
            drawn += watts
    return fed, drawn
