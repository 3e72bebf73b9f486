"""SmartPi's power API against a loopback server answering with its real document."""

from __future__ import annotations

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import (
    assert_http_failures,
    assert_refused,
    assert_unexpected_answer,
)
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.smartpi import PATH, SmartPiSource

TIMING = SourceTiming(timeout_s=1.0)


def power_now(*watts):
    phases = [
        {
            "phase": index + 1,
            "name": f"phase {index + 1}",
            "values": [{"type": "power", "unity": "W", "info": "", "data": value}],
        }
        for index, value in enumerate(watts)
    ]
    return {
        "serial": "smartpi160812345",
        "name": "House",
        "lat": 52.3667,
        "lng": 9.7167,
        "time": "2024-06-01 12:00:00",
        "softwareversion": "",
        "ipaddress": "192.168.1.30",
        "datasets": [{"time": "2024-06-01 12:00:00", "phases": phases}],
    }


def source_for(server, timing=TIMING, port=None, **config) -> SmartPiSource:
    settings = {"serverIP": "127.0.0.1", "serverPort": str(port or server.port), **config}
    return SmartPiSource(settings, timing)


def test_fed_in_phases_are_generation(http_server):
    http_server.route(PATH, Canned.json(power_now(-1200.5, -800.0, 300.0)))

    assert source_for(http_server).fetch() == Reading(generation_w=2000.5)
    assert source_for(http_server, showConsumption=True).fetch() == Reading(
        generation_w=2000.5, consumption_w=300.0
    )


def test_drawing_on_every_phase(http_server):
    http_server.route(PATH, Canned.json(power_now("100.0", 200, 0)))

    reading = source_for(http_server, showConsumption=True).fetch()

    assert reading == Reading(generation_w=0.0, consumption_w=300.0)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"datasets": []}, "datasets is empty"),
        ({"datasets": [{"time": "x"}]}, "missing 'phases'"),
        ({"datasets": [{"phases": [{"values": []}]}]}, "phases[0] has no values[0].data"),
        (power_now(1, "lots"), "phases[1].values[0].data is 'lots'"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    assert_unexpected_answer(http_server, PATH, source_for, document, expected)


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for)
    assert_refused(refused_url, source_for)


def test_check():
    assert (
        SmartPiSource.check({"serverIP": "h", "serverPort": "1080", "showConsumption": True}) == []
    )
    problems = SmartPiSource.check({"serverIP": "h", "showConsumption": "yes"})
    assert [k for k, _ in problems] == ["showConsumption"]
    assert SmartPiSource({"serverIP": "h"}, TIMING).url == "http://h:80/api/all/power/now"
