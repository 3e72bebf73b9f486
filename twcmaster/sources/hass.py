"""Home Assistant sensors through its REST API (``GET /api/states/<entity_id>``).

Config ``sources.HASS`` (TWCManager's keys):

* ``serverIP``: Home Assistant's host name or IP address;
* ``serverPort``: default 8123;
* ``useHttps``: default false;
* ``apiKey``: a long-lived access token (HA profile page, "Long-lived access tokens");
* ``hassEntityConsumption`` / ``hassEntityGeneration``: entity ids such as
  ``sensor.house_power``; either may be left out, and that field is then not measured.
* twcmaster extras: ``verifyTLS`` (default true) and ``caFile``, for HTTPS with a
  self-signed certificate.

Better than TWCManager, which does ``float(state)`` and assumes watts:

* the entity's ``attributes.unit_of_measurement`` is honoured (``W``, ``kW``, ``MW``; a
  sensor without one is taken as watts); any other unit (``kWh``, ``A``) is an error, because
  an energy counter or a current is not a power;
* ``unavailable`` / ``unknown`` / any non-numeric state fails the poll with a ``SourceError``
  (the runner keeps the last reading until it ages out), never a crash;
* 401 and 404 answers say what to check (the token, the entity id).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, base_url
from twcmaster.sources.registry import (
    Problem,
    check_file,
    check_flag,
    check_host,
    check_port,
    check_required,
    read_flag,
    read_port,
    read_text,
)
from twcmaster.sources.url import POWER_UNITS, parse_unit, power_w

DEFAULT_PORT = 8123
STATES_PATH = "/api/states/"
# States Home Assistant reports when it has no value: the entity's integration is down, or
# it has not reported since HA started.
NO_VALUE_STATES = frozenset({"unavailable", "unknown", "none", ""})
ENTITY_KEYS = {"consumption": "hassEntityConsumption", "generation": "hassEntityGeneration"}
STATUS_HINTS = {
    401: "check apiKey: it must be a long-lived access token of this Home Assistant",
    404: "check the entity id: Developer tools > States in Home Assistant lists them",
}


class HassSource(Source):
    name = "HASS"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        https = read_flag(config, "useHttps", False)
        host = str(config.get("serverIP", "")).strip()
        self.base_url = base_url(host, read_port(config, "serverPort", DEFAULT_PORT), https=https)
        self.entities = {
            field: entity
            for field, key in ENTITY_KEYS.items()
            if (entity := read_text(config, key)) is not None
        }
        api_key = read_text(config, "apiKey", "") or ""
        ca_file = read_text(config, "caFile")
        verify: bool | str = ca_file if ca_file else read_flag(config, "verifyTLS", True)
        self.http = HttpClient(
            self.name,
            timing,
            verify=verify,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            secrets=[api_key],
            status_hints=STATUS_HINTS,
        )

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "Home Assistant's host name or IP address")
        problems += check_port(config, "serverPort")
        problems += check_flag(config, "useHttps")
        problems += check_required(
            config, "apiKey", "a long-lived access token from your Home Assistant profile"
        )
        given = 0
        for key in ENTITY_KEYS.values():
            value = config.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            given += 1
            if not isinstance(value, str):
                problems.append(
                    (key, f"expected an entity id like sensor.house_power, got {value!r}")
                )
            elif not _looks_like_entity_id(value.strip()):
                problems.append(
                    (
                        key,
                        f"{value!r} is not an entity id: expected domain.object_id like "
                        "sensor.house_power (Developer tools > States lists them)",
                    )
                )
        if not given:
            problems.append(
                (
                    "",
                    "give hassEntityConsumption and/or hassEntityGeneration "
                    "(entity ids like sensor.house_power)",
                )
            )
        problems += check_flag(config, "verifyTLS")
        problems += check_file(config, "caFile", "a CA certificate bundle (PEM)")
        return problems

    def describe(self) -> str:
        parts = ", ".join(f"{field} {entity}" for field, entity in self.entities.items())
        return f"Home Assistant at {self.base_url}: {parts}"

    def fetch(self) -> Reading:
        values = {f"{field}_w": self._entity_w(entity) for field, entity in self.entities.items()}
        return Reading(**values)

    def _entity_w(self, entity: str) -> float:
        url = self.base_url + STATES_PATH + urllib.parse.quote(entity, safe="._-")
        return self.http.get_json(url, parse=lambda doc: parse_state(doc, entity))


def parse_state(document: Any, entity: str) -> float:
    """Watts from one ``/api/states/<entity>`` answer. ShapeError when it holds none."""
    if not isinstance(document, Mapping) or "state" not in document:
        raise ShapeError(f"{entity}: no 'state' in the answer")
    state = document["state"]
    if isinstance(state, str) and state.strip().lower() in NO_VALUE_STATES:
        raise ShapeError(f"{entity} is {state.strip() or 'empty'!r} in Home Assistant")
    attributes = document.get("attributes")
    unit = attributes.get("unit_of_measurement") if isinstance(attributes, Mapping) else None
    unit = unit if unit else "W"
    try:
        parse_unit(unit)
    except ShapeError:
        raise ShapeError(
            f"{entity} is measured in {unit!r}, not in a power unit ({', '.join(POWER_UNITS)})"
        ) from None
    try:
        return power_w(state, unit)
    except ShapeError as exc:
        raise ShapeError(f"{entity}: state {exc}") from None


def _looks_like_entity_id(text: str) -> bool:
    domain, dot, object_id = text.partition(".")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_")
    return bool(dot and domain and object_id) and set(domain + object_id) <= allowed
