"""smart-me's cloud API against a loopback server standing in for smart-me.com."""

from __future__ import annotations

import base64

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import assert_http_failures, assert_refused, fetch_error
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.smartme import PATH, SmartMeSource

TIMING = SourceTiming(timeout_s=1.0)
PASSWORD = "Tr0ub4dor&3"
DEVICE = {
    "Id": "5f8f7c8e-1c1d-4d55-9d0b-2f4b3e6a9c11",
    "Name": "House meter",
    "Serial": 1234567,
    "DeviceEnergyType": 1,
    "MeterSubType": 0,
    "FamilyType": 6,
    "ActivePower": -1.9204,
    "ActivePowerUnit": "kW",
    "CounterReading": 12345.678,
    "CounterReadingUnit": "kWh",
    "CounterReadingImport": 12345.678,
    "CounterReadingExport": 2345.678,
    "SwitchOn": True,
    "Voltage": 231.2,
    "VoltageL1": 231.2,
    "Current": 8.3,
    "PowerFactor": 0.98,
    "Temperature": 31.5,
    "ValueDate": "2024-06-01T10:00:00Z",
}


def source_for(server, timing=TIMING, port=None, **config) -> SmartMeSource:
    settings = {
        "username": "me@example.org",
        "password": PASSWORD,
        "serialNumber": "1234567",
        "apiURL": f"http://127.0.0.1:{port or server.port}",
        **config,
    }
    return SmartMeSource(settings, timing)


def test_exporting_in_kw(http_server):
    http_server.route(PATH, Canned.json(DEVICE))

    reading = source_for(http_server).fetch()

    assert reading == Reading(
        generation_w=pytest.approx(1920.4),
        consumption_w=0.0,
        grid_w=pytest.approx(-1920.4),
        voltage_v=231.2,
    )
    [request] = http_server.requests_to(PATH)
    assert request.param("serial") == "1234567"
    expected = base64.b64encode(f"me@example.org:{PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


def test_importing_in_watts(http_server):
    http_server.route(PATH, Canned.json({**DEVICE, "ActivePower": 450, "ActivePowerUnit": "W"}))

    reading = source_for(http_server).fetch()

    assert (reading.generation_w, reading.consumption_w, reading.grid_w) == (0.0, 450.0, 450.0)


def test_wrong_login_hint_without_the_password(http_server):
    http_server.route(PATH, Canned(401, f"bad password {PASSWORD}".encode()))

    message = fetch_error(source_for(http_server))

    assert "check username and password" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"Name": "x"}, "missing 'ActivePower'"),
        ({**DEVICE, "ActivePower": None}, "ActivePower is null"),
        ([DEVICE], "the document is a list"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    http_server.route(PATH, Canned.json(document))

    message = fetch_error(source_for(http_server))

    assert "unexpected answer" in message
    assert expected in message or "expected a number" in message


def test_http_failures(http_server, refused_url):
    assert_http_failures(http_server, PATH, source_for)
    assert_refused(refused_url, source_for)


def test_check():
    assert SmartMeSource.check({"username": "u", "password": "p", "serialNumber": 12}) == []
    assert [k for k, _ in SmartMeSource.check({"username": "u"})] == ["password", "serialNumber"]
    assert SmartMeSource({"serialNumber": 1}, TIMING).url == "https://smart-me.com" + PATH
