"""An estimate of the solar generation from the weather, through OpenWeatherMap's One Call
API (TWCManager's ``OpenWeatherMap`` source), for sites whose inverter cannot be read.

Config ``sources.OpenWeatherMap`` (TWCManager's keys):

* ``Latitude``, ``Longitude``: the site, in degrees;
* ``APIKey``: the OpenWeatherMap API key;
* ``PeakKW``: twelve numbers, one per month (January first): the highest output (kW) of the
  best day of that month, from the inverter's history. (One number is taken for every month;
  TWCManager needed the twelve.)

twcmaster adds ``apiURL`` (default ``https://api.openweathermap.org/data/3.0/onecall``: the
2.5 One Call API TWCManager used has been retired; keys for "One Call by Call" answer on 3.0
with the same document). The default ``interval`` is 120 s (720 calls a day, within the free
1000), where TWCManager asked every 60 s.

``GET <apiURL>?lat=..&lon=..&appid=<APIKey>&exclude=minutely&units=metric`` answers the
``current`` weather (with ``sunrise``/``sunset``) and ``hourly`` and ``daily`` forecasts.
At each poll, as TWCManager computes it: the entry (current, hourly or daily) whose ``dt``
is nearest to now gives the cloud cover and the temperature; outside sunrise..sunset the
estimate is 0; otherwise it is ``PeakKW`` of this month (local time) x a daylight factor
(rising linearly from sunrise to midday and falling to sunset, at least 0.2, and 1 above 0.9)
x ``1 - clouds / 300`` x a heat factor (``1 - (temp - 31) / 100`` above 31 °C). TWCManager
capped that heat factor at 0.5 where it surely meant a floor (any day above 31 °C counted as
half); twcmaster keeps it at 0.5 or above. A daily entry's ``temp`` is an object: its
``day`` value is used. The estimate is a generation only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, pick, section
from twcmaster.sources.registry import (
    Problem,
    check_api_url,
    check_number,
    check_required,
    describe,
    read_api_url,
    read_text,
)

DEFAULT_API_URL = "https://api.openweathermap.org/data/3.0/onecall"
DEFAULT_INTERVAL_S = 120.0
MONTHS = 12
HOT_C = 31.0
MIN_DAY_FACTOR, FULL_DAY_FACTOR = 0.2, 0.9
MIN_HEAT_FACTOR = 0.5
STATUS_HINTS = {401: "OpenWeatherMap refused the key: check APIKey (One Call 3.0 needs it)"}


class OpenWeatherMapSource(Source):
    name = "OpenWeatherMap"
    default_interval_s = DEFAULT_INTERVAL_S

    def __init__(
        self,
        config: Mapping[str, Any],
        timing: SourceTiming,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, timing)
        self.latitude = float(config.get("Latitude", 0))
        self.longitude = float(config.get("Longitude", 0))
        self.api_key = read_text(config, "APIKey") or ""
        peak = config.get("PeakKW")
        peak = [peak] * MONTHS if isinstance(peak, int | float | str) else peak or [0] * MONTHS
        self.peak_kw = [float(v) for v in peak]
        self.url = read_api_url(config, DEFAULT_API_URL)
        self.clock = clock
        self.http = HttpClient(self.name, timing, secrets=[self.api_key], status_hints=STATUS_HINTS)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_required(config, "APIKey", "the OpenWeatherMap API key")
        for key, limit in (("Latitude", 90), ("Longitude", 180)):
            if config.get(key) is None:
                problems.append((key, f"required when the source is enabled: the site's {key}"))
            else:
                problems += check_number(config, key, minimum=-limit, maximum=limit, unit="°")
        peak = config.get("PeakKW")
        if isinstance(peak, int | float) and not isinstance(peak, bool):
            peak = [peak] * MONTHS  # the same peak every month
        if (
            not isinstance(peak, list)
            or len(peak) != MONTHS
            or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in peak)
        ):
            problems.append(
                ("PeakKW", f"expected 12 numbers (kW, January first) or one, got {describe(peak)}")
            )
        problems += check_api_url(config)
        return problems

    def describe(self) -> str:
        return f"OpenWeatherMap estimate at {self.latitude:g}, {self.longitude:g}"

    def fetch(self) -> Reading:
        params = {
            "lat": f"{self.latitude:g}",
            "lon": f"{self.longitude:g}",
            "exclude": "minutely",
            "units": "metric",
        }
        document = self.http.get_json(
            self.url, params=params, secret_params={"appid": self.api_key}
        )
        now_s = self.clock()
        try:
            watts = self.estimate_w(document, now_s)
        except (ShapeError, KeyError, TypeError, IndexError, ValueError) as exc:
            raise self.http.error(f"GET {self.url}", f"unexpected answer: {exc}") from None
        return Reading(generation_w=watts)

    def estimate_w(self, document: Any, now_s: float) -> float:
        current = section(document, "current")
        sunrise = as_number(pick(current, "sunrise"), "current.sunrise")
        sunset = as_number(pick(current, "sunset"), "current.sunset")
        entry = _nearest(document, now_s)
        clouds = as_number(pick(entry, "clouds"), "clouds")
        temp = pick(entry, "temp")
        temp = as_number(temp["day"] if isinstance(temp, Mapping) else temp, "temp")
        if not sunrise < now_s < sunset:
            return 0.0
        midday = sunrise + (sunset - sunrise) / 2
        day = (now_s - sunrise if now_s < midday else sunset - now_s) / (midday - sunrise)
        day = 1.0 if day > FULL_DAY_FACTOR else max(MIN_DAY_FACTOR, day)
        cloud = 1.0 - clouds / 100.0 / 3.0
        heat = max(MIN_HEAT_FACTOR, 1.0 - (temp - HOT_C) / 100.0) if temp > HOT_C else 1.0
        month = time.localtime(now_s).tm_mon
        return self.peak_kw[month - 1] * day * cloud * heat * 1000.0


def _nearest(document: Any, now_s: float) -> Mapping[str, Any]:
    """The current, hourly or daily entry whose ``dt`` is nearest to ``now_s``."""
    best = section(document, "current")
    best_gap = abs(as_number(pick(best, "dt"), "current.dt") - now_s)
    for part in ("hourly", "daily"):
        for index, entry in enumerate(document.get(part) or []):
            if not isinstance(entry, Mapping):
                raise ShapeError(f"{part}[{index}] is not an object")
            gap = abs(as_number(pick(entry, "dt"), f"{part}[{index}].dt") - now_s)
            if gap < best_gap:
                best, best_gap = entry, gap
    return best
