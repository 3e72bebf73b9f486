"""Solar-Log data loggers on the local network (TWCManager's ``SolarLog`` source).

Config ``sources.SolarLog`` (TWCManager's keys):

* ``serverIP``: the Solar-Log's address (its "Open JSON interface" must be on); twcmaster
  adds ``serverPort`` (default 80);
* ``excludeConsumptionInverters``: a list of inverter numbers (as the Solar-Log counts them)
  whose output is taken off the consumption: devices the Solar-Log books as consumers that
  are really the chargers or other loads you do not want counted (default none).

``POST /getjp`` with ``{"801":{"170":null,"175":null}}`` answers the live figures:
``801.170.101`` is the generation (W) and ``801.170.110`` the consumption (W). With
``excludeConsumptionInverters``, as in TWCManager, a second ``POST /getjp`` with
``{"782":null}`` gives each inverter's current output (``782.<number>``, W), and the listed
ones are subtracted from the consumption; a listed number above 0 whose status in
``801.175.<position in the list>.101`` is 0 counts as switched off and is not subtracted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url, pick
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_port,
    describe,
    read_port,
    read_text,
)

PORT = 80
PATH = "/getjp"
LIVE_QUERY = {"801": {"170": None, "175": None}}
INVERTERS_QUERY = {"782": None}


class SolarLogSource(Source):
    name = "SolarLog"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.url = base_url(host, read_port(config, "serverPort", PORT), https=False) + PATH
        self.excluded = [int(n) for n in config.get("excludeConsumptionInverters") or []]
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the Solar-Log's IP address or host name")
        problems += check_port(config, "serverPort")
        excluded = config.get("excludeConsumptionInverters")
        if excluded is not None and (
            not isinstance(excluded, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in excluded)
        ):
            problems.append(
                (
                    "excludeConsumptionInverters",
                    f"expected a list of inverter numbers, got {describe(excluded)}",
                )
            )
        return problems

    def describe(self) -> str:
        return f"Solar-Log at {self.url}"

    def fetch(self) -> Reading:
        generation, consumption, active = self.http.post_json(
            self.url, LIVE_QUERY, parse=self._parse_live
        )
        if active:
            outputs = self.http.post_json(self.url, INVERTERS_QUERY, parse=_parse_inverters)
            for number in active:
                if number not in outputs:
                    raise self.http.error(
                        f"POST {self.url}", f"unexpected answer: no inverter {number} in 782"
                    )
                consumption -= outputs[number]
        return Reading(generation_w=generation, consumption_w=consumption)

    def _parse_live(self, doc: Any) -> tuple[float, float, list[int]]:
        live = pick(doc, "801.170")
        generation = as_number(pick(live, "101"), "801.170.101")
        consumption = as_number(pick(live, "110"), "801.170.110")
        active = []
        for position, number in enumerate(self.excluded):
            if number > 0:
                status = pick(doc, f"801.175.{position}.101")
                if as_number(status, f"801.175.{position}.101") == 0:
                    continue  # switched off: nothing to take off
            active.append(number)
        return generation, consumption, active


def _parse_inverters(doc: Any) -> dict[int, float]:
    outputs = pick(doc, "782")
    if not isinstance(outputs, Mapping):
        raise ShapeError("782 is not an object of inverter outputs")
    return {int(key): as_number(value, f"782.{key}") for key, value in outputs.items()}
