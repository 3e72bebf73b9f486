"""Efergy energy monitors through the Efergy Engage cloud (TWCManager's ``Efergy`` source).

Config ``sources.Efergy`` (TWCManager's keys): ``token``, the Engage app token (from the
Engage web site's settings). twcmaster adds ``apiURL`` (default
``https://engage.efergy.com``, for a proxy or a test server).

``GET /mobile_proxy/getCurrentValuesSummary?token=<token>`` answers one entry per sensor,
``[{"cid": "PWER", "data": [{"<ms timestamp>": 1559}], "sid": "123456", "units": null,
"age": 6}]``; the first value of the first sensor's first data point is the consumption in
watts, as TWCManager reads it. Efergy measures no generation. An error document (``{"status":
"error", "description": ...}``) or an empty list is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, entries
from twcmaster.sources.registry import (
    Problem,
    check_api_url,
    check_required,
    read_api_url,
    read_text,
)

DEFAULT_API_URL = "https://engage.efergy.com"
PATH = "/mobile_proxy/getCurrentValuesSummary"


class EfergySource(Source):
    name = "Efergy"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.token = read_text(config, "token") or ""
        api_url = read_api_url(config, DEFAULT_API_URL)
        self.url = api_url + PATH
        self.http = HttpClient(self.name, timing, secrets=[self.token])

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_required(config, "token", "the Efergy Engage app token")
        problems += check_api_url(config)
        return problems

    def describe(self) -> str:
        return f"Efergy Engage at {self.url}"

    def fetch(self) -> Reading:
        return self.http.get_json(
            self.url, secret_params={"token": self.token}, parse=_parse_summary
        )


def _parse_summary(doc: Any) -> Reading:
    if isinstance(doc, Mapping):
        detail = doc.get("description") or doc.get("desc") or doc.get("status") or "no detail"
        raise ShapeError(f"Efergy says: {detail}")
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], Mapping):
        raise ShapeError("expected a non-empty list of sensors")
    points = entries(doc[0], "data")
    if not points or not points[0]:
        raise ShapeError("the first sensor has no data point")
    value = next(iter(points[0].values()))
    return Reading(consumption_w=as_number(value, "[0].data[0]"))
