"""Sunrise and sunset at home, computed here (astral: the NOAA solar equations; no web
service), for the hours in which Track Green Energy runs.

TWCManager asks a web service for them once it knows where home is (``homeLat`` /
``homeLon`` in settings.json, learned from a car at home) and rounds them to whole hours;
without a location it uses settings.json's ``sunrise`` / ``sunset`` hours (6 and 20). Here the
same location (or ``vehicle.teslaAPI.homeLatitude`` / ``homeLongitude``) gives the minute,
every day, offline; without a location the settings' hours stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from astral import Observer
from astral.sun import sun


@dataclass(frozen=True)
class SunHours:
    sunrise_hour: float  # local time of day, hours (5.62 = 05:37)
    sunset_hour: float
    computed: bool  # from the home location (False: settings.json's hours)


def sun_hours(
    day: date,
    home: tuple[float, float] | None,
    fallback: tuple[float, float],
    utc_offset_h: float,
) -> SunHours:
    """The day's sunrise and sunset at ``home`` (latitude, longitude in degrees) as local
    hours (local = UTC + ``utc_offset_h``); ``fallback`` (sunrise, sunset hours) when home is
    unknown or the sun does not rise and set that day (polar day or night)."""
    if home is not None:
        hours = _computed(day, home[0], home[1], utc_offset_h)
        if hours is not None:
            return SunHours(hours[0], hours[1], True)
    return SunHours(fallback[0], fallback[1], False)


def local_utc_offset_h(local: datetime) -> float:
    """This machine's offset from UTC at ``local`` (a naive local time), in hours."""
    offset = local.astimezone().utcoffset()
    return offset.total_seconds() / 3600 if offset is not None else 0.0


@lru_cache(maxsize=16)  # one day at one home: computed once
def _computed(day: date, lat: float, lon: float, utc_offset_h: float) -> tuple[float, float] | None:
    local = timezone(timedelta(hours=utc_offset_h))
    try:
        times = sun(Observer(latitude=lat, longitude=lon), date=day, tzinfo=local)
    except ValueError:  # the sun stays up or down all day there
        return None
    rise, set_ = _hour_of_day(times["sunrise"]), _hour_of_day(times["sunset"])
    return (rise, set_) if rise < set_ else None


def _hour_of_day(moment: datetime) -> float:
    return moment.hour + moment.minute / 60 + moment.second / 3600
