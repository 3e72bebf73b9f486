"""OpenWeatherMap's One Call API against a loopback server answering with its real document;
the estimate at fixed times of a June day."""

from __future__ import annotations

import calendar

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import (
    assert_http_failures,
    assert_refused,
    assert_unexpected_answer,
    fetch_error,
)
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.openweathermap import OpenWeatherMapSource

TIMING = SourceTiming(timeout_s=1.0)
API_KEY = "2f5d1c0a9b8e7d6c5b4a39281706f5e4"  # made up, in OpenWeatherMap's format
PATH = "/data/3.0/onecall"
PEAK = [2.0, 3.0, 4.5, 5.5, 6.0, 6.5, 6.5, 6.0, 5.0, 4.0, 2.5, 2.0]  # kW; June: 6.5
DAY = calendar.timegm((2024, 6, 15, 0, 0, 0))  # mid-month: June in every time zone
SUNRISE, SUNSET = DAY + 4 * 3600 + 1800, DAY + 20 * 3600 + 1800  # midday 12:30 UTC
NOON = DAY + 12 * 3600


def one_call(clouds=30, temp=22.0, hourly_clouds=None):
    hourly = [
        {"dt": DAY + h * 3600, "temp": temp, "clouds": hourly_clouds or clouds, "uvi": 7.1}
        for h in range(6, 18)
    ]
    return {
        "lat": 52.37,
        "lon": 4.89,
        "timezone": "Europe/Amsterdam",
        "timezone_offset": 7200,
        "current": {
            "dt": NOON,
            "sunrise": SUNRISE,
            "sunset": SUNSET,
            "temp": temp,
            "feels_like": temp,
            "pressure": 1016,
            "humidity": 48,
            "clouds": clouds,
            "uvi": 7.4,
            "weather": [{"id": 802, "main": "Clouds", "description": "scattered clouds"}],
        },
        "hourly": hourly,
        "daily": [
            {
                "dt": DAY + 36 * 3600,
                "sunrise": SUNRISE + 86400,
                "sunset": SUNSET + 86400,
                "temp": {"day": temp, "min": 14.0, "max": temp + 3},
                "clouds": 90,
            }
        ],
    }


def source_for(server, timing=TIMING, port=None, at=NOON, **config) -> OpenWeatherMapSource:
    settings = {
        "Latitude": 52.37,
        "Longitude": 4.89,
        "APIKey": API_KEY,
        "PeakKW": PEAK,
        "apiURL": f"http://127.0.0.1:{port or server.port}{PATH}",
        **config,
    }
    return OpenWeatherMapSource(settings, timing, clock=lambda: at)


def test_noon_estimate(http_server):
    http_server.route(PATH, Canned.json(one_call(clouds=30)))

    source = source_for(http_server)

    assert source.fetch() == Reading(generation_w=pytest.approx(6500 * 0.9))
    [request] = http_server.requests_to(PATH)
    assert request.param("appid") == API_KEY
    assert (request.param("lat"), request.param("lon")) == ("52.37", "4.89")
    assert (request.param("exclude"), request.param("units")) == ("minutely", "metric")


def test_morning_uses_the_nearest_hour_and_the_day_floor(http_server):
    http_server.route(PATH, Canned.json(one_call(clouds=0, hourly_clouds=60)))

    reading = source_for(http_server, at=DAY + 6 * 3600).fetch()  # 1.5 h after sunrise

    assert reading.generation_w == pytest.approx(6500 * 0.2 * 0.8)


def test_afternoon_ramp_down(http_server):
    http_server.route(PATH, Canned.json(one_call(clouds=0)))

    reading = source_for(http_server, at=DAY + 17 * 3600).fetch()  # 3.5 h before sunset

    assert reading.generation_w == pytest.approx(6500 * 3.5 / 8)


def test_night_is_zero_and_heat_lowers_it(http_server):
    http_server.route(PATH, Canned.json(one_call(clouds=0, temp=36.0)))

    assert source_for(http_server, at=DAY + 2 * 3600).fetch().generation_w == 0.0
    assert source_for(http_server).fetch().generation_w == pytest.approx(6500 * 0.95)


def test_daily_entry_with_temperature_object(http_server):
    document = one_call(clouds=0)
    document["current"]["dt"] = NOON - 7200
    document["hourly"] = []
    document["daily"][0].update(dt=NOON + 600, temp={"day": 36.0, "min": 20.0, "max": 37.0})
    http_server.route(PATH, Canned.json(document))

    # The daily entry is the nearest: its 90 % clouds and its day temperature count.
    reading = source_for(http_server).fetch()

    assert reading.generation_w == pytest.approx(6500 * 0.7 * 0.95)


def test_wrong_key_hint_without_the_key(http_server):
    body = b'{"cod":401, "message": "Invalid API key. Please see https://openweathermap.org/faq"}'
    http_server.route(PATH, Canned(401, body))

    message = fetch_error(source_for(http_server))

    assert "check APIKey" in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"cod": 200}, "missing 'current'"),
        ({**one_call(), "current": {"dt": NOON, "sunrise": SUNRISE}}, "missing 'sunset'"),
        (
            {**one_call(), "current": {"dt": NOON, "sunrise": SUNRISE, "sunset": SUNSET}},
            "missing 'clouds'",
        ),
        ({**one_call(), "hourly": ["x"]}, "hourly[0] is not an object"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    assert_unexpected_answer(http_server, PATH, source_for, document, expected)


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for)
    assert_refused(refused_url, source_for)


def test_check():
    good = {"Latitude": 52.3, "Longitude": 4.9, "APIKey": "k", "PeakKW": PEAK}
    assert OpenWeatherMapSource.check(good) == []
    problems = OpenWeatherMapSource.check({"Latitude": 95, "PeakKW": [1, 2]})
    assert [k for k, _ in problems] == ["APIKey", "Latitude", "Longitude", "PeakKW"]
    assert OpenWeatherMapSource.default_interval_s == 120
    assert OpenWeatherMapSource.check({**good, "PeakKW": 8.5}) == []
    assert [k for k, _ in OpenWeatherMapSource.check({**good, "PeakKW": "8"})] == ["PeakKW"]


def test_one_peak_for_every_month(http_server):
    http_server.route(PATH, Canned.json(one_call(clouds=0)))

    assert source_for(http_server, PeakKW=8.5).fetch().generation_w == pytest.approx(8500.0)
