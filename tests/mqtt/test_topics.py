"""The status topics' payload texts (TWCManager's formats) and rate-limit rules, without a
broker: ``outputs/mqtttopics.py`` from snapshots as the core builds them."""

from __future__ import annotations

import re

import pytest

from tests.mqtt.conftest import app_config, replace, slave, snapshot
from twcmaster.control.green import GreenBudget, SiteReading
from twcmaster.control.policy import Budget
from twcmaster.outputs.mqtttopics import (
    AMPS,
    AT_ONCE,
    SENTENCE,
    SLAVE_KEYS,
    VOLTS,
    WATTS,
    float_text,
    number_text,
    status_values,
    wording,
)
from twcmaster.settings import RuntimeSettings

FLOAT = re.compile(r"-?\d+\.\d{1,2}")  # TWCManager's str(float): "16.0", "15.94"
INT = re.compile(r"-?\d+")


def payloads(snap, **config) -> dict[str, str]:
    return {topic: v.payload for topic, v in status_values(snap, app_config(**config)).items()}


def test_twcmanager_topics_and_texts_for_one_charging_twc():
    got = payloads(snapshot(slave()))
    assert {k: got[k] for k in got if k.startswith(("all/", "config/", "2118/"))} == got
    twcmanager = {
        "all/totalAmpsInUse": "15.94",
        "all/maxAmpsForSlaves": "32",
        "all/currentPolicy": "Non Scheduled Charging",
        "config/minAmpsPerTWC": "6",
        "2118/ampsInUse": "15.94",
        "2118/ampsMax": "16.0",
        "2118/state": "1",
        "2118/ampsOffered": "16",
        "2118/ampsDesired": "16",
        "2118/carsCharging": "1",
        "2118/currentVehicleVIN": "5YJ3E1EA7KF000001",
        "2118/lastVehicleVIN": "5YJ3E1EA7KF000001",
        "2118/lifetimekWh": "2345",
        "2118/voltagePhaseA": "238",
        "2118/voltagePhaseB": "0",
        "2118/voltagePhaseC": "0",
        "2118/chargerLoadInW": "3793",
    }
    assert {k: got[k] for k in twcmanager} == twcmanager
    ours = {
        "all/budgetReason": "fixed rate: nonScheduledAmpsMax 32A.",
        "all/greenEnergyText": "",
        "all/chargerLoadInW": "3794",
        "all/readingStale": "0",
        "all/busLinked": "1",
        "config/policy": "Auto",
        "config/chargeNowAmps": "40",
        "config/chargeNowDuration": "3600",
        "config/nonScheduledAmpsMax": "0",  # set nowhere: nothing charges (TWCManager)
        "config/nonScheduledAction": "1",
        "2118/stateName": "charging",
        "2118/chargingAllowed": "on",
        "2118/availability": "online",
    }
    assert {k: got[k] for k in ours} == ours
    assert set(got) == set(twcmanager) | set(ours)
    assert {k.partition("/")[2] for k in got if k.startswith("2118/")} == set(SLAVE_KEYS)


def test_number_texts_follow_the_python_types_twcmanager_passes():
    # Reported amps are floats in TWCManager (x / 100): always with a decimal point.
    for amps, text in ((0.0, "0.0"), (16.0, "16.0"), (15.94, "15.94"), (-0.0, "0.0")):
        assert float_text(amps) == text
    # Amps that came from config or a policy: an int when whole.
    assert [number_text(v) for v in (32, 32.0, 17.62, 0.5)] == ["32", "32", "17.62", "0.5"]
    idle = slave(state=0, state_name="ready", actual_amps=0.0, car_charging=False, vin=None)
    got = payloads(snapshot(idle))
    assert got["2118/ampsInUse"] == "0.0" and got["2118/carsCharging"] == "0"
    assert got["2118/currentVehicleVIN"] == "" and got["2118/lastVehicleVIN"] != ""
    # No TWC at all: TWCManager's sum is the int 0.
    assert payloads(snapshot())["all/totalAmpsInUse"] == "0"
    for topic, text in got.items():
        key = topic.rsplit("/", 1)[1]
        if key in ("ampsInUse", "ampsMax", "totalAmpsInUse"):
            assert FLOAT.fullmatch(text), (topic, text)
        elif key in ("state", "ampsOffered", "lifetimekWh", "chargerLoadInW", "carsCharging"):
            assert INT.fullmatch(text), (topic, text)


def test_unreported_energy_and_voltages_are_not_published():
    got = payloads(snapshot(slave(lifetime_kwh=None, voltages=None)))
    assert not {"2118/lifetimekWh", "2118/voltagePhaseA"} & set(got)


def test_green_figures_are_the_consoles_while_tracking_green():
    green = GreenBudget(
        amps=17.62,
        surplus_amps=17.62,
        generation_amps=20.65,
        consumption_amps=3.03,
        compensation_amps=0.0,
        generation_w=4956.0,
        consumption_w=726.4,
        charger_load_w=0.0,
        surplus_w=4229.6,
        voltage_v=240.0,
        voltage_source="defaultVoltage",
        generation_centiamps=2065,
        consumption_centiamps=303,
        surplus_centiamps=1762,
        floor_amps=6.0,
    )
    budget = Budget(17.62, "Track Green Energy", "surplus 17.62A ...", green=green)
    site = SiteReading(4956.0, 726.4, -4229.6, None, 0.0, False, "", ("Fronius",))
    got = payloads(snapshot(budget=budget, site=site))
    assert got["all/generationW"] == "4956"
    assert got["all/consumptionW"] == "726"
    assert got["all/surplusW"] == "4230"
    assert got["all/gridW"] == "-4230"
    assert got["all/surplusAmps"] == "17.62"
    assert got["all/maxAmpsForSlaves"] == "17.62"
    assert got["all/greenEnergyText"] == (
        "Green energy generates 4956W, Consumption 726W, Charger Load 0W "
        "Limiting car charging to 20.65A - 3.03A = 17.62A. "
        "Charge when above 6A (minAmpsPerTWC)."
    )
    # Without a green decision the reading's own figures; none without a reading.
    plain = payloads(snapshot(site=site))
    assert plain["all/surplusW"] == "4230" and "all/surplusAmps" not in plain
    assert "all/generationW" not in payloads(snapshot())


def test_settings_topics_show_what_a_press_or_the_fixed_rate_would_use():
    settings = RuntimeSettings(
        forced_policy="Track Green Energy",
        charge_now_preset_amps=20.0,
        charge_now_preset_s=900.0,
        non_scheduled_amps_max=12.5,
        non_scheduled_action=3,
        denied_twcids=frozenset({"2118"}),
    )
    got = payloads(snapshot(replace(slave(), charging_allowed=False), settings=settings))
    assert got["config/policy"] == "Track Green Energy"
    assert got["config/chargeNowAmps"] == "20"
    assert got["config/chargeNowDuration"] == "900"
    assert got["config/nonScheduledAmpsMax"] == "12.5"
    assert got["config/nonScheduledAction"] == "3"
    assert got["2118/chargingAllowed"] == "off"
    # config.json's nonScheduledAmpsMax when settings.json has none.
    assert payloads(snapshot(), nonScheduledAmpsMax=24)["config/nonScheduledAmpsMax"] == "24"
    # No runtime settings (a fixed budget): no settings topics.
    without = payloads(snapshot(settings=None))
    assert [t for t in without if t.startswith("config/")] == ["config/minAmpsPerTWC"]


@pytest.mark.parametrize(
    ("rule", "sent", "now", "due"),
    [
        (AMPS, 15.94, 15.0, False),
        (AMPS, 15.94, 14.94, True),
        (WATTS, 1500, 1600, True),  # 100 W
        (WATTS, 1500, 1599, False),
        (WATTS, 3793, 3893, False),  # under 5 % of 3.8 kW
        (WATTS, 6000, 6250, False),  # under 5 % of 6 kW
        (WATTS, 6000, 6300, True),
        (WATTS, -50, 40, False),
        (VOLTS, 238, 239, False),
        (VOLTS, 238, 236, True),
    ],
)
def test_thresholds(rule, sent, now, due):
    assert rule.moved_enough(sent, now) is due


def test_rules_by_topic():
    values = status_values(snapshot(slave()), app_config())
    rules = {topic: value.rule for topic, value in values.items()}
    for topic in ("2118/state", "2118/currentVehicleVIN", "2118/carsCharging", "all/currentPolicy"):
        assert rules[topic] is AT_ONCE
    assert rules["2118/ampsInUse"] is AMPS and rules["2118/chargerLoadInW"] is WATTS
    assert rules["all/budgetReason"] is SENTENCE
    assert wording("surplus 17.62A + 0.50A = 18.12A") == wording("surplus 3.10A + 0.00A = 3.10A")
    assert wording("waiting 12s more") != wording("stop in 12s")
