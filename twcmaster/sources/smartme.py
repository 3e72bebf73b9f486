"""smart-me meters through the smart-me cloud API (TWCManager's ``SmartMe`` source).

Config ``sources.SmartMe`` (TWCManager's keys): ``username``, ``password`` (the smart-me
account, sent with HTTP basic authentication) and ``serialNumber`` (the meter's serial
number). twcmaster adds ``apiURL`` (default ``https://smart-me.com``, for a proxy or a test
server).

``GET /api/DeviceBySerial?serial=<serialNumber>`` answers the meter's latest values, among
them ``ActivePower`` in ``ActivePowerUnit`` (``"kW"``, else watts). The meter sits at the
grid connection: a positive power is drawn from the grid (the consumption), a negative one is
fed in (reported as the generation, as TWCManager does: set
``config.treatGenerationAsGridDelivery``); the power is also the grid (+ import / - export).
``Voltage``, when present, is the voltage.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, as_number, pick
from twcmaster.sources.registry import (
    Problem,
    check_api_url,
    check_required,
    read_api_url,
    read_text,
)

DEFAULT_API_URL = "https://smart-me.com"
PATH = "/api/DeviceBySerial"
STATUS_HINTS = {401: "smart-me refused the login: check username and password"}


class SmartMeSource(Source):
    name = "SmartMe"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.serial = read_text(config, "serialNumber") or ""
        api_url = read_api_url(config, DEFAULT_API_URL)
        self.url = api_url + PATH
        username = str(config.get("username") or "")
        password = str(config.get("password") or "")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.http = HttpClient(
            self.name,
            timing,
            headers={"Authorization": f"Basic {token}"},
            secrets=[password],
            status_hints=STATUS_HINTS,
        )

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_required(config, "username", "the smart-me account's user name")
        problems += check_required(config, "password", "the smart-me account's password")
        problems += check_required(config, "serialNumber", "the meter's serial number")
        problems += check_api_url(config)
        return problems

    def describe(self) -> str:
        return f"smart-me meter {self.serial} at {self.url}"

    def fetch(self) -> Reading:
        return self.http.get_json(self.url, params={"serial": self.serial}, parse=_parse)


def _parse(doc: Any) -> Reading:
    power = as_number(pick(doc, "ActivePower"), "ActivePower")
    if doc.get("ActivePowerUnit") == "kW":
        power *= 1000.0
    voltage = doc.get("Voltage")
    volts = as_number(voltage, "Voltage") or None if voltage is not None else None
    return Reading.at_grid_meter(power, volts)
