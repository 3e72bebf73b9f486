"""TED (The Energy Detective) 5000/Pro on the local network (TWCManager's ``TED``).

Config ``sources.TED`` (TWCManager's keys): ``serverIP``, ``serverPort`` (default 80).

``GET /history/export.csv?T=1&D=0&M=1&C=1`` answers the latest minute of each MTU as CSV
lines, ``<MTU name>,<date time>,<kW>,<voltage>``; the line of the MTU named ``Solar`` gives
the generation (its kW, sign dropped as TWCManager does, times 1000). TED measures no
consumption here. An answer without a ``Solar`` line is an error (TWCManager kept the last
value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, as_number, base_url, shown
from twcmaster.sources.registry import Problem, check_host, check_port, read_port, read_text

DEFAULT_PORT = 80
PATH = "/history/export.csv"
PARAMS = {"T": "1", "D": "0", "M": "1", "C": "1"}
SOLAR_LINE = re.compile(r"^Solar,[^,]+,-?([^, ]+),", re.MULTILINE)


class TedSource(Source):
    name = "TED"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.url = base_url(host, read_port(config, "serverPort", DEFAULT_PORT), https=False)
        self.url += PATH
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the TED gateway's IP address or host name")
        return problems + check_port(config, "serverPort")

    def describe(self) -> str:
        return f"TED at {self.url}"

    def fetch(self) -> Reading:
        text = self.http.get_text(self.url, params=PARAMS)
        match = SOLAR_LINE.search(text)
        request = f"GET {self.url}"
        if match is None:
            raise self.http.error(
                request, f"unexpected answer: no 'Solar,' line in {shown(text, 80)}"
            )
        try:
            kw = as_number(match.group(1), "the Solar line's kW")
        except ValueError as exc:
            raise self.http.error(request, f"unexpected answer: {exc}") from None
        return Reading(generation_w=kw * 1000.0)
