"""Home Assistant discovery through a real mosquitto: valid JSON, unique ids, device blocks,
availability, origin, the controls' command topics (read by MQTT control), re-sent when Home
Assistant comes online, and TWCManager's entities taken over in place."""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import pytest

from tests.mqtt.conftest import (
    app_config,
    control_config,
    eventually,
    publication,
    retained,
    run,
    settle,
    slave,
    snapshot,
    status_config,
)
from twcmaster.outputs.homeassistant import Discovery
from twcmaster.outputs.mqtt import MqttStatus
from twcmaster.outputs.mqtttopics import status_values
from twcmaster.remote import mqtt as control

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

TWCS = ("2118", "3C4D")
PER_TWC = {"sensor": 14, "binary_sensor": 1}
SITE = {"sensor": 11, "binary_sensor": 2}
CONTROLS = {"select": 2, "number": 3, "button": 2}


@contextlib.asynccontextmanager
async def started(status: MqttStatus):
    await status.start()
    try:
        await eventually(lambda: status.link.connected)
        yield status
    finally:
        await status.stop()


def discovered(broker, with_control: bool, **config) -> dict[str, dict]:
    """Run MQTT status over two TWCs; the discovery configs the broker then holds."""
    control_cfg = control_config(broker) if with_control else None

    async def main():
        status = MqttStatus(status_config(broker, **config), app_config(), control=control_cfg)
        async with started(status):
            status.publish(publication(snapshot(*(slave(t) for t in TWCS))))
            await eventually(lambda: len(retained(broker, "homeassistant/#")) >= 40)
            await settle(0.2)

    run(main())
    return {t: json.loads(p) for t, p in retained(broker, "homeassistant/#").items()}


def test_configs_devices_availability_and_unique_ids(mosquitto):
    configs = discovered(mosquitto, with_control=True)
    kinds = Counter(topic.split("/")[1] for topic in configs)
    expected = Counter()
    for counts in (SITE, CONTROLS, *[PER_TWC] * len(TWCS), *[{"switch": 1}] * len(TWCS)):
        expected.update(counts)
    expected["sensor"] += 1  # config/minAmpsPerTWC
    assert kinds == expected
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(unique_ids) == len(set(unique_ids))
    for topic, config in configs.items():
        parts = topic.split("/")
        assert len(parts) == 5 and parts[0] == "homeassistant" and parts[-1] == "config", topic
        assert config["origin"]["name"] == "twcmaster" and config["origin"]["sw_version"]
        device = config["device"]
        assert device["identifiers"] and device["name"].startswith("TWC ")
        availability = [a["topic"] for a in config["availability"]]
        assert availability[0] == "TWC/availability"
        assert config["availability_mode"] == "all"
        node_id = parts[2]
        if node_id in ("TWC_2118", "TWC_3C4D"):
            twcid = node_id[4:]
            assert availability == ["TWC/availability", f"TWC/{twcid}/availability"]
            assert device["identifiers"] == [f"twcmanager_TWC_{twcid}"]
            assert device["name"] == f"TWC {twcid}" and device["via_device"] == "twcmanager_TWC_all"
        else:
            assert device["name"] == "TWC site" and availability == ["TWC/availability"]


def test_every_state_topic_is_one_status_publishes(mosquitto):
    configs = discovered(mosquitto, with_control=True)
    published = {f"TWC/{t}" for t in status_values(snapshot(slave()), app_config())}
    published |= {t.replace("2118", "3C4D") for t in published if "2118" in t}
    with_a_reading = ("generationW", "consumptionW", "surplusW", "gridW", "surplusAmps")
    published |= {f"TWC/all/{key}" for key in with_a_reading}
    for topic, config in configs.items():
        if "state_topic" in config:
            assert config["state_topic"] in published, topic


def test_sensor_classes_and_units(mosquitto):
    configs = discovered(mosquitto, with_control=False)
    by_topic = {c.get("state_topic"): c for c in configs.values() if c.get("state_topic")}

    def config(state_topic, component="sensor"):
        found = [
            c
            for t, c in configs.items()
            if c.get("state_topic") == state_topic and t.split("/")[1] == component
        ]
        assert len(found) == 1, state_topic
        return found[0]

    def classes(c):
        return c["device_class"], c["state_class"], c["unit_of_measurement"]

    assert classes(config("TWC/2118/ampsInUse")) == ("current", "measurement", "A")
    assert classes(config("TWC/2118/lifetimekWh")) == ("energy", "total_increasing", "kWh")
    assert config("TWC/2118/chargerLoadInW")["device_class"] == "power"
    assert config("TWC/all/surplusW")["unit_of_measurement"] == "W"
    assert config("TWC/2118/voltagePhaseA")["device_class"] == "voltage"
    assert config("TWC/2118/voltagePhaseB")["enabled_by_default"] is False  # single phase
    state = config("TWC/2118/stateName")
    assert state["device_class"] == "enum" and "charging" in state["options"]
    assert config("TWC/2118/carsCharging", "binary_sensor")["payload_on"] == "1"
    assert config("TWC/all/busLinked", "binary_sensor")["device_class"] == "connectivity"
    # TWCManager's sensors keep their config topic and unique id: taken over in place.
    ours = configs["homeassistant/sensor/TWC_2118/2118_amps_in_use/config"]
    assert ours["unique_id"] == "twcmanager_TWC_2118_amps_in_use"
    policy = configs["homeassistant/sensor/TWC_all/all_current_policy/config"]
    assert policy["unique_id"] == "twcmanager_TWC_all_current_policy"
    assert configs["homeassistant/sensor/TWC_config/config_min_amps_per_twc/config"]
    assert by_topic  # and no controls without MQTT control:
    assert not [c for c in configs.values() if "command_topic" in c]


def test_controls_command_the_topics_mqtt_control_reads(mosquitto):
    configs = discovered(mosquitto, with_control=True)
    commands = {
        c["unique_id"].removeprefix("twcmaster_TWC_"): c
        for c in configs.values()
        if "command_topic" in c
    }
    assert {uid: c["command_topic"] for uid, c in commands.items()} == {
        "all_policy": "TWC/control/policy",
        "all_non_scheduled_action": "TWC/control/nonScheduledAction",
        "all_charge_now_amps": "TWC/control/chargeNowAmps",
        "all_charge_now_duration": "TWC/control/chargeNowDuration",
        "all_non_scheduled_amps_max": "TWC/control/nonScheduledAmpsMax",
        "all_charge_now": "TWC/control/chargeNow",
        "all_charge_now_end": "TWC/control/chargeNowEnd",
        "2118_allow_charging": "TWC/control/2118/allowCharging",
        "3C4D_allow_charging": "TWC/control/3C4D/allowCharging",
    }
    policy = commands["all_policy"]
    assert policy["options"] == [
        "Auto",
        "Charge Now",
        "Scheduled Charging",
        "Track Green Energy",
        "Non Scheduled Charging",
        "Min + Green Energy",
    ]
    assert policy["state_topic"] == "TWC/config/policy"
    amps = commands["all_charge_now_amps"]
    assert (amps["min"], amps["max"], amps["state_topic"]) == (1, 40, "TWC/config/chargeNowAmps")
    assert commands["all_charge_now"]["payload_press"] == control.PRESS
    switch = commands["2118_allow_charging"]
    assert switch["state_topic"] == "TWC/2118/chargingAllowed"
    assert (switch["payload_on"], switch["state_on"]) == ("on", "on")


def test_no_controls_when_control_is_on_another_prefix(mosquitto):
    app = app_config()
    status = status_config(mosquitto)
    other = control_config(mosquitto, topic_prefix="Garage")
    assert Discovery(status, app, controls=False).site_configs()
    discovery = MqttStatus(status, app, control=other).discovery
    assert not [p for _, p in discovery.site_configs() if "command_topic" in p]


def test_sent_again_when_home_assistant_comes_online(mosquitto, subscribers):
    sub = subscribers(mosquitto, "homeassistant/sensor/TWC_2118/#")

    async def main():
        status = MqttStatus(status_config(mosquitto), app_config())
        async with started(status):
            status.publish(publication(snapshot(slave())))
            await eventually(lambda: len(sub.messages) >= PER_TWC["sensor"])
            sub.clear()
            mosquitto.publish("homeassistant/status", "online")
            await eventually(lambda: len(sub.messages) >= PER_TWC["sensor"])

    run(main())


def test_discovery_off(mosquitto):
    async def main():
        status = MqttStatus(status_config(mosquitto, ha_discovery=False), app_config())
        async with started(status):
            status.publish(publication(snapshot(slave())))
            await eventually(lambda: retained(mosquitto, "TWC/2118/state"))

    run(main())
    assert retained(mosquitto, "homeassistant/#") == {}
