"""IotaWatt energy monitors on the local network (TWCManager's ``IotaWatt`` source).

Config ``sources.IotaWatt`` (TWCManager's keys):

* ``serverIP``: the IotaWatt's address; twcmaster adds ``serverPort`` (default 80);
* ``outputConsumption``, ``outputGeneration``: the names of the IotaWatt *outputs* (set up
  in its web interface, in watts) that measure the house load and the solar generation;
  either may be left out, not both.

``GET /status?outputs`` answers ``{"outputs": [{"name": "Solar", "units": "Watts", "value":
3480.2}, ...]}``; each configured output's ``value`` is the figure. An output the IotaWatt
does not list (a renamed output), or a value that is not a number, is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url, entries
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_port,
    check_required,
    read_port,
    read_text,
)

PORT = 80
PATH = "/status"
OUTPUT_KEYS = {"consumption": "outputConsumption", "generation": "outputGeneration"}


class IotaWattSource(Source):
    name = "IotaWatt"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.url = base_url(host, read_port(config, "serverPort", PORT), https=False) + PATH
        self.outputs = {
            field: read_text(config, key)
            for field, key in OUTPUT_KEYS.items()
            if read_text(config, key) is not None
        }
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the IotaWatt's IP address or host name")
        problems += check_port(config, "serverPort")
        given = [key for key in OUTPUT_KEYS.values() if config.get(key) not in (None, "")]
        for key in given:
            problems += check_required(config, key, "the name of an IotaWatt output")
        if not given:
            problems.append(
                ("", "give outputConsumption and/or outputGeneration (IotaWatt output names)")
            )
        return problems

    def describe(self) -> str:
        names = ", ".join(f"{field} {name!r}" for field, name in self.outputs.items())
        return f"IotaWatt at {self.url}: {names}"

    def fetch(self) -> Reading:
        # "?outputs" is a bare flag, not key=value: part of the URL, not a parameter.
        return self.http.get_json(self.url + "?outputs", parse=self._parse)

    def _parse(self, doc: Any) -> Reading:
        outputs = {str(item.get("name")): item for item in entries(doc, "outputs")}
        values: dict[str, float] = {}
        for field, name in self.outputs.items():
            if name not in outputs:
                listed = ", ".join(sorted(outputs)) or "none"
                raise ShapeError(f"no output named {name!r} (outputs: {listed})")
            if "value" not in outputs[name]:
                raise ShapeError(f"output {name!r} has no 'value'")
            values[f"{field}_w"] = as_number(outputs[name]["value"], f"output {name!r}")
        return Reading(**values)
