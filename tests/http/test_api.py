"""Every endpoint of the HTTP API over real sockets: TWCManager's shapes and status codes, the
same numbers as the console and ``/api/v1/snapshot``, changes saved through the settings
store, and every kind of bad request refused with 400 naming the field, changing nothing."""

from __future__ import annotations

import json

import pytest
import requests

from tests.http.served import NOW_EPOCH, charging_slave, green_moment_budget, moment, serve
from twcmaster.outputs.console import green_lines
from twcmaster.outputs.http import MAX_BODY_BYTES
from twcmaster.outputs.views import snapshot_json
from twcmaster.settings import SettingsStore

TIMEOUT_S = 5


def get(served, path, **kwargs):
    return requests.get(served.url + path, timeout=TIMEOUT_S, **kwargs)


def post(served, path, body=None, *, data=None, **kwargs):
    payload = data if data is not None else (json.dumps(body) if body is not None else "")
    return requests.post(served.url + path, data=payload, timeout=TIMEOUT_S, **kwargs)


@pytest.fixture
def served(tmp_path):
    with serve(tmp_path) as running:
        yield running


def settings_file(tmp_path):
    path = tmp_path / "settings.json"
    return path.read_bytes() if path.exists() else None


# ----------------------------------------------------------------------------- GET


def test_get_status_has_twcmanagers_fields_and_the_consoles_numbers(served):
    answer = get(served, "/api/getStatus")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    status = answer.json()
    budget = green_moment_budget()
    # The console's lines for this moment: 4956W / 726W, 20.65A - 3.03A.
    lines = green_lines(budget)
    assert "generates 4956W, Consumption 726W" in lines[0]
    assert "20.65A - 3.03A" in lines[1]
    assert status["generationWatts"] == 4956 and status["consumptionWatts"] == 726
    assert status["generationAmps"] == 20.65 and status["consumptionAmps"] == 3.03
    assert status["maxAmpsToDivideAmongSlaves"] == round(budget.amps, 2)
    assert status["currentPolicy"] == "Track Green Energy" and status["isGreenPolicy"] == "Yes"
    assert status["carsCharging"] == 1
    assert status["chargerLoadWatts"] == 3960 and status["chargerLoadAmps"] == 16.5
    # Numbers, never TWCManager's one-element arrays or "%.2f" strings.
    for key in ("chargerLoadAmps", "consumptionAmps", "generationAmps", "chargerLoadWatts"):
        assert isinstance(status[key], int | float), key
    assert status["ScheduledCharging"]["enabled"] is False
    assert status["scheduledChargingStartHour"] == -1
    assert "chargeNowAmps" not in status and "chargeNowTimeEnd" not in status
    # And /api/v1/snapshot says the same, being the same function of the same snapshot.
    whole = get(served, "/api/v1/snapshot").json()
    assert whole == snapshot_json(served.api.snapshot(), time_epoch=NOW_EPOCH)
    assert whole["budget"]["console_lines"] == list(lines)
    assert whole["green"]["generation_w"] == status["generationWatts"]
    assert whole["totals"]["charger_load_w"] == status["chargerLoadWatts"]


def test_get_slave_twcs_per_twc_and_total(tmp_path):
    second = charging_slave(
        twcid="ABCD", actual_amps=0.0, offer_amps=0, max_amps=24.0, vin=None, last_vin=None,
        car_charging=False, voltages=None, lifetime_kwh=None, charger_load_w=0.0,
    )  # fmt: skip
    snapshot = moment(slaves=(charging_slave(), second))
    with serve(tmp_path, snapshot=snapshot) as served:
        twcs = get(served, "/api/getSlaveTWCs").json()
    assert set(twcs) == {"1234", "ABCD", "total"}
    first = twcs["1234"]
    assert first == {
        "TWCID": "1234",
        "carsCharging": 1,
        "chargerLoadInW": 3960,
        "currentVIN": "5YJ3E1EA7KF000001",
        "lastAmpsOffered": 17,
        "lastHeartbeat": 0.4,
        "lastVIN": "5YJ3E1EA7KF000001",
        "lifetimekWh": 1234,
        "maxAmps": 32.0,
        "reportedAmpsActual": 16.5,
        "state": 1,
        "version": 2,
        "voltsPhaseA": 240,
        "voltsPhaseB": 0,
        "voltsPhaseC": 0,
        "chargeTime": "--:--:--",
    }
    assert twcs["ABCD"]["currentVIN"] == "" and twcs["ABCD"]["voltsPhaseA"] == 0
    assert twcs["total"] == {
        "carsCharging": 1,
        "lastAmpsOffered": 17,
        "lifetimekWh": 1234,
        "maxAmps": 24.0,  # the smaller TWC: the bottleneck
        "reportedAmpsActual": 16.5,
        "TWCID": "total",
    }


def test_policy_action_uuid_and_offsets(served):
    assert get(served, "/api/getActivePolicyAction").json() == 3  # tracking green
    policy = get(served, "/api/getPolicy").json()
    assert [rule["name"] for rule in policy] == [
        "Charge Now",
        "Scheduled Charging",
        "Track Green Energy",
        "Non Scheduled Charging",
        "Track Green Energy",
    ]
    assert all(len(r["match"]) == len(r["condition"]) == len(r["value"]) for r in policy)
    assert get(served, "/api/getUUID").text.isdigit()
    assert get(served, "/api/getConsumptionOffsets").json() == {}


def test_active_policy_action_before_the_first_decision_and_without_charging(tmp_path):
    starting = moment(budget=green_moment_budget().__class__(0.0, "starting", "no decision"))
    with serve(tmp_path, snapshot=starting) as served:
        assert get(served, "/api/getActivePolicyAction").json() is None
    stopped = moment(
        budget=green_moment_budget().__class__(0.0, "Non Scheduled Charging", "do not charge")
    )
    with serve(tmp_path, snapshot=stopped) as served:
        assert get(served, "/api/getActivePolicyAction").json() == 2


# ----------------------------------------------------------------------------- POST


def test_charge_now_as_twcmanagers_pages_send_it_and_cancel(served, tmp_path):
    # TWCManager's page posts the form's text as JSON, labelled form-urlencoded.
    answer = post(
        served,
        "/api/chargeNow",
        {"chargeNowRate": "24", "chargeNowDuration": 5400.0},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"status": "success", "rate": 24, "duration": 5400}
    saved = SettingsStore(tmp_path).settings
    assert saved.charge_now_amps == 24 and saved.charge_now_end_epoch == NOW_EPOCH + 5400
    status = get(served, "/api/getStatus").json()
    assert status["chargeNowAmps"] == 24 and status["chargeNowTimeEnd"] == NOW_EPOCH + 5400
    assert post(served, "/api/cancelChargeNow").json() == {"status": "success"}  # empty body
    assert SettingsStore(tmp_path).settings.charge_now_amps == 0
    assert "chargeNowAmps" not in get(served, "/api/getStatus").json()


def test_scheduled_charging_as_twcmanagers_docs_show_it(served, tmp_path):
    example = {
        "enabled": True,
        "startingMinute": 1260,
        "endingMinute": 420,
        "monday": True,
        "tuesday": True,
        "wednesday": True,
        "thursday": True,
        "friday": False,
        "saturday": False,
        "sunday": True,
        "amps": 20,
        "flexBatterySize": 100,
        "flexStartEnabled": True,
    }
    answer = post(served, "/api/setScheduledChargingSettings", example)
    assert answer.status_code == 202
    assert answer.json()["notes"][0].startswith("flexStartEnabled:")  # said, not applied
    schedule = get(served, "/api/getStatus").json()["ScheduledCharging"]
    assert schedule["enabled"] is True and schedule["amps"] == 20
    assert (schedule["startingMinute"], schedule["endingMinute"]) == (1260, 420)
    assert [schedule[d] for d in ("monday", "friday", "sunday")] == [True, False, True]
    assert schedule["flexStartEnabled"] == 0
    window = SettingsStore(tmp_path).settings.schedule[0]
    assert (window.start_hour, window.end_hour, window.days_bitmap) == (21, 7, 0b1001111)
    # Switched off: TWCManager's enabled false.
    assert post(served, "/api/setScheduledChargingSettings", {"enabled": False}).status_code == 202
    assert SettingsStore(tmp_path).settings.schedule == ()
    assert get(served, "/api/getStatus").json()["scheduledChargingStartHour"] == -1


def test_consumption_offsets_added_listed_and_deleted(served, tmp_path):
    body = {"offsetName": "WattsOffset", "offsetValue": 500.5, "offsetUnit": "W"}
    answer = post(served, "/api/addConsumptionOffset", body)
    assert answer.status_code == 200
    assert answer.json() == {"status": "success", **body}
    # 0 disables an offset (TWCManager's docs; its code refused it).
    assert post(
        served, "/api/addConsumptionOffset", body | {"offsetName": "Off", "offsetValue": 0}
    ).ok
    assert get(served, "/api/getConsumptionOffsets").json() == {
        "WattsOffset": {"value": 500.5, "unit": "W"},
        "Off": {"value": 0, "unit": "W"},
    }
    gone = post(served, "/api/deleteConsumptionOffset", {"offsetName": "WattsOffset"})
    assert gone.json() == {"status": "success", "offsetName": "WattsOffset"}
    again = post(served, "/api/deleteConsumptionOffset", {"offsetName": "WattsOffset"})
    assert again.status_code == 404 and again.json()["field"] == "offsetName"
    assert [o.name for o in SettingsStore(tmp_path).settings.consumption_offsets] == ["Off"]


def test_home_location_policy_and_save(served, tmp_path):
    answer = post(served, "/api/setLatLon", {"lat": "-33.86", "lon": 151.2})
    assert answer.status_code == 204 and answer.content == b""
    saved = SettingsStore(tmp_path).settings
    assert (saved.home_lat, saved.home_lon) == (-33.86, 151.2)
    forced = post(served, "/api/setPolicy", {"policy": "Charge Now"})
    assert forced.json() == {"status": "success", "policy": "Charge Now"}
    assert SettingsStore(tmp_path).settings.forced_policy == "Charge Now"
    mode = post(served, "/api/setPolicy", {"policy": "Min+PV"})
    assert mode.json() == {"status": "success", "policy": "Min + Green Energy"}
    assert SettingsStore(tmp_path).settings.forced_policy == "Min + Green Energy"
    assert post(served, "/api/setPolicy", {"policy": "Auto"}).ok
    assert SettingsStore(tmp_path).settings.forced_policy is None
    assert post(served, "/api/saveSettings").status_code == 204


def test_twcmasters_own_controls_as_mqtt_control_has_them(served, tmp_path):
    answer = post(served, "/api/v1/nonScheduled", {"action": 3, "amps": "10"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] == ["nonScheduledAction 3", "nonScheduledAmpsMax 10A"]
    saved = SettingsStore(tmp_path).settings
    assert (saved.non_scheduled_action, saved.non_scheduled_amps_max) == (3, 10)
    assert post(served, "/api/v1/twc/a1b2/allowCharging", {"allowed": "off"}).ok
    assert SettingsStore(tmp_path).settings.denied_twcids == {"A1B2"}
    assert post(served, "/api/v1/twc/A1B2/allowCharging", {"allowed": True}).ok
    assert not SettingsStore(tmp_path).settings.denied_twcids
    answer = post(served, "/api/v1/twc/a1b2/chargePriority", {"priority": "3"})
    assert answer.json()["applied"] == "TWC A1B2 priority 3"
    assert SettingsStore(tmp_path).settings.charge_priority == (("A1B2", 3),)
    assert post(served, "/api/v1/twc/A1B2/chargePriority", {"priority": None}).ok
    assert SettingsStore(tmp_path).settings.charge_priority == ()


# ----------------------------------------------------------------------------- refused

BAD_REQUESTS = [
    ("/api/chargeNow", "{not json", "body"),
    ("/api/chargeNow", "[16, 3600]", "body"),
    ("/api/chargeNow", '"16"', "body"),
    ("/api/chargeNow", "", "body"),
    ("/api/chargeNow", '{"chargeNowRate": 16, "chargeNowRate": 32, "chargeNowDuration": 60}',
     "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowDuration": 60}, "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowRate": 16}, "chargeNowDuration"),
    ("/api/chargeNow", {"chargeNowRate": True, "chargeNowDuration": 60}, "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowRate": [16], "chargeNowDuration": 60}, "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowRate": "lots", "chargeNowDuration": 60}, "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowRate": 0, "chargeNowDuration": 60}, "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowRate": 33, "chargeNowDuration": 60}, "chargeNowRate"),
    ("/api/chargeNow", {"chargeNowRate": 16, "chargeNowDuration": -1}, "chargeNowDuration"),
    ("/api/chargeNow", '{"chargeNowRate": NaN, "chargeNowDuration": 60}', "chargeNowRate"),
    ("/api/chargeNow", '{"chargeNowRate": 1' + "0" * 309 + ', "chargeNowDuration": 60}',
     "chargeNowRate"),
    ("/api/setScheduledChargingSettings", {"startingMinute": 60}, "enabled"),
    ("/api/setScheduledChargingSettings", {"enabled": "maybe"}, "enabled"),
    ("/api/setScheduledChargingSettings", {"enabled": True, "amps": 16, "endingMinute": 9},
     "startingMinute"),
    ("/api/setScheduledChargingSettings",
     {"enabled": True, "amps": 16, "startingMinute": 1500, "endingMinute": 60, "monday": True},
     "startingMinute"),
    ("/api/setScheduledChargingSettings",
     {"enabled": True, "amps": 16, "startingMinute": 60, "endingMinute": 60, "monday": True},
     "endingMinute"),
    ("/api/setScheduledChargingSettings",
     {"enabled": True, "amps": 99, "startingMinute": 60, "endingMinute": 120, "monday": True},
     "amps"),
    ("/api/setScheduledChargingSettings",
     {"enabled": True, "amps": 16, "startingMinute": 60, "endingMinute": 120, "monday": "x"},
     "monday"),
    ("/api/addConsumptionOffset", {"offsetName": "a", "offsetValue": 1}, "offsetUnit"),
    ("/api/addConsumptionOffset", {"offsetName": 5, "offsetValue": 1, "offsetUnit": "W"},
     "offsetName"),
    ("/api/addConsumptionOffset", {"offsetName": "<b>", "offsetValue": 1, "offsetUnit": "W"},
     "offsetName"),
    ("/api/addConsumptionOffset", {"offsetName": "a", "offsetValue": 1, "offsetUnit": "kW"},
     "offsetUnit"),
    ("/api/addConsumptionOffset", {"offsetName": "a", "offsetValue": "x", "offsetUnit": "W"},
     "offsetValue"),
    ("/api/deleteConsumptionOffset", {"offsetName": ["a"]}, "offsetName"),
    ("/api/deleteConsumptionOffset", {}, "offsetName"),
    ("/api/setLatLon", {"lat": 91, "lon": 0}, "lat"),
    ("/api/setLatLon", {"lat": 0}, "lon"),
    ("/api/setLatLon", {"lat": None, "lon": 0}, "lat"),
    ("/api/setPolicy", {"policy": "Sunshine"}, "policy"),
    ("/api/setPolicy", {"policy": 3}, "policy"),
    ("/api/setPolicy", {}, "policy"),
    ("/api/v1/nonScheduled", {}, "action"),
    ("/api/v1/nonScheduled", {"action": 4}, "action"),
    ("/api/v1/nonScheduled", {"action": 1, "amps": 99}, "amps"),  # the action is not applied
    ("/api/v1/nonScheduled", {"action": 1.5}, "action"),
    ("/api/v1/twc/ZZZZ/allowCharging", {"allowed": False}, "twcid"),
    ("/api/v1/twc/2118/allowCharging", {"allowed": "perhaps"}, "allowed"),
    ("/api/v1/twc/2118/allowCharging", {}, "allowed"),
    ("/api/v1/twc/ZZZZ/chargePriority", {"priority": 1}, "twcid"),
    ("/api/v1/twc/2118/chargePriority", {"priority": 2.5}, "priority"),
    ("/api/v1/twc/2118/chargePriority", {"priority": 1001}, "priority"),
    ("/api/v1/twc/2118/chargePriority", {}, "priority"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "field"), BAD_REQUESTS)
def test_a_bad_request_is_refused_naming_the_field_and_changes_nothing(
    served, tmp_path, path, body, field
):
    post(
        served,
        "/api/addConsumptionOffset",
        {"offsetName": "a", "offsetValue": 1, "offsetUnit": "A"},
    )
    before = settings_file(tmp_path)
    data = body if isinstance(body, str) else json.dumps(body)
    answer = post(served, path, data=data.encode())
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["field"] == field
    assert error["error"].startswith(f"{field}: ")
    assert settings_file(tmp_path) == before


def test_bodies_that_are_not_text_too_deep_or_too_large(served):
    assert (
        post(served, "/api/chargeNow", data=b'{"chargeNowRate": "\xff"}').json()["field"] == "body"
    )
    deep = "[" * 1000 + "]" * 1000
    assert post(served, "/api/chargeNow", data=deep).json()["field"] == "body"
    big = post(served, "/api/chargeNow", data=b" " * (MAX_BODY_BYTES + 1))
    assert big.status_code == 413 and "error" in big.json()


def test_unknown_gone_and_wrong_method(served):
    unknown = get(served, "/api/getEverything")
    assert unknown.status_code == 404 and unknown.json()["error"].startswith("no such endpoint")
    assert get(served, "/nothing-here").status_code == 404
    for path in ("/api/sendDebugCommand", "/api/sendStartCommand", "/api/sendStopCommand",
                 "/api/setSetting", "/api/sendTeslaAPICommand"):  # fmt: skip
        gone = post(served, path, {"commandName": "Custom", "customCommand": "FBE0"})
        assert gone.status_code == 410, path
        assert "not provided" in gone.json()["error"]
    assert get(served, "/api/getLastTWCResponse").status_code == 410
    wrong = get(served, "/api/chargeNow")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert "error" in post(served, "/api/getStatus").json()


def test_without_a_settings_store_changes_answer_503_and_reading_works(tmp_path):
    with serve(tmp_path, remote=False) as served:
        for path in ("/api/chargeNow", "/api/cancelChargeNow", "/api/setLatLon"):
            refused = post(served, path, {"chargeNowRate": 16, "chargeNowDuration": 60})
            assert refused.status_code == 503, path
            assert "settings" in refused.json()["error"]
        assert get(served, "/api/getStatus").ok
        assert get(served, "/api/getConsumptionOffsets").json() == {}


# ----------------------------------------------------------------------------- health


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({}, 200, "1 TWC(s) answering"),
        ({"link_up": False}, 503, "the serial port is not open"),
        ({"slaves": ()}, 503, "no TWC has linked: none answers the master"),
        (
            {"slaves": (charging_slave(seconds_since_reply=7.5),)},
            503,
            "no TWC has replied for 7.5s",
        ),
    ],
    ids=["answering", "port-closed", "no-twc", "twc-silent"],
)
def test_health(tmp_path, changes, status, reason):
    with serve(tmp_path, snapshot=moment(**changes)) as served:
        answer = get(served, "/health")
    assert answer.status_code == status
    body = answer.json()
    assert body["reason"] == reason
    assert body["status"] == ("ok" if status == 200 else "unhealthy")


def test_a_bug_answers_500_and_the_server_goes_on(tmp_path):
    calls = []

    def broken():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return moment()()

    with serve(tmp_path, snapshot=broken) as served:
        first = get(served, "/api/getStatus")
        assert first.status_code == 500 and "internal error" in first.json()["error"]
        assert get(served, "/api/getStatus").ok
