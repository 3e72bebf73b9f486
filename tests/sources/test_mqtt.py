"""MQTT source against a real mosquitto broker started by the test (tests/mosquitto.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.mosquitto import Mosquitto
from twcmaster.sources.base import Reading, SourceTiming
from twcmaster.sources.mqtt import MqttSource, _Throttle
from twcmaster.sources.registry import build_sources, check_sources
from twcmaster.sources.runner import SourceRunner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CONSUMPTION = "home/meter/consumption_w"
GENERATION = "home/pv/power_w"
WAIT_S = 5.0


class Collector:
    """What the source delivers (from paho's thread), with waiting."""

    def __init__(self) -> None:
        self.items: list[Reading | BaseException] = []
        self._cond = threading.Condition()

    def __call__(self, item: Reading | BaseException) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    @property
    def readings(self) -> list[Reading]:
        with self._cond:
            return [item for item in self.items if isinstance(item, Reading)]

    @property
    def errors(self) -> list[str]:
        with self._cond:
            return [str(item) for item in self.items if isinstance(item, BaseException)]

    def wait(self, predicate: Callable[[Collector], bool], timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not delivered within {timeout_s} s: {self.items}")
                self._cond.wait(left)

    def wait_readings(self, count: int) -> list[Reading]:
        self.wait(lambda c: len(c.readings) >= count)
        return self.readings


class RecordingLog:
    """A log sink that keeps its lines (structlog-style calls)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def __getattr__(self, level: str) -> Callable[..., None]:
        return self._record(level)

    def events(self, level: str) -> list[tuple[str, dict[str, Any]]]:
        return [(event, kw) for lvl, event, kw in self.lines if lvl == level]


def make_config(broker: Mosquitto, **extra) -> dict:
    return {
        "enabled": True,
        "brokerIP": broker.host,
        "brokerPort": broker.port,
        "topicConsumption": CONSUMPTION,
        "topicGeneration": GENERATION,
        **extra,
    }


@pytest.fixture
def broker(tmp_path):
    """A real anonymous mosquitto on a free loopback port (skipped if not installed)."""
    with Mosquitto(tmp_path / "mosquitto") as started:
        yield started


@pytest.fixture
def auth_broker(tmp_path):
    """A mosquitto that wants user ``twc`` with password ``s3cret pass``."""
    with Mosquitto(tmp_path / "mosquitto-auth", users={"twc": "s3cret pass"}) as started:
        yield started


@pytest.fixture
def run_source():
    """``run_source(config, timing=..., log=...)`` -> (source, collector); stopped after."""
    started: list[MqttSource] = []

    def run(config: dict, timing: SourceTiming | None = None, log: Any = None):
        source = MqttSource(config, timing or SourceTiming(), log=log)
        collector = Collector()
        source.start(collector)
        started.append(source)
        return source, collector

    yield run
    for source in started:
        source.stop()


def prime(broker: Mosquitto, collector: Collector, consumption="500", generation="3000") -> None:
    """Retained values on both topics (they reach the source whenever its subscription is
    in place), then wait for the first reading: the source is subscribed after this."""
    broker.publish(CONSUMPTION, consumption, retain=True)
    broker.publish(GENERATION, generation, retain=True)
    collector.wait_readings(1)


# ------------------------------------------------------------------------------ payloads


def test_plain_payloads_in_watts(broker, run_source):
    source, got = run_source(make_config(broker))
    prime(broker, got, "1559.6", "3480")
    assert got.readings[0] == Reading(consumption_w=1559.6, generation_w=3480.0)
    assert source.connected
    assert set(source.latest()) == {"consumption", "generation"}
    assert source.describe() == (
        f"MQTT broker 127.0.0.1:{broker.port}: consumption {CONSUMPTION}, generation {GENERATION}"
    )


def test_a_reading_waits_for_a_complete_round(broker, run_source):
    """Two topics: a reading goes out once both have spoken since the last one, carrying the
    latest of each, so its arrival time is an honest age for both values."""
    _source, got = run_source(make_config(broker))
    prime(broker, got)
    for watts in ("600", "700", "800"):
        broker.publish(CONSUMPTION, watts)
    time.sleep(0.2)
    assert len(got.readings) == 1  # generation has not spoken again
    broker.publish(GENERATION, "2.5 kW")
    assert got.wait_readings(2)[1] == Reading(consumption_w=800.0, generation_w=2500.0)


def test_a_value_older_than_max_age_does_not_complete_a_round(broker, run_source):
    _source, got = run_source(make_config(broker), SourceTiming(max_age_s=0.3))
    prime(broker, got)
    broker.publish(CONSUMPTION, "600")
    time.sleep(0.6)  # consumption's value is now twice maxAge old
    broker.publish(GENERATION, "3100")
    time.sleep(0.1)
    assert len(got.readings) == 1
    broker.publish(CONSUMPTION, "650")
    assert got.wait_readings(2)[1] == Reading(consumption_w=650.0, generation_w=3100.0)


def test_one_topic_delivers_every_message(broker, run_source):
    _source, got = run_source(make_config(broker, topicGeneration=None))
    broker.publish(CONSUMPTION, "100", retain=True)
    got.wait_readings(1)
    broker.publish(CONSUMPTION, '"200"')  # a JSON string is fine too
    assert got.wait_readings(2) == [Reading(consumption_w=100.0), Reading(consumption_w=200.0)]


def test_json_payload_with_paths_and_kw(broker, run_source):
    """DSMR-reader style: one JSON topic, both fields, values in kW as strings."""
    topic = "dsmr/json"
    cfg = make_config(
        broker,
        topicConsumption=topic,
        topicGeneration=topic,
        consumptionPath="$.electricity_currently_delivered",
        generationPath='$["electricity_currently_returned"]',
        unit="kW",
    )
    source, got = run_source(cfg)
    doc = (
        '{"id":4242,"timestamp":"2024-06-01T10:00:00+00:00",'
        '"electricity_currently_delivered":"0.000","electricity_currently_returned":"1.920"}'
    )
    broker.publish(topic, doc, retain=True)
    assert got.wait_readings(1)[0] == Reading(consumption_w=0.0, generation_w=1920.0)
    broker.publish(topic, doc.replace('"0.000"', "0.35"))
    assert got.wait_readings(2)[1] == Reading(consumption_w=350.0, generation_w=1920.0)
    assert "at $.electricity_currently_delivered" in source.describe()


def test_wildcard_topics(broker, run_source):
    cfg = make_config(broker, topicConsumption="meter/+/power", topicGeneration=None)
    _source, got = run_source(cfg)
    broker.publish("meter/main/power", "42", retain=True)
    assert got.wait_readings(1) == [Reading(consumption_w=42.0)]


def test_garbage_is_ignored_and_logged_once_a_minute(broker, run_source):
    log = RecordingLog()
    cfg = make_config(broker, topicGeneration=None)
    _source, got = run_source(cfg, log=log)
    broker.publish(CONSUMPTION, "100", retain=True)
    got.wait_readings(1)
    for garbage in ("unavailable", b"\xff\xfe", "", "{", '{"power": 5}', "nan", "12,5"):
        broker.publish(CONSUMPTION, garbage)
    broker.publish(CONSUMPTION, "250")
    readings = got.wait_readings(2)
    assert readings == [Reading(consumption_w=100.0), Reading(consumption_w=250.0)]
    assert got.errors == []  # bad payloads are not outages
    warnings = log.events("warning")
    assert len(warnings) == 1
    event, fields = warnings[0]
    assert event == "MQTT payload ignored: no number in it"
    assert fields["topic"] == CONSUMPTION and fields["payload"] == "unavailable"
    assert "'unavailable' is not a number" in fields["why"]
    assert log.events("exception") == []


@pytest.mark.parametrize("payload", [b"9" * (5 << 20), b"x" * (5 << 20), b"{" * (5 << 20)])
def test_a_payload_of_megabytes_is_refused_with_a_short_line(broker, run_source, payload):
    """The MQTT side of the 100 MB body: a payload of several MB is refused unread, and no
    field of the line about it is long (it was 5 million characters)."""
    log = RecordingLog()
    cfg = make_config(broker, topicGeneration=None)
    _source, got = run_source(cfg, log=log)
    broker.publish(CONSUMPTION, "100", retain=True)
    got.wait_readings(1)
    broker.publish(CONSUMPTION, payload)
    broker.publish(CONSUMPTION, "250")
    assert got.wait_readings(2)[1] == Reading(consumption_w=250.0)
    [(_event, fields)] = log.events("warning")
    assert f"{len(payload)} bytes, more than the 64 KiB a reading may take" in fields["why"]
    assert all(len(str(value)) <= 200 for value in fields.values()), fields


def test_a_secret_in_a_payload_is_masked(broker, run_source):
    log = RecordingLog()
    cfg = make_config(broker, topicGeneration=None, username="twc", password="CANARY-mq-7c1e")
    _source, got = run_source(cfg, log=log)
    broker.publish(CONSUMPTION, "100", retain=True)
    got.wait_readings(1)
    broker.publish(CONSUMPTION, "echo CANARY-mq-7c1e")
    broker.publish(CONSUMPTION, "250")
    got.wait_readings(2)
    [(_event, fields)] = log.events("warning")
    assert fields["payload"] == "echo ***"
    assert "CANARY" not in str(fields)


def test_json_path_errors_name_the_segment(broker, run_source):
    log = RecordingLog()
    cfg = make_config(broker, topicGeneration=None, consumptionPath="$.power.now")
    _source, got = run_source(cfg, log=log)
    broker.publish(CONSUMPTION, '{"power": {"later": 1}}', retain=True)
    broker.publish(CONSUMPTION, '{"power": {"now": 7}}')
    assert got.wait_readings(1) == [Reading(consumption_w=7.0)]
    [(_event, fields)] = log.events("warning")
    assert "no key 'now' at $.power (keys there: later)" in fields["why"]


def test_throttle_counts_what_it_holds_back():
    now = [0.0]
    throttle = _Throttle(60.0, clock=lambda: now[0])
    assert throttle.allow("t") == 0
    assert throttle.allow("t") is None
    assert throttle.allow("other") == 0
    now[0] = 59.0
    assert throttle.allow("t") is None
    now[0] = 61.0
    assert throttle.allow("t") == 2


# -------------------------------------------------------------------- broker and network


def test_broker_restart_reconnects_and_readings_resume(broker, run_source):
    source, got = run_source(make_config(broker))
    prime(broker, got)
    broker.stop()
    got.wait(lambda c: any("lost the connection" in e for e in c.errors))
    assert not source.connected
    broker.start()  # same port; no persistence: retained values are gone
    deadline = time.monotonic() + 10
    while not source.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.connected
    broker.publish(CONSUMPTION, "111", retain=True)
    broker.publish(GENERATION, "222", retain=True)
    got.wait(lambda c: Reading(consumption_w=111.0, generation_w=222.0) in c.readings)


def test_broker_down_at_start_then_up(tmp_path, run_source):
    broker = Mosquitto(tmp_path / "late")  # port chosen, not started
    try:
        started = time.monotonic()
        source, got = run_source(make_config(broker))
        assert time.monotonic() - started < 0.5  # start() never waits for the broker
        got.wait(lambda c: any("cannot connect to the broker" in e for e in c.errors))
        assert got.errors[0].startswith(f"MQTT: broker 127.0.0.1:{broker.port}: ")
        broker.start()
        prime(broker, got, "1", "2")
        assert got.readings[0] == Reading(consumption_w=1.0, generation_w=2.0)
    finally:
        broker.stop()


def test_password_broker(auth_broker, run_source):
    good = make_config(auth_broker, username="twc", password="s3cret pass")
    _source, got = run_source(good)
    prime(auth_broker, got, "5", "6")
    assert got.readings == [Reading(consumption_w=5.0, generation_w=6.0)]

    bad_source, bad = run_source({**good, "password": "wrong"})
    bad.wait(lambda c: bool(c.errors))
    assert "refused the connection" in bad.errors[0]
    assert "check username and password" in bad.errors[0]
    assert "wrong" not in bad.errors[0] and "wrong" not in bad_source.describe()
    assert bad.readings == []


def test_stop_is_quick_and_final(broker, run_source):
    source, got = run_source(make_config(broker))
    prime(broker, got)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 1.0
    broker.publish(CONSUMPTION, "9")
    broker.publish(GENERATION, "9")
    time.sleep(0.2)
    assert len(got.readings) == 1 and got.errors == []


# ------------------------------------------------------------------- age, with the runner


def test_silence_makes_the_reading_stale_in_the_runner(broker):
    """With the real SourceRunner: fresh while both topics speak; stale maxAge after the
    generation topic falls silent, even though consumption keeps coming."""
    timing = SourceTiming(max_age_s=0.6)
    source = MqttSource(make_config(broker), timing)

    async def scenario() -> None:
        runner = SourceRunner([source])
        runner.start()
        try:
            broker.publish(CONSUMPTION, "400", retain=True)
            broker.publish(GENERATION, "2400", retain=True)
            for _ in range(200):
                if not runner.combined().stale:
                    break
                await asyncio.sleep(0.02)
            site = runner.combined()
            assert not site.stale, site.reason
            assert (site.generation_w, site.consumption_w) == (2400.0, 400.0)
            # Generation goes silent; consumption keeps arriving every 0.1 s.
            silent_since = asyncio.get_running_loop().time()
            while asyncio.get_running_loop().time() - silent_since < 1.0:
                await asyncio.to_thread(broker.publish, CONSUMPTION, "450")
                await asyncio.sleep(0.1)
            site = runner.combined()
            assert site.stale
            assert site.reason.startswith("MQTT: no reading for ")
            # Generation speaks again: fresh at once, with the latest consumption.
            await asyncio.to_thread(broker.publish, GENERATION, "2500")
            for _ in range(100):
                if not runner.combined().stale:
                    break
                await asyncio.sleep(0.02)
            site = runner.combined()
            assert not site.stale
            assert (site.generation_w, site.consumption_w) == (2500.0, 450.0)
        finally:
            await runner.stop()

    asyncio.run(scenario())


# --------------------------------------------------------------------------------- config


def test_check_accepts_twcmanager_config():
    cfg = {
        "enabled": True,
        "brokerIP": "192.168.1.2",
        "brokerPort": 1883,
        "username": "twc",
        "password": "pw",
        "topicConsumption": CONSUMPTION,
        "topicGeneration": GENERATION,
    }
    assert check_sources({"MQTT": cfg}) == []
    [source] = build_sources({"MQTT": cfg})
    assert isinstance(source, MqttSource) and source.push


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"topicConsumption": "a"}, ("sources.MQTT.brokerIP", "required")),
        ({"brokerIP": "b"}, ("sources.MQTT", "topicConsumption and/or topicGeneration")),
        ({"brokerIP": "b", "topicConsumption": "a/#/b"}, ("sources.MQTT.topicConsumption", "'#'")),
        ({"brokerIP": "b", "topicGeneration": "a/b+"}, ("sources.MQTT.topicGeneration", "'+'")),
        (
            {"brokerIP": "b", "generationPath": "$.x"},
            ("sources.MQTT.generationPath", "needs topicGeneration"),
        ),
        (
            {"brokerIP": "b", "topicGeneration": "a", "generationPath": "$."},
            ("sources.MQTT.generationPath", "key name"),
        ),
        (
            {"brokerIP": "b", "topicGeneration": "a", "unit": "A"},
            ("sources.MQTT.unit", "not a power unit"),
        ),
        (
            {"brokerIP": "b", "topicGeneration": "a", "brokerPort": 0},
            ("sources.MQTT.brokerPort", "1-65535"),
        ),
    ],
)
def test_check_names_the_key(cfg, expected):
    problems = check_sources({"MQTT": {"enabled": True, **cfg}})
    assert any(path == expected[0] and expected[1] in message for path, message in problems), (
        problems
    )
