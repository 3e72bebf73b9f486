"""Growatt inverters (MIX / SPH with a battery) through the Growatt cloud, the ShinePhone
app's API (TWCManager's ``Growatt`` source, which used the growattServer library).

Config ``sources.Growatt`` (TWCManager's keys):

* ``username``, ``password``: the Growatt (ShinePhone) account;
* ``useBatteryAt``, ``useBatteryTill`` (battery charge, %), ``batteryMaxOutput`` (W),
  ``useBatteryBefore`` (``"HH:MM"``, local time; default ``"00:00"``, which never comes: the
  battery is then never counted): between midnight and ``useBatteryBefore``, once the
  battery holds more than ``useBatteryAt`` %, ``batteryMaxOutput`` is added to the
  generation, until the battery falls to ``useBatteryTill`` % (then ``useBatteryAt`` applies
  again), so the car can take the battery's charge overnight, as TWCManager does.

twcmaster adds ``apiURL`` (default ``https://openapi.growatt.com/``, the library's server; a
regional server or a test server).

A poll (the session is logged in once and reused; any failure logs in again next time):

1. ``POST newTwoLoginAPI.do`` (form ``userName``, ``password`` as the app hashes it: MD5 hex
   with every ``0`` at an even position replaced by ``c``) answers ``back.success`` and
   ``back.user.id``;
2. ``GET PlantListAPI.do?userId=<id>``: the first plant of ``back.data`` (its ``plantId``);
3. ``GET newTwoPlantAPI.do?op=getAllDeviceList&plantId=..&pageNum=1&pageSize=1``: the first
   device of ``deviceList`` (its ``deviceSn``);
4. ``POST newMixApi.do?op=getSystemStatus_KW&mixId=<deviceSn>&plantId=<plantId>``: ``obj``
   with ``ppv`` (PV, kW) as the generation, ``pLocalLoad`` (house load, kW) as the
   consumption and ``SOC`` (battery %).

(TWCManager asked the status twice, once by the device's alias and once by its serial
number; twcmaster asks once, by serial number.) Steps 1-3 are done again only after a
failure. A refused login, an empty plant or device list, or a status without its fields is
an error naming it.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, pick
from twcmaster.sources.registry import (
    Problem,
    check_api_url,
    check_number,
    check_required,
    read_api_url,
)

DEFAULT_API_URL = "https://openapi.growatt.com/"
BATTERY_KEYS = ("useBatteryAt", "useBatteryTill", "batteryMaxOutput")


def hash_password(password: str) -> str:
    """The ShinePhone app's password hash (see the module docstring)."""
    digest = list(hashlib.md5(password.encode("utf-8")).hexdigest())  # noqa: S324 - Growatt's
    for index in range(0, len(digest), 2):
        if digest[index] == "0":
            digest[index] = "c"
    return "".join(digest)


class GrowattSource(Source):
    name = "Growatt"

    def __init__(
        self,
        config: Mapping[str, Any],
        timing: SourceTiming,
        *,
        clock: Callable[[], datetime.datetime] = datetime.datetime.now,
    ) -> None:
        super().__init__(config, timing)
        self.username = str(config.get("username") or "")
        self.password = str(config.get("password") or "")
        self.api_url = read_api_url(config, DEFAULT_API_URL) + "/"
        self.use_battery_at = float(config.get("useBatteryAt") or 0)
        self.use_battery_till = float(config.get("useBatteryTill") or 0)
        self.battery_max_w = float(config.get("batteryMaxOutput") or 0)
        self.use_battery_before = _clock_time(config.get("useBatteryBefore") or "00:00")
        self.threshold = self.use_battery_at
        self.clock = clock
        self.plant_id: str | None = None
        self.device_sn: str | None = None
        self.http = self._client()

    def _client(self) -> HttpClient:
        return HttpClient(self.name, self.timing, secrets=[self.password])

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_required(config, "username", "the Growatt account's user name")
        problems += check_required(config, "password", "the Growatt account's password")
        for key in BATTERY_KEYS:
            problems += check_number(config, key, minimum=0)
        before = config.get("useBatteryBefore")
        if before is not None:
            try:
                _clock_time(before)
            except (TypeError, ValueError):
                problems.append(
                    ("useBatteryBefore", f"expected a time of day as 'HH:MM', got {before!r}")
                )
        problems += check_api_url(config)
        return problems

    def describe(self) -> str:
        return f"Growatt cloud at {self.api_url}"

    def fetch(self) -> Reading:
        try:
            if self.device_sn is None:
                self._log_in()
            status = self.http.post_form(
                self.api_url + "newMixApi.do",
                {},
                params={
                    "op": "getSystemStatus_KW",
                    "mixId": self.device_sn,
                    "plantId": self.plant_id,
                },
                parse=_parse_status,
            )
        except SourceError:
            self._forget()
            raise
        pv_w, load_w, soc = status
        return Reading(generation_w=pv_w + self._battery_w(soc), consumption_w=load_w)

    def _battery_w(self, soc: float) -> float:
        """``batteryMaxOutput`` while the battery may be used (the hysteresis above)."""
        now = self.clock().time()
        in_time = datetime.time(0, 0) < now < self.use_battery_before
        if self.threshold < soc and in_time:
            self.threshold = self.use_battery_till
            return self.battery_max_w
        self.threshold = self.use_battery_at
        return 0.0

    def _log_in(self) -> None:
        self.http.close()
        self.http = self._client()  # a fresh session: no cookies of a dead login
        user_id = self.http.post_form(
            self.api_url + "newTwoLoginAPI.do",
            {"userName": self.username, "password": hash_password(self.password)},
            parse=_parse_login,
        )
        self.plant_id = self.http.get_json(
            self.api_url + "PlantListAPI.do", params={"userId": user_id}, parse=_parse_plants
        )
        self.device_sn = self.http.get_json(
            self.api_url + "newTwoPlantAPI.do",
            params={
                "op": "getAllDeviceList",
                "plantId": self.plant_id,
                "pageNum": "1",
                "pageSize": "1",
            },
            parse=_parse_devices,
        )

    def _forget(self) -> None:
        self.plant_id = self.device_sn = None


def _clock_time(text: Any) -> datetime.time:
    hours, minutes = str(text).strip().split(":")
    return datetime.time(int(hours), int(minutes))


def _parse_login(doc: Any) -> str:
    back = pick(doc, "back")
    if not isinstance(back, Mapping) or not back.get("success"):
        detail = back.get("msg") or back.get("error") if isinstance(back, Mapping) else None
        raise ShapeError(f"login refused: {detail or 'check username and password'}")
    return str(pick(back, "user.id"))


def _parse_plants(doc: Any) -> str:
    back = pick(doc, "back")
    if isinstance(back, Mapping):
        back = back.get("data", [])
    plants = back if isinstance(back, list) else []
    if not plants or not isinstance(plants[0], Mapping):
        raise ShapeError("the account has no plant")
    return str(pick(plants[0], "plantId"))


def _parse_devices(doc: Any) -> str:
    devices = pick(doc, "deviceList")
    if not isinstance(devices, list) or not devices or not isinstance(devices[0], Mapping):
        raise ShapeError("the plant has no device")
    return str(pick(devices[0], "deviceSn"))


def _parse_status(doc: Any) -> tuple[float, float, float]:
    status = pick(doc, "obj")
    if not isinstance(status, Mapping):
        raise ShapeError("obj is not the device's status")
    pv = as_number(pick(status, "ppv"), "obj.ppv") * 1000.0
    load = as_number(pick(status, "pLocalLoad"), "obj.pLocalLoad") * 1000.0
    soc = as_number(pick(status, "SOC"), "obj.SOC")
    return max(0.0, pv), max(0.0, load), soc
