"""Tesla Powerwall 2 / Backup Gateway 2, read through its local HTTPS API.

Config ``sources.Powerwall2`` (TWCManager's keys):

* ``serverIP``; ``serverPort`` (default 443);
* ``password``: the gateway's customer password (newer firmware refuses the meters without a
  login); without it no login is attempted;
* ``minBatteryLevel``: while the battery is below this level, report no generation, so the
  sun charges the Powerwall before the car. It is compared with the level the Tesla app shows,
  ``(raw - 5) / 0.95`` of the gateway's ``percentage`` (as TWCManager does), and generation
  comes back only once the level reaches ``minBatteryLevel + 5`` (hysteresis, so the car does
  not start and stop around the threshold).

The gateway's certificate is self-signed: not verified by default; twcmaster adds
``verifyTLS`` (true: verify against the system CAs) and ``caFile`` (verify against this PEM,
e.g. the gateway's own certificate).

The login ``POST /api/login/Basic`` returns a token and sets the ``AuthCookie``/``UserRecord``
cookies; the session keeps both and sends the token as ``Authorization: Bearer``. On 401 or
403 the source logs in again, once per poll. ``GET /api/meters/aggregates`` then gives
``solar`` (generation), ``load`` (consumption), ``site`` (grid, + import / - export) and
``battery`` ``instant_power``, and ``site.instant_average_voltage``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.logs import get_logger
from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.http import (
    HttpClient,
    HttpStatusError,
    ShapeError,
    base_url,
    number,
    pick,
)
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_number,
    check_port,
    check_required,
    check_verify,
    read_number,
    read_port,
    read_text,
    read_verify,
)

DEFAULT_PORT = 443
LOGIN_PATH = "/api/login/Basic"
AGGREGATES_PATH = "/api/meters/aggregates"
SOE_PATH = "/api/system_status/soe"
GRID_STATUS_PATH = "/api/system_status/grid_status"
OPERATION_PATH = "/api/operation"
GRID_CONNECTED = "SystemGridConnected"  # other states: islanded, or going back to the grid
BACKUP_RESERVE_PCT = 96.0  # TWCManager's reservePercent in backup mode
LOGIN_USERNAME = "customer"
AUTH_STATUSES = (401, 403)  # the gateway answers 401 or 403 (firmware-dependent) without login
GATE_HYSTERESIS_PCT = 5.0  # generation returns at minBatteryLevel + this
# The gateway's raw state of energy keeps 5 % in reserve; the app shows (raw - 5) / 0.95.
SOE_RESERVE_PCT = 5.0
SOE_SCALE = 0.95

_log = get_logger(__name__)


class PowerwallSource(Source):
    name = "Powerwall2"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        port = read_port(config, "serverPort", DEFAULT_PORT)
        self.base_url = base_url(host, port, https=True)
        self.password = read_text(config, "password")
        self.min_battery_pct = read_number(config, "minBatteryLevel", 0.0)
        self.token: str | None = None
        self.gated = False  # True: generation held back for the battery
        self.battery_pct: float | None = None
        self.logins = 0
        self.http = HttpClient(
            self.name,
            timing,
            verify=read_verify(config, False),
            secrets=[self.password],
        )

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the gateway's IP address or host name")
        problems += check_port(config, "serverPort")
        if config.get("password") is not None:
            problems += check_required(config, "password", "the gateway's customer password")
        problems += check_number(config, "minBatteryLevel", minimum=0, maximum=100, unit="%")
        return problems + check_verify(config)

    def describe(self) -> str:
        gate = f", generation held below {self.min_battery_pct:g} %" if self.min_battery_pct else ""
        return f"Powerwall gateway at {self.base_url}{gate}"

    def fetch(self) -> Reading:
        reading = self._get(AGGREGATES_PATH, _parse_aggregates)
        if self.min_battery_pct > 0 or "batteryLevel" in self.extras_wanted:
            self.battery_pct = self._get(SOE_PATH, _parse_soe)
        if self.min_battery_pct > 0 and self.battery_pct is not None:
            self._update_gate(self.battery_pct)
            if self.gated:
                reading = Reading(0.0, reading.consumption_w, reading.grid_w, reading.voltage_v)
        if self.extras_wanted:
            reading = dataclasses.replace(reading, extras=self._extras())
        return reading

    def _extras(self) -> tuple[tuple[str, Any], ...]:
        """TWCManager's Powerwall values that policy rules read: gridStatus (True while the
        grid is connected), batteryLevel (% as the app shows it), operatingMode and
        reservePercent (96 in backup mode, as TWCManager). A value that cannot be read is
        left out: a rule reading it does not match (fail safe); the reading still counts."""
        wanted = self.extras_wanted
        out: dict[str, Any] = {}
        if "batteryLevel" in wanted and self.battery_pct is not None:
            out["batteryLevel"] = self.battery_pct
        try:
            if "gridStatus" in wanted:
                status = self._get(GRID_STATUS_PATH, lambda doc: pick(doc, "grid_status"))
                out["gridStatus"] = status == GRID_CONNECTED
            if wanted & {"operatingMode", "reservePercent"}:
                mode, reserve = self._get(OPERATION_PATH, _parse_operation)
                out["operatingMode"] = mode
                out["reservePercent"] = BACKUP_RESERVE_PCT if mode == "backup" else reserve
        except SourceError as error:
            _log.debug("Powerwall value for policy rules not read", error=str(error)[:200])
        return tuple(sorted((k, v) for k, v in out.items() if k in wanted))

    # -- internals -----------------------------------------------------------------

    def _update_gate(self, battery_pct: float) -> None:
        if not self.gated and battery_pct < self.min_battery_pct:
            self.gated = True
            _log.info(
                "Powerwall below minBatteryLevel: generation goes to the battery",
                battery_pct=round(battery_pct, 1),
                min_battery_pct=self.min_battery_pct,
            )
        elif self.gated and battery_pct >= self.min_battery_pct + GATE_HYSTERESIS_PCT:
            self.gated = False
            _log.info(
                "Powerwall charged: generation counts again",
                battery_pct=round(battery_pct, 1),
                resume_at_pct=self.min_battery_pct + GATE_HYSTERESIS_PCT,
            )

    def _get(self, path: str, parse: Callable[[Any], Any]) -> Any:
        if self.password and self.token is None:
            self._login()
        try:
            return self.http.get_json(self.base_url + path, headers=self._auth(), parse=parse)
        except HttpStatusError as exc:
            if exc.status not in AUTH_STATUSES:
                raise
            if not self.password:
                raise SourceError(f"{exc}; the gateway needs sources.Powerwall2.password") from None
        self._login()  # the session expired (or the gateway restarted): once more
        return self.http.get_json(self.base_url + path, headers=self._auth(), parse=parse)

    def _auth(self) -> dict[str, str] | None:
        return {"Authorization": f"Bearer {self.token}"} if self.token else None

    def _login(self) -> None:
        self.token = None
        self.http.session.cookies.clear()
        body = {
            "username": LOGIN_USERNAME,
            "password": self.password,
            "email": "",
            "force_sm_off": False,
        }
        try:
            token = self.http.post_json(self.base_url + LOGIN_PATH, body, parse=_parse_login)
        except HttpStatusError as exc:
            if exc.status in AUTH_STATUSES:
                raise SourceError(
                    f"{exc}; login refused: check sources.Powerwall2.password"
                ) from None
            raise
        self.http.add_secret(token)
        self.token = token
        self.logins += 1


def _parse_operation(doc: Any) -> tuple[str, float]:
    mode = pick(doc, "real_mode")
    if not isinstance(mode, str):
        raise ShapeError("the operation answer has no real_mode")
    raw = number(doc, "backup_reserve_percent")
    return mode, (raw - SOE_RESERVE_PCT) / SOE_SCALE


def _parse_login(doc: Any) -> str:
    token = pick(doc, "token")
    if not isinstance(token, str) or not token:
        raise ShapeError("the login answer has no token")
    return token


def _parse_aggregates(doc: Any) -> Reading:
    voltage = None
    site = pick(doc, "site")
    if isinstance(site, Mapping) and site.get("instant_average_voltage") is not None:
        voltage = number(site, "instant_average_voltage") or None
    return Reading(
        generation_w=number(doc, "solar.instant_power"),
        consumption_w=number(doc, "load.instant_power"),
        grid_w=number(doc, "site.instant_power"),
        voltage_v=voltage,
    )


def _parse_soe(doc: Any) -> float:
    """The battery level the Tesla app shows, from the gateway's raw percentage."""
    raw = number(doc, "percentage")
    return max(0.0, (raw - SOE_RESERVE_PCT) / SOE_SCALE)
