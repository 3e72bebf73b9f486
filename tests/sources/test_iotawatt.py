"""IotaWatt's status API against a loopback server answering with its real document."""

from __future__ import annotations

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import (
    assert_http_failures,
    assert_refused,
    assert_unexpected_answer,
)
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.iotawatt import PATH, IotaWattSource

TIMING = SourceTiming(timeout_s=1.0)
STATUS = {
    "outputs": [
        {"name": "Consumption", "units": "Watts", "value": 1559.6},
        {"name": "Solar", "units": "Watts", "value": 3480.2},
        {"name": "Grid_Volts", "units": "Volts", "value": 231.2},
    ]
}


def source_for(server, timing=TIMING, port=None, **config) -> IotaWattSource:
    settings = {
        "serverIP": "127.0.0.1",
        "serverPort": port or server.port,
        "outputConsumption": "Consumption",
        "outputGeneration": "Solar",
        **config,
    }
    return IotaWattSource(settings, timing)


def test_outputs_by_name(http_server):
    http_server.route(PATH, Canned.json(STATUS))

    source = source_for(http_server)

    assert source.fetch() == Reading(consumption_w=1559.6, generation_w=3480.2)
    [request] = http_server.requests_to(PATH)
    assert request.query == {"outputs": [""]}
    assert "generation 'Solar'" in source.describe()


def test_generation_only(http_server):
    http_server.route(PATH, Canned.json(STATUS))

    reading = source_for(http_server, outputConsumption=None).fetch()

    assert reading == Reading(generation_w=3480.2)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"outputs": [{"name": "Consumption", "value": 1}]}, "no output named 'Solar'"),
        ({"inputs": []}, "missing 'outputs'"),
        ({"outputs": [{"name": "Solar"}, {"name": "Consumption", "value": 1}]}, "no 'value'"),
        ({"outputs": [{"name": "Consumption", "value": "NaN"}]}, "expected a finite number"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    assert_unexpected_answer(http_server, PATH, source_for, document, expected)


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for)
    assert_refused(refused_url, source_for)


def test_check():
    assert IotaWattSource.check({"serverIP": "10.0.0.3", "outputGeneration": "Solar"}) == []
    assert [k for k, _ in IotaWattSource.check({"serverIP": "10.0.0.3"})] == [""]
    assert [k for k, _ in IotaWattSource.check({"outputGeneration": "x"})] == ["serverIP"]
    assert [k for k, _ in IotaWattSource.check({"serverIP": "h", "outputGeneration": 5.5})] == [
        "outputGeneration"
    ]
