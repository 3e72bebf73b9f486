"""Enphase Envoy / IQ Gateway, read on the local network, or Enphase's cloud API.

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

**Cloud** (TWCManager's ``apiKey``, ``systemID``, ``userID``; used when ``serverIP`` is not
set: TWCManager preferred the cloud when both were given, twcmaster the gateway, which
answers every 10 s where the cloud allows a poll a minute): ``GET
/api/v2/systems/<systemID>/summary?key=<apiKey>&user_id=<userID>`` on the Enlighten API
(``apiURL``, twcmaster's key, default ``https://api.enphaseenergy.com``), whose
``current_power`` (W) is the generation; polled every 60 s by default, as TWCManager does.
Enphase has closed API v2 to new applications: a refused key says so and points to the
gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url, entries
from twcmaster.sources.registry import (
    Problem,
    check_api_url,
    check_flag,
    check_host,
    check_port,
    check_required,
    check_verify,
    read_api_url,
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
DEFAULT_API_URL = "https://api.enphaseenergy.com"
CLOUD_INTERVAL_S = 60.0  # TWCManager's cache for the cloud; the API's plans count calls
CLOUD_HINTS = {
    401: "Enphase refused the key: check apiKey and userID (API v2 is closed to new "
    "applications; reading the gateway with serverIP and token needs no key)",
    404: "no such system: check systemID",
    409: "over the plan's request limit: poll less often (interval)",
    429: "over the plan's request limit: poll less often (interval)",
}
STATUS_HINTS = {
    401: "the gateway refused the token: owner tokens expire, get a new one from "
    "entrez.enphaseenergy.com and set it as token",
}


class EnphaseSource(Source):
    name = "Enphase"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        self.host = read_text(config, "serverIP")
        self.cloud = self.host is None
        if self.cloud:
            self._init_cloud(config, timing)
            return
        self.token = read_text(config, "token")
        self.https = read_flag(config, "useHttps", self.token is not None)
        port = read_port(config, "serverPort", HTTP_PORT)
        if self.https and port == HTTP_PORT:
            port = HTTPS_PORT
        self.url = base_url(self.host, port, https=self.https) + PRODUCTION_PATH
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.http = HttpClient(
            self.name,
            timing,
            verify=read_verify(config, False) if self.https else True,
            headers=headers,
            secrets=[self.token],
            status_hints=STATUS_HINTS,
        )

    def _init_cloud(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        self.api_key = read_text(config, "apiKey") or ""
        self.user_id = read_text(config, "userID") or ""
        self.system_id = read_text(config, "systemID") or ""
        api_url = read_api_url(config, DEFAULT_API_URL)
        self.url = f"{api_url}/api/v2/systems/{self.system_id}/summary"
        self.token = None
        self.http = HttpClient(
            self.name, timing, secrets=[self.api_key, self.user_id], status_hints=CLOUD_HINTS
        )

    @classmethod
    def interval_default(cls, config: Mapping[str, Any]) -> float:
        return cls.default_interval_s if read_text(config, "serverIP") else CLOUD_INTERVAL_S

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        if not read_text(config, "serverIP") and any(config.get(key) for key in CLOUD_KEYS):
            problems = []
            for key, what in zip(
                CLOUD_KEYS, ("the Enlighten API key", "the system id", "the user id"), strict=True
            ):
                problems += check_required(config, key, what)
            problems += check_api_url(config)
            return problems
        problems = check_host(config, "serverIP", "the gateway's IP address or host name")
        problems += check_port(config, "serverPort") + check_flag(config, "useHttps")
        if config.get("token") is not None:
            problems += check_required(config, "token", "the gateway's owner token (JWT)")
        return problems + check_verify(config)

    def describe(self) -> str:
        if self.cloud:
            return f"Enphase Enlighten API, system {self.system_id}"
        auth = " with token" if self.token else ""
        return f"Enphase gateway at {self.url}{auth}"

    def fetch(self) -> Reading:
        if self.cloud:
            return self.http.get_json(
                self.url,
                secret_params={"key": self.api_key, "user_id": self.user_id},
                parse=_parse_summary,
            )
        return self.http.get_json(self.url, params=PRODUCTION_PARAMS, parse=_parse_production)


def _parse_summary(doc: Any) -> Reading:
    """The cloud's system summary: ``current_power`` (W) is the generation."""
    if not isinstance(doc, Mapping) or "current_power" not in doc:
        raise ShapeError("missing 'current_power'")
    return Reading(generation_w=max(0.0, as_number(doc["current_power"], "current_power")))


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
