"""The Growatt cloud (ShinePhone API) against a loopback server answering with its real
documents."""

from __future__ import annotations

import datetime
import hashlib
import urllib.parse

import pytest

from tests.sources.conftest import Canned
from tests.sources.http_cases import assert_refused, fetch_error
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.growatt import GrowattSource, hash_password

TIMING = SourceTiming(timeout_s=1.0)
PASSWORD = "s0lar-Pan3ls"
LOGIN = {
    "back": {
        "msg": "",
        "success": True,
        "user": {"id": 1234567, "accountName": "me@example.org", "rightlevel": 1},
        "data": [{"plantName": "Home", "plantId": "9876543"}],
    }
}
PLANTS = {
    "back": {
        "data": [{"plantMoneyText": "0", "plantName": "Home", "plantId": "9876543"}],
        "totalData": {"eTotalSum": "5432.1kWh"},
        "success": True,
    }
}
DEVICES = {
    "deviceList": [
        {
            "deviceType": "mix",
            "deviceAilas": "Garage",
            "deviceSn": "NHB691514F",
            "deviceStatus": "5",
            "energy": "12.3",
        }
    ],
    "totalData": {},
}


def status(ppv="3.48", load="1.56", soc="80"):
    return {
        "result": 1,
        "obj": {
            "SOC": soc,
            "chargePower": "0",
            "fAc": "50.0",
            "lost": "mix.status.normal",
            "pLocalLoad": load,
            "pPv1": "1800",
            "pPv2": "1680",
            "pactogrid": "1.92",
            "pactouser": "0",
            "pdisCharge1": "0",
            "ppv": ppv,
            "priorityChoose": "0",
            "status": "5",
            "unit": "kW",
            "vAc1": "231.2",
        },
    }


def serve(server, status_doc=None):
    server.route("/newTwoLoginAPI.do", Canned.json(LOGIN), method="POST")
    server.route("/PlantListAPI.do", Canned.json(PLANTS))
    server.route("/newTwoPlantAPI.do", Canned.json(DEVICES))
    server.route("/newMixApi.do", Canned.json(status_doc or status()), method="POST")


def source_for(server, timing=TIMING, port=None, at=None, **config) -> GrowattSource:
    settings = {
        "username": "me@example.org",
        "password": PASSWORD,
        "apiURL": f"http://127.0.0.1:{port or server.port}/",
        **config,
    }
    moment = at or datetime.datetime(2024, 6, 1, 12, 0)
    return GrowattSource(settings, timing, clock=lambda: moment)


def test_password_hash_as_the_app_makes_it():
    # md5("password") = 5f4dcc3b5aa765d61d8327deb882cf99: no '0' at an even position.
    assert hash_password("password") == hashlib.md5(b"password").hexdigest()
    # md5("123456") = e10adc3949ba59abbe56e057f20f883e: its '0's at 2 and 26 become 'c',
    # the one at 21 (odd) stays.
    assert hash_password("123456") == "e1cadc3949ba59abbe56e057f2cf883e"


def test_login_plant_device_status(http_server):
    serve(http_server)
    source = source_for(http_server)

    assert source.fetch() == Reading(generation_w=3480.0, consumption_w=1560.0)

    [login] = http_server.requests_to("/newTwoLoginAPI.do")
    form = urllib.parse.parse_qs(login.body.decode())
    assert form == {"userName": ["me@example.org"], "password": [hash_password(PASSWORD)]}
    assert http_server.requests_to("/PlantListAPI.do")[0].param("userId") == "1234567"
    devices = http_server.requests_to("/newTwoPlantAPI.do")[0]
    assert (devices.param("op"), devices.param("plantId")) == ("getAllDeviceList", "9876543")
    mix = http_server.requests_to("/newMixApi.do")[0]
    assert mix.param("op") == "getSystemStatus_KW"
    assert (mix.param("mixId"), mix.param("plantId")) == ("NHB691514F", "9876543")

    source.fetch()  # the login is kept
    assert len(http_server.requests_to("/newTwoLoginAPI.do")) == 1
    assert len(http_server.requests_to("/newMixApi.do")) == 2


def test_a_failure_logs_in_again(http_server):
    serve(http_server)
    http_server.route(
        "/newMixApi.do", Canned(502, b"bad gateway"), Canned.json(status()), method="POST"
    )
    source = source_for(http_server)

    assert "HTTP 502" in fetch_error(source)
    assert source.fetch().generation_w == 3480.0
    assert len(http_server.requests_to("/newTwoLoginAPI.do")) == 2


def test_battery_counted_overnight_with_hysteresis(http_server):
    serve(http_server, status(ppv="0", load="0.4", soc="60"))
    config = {
        "useBatteryAt": 50,
        "useBatteryTill": 30,
        "batteryMaxOutput": 2500,
        "useBatteryBefore": "06:30",
    }
    night = source_for(http_server, at=datetime.datetime(2024, 6, 1, 2, 0), **config)

    assert night.fetch().generation_w == 2500.0  # 60 % > 50 %: the battery counts
    serve(http_server, status(ppv="0", load="0.4", soc="40"))
    assert night.fetch().generation_w == 2500.0  # still above 30 %
    serve(http_server, status(ppv="0", load="0.4", soc="30"))
    assert night.fetch().generation_w == 0.0  # down to 30 %: stop
    serve(http_server, status(ppv="0", load="0.4", soc="40"))
    assert night.fetch().generation_w == 0.0  # 40 % is not above 50 % again

    morning = source_for(http_server, at=datetime.datetime(2024, 6, 1, 7, 0), **config)
    serve(http_server, status(ppv="0.5", load="0.4", soc="90"))
    assert morning.fetch().generation_w == 500.0  # after useBatteryBefore


@pytest.mark.parametrize(
    ("route", "answer", "expected"),
    [
        (
            "/newTwoLoginAPI.do",
            Canned.json({"back": {"success": False, "msg": "501", "error": "User not exist"}}),
            "login refused: 501",
        ),
        ("/PlantListAPI.do", Canned.json({"back": {"data": []}}), "the account has no plant"),
        ("/newTwoPlantAPI.do", Canned.json({"deviceList": []}), "the plant has no device"),
        ("/newMixApi.do", Canned.json({"result": 0, "obj": None}), "obj is not the device's"),
        ("/newMixApi.do", Canned.json(status(ppv="--")), "obj.ppv is '--'"),
        ("/newMixApi.do", Canned(200, b"<html>login</html>"), "malformed JSON"),
    ],
)
def test_errors(http_server, route, answer, expected):
    serve(http_server)
    method = "POST" if route in ("/newTwoLoginAPI.do", "/newMixApi.do") else None
    http_server.route(route, answer, method=method)

    message = fetch_error(source_for(http_server))

    assert expected in message
    assert PASSWORD not in message and hash_password(PASSWORD) not in message


def test_timeout_and_refused(http_server, refused_url):
    serve(http_server)
    http_server.route("/newTwoLoginAPI.do", Canned.json(LOGIN, delay_s=3.0), method="POST")
    message = fetch_error(source_for(http_server, SourceTiming(timeout_s=0.3)))
    assert "timed out after 0.3 s" in message
    assert_refused(refused_url, source_for)


def test_check():
    good = {"username": "u", "password": "p", "useBatteryBefore": "06:30", "useBatteryAt": 50}
    assert GrowattSource.check(good) == []
    problems = GrowattSource.check(
        {"username": "u", "useBatteryBefore": "6h", "batteryMaxOutput": -1}
    )
    assert [k for k, _ in problems] == ["password", "batteryMaxOutput", "useBatteryBefore"]
