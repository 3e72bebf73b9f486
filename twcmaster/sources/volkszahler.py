"""Volkszähler middleware on the local network (TWCManager's ``Volkszahler`` source).

Config ``sources.Volkszahler`` (TWCManager's keys):

* ``serverIP``, ``serverPort`` (default 80);
* ``uuidTotalGridW``: the channel of the grid meter, in W, positive when drawing from the
  grid, negative when feeding in (required);
* ``uuidPhotovoltaikW``: the channel of the PV generation, in W.

Each channel is read with ``GET /api/data.txt?from=now&uuid=<uuid>``, which answers its
latest value as text, ``"1234.5 W"``. As TWCManager computes it, the generation is the PV
value (0 when negative) and the consumption is PV plus grid (0 when negative); the grid value
is also the grid (+ import / - export). Without ``uuidPhotovoltaikW`` (TWCManager needs it),
this source measures the grid only. An answer not of the form ``<number> W`` is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, as_number, base_url, shown
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_port,
    check_required,
    read_port,
    read_text,
)

DEFAULT_PORT = 80
PATH = "/api/data.txt"
VALUE = re.compile(r"^\s*(\S+)\s*W\s*$")


class VolkszahlerSource(Source):
    name = "Volkszahler"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.url = base_url(host, read_port(config, "serverPort", DEFAULT_PORT), https=False)
        self.url += PATH
        self.uuid_grid = read_text(config, "uuidTotalGridW") or ""
        self.uuid_pv = read_text(config, "uuidPhotovoltaikW")
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the Volkszähler's IP address or host name")
        problems += check_port(config, "serverPort")
        problems += check_required(config, "uuidTotalGridW", "the grid meter channel's UUID")
        if config.get("uuidPhotovoltaikW") is not None:
            problems += check_required(config, "uuidPhotovoltaikW", "the PV channel's UUID")
        return problems

    def describe(self) -> str:
        return f"Volkszähler at {self.url}"

    def fetch(self) -> Reading:
        grid = self._channel(self.uuid_grid)
        if self.uuid_pv is None:
            return Reading.at_grid_meter(grid)
        pv = self._channel(self.uuid_pv)
        return Reading(generation_w=max(0.0, pv), consumption_w=max(0.0, pv + grid), grid_w=grid)

    def _channel(self, uuid: str) -> float:
        params = {"from": "now", "uuid": uuid}
        text = self.http.get_text(self.url, params=params)
        match = VALUE.match(text)
        request = f"GET {self.url}?uuid={uuid}"
        if match is None:
            raise self.http.error(
                request, f"unexpected answer: {shown(text, 60)}, expected '<number> W'"
            )
        try:
            return as_number(match.group(1), f"channel {uuid}")
        except ValueError as exc:
            raise self.http.error(request, f"unexpected answer: {exc}") from None
