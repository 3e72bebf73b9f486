"""Fronius Solar API v1 against a loopback server answering with recorded payloads."""

from __future__ import annotations

import copy
import time

import pytest

from tests.sources.conftest import Canned
from twcmaster.sources.base import Reading, SourceError, SourceTiming
from twcmaster.sources.fronius import INVERTER_PATH, POWER_FLOW_PATH, FroniusSource

TIMING = SourceTiming(interval_s=10, timeout_s=1.0, max_age_s=60)

POWER_FLOW = {
    "Body": {
        "Data": {
            "Inverters": {
                "1": {"DT": 1, "P": 3480.0, "E_Day": 12345, "E_Year": 2345678, "E_Total": 9876543}
            },
            "Site": {
                "Mode": "meter",
                "Meter_Location": "grid",
                "P_PV": 3480.0,
                "P_Grid": -1920.4,
                "P_Load": -1559.6,
                "P_Akku": None,
                "rel_Autonomy": 100.0,
                "rel_SelfConsumption": 44.8,
                "E_Day": 12345,
                "E_Year": 2345678,
                "E_Total": 9876543,
            },
            "Version": "12",
        }
    },
    "Head": {
        "RequestArguments": {},
        "Status": {"Code": 0, "Reason": "", "UserMessage": ""},
        "Timestamp": "2024-06-01T12:00:00+02:00",
    },
}

INVERTER = {
    "Body": {
        "Data": {
            "PAC": {"Unit": "W", "Value": 3480},
            "UAC": {"Unit": "V", "Value": 231.4},
            "IAC": {"Unit": "A", "Value": 15.1},
            "FAC": {"Unit": "Hz", "Value": 50.01},
            "DAY_ENERGY": {"Unit": "Wh", "Value": 12345},
            "TOTAL_ENERGY": {"Unit": "Wh", "Value": 9876543},
        }
    },
    "Head": {
        "RequestArguments": {
            "DataCollection": "CommonInverterData",
            "DeviceId": "1",
            "Scope": "Device",
        },
        "Status": {"Code": 0, "Reason": "", "UserMessage": ""},
        "Timestamp": "2024-06-01T12:00:00+02:00",
    },
}

# A sleeping inverter at night: the Datamanager answers, the inverter does not.
INVERTER_ASLEEP = {
    "Body": {"Data": {}},
    "Head": {
        "RequestArguments": {"DataCollection": "CommonInverterData", "DeviceId": "1"},
        "Status": {
            "Code": 12,
            "Reason": "Transfer timeout.",
            "UserMessage": "",
        },
        "Timestamp": "2024-06-01T23:00:00+02:00",
    },
}


def site(**changes):
    document = copy.deepcopy(POWER_FLOW)
    document["Body"]["Data"]["Site"].update(changes)
    return document


def source_for(server, timing=TIMING, **config) -> FroniusSource:
    return FroniusSource({"serverIP": server.host, "serverPort": server.port, **config}, timing)


def test_day_with_meter(http_server):
    http_server.route(POWER_FLOW_PATH, Canned.json(POWER_FLOW))
    http_server.route(INVERTER_PATH, Canned.json(INVERTER))

    reading = source_for(http_server).fetch()

    assert reading == Reading(
        generation_w=3480.0, consumption_w=1559.6, grid_w=-1920.4, voltage_v=231.4
    )
    [flow] = http_server.requests_to(POWER_FLOW_PATH)
    assert flow.query == {"Scope": ["System"]}
    [inverter] = http_server.requests_to(INVERTER_PATH)
    assert inverter.param("DataCollection") == "CommonInverterData"
    assert inverter.param("DeviceID") == "1"


def test_night_pv_null_is_zero_and_sleeping_inverter_leaves_voltage_unknown(http_server):
    http_server.route(POWER_FLOW_PATH, Canned.json(site(P_PV=None, P_Grid=420.0, P_Load=-420.0)))
    http_server.route(INVERTER_PATH, Canned.json(INVERTER_ASLEEP))

    reading = source_for(http_server).fetch()

    assert reading == Reading(generation_w=0.0, consumption_w=420.0, grid_w=420.0, voltage_v=None)


def test_without_smart_meter_only_generation(http_server):
    http_server.route(
        POWER_FLOW_PATH, Canned.json(site(Mode="produce-only", P_Load=None, P_Grid=None))
    )
    http_server.route(INVERTER_PATH, Canned.json(INVERTER))

    reading = source_for(http_server).fetch()

    assert reading.generation_w == 3480.0
    assert reading.consumption_w is None
    assert reading.grid_w is None


def test_several_inverters_are_summed(make_server):
    first = make_server()
    second = make_server(host="127.0.0.2", port=first.port)  # same serverPort, other address
    first.route(POWER_FLOW_PATH, Canned.json(POWER_FLOW))
    first.route(INVERTER_PATH, Canned.json(INVERTER))
    second.route(POWER_FLOW_PATH, Canned.json(site(P_PV=1000.0, P_Load=-200.0, P_Grid=-800.0)))

    source = FroniusSource(
        {"serverIP": ["127.0.0.1", "127.0.0.2"], "serverPort": str(first.port)}, TIMING
    )
    reading = source.fetch()

    assert reading.generation_w == pytest.approx(4480.0)
    assert reading.consumption_w == pytest.approx(1759.6)
    assert reading.grid_w == pytest.approx(-2720.4)
    assert reading.voltage_v == 231.4  # from the first inverter
    assert second.requests_to(INVERTER_PATH) == []
    assert "127.0.0.2" in source.describe()


def test_status_code_is_an_error(http_server):
    document = site()
    document["Head"]["Status"] = {"Code": 8, "Reason": "Transfer timeout.", "UserMessage": ""}
    http_server.route(POWER_FLOW_PATH, Canned.json(document))

    with pytest.raises(SourceError) as caught:
        source_for(http_server).fetch()

    message = str(caught.value)
    assert message.startswith("Fronius: GET http://127.0.0.1:")
    assert POWER_FLOW_PATH in message
    assert "status code 8: Transfer timeout." in message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b'{"message": "Login first"}', "HTTP 401 Unauthorized: Login first"),
        (403, b"<html><title>403 Forbidden</title></html>", "HTTP 403 Forbidden: 403 Forbidden"),
        (404, b"no such page", "HTTP 404 Not Found: no such page"),
        (429, b"slow down", "HTTP 429 Too Many Requests: slow down (rate limited"),
        (500, b"", "HTTP 500 Internal Server Error"),
        (503, b"Datamanager is updating", "HTTP 503 Service Unavailable: Datamanager is updating"),
    ],
)
def test_http_error_statuses(http_server, status, body, expected):
    http_server.route(POWER_FLOW_PATH, Canned(status, body))

    with pytest.raises(SourceError) as caught:
        source_for(http_server).fetch()

    assert expected in str(caught.value)
    assert str(caught.value).startswith("Fronius: GET http://127.0.0.1:")


def test_timeout_is_bounded(http_server):
    http_server.route(POWER_FLOW_PATH, Canned.json(POWER_FLOW, delay_s=5.0))
    source = source_for(http_server, SourceTiming(timeout_s=0.3))

    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 0\.3 s"):
        source.fetch()
    assert time.monotonic() - started < 2.0


def test_connection_refused(refused_url):
    port = refused_url.rsplit(":", 1)[1]
    source = FroniusSource({"serverIP": "127.0.0.1", "serverPort": port}, TIMING)

    with pytest.raises(SourceError) as caught:
        source.fetch()

    assert "cannot connect: connection refused" in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_dropped_connection(http_server):
    http_server.route(POWER_FLOW_PATH, Canned(drop=True))

    with pytest.raises(SourceError, match="cannot connect"):
        source_for(http_server).fetch()


def test_malformed_json(http_server):
    http_server.route(POWER_FLOW_PATH, Canned(200, b'{"Body": {"Data": '))

    with pytest.raises(SourceError) as caught:
        source_for(http_server).fetch()

    assert "malformed JSON" in str(caught.value)
    assert '{"Body": {"Data":' in str(caught.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"Head": {"Status": {"Code": 0}}, "Body": {"Data": {}}}, "missing 'Site' in Body.Data"),
        ({"Body": {"Data": {"Site": {}}}}, "missing 'Head'"),
        (site(P_PV="lots"), "P_PV is 'lots', expected a number"),
        ([1, 2, 3], "the document is a list"),
    ],
)
def test_wrong_shape(http_server, document, expected):
    http_server.route(POWER_FLOW_PATH, Canned.json(document))

    with pytest.raises(SourceError) as caught:
        source_for(http_server).fetch()

    assert "unexpected answer" in str(caught.value)
    assert expected in str(caught.value)


def test_port_defaults_to_80_and_check():
    source = FroniusSource({"serverIP": "192.0.2.10"}, TIMING)
    assert source.base_urls == ["http://192.0.2.10:80"]
    assert FroniusSource.check({"serverIP": "192.0.2.10", "serverPort": "80"}) == []
    assert FroniusSource.check({})[0][0] == "serverIP"
