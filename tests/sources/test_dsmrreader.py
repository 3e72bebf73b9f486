"""DSMR-reader's JSON telegrams through a real mosquitto broker (tests/mosquitto.py)."""

from __future__ import annotations

import json

import pytest

from tests.mosquitto import Mosquitto
from tests.sources.test_mqtt import Collector, RecordingLog
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.dsmrreader import DsmrReaderSource

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

# A DSMR-reader JSON telegram (its "JSON telegram" MQTT message), values in kW as strings.
TELEGRAM = {
    "id": 4242,
    "read_at": "2024-06-01T10:00:00Z",
    "extra_device_timestamp": "2024-06-01T09:55:00Z",
    "electricity_delivered_1": "1234.567",
    "electricity_returned_1": "456.789",
    "electricity_delivered_2": "2345.678",
    "electricity_returned_2": "567.890",
    "electricity_currently_delivered": "0.000",
    "electricity_currently_returned": "1.920",
    "phase_currently_delivered_l1": "0.000",
    "phase_currently_delivered_l2": "0.000",
    "phase_currently_delivered_l3": "0.000",
    "phase_currently_returned_l1": "0.640",
    "phase_currently_returned_l2": "0.640",
    "phase_currently_returned_l3": "0.640",
    "phase_voltage_l1": "231.0",
    "phase_power_current_l1": 3,
    "phase_power_current_l2": 3,
    "phase_power_current_l3": 3,
    "extra_device_delivered": "1234.567",
}


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "mosquitto") as started:
        yield started


@pytest.fixture
def run_source():
    started: list[DsmrReaderSource] = []

    def run(config: dict, log=None):
        source = DsmrReaderSource(config, SourceTiming(timeout_s=1.0), log=log)
        collector = Collector()
        source.start(collector)
        started.append(source)
        return source, collector

    yield run
    for source in started:
        source.stop()


def test_telegrams_in_kw_become_watts(broker, run_source):
    source, got = run_source({"brokerIP": broker.host, "brokerPort": broker.port})
    broker.publish("dsmr/json", json.dumps(TELEGRAM), retain=True)
    assert got.wait_readings(1)[0] == Reading(consumption_w=0.0, generation_w=1920.0)

    evening = {**TELEGRAM, "electricity_currently_delivered": 0.35}
    evening["electricity_currently_returned"] = "0.000"
    broker.publish("dsmr/json", json.dumps(evening))
    assert got.wait_readings(2)[1] == Reading(consumption_w=350.0, generation_w=0.0)
    assert (
        source.describe() == f"DSMR-reader on MQTT broker 127.0.0.1:{broker.port}, topic dsmr/json"
    )


def test_own_topic_and_garbage_ignored(broker, run_source):
    log = RecordingLog()
    _source, got = run_source(
        {"brokerIP": broker.host, "brokerPort": str(broker.port), "topic": "meter/p1"}, log
    )
    broker.publish("meter/p1", "not json", retain=True)
    broker.publish("meter/p1", json.dumps({"id": 1}))
    broker.publish("meter/p1", json.dumps({**TELEGRAM, "electricity_currently_delivered": "x"}))
    broker.publish("meter/p1", json.dumps(TELEGRAM))
    readings = got.wait_readings(1)
    assert readings[-1] == Reading(consumption_w=0.0, generation_w=1920.0)
    assert any(
        event == "MQTT payload ignored: no number in it" for event, _ in log.events("warning")
    )


def test_broker_down_is_reported(tmp_path, run_source):
    from tests.mosquitto import free_port

    _source, got = run_source({"brokerIP": "127.0.0.1", "brokerPort": free_port()})
    got.wait(lambda c: c.errors)
    assert "DSMRreader: broker 127.0.0.1:" in got.errors[0]


def test_check():
    assert DsmrReaderSource.check({"brokerIP": "192.168.1.2"}) == []
    assert DsmrReaderSource.check({"brokerIP": "b", "topic": "dsmr/#", "username": "u"}) == []
    assert [k for k, _ in DsmrReaderSource.check({})] == ["brokerIP"]
    assert [k for k, _ in DsmrReaderSource.check({"brokerIP": "b", "topic": "a/#/b"})] == ["topic"]
    assert [k for k, _ in DsmrReaderSource.check({"brokerIP": "b", "brokerPort": "x"})] == [
        "brokerPort"
    ]
    # TWCManager logs in only with both a username and a password.
    assert DsmrReaderSource({"brokerIP": "b", "username": "u"}, SourceTiming()).username is None
