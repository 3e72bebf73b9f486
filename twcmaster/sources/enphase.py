"""Enphase Envoy / IQ Gateway, read on the local network.

Config ``sources.Enphase`` (TWCManager's keys):

* ``serverIP``: the gateway's address; ``serverPort``: default 80 (443 over HTTPS);
* ``token``: the owner JWT that firmware 7 and later requires, sent as
  ``Authorization: Bearer``. Those gateways answer only over HTTPS with a self-signed
  certificate, so twcmaster adds ``useHttps`` (default: true when ``token`` is set),
  ``verifyTLS`` (default false) and ``caFile``. With HTTPS, a ``serverPort`` of 80 (left over
  from a TWCManager config, which reached the gateway through its HTTP->HTTPS redirect)
  means 443.

``GET /production.json?details=1``:

* generation: the ``eim`` entry with ``measurementType: production`` (the production CT);
  without CTs (the entry is missing or has ``activeCount: 0``) the ``inverters`` entry's
  ``wNow``. The CT reads a few watts negative at night (inverter standby): clamped to 0;
* consumption: the ``total-consumption`` entry; grid (+ import / - export): the
  ``net-consumption`` entry; both need consumption CTs, else this source measures generation
  only;
* voltage: ``rmsVoltage`` of the consumption (else production) CT.

TWCManager's cloud keys (``apiKey``, ``systemID``, ``userID``) name the Enlighten API v2,
which Enphase has retired; twcmaster does not support it and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url, entries
from twcmaster.sources.registry import (
    Problem,
    check_flag,
    check_host,
    check_port,
    check_required,
    check_verify,
    read_flag,
    read_port,
    read_text,
    read_verify,
)

HTTP_PORT = 80
HTTPS_PORT = 443
PRODUCTION_PATH = "/production.json"
PRODUCTION_PARAMS = {"details": "1"}
CLOUD_KEYS = ("apiKey", "systemID", "userID")
CLOUD_UNSUPPORTED = (
    "the Enphase cloud API v2 (apiKey, systemID, userID) is not supported by twcmaster "
    "(Enphase retired it); set serverIP (and token, for firmware 7 and later) to read the "
    "gateway on your network"
)
STATUS_HINTS = {
    401: "the gateway refused the token: owner tokens expire, get a new one from "
    "entrez.enphaseenergy.com and set it as token",
}


class EnphaseSource(Source):
    name = "Enphase"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.host = read_text(config, "serverIP")
        self.token = read_text(config, "token")
        self.https = read_flag(config, "useHttps", self.token is not None)
        port = read_port(config, "serverPort", HTTP_PORT)
        if self.https and port == HTTP_PORT:
            port = HTTPS_PORT
        self.url = (
            base_url(self.host, port, https=self.https) + PRODUCTION_PATH if self.host else None
        )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.http = HttpClient(
            self.name,
            timing,
            verify=read_verify(config, False) if self.https else True,
            headers=headers,
            secrets=[self.token],
            status_hints=STATUS_HINTS,
        )

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        if not config.get("serverIP") and any(config.get(key) for key in CLOUD_KEYS):
            key = next(key for key in CLOUD_KEYS if config.get(key))
            return [(key, CLOUD_UNSUPPORTED)]
        problems = check_host(config, "serverIP", "the gateway's IP address or host name")
        problems += check_port(config, "serverPort") + check_flag(config, "useHttps")
        if config.get("token") is not None:
            problems += check_required(config, "token", "the gateway's owner token (JWT)")
        return problems + check_verify(config)

    def describe(self) -> str:
        if self.url is None:
            return "Enphase cloud API (not supported)"
        auth = " with token" if self.token else ""
        return f"Enphase gateway at {self.url}{auth}"

    def close(self) -> None:
        self.http.close()

    def fetch(self) -> Reading:
        if self.url is None:
            raise SourceError(f"{self.name}: {CLOUD_UNSUPPORTED}")
        return self.http.get_json(self.url, params=PRODUCTION_PARAMS, parse=_parse_production)


def _find(items: list[Mapping[str, Any]], **wanted: str) -> Mapping[str, Any] | None:
    for item in items:
        if all(item.get(key) == value for key, value in wanted.items()):
            return item
    return None


def _active(item: Mapping[str, Any] | None) -> bool:
    """A CT entry that measures: present and ``activeCount`` not 0 (absent counts as 1)."""
    if item is None:
        return False
    count = item.get("activeCount", 1)
    return count is None or as_number(count, "activeCount") > 0


def _watts(item: Mapping[str, Any], what: str) -> float:
    if "wNow" not in item:
        raise ShapeError(f"{what} entry has no 'wNow'")
    return as_number(item["wNow"], f"{what}.wNow")


def _parse_production(doc: Any) -> Reading:
    production = entries(doc, "production")
    consumption = entries(doc, "consumption") if "consumption" in doc else []

    ct = _find(production, type="eim", measurementType="production")
    if _active(ct):
        generation = max(0.0, _watts(ct, "production CT"))
    else:
        ct = None
        inverters = _find(production, type="inverters")
        if inverters is None:
            raise ShapeError("production has neither an 'inverters' nor an active 'eim' entry")
        generation = max(0.0, _watts(inverters, "inverters"))

    total = _find(consumption, measurementType="total-consumption")
    net = _find(consumption, measurementType="net-consumption")
    total = total if _active(total) else None
    net = net if _active(net) else None

    voltage = None
    for item in (total, net, ct):
        if item is not None and item.get("rmsVoltage") is not None:
            voltage = as_number(item["rmsVoltage"], "rmsVoltage") or None
            break
    return Reading(
        generation_w=generation,
        consumption_w=None if total is None else _watts(total, "total-consumption"),
        grid_w=None if net is None else _watts(net, "net-consumption"),
        voltage_v=voltage,
    )
