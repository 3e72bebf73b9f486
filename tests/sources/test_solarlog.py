"""Solar-Log's open JSON interface against a loopback server answering with its real
documents."""

from __future__ import annotations

import json

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import assert_http_failures, assert_refused, fetch_error
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.solarlog import PATH, SolarLogSource

TIMING = SourceTiming(timeout_s=1.0)

LIVE = {
    "801": {
        "170": {
            "100": "01.06.24 12:00:00",
            "101": 3480,  # Pac
            "102": 3600,  # Pdc
            "103": 231,  # Uac
            "104": 600,  # DCul
            "105": 12345,  # yesterday
            "106": 23456,
            "107": 345678,
            "108": 4567890,
            "109": 9000,
            "110": 2360,  # Pac consumption
            "111": 6543,
            "112": 76543,
            "113": 876543,
            "114": 9876543,
            "115": 10000,
            "116": 0,
        },
        "175": {"0": {"101": 1}, "1": {"101": 0}},
    }
}
INVERTERS = {"782": {"0": "3480", "1": "0", "2": "800", "3": "0"}}


def answer(request):
    query = json.loads(request.body)
    return Canned.json(LIVE if "801" in query else INVERTERS, headers={"Content-Type": "text/html"})


def source_for(server, timing=TIMING, port=None, **config) -> SolarLogSource:
    return SolarLogSource(
        {"serverIP": "127.0.0.1", "serverPort": port or server.port, **config}, timing
    )


def test_live_figures(http_server):
    http_server.route(PATH, answer, method="POST")

    assert source_for(http_server).fetch() == Reading(generation_w=3480.0, consumption_w=2360.0)
    [request] = http_server.requests
    assert json.loads(request.body) == {"801": {"170": None, "175": None}}


def test_excluded_inverters_are_taken_off_the_consumption(http_server):
    http_server.route(PATH, answer, method="POST")

    # Position 0 is inverter 2 (active per 801.175.0): its 800 W are taken off. Position 1
    # is inverter 3, switched off per 801.175.1: nothing taken.
    reading = source_for(http_server, excludeConsumptionInverters=[2, 3]).fetch()

    assert reading == Reading(generation_w=3480.0, consumption_w=1560.0)
    assert [json.loads(r.body) for r in http_server.requests] == [
        {"801": {"170": None, "175": None}},
        {"782": None},
    ]


def test_excluded_inverter_missing(http_server):
    http_server.route(PATH, answer, method="POST")

    message = fetch_error(source_for(http_server, excludeConsumptionInverters=[7]))

    assert "no inverter 7 in 782" in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"801": {}}, "missing '170' in 801"),
        ({"801": {"170": {"101": "x", "110": 1}}}, "801.170.101 is 'x'"),
        ({"QUERY IMPOSSIBLE 000": "ACCESS DENIED"}, "missing '801'"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    http_server.route(PATH, Canned.json(document), method="POST")

    message = fetch_error(source_for(http_server))

    assert "unexpected answer" in message
    assert expected in message


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for, method="POST")
    assert_refused(refused_url, source_for)


def test_check():
    assert SolarLogSource.check({"serverIP": "h", "excludeConsumptionInverters": [1, 2]}) == []
    problems = SolarLogSource.check({"serverIP": "h", "excludeConsumptionInverters": "1,2"})
    assert [k for k, _ in problems] == ["excludeConsumptionInverters"]
