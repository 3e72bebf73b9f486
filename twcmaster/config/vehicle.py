"""``vehicle.teslaAPI`` -> ``TeslaApiConfig``: the Tesla car API (Fleet API, a relay, or a
local signing proxy), which starts and stops cars a 0 A offer cannot stop (protocol 2).
``vehicle.teslaBLE`` -> ``TeslaBleConfig``: the same commands over Bluetooth LE (off unless
``enabled``; ``privateKeyFile`` required).

TWCManager's own keys carry over as fallbacks: ``config.teslaApiClientID`` for ``clientID``,
``config.teslaProxy`` / ``config.teslaProxyCert`` for ``baseURL`` / ``proxyCert`` and
``config.wakeDelayMins`` for ``wakeDelayS``. As in TWCManager the module is on when its
section is there without ``enabled``; it only calls Tesla once it has a refresh token.

``chargeStopMode`` (how a protocol-2 car is stopped, ``parse_charge_stop_mode``) is read from
``vehicle.teslaAPI`` as in TWCManager's sample, else from ``config``: modes 2 and 3 need no car
API, so they must be settable without that section. (TWCManager keeps it in settings.json.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twcmaster.config.fields import ABSENT, Section, section
from twcmaster.config.problems import Report, describe_value

__all__ = [
    "TeslaApiConfig",
    "TeslaBleConfig",
    "parse_tesla_api",
    "parse_tesla_ble",
    "parse_charge_stop_mode",
    "FLEET_AUTH_URL",
    "FLEET_HOSTS",
]

FLEET_AUTH_URL = "https://fleet-auth.prd.vn.cloud.tesla.com/oauth2/v3/token"
#: Tesla's regional Fleet API hosts, by the access token's ``ou_code``.
FLEET_HOSTS = {
    "NA": "https://fleet-api.prd.na.vn.cloud.tesla.com",
    "EU": "https://fleet-api.prd.eu.vn.cloud.tesla.com",
    "CN": "https://fleet-api.prd.cn.vn.cloud.tesla.cn",
}
TOKEN_FILE = "tesla-tokens.json"
HOME_RADIUS_M = 150.0  # a driveway, not the neighbourhood (TWCManager users: #423, #457)
DAILY_CALL_BUDGET = 60  # billable calls per car per day (data + commands + wakes)
DAILY_WAKE_BUDGET = 10  # per car per day: a wake costs as much as 20 commands ($0.02)
WAKE_DELAY_S = 180.0  # TWCManager's wakeDelayMins 3: the offer itself may wake the car
TIMEOUT_S = 20.0  # per HTTP request
CHARGE_STOP_VIA_API = 1
CHARGE_STOP_MODES = (
    "1 (through the car's API), 2 (pause the TWC's heartbeats) or 3 (the TWC's stop command,"
    " firmware 4.5.3 or later)"
)


@dataclass(frozen=True)
class TeslaApiConfig:
    base_url: str | None  # None: the regional host named in the access token
    auth_url: str
    client_id: str | None
    refresh_token: str | None  # first start only: afterwards the token file wins
    token_file: str  # relative: under settingsPath
    private_key_file: str | None  # sign commands in-process (vehicle command protocol)
    proxy_cert: str | None  # the one certificate a local signing proxy may present
    home_latitude: float | None
    home_longitude: float | None
    home_radius_m: float
    daily_call_budget: int
    daily_wake_budget: int
    wake_delay_s: float
    timeout_s: float
    # chargeStopMode as parse_charge_stop_mode reads it (the core takes AppConfig's copy).
    charge_stop_mode: int = CHARGE_STOP_VIA_API

    def __repr__(self) -> str:  # never the refresh token
        token = "set" if self.refresh_token else "none"
        return f"TeslaApiConfig({self.base_url or 'regional host'}, refresh token {token})"

    @property
    def has_home(self) -> bool:
        return self.home_latitude is not None and self.home_longitude is not None


def parse_tesla_api(data: Mapping[str, Any], report: Report) -> TeslaApiConfig | None:
    values = section(data, "vehicle", "teslaAPI")
    part = Section(values, "vehicle.teslaAPI", report)
    legacy = Section(section(data, "config"), "config", report)
    if not values or part.boolean("enabled", True) is not True:
        return None
    base_url = _url(part, "baseURL") or _url(legacy, "teslaProxy")
    auth_url = _url(part, "authURL") or FLEET_AUTH_URL
    client_id = _text(part, "clientID") or _text(legacy, "teslaApiClientID")
    refresh_token = _text(part, "refreshToken")
    token_file = _text(part, "tokenFile") or TOKEN_FILE
    private_key = _loaded_file(part, "privateKeyFile", "key")
    proxy_cert = _loaded_file(part, "proxyCert", "cert") or _loaded_file(
        legacy, "teslaProxyCert", "cert"
    )
    lat = part.number("homeLatitude", None, "a latitude from -90 to 90", lambda x: -90 <= x <= 90)
    lon = part.number(
        "homeLongitude", None, "a longitude from -180 to 180", lambda x: -180 <= x <= 180
    )
    given = [key for key in ("homeLatitude", "homeLongitude") if part.raw(key) is not ABSENT]
    if len(given) == 1:
        missing = "homeLongitude" if given == ["homeLatitude"] else "homeLatitude"
        report.error(part.key_path(missing), "missing; the home needs both coordinates")
    elif not given:
        report.warn(part.key_path("homeLatitude"), NO_HOME_WARNING)
    radius = part.number(
        "homeRadiusM", HOME_RADIUS_M, "metres from 10 to 10000", lambda x: 10 <= x <= 10_000
    )
    budget = part.whole(
        "dailyCallBudget", DAILY_CALL_BUDGET, "calls per car per day from 1 to 10000",
        lambda x: 1 <= x <= 10_000,
    )  # fmt: skip
    wakes = part.whole(
        "dailyWakeBudget", DAILY_WAKE_BUDGET, "wakes per car per day from 0 to 100",
        lambda x: 0 <= x <= 100,
    )  # fmt: skip
    wake_delay = _wake_delay_s(part, legacy)
    timeout = part.number("timeoutS", TIMEOUT_S, "seconds from 1 to 120", lambda x: 1 <= x <= 120)
    needed = (auth_url, token_file, radius, budget, wakes, wake_delay, timeout)
    if any(value is None for value in needed) or report.errors:
        return None
    return TeslaApiConfig(
        base_url=base_url.rstrip("/") if base_url else None,
        auth_url=auth_url,
        client_id=client_id,
        refresh_token=refresh_token,
        token_file=token_file,
        private_key_file=private_key,
        proxy_cert=proxy_cert,
        home_latitude=lat,
        home_longitude=lon,
        home_radius_m=radius,
        daily_call_budget=budget,
        daily_wake_budget=wakes,
        wake_delay_s=wake_delay,
        timeout_s=timeout,
    )


NO_HOME_WARNING = (
    "no home location (homeLatitude/homeLongitude): a TWC that reports no VIN cannot have "
    "its car told at home, so such a car is stopped from the bus only"
)


def _loaded_file(part: Section, key: str, kind: str) -> str | None:
    """The path under ``key`` (``~`` expanded), with the file loaded now the module's own way
    (``vehicles/tesla/keys.py``: ``kind`` "key" or "cert"), so check-config names a missing,
    unreadable or wrong file by its key path instead of ``run`` failing later."""
    text = _text(part, key)
    if text is None:
        return None
    from twcmaster.vehicles.tesla.keys import ClientSetupError, load_private_key, pinned_context

    path = os.path.expanduser(text)
    try:
        (load_private_key if kind == "key" else pinned_context)(path)
    except ClientSetupError as error:
        part.report.error(part.key_path(key), str(error))
    return path


def _text(part: Section, key: str) -> str | None:
    return part.optional_text(key, secret="oken" in key, strip=True)


def _url(part: Section, key: str) -> str | None:
    value = _text(part, key)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        part.bad(key, value, "an http:// or https:// URL")
        return None
    return value


def parse_charge_stop_mode(data: Mapping[str, Any], report: Report) -> int | None:
    """``vehicle.teslaAPI.chargeStopMode``, else ``config.chargeStopMode``, else 1."""
    api = Section(section(data, "vehicle", "teslaAPI"), "vehicle.teslaAPI", report)
    if api.raw("chargeStopMode") is not ABSENT:
        return _charge_stop_mode(api)
    return _charge_stop_mode(Section(section(data, "config"), "config", report))


def _charge_stop_mode(part: Section) -> int | None:
    return part.whole(
        "chargeStopMode", CHARGE_STOP_VIA_API, CHARGE_STOP_MODES,
        lambda x: 1 <= x <= 3, from_string=True,
    )  # fmt: skip


def _wake_delay_s(part: Section, legacy: Section) -> float | None:
    if part.raw("wakeDelayS") is ABSENT and legacy.raw("wakeDelayMins") is not ABSENT:
        minutes = legacy.number(
            "wakeDelayMins", None, "minutes from 0 to 60", lambda x: 0 <= x <= 60
        )
        return None if minutes is None else minutes * 60.0
    return part.number(
        "wakeDelayS", WAKE_DELAY_S, "seconds from 0 to 3600", lambda x: 0 <= x <= 3600
    )


# -- vehicle.teslaBLE ------------------------------------------------------------------------

BLE_SCAN_TIMEOUT_S = 10.0  # a car in range advertises several times a second
BLE_COMMAND_TIMEOUT_S = 30.0  # connect, two handshakes (security, infotainment), the command
VIN_PATTERN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")  # 17 characters, never I, O or Q
ADAPTER_PATTERN = re.compile(r"hci[0-9]{1,2}")


@dataclass(frozen=True)
class TeslaBleConfig:
    """``vehicle.teslaBLE``: the same commands over Bluetooth LE to a car in range."""

    private_key_file: str  # the key paired with the car as a BLE key (``~`` expanded)
    vins: tuple[str, ...]  # empty: the VINs the Fleet API account lists
    adapter: str | None  # None: BlueZ's default adapter
    scan_timeout_s: float
    command_timeout_s: float


def parse_tesla_ble(data: Mapping[str, Any], report: Report) -> TeslaBleConfig | None:
    values = section(data, "vehicle", "teslaBLE")
    part = Section(values, "vehicle.teslaBLE", report)
    enabled = part.boolean("enabled", False)  # off unless asked for, as in TWCManager
    if not enabled:  # a section kept for later, switched off: nothing to say
        return None
    errors_before = len(report.errors)
    key_file = _loaded_file(part, "privateKeyFile", "key")
    if key_file is None and len(report.errors) == errors_before:  # absent, null or ""
        report.error(
            part.key_path("privateKeyFile"),
            "missing; the private key file paired with the car as a BLE key",
        )
    vins = _vins(part)
    adapter = _text(part, "adapter")
    if adapter is not None and not ADAPTER_PATTERN.fullmatch(adapter):
        part.bad("adapter", adapter, 'a BlueZ adapter name like "hci0"')
    scan_s = part.number(
        "scanTimeoutS", BLE_SCAN_TIMEOUT_S, "seconds from 1 to 60", lambda x: 1 <= x <= 60
    )
    command_s = part.number(
        "commandTimeoutS", BLE_COMMAND_TIMEOUT_S, "seconds from 5 to 120", lambda x: 5 <= x <= 120
    )
    if len(report.errors) > errors_before or key_file is None or vins is None:
        return None
    assert scan_s is not None and command_s is not None
    return TeslaBleConfig(
        private_key_file=key_file,
        vins=vins,
        adapter=adapter,
        scan_timeout_s=scan_s,
        command_timeout_s=command_s,
    )


def _vins(part: Section) -> tuple[str, ...] | None:
    value = part.raw("vins")
    if value is ABSENT:
        return ()
    if not isinstance(value, list):
        part.bad("vins", value, "a list of VINs")
        return None
    vins: list[str] = []
    for index, item in enumerate(value):
        vin = item.strip().upper() if isinstance(item, str) else ""
        if not VIN_PATTERN.fullmatch(vin):
            part.report.error(
                f"{part.key_path('vins')}[{index}]",
                f"expected a 17-character VIN, got {describe_value(item)}",
            )
            return None
        if vin not in vins:
            vins.append(vin)
    return tuple(vins)
