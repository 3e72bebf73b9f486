"""MQTT status and control against a real mosquitto (tests/mosquitto.py) on a free loopback
port: fixtures, a recording subscriber, and snapshots as the core builds them."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.mosquitto import Mosquitto, mosquitto, mosquitto_auth  # noqa: F401  (fixtures)
from tests.sources.conftest import tls_cert  # noqa: F401  (a fixture)
from twcmaster import events as ev
from twcmaster.config import config_from_dict
from twcmaster.config.interfaces import BrokerConfig, MqttControlConfig, MqttStatusConfig
from twcmaster.control.policy import Budget
from twcmaster.core import SlaveSnapshot, Snapshot
from twcmaster.outputs.base import Publication
from twcmaster.settings import RuntimeSettings

WAIT_S = 5.0
WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at_s: float

    @property
    def text(self) -> str:
        return self.payload.decode()


class Subscriber:
    """A plain paho client that records every message on ``topic_filter``, from its own
    thread. ``wait_for`` blocks until a predicate over the messages holds."""

    def __init__(self, broker: Mosquitto, topic_filter: str = "#", *, tls_ca: str | None = None):
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if broker.users:
            self.client.username_pw_set(*next(iter(broker.users.items())))
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), "the test subscriber could not subscribe"

    def _on_message(self, _client, _userdata, message) -> None:
        with self._cond:
            payload, retain = bytes(message.payload), bool(message.retain)
            self.messages.append(Message(message.topic, payload, retain, time.monotonic()))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Subscriber], Any], timeout_s: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"not seen within {timeout_s} s; topics seen: {topics}")
                self._cond.wait(min(left, 0.05))

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> str | None:
        seen = self.on(topic)
        return seen[-1].text if seen else None

    def latest(self) -> dict[str, str]:
        """Each topic's last payload."""
        with self._cond:
            return {m.topic: m.text for m in self.messages}

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker: Mosquitto, topic_filter: str = "#") -> dict[str, str]:
    """What the broker holds retained under ``topic_filter`` now: a new subscriber gets the
    retained messages first, then a marker we publish after subscribing."""
    marker = f"test-marker/{uuid.uuid4().hex}"
    sub = Subscriber(broker, topic_filter)
    try:
        sub.client.subscribe(marker, qos=1)
        time.sleep(0.05)
        sub.client.publish(marker, b"x", qos=1).wait_for_publish(WAIT_S)
        sub.wait_for(lambda s: s.on(marker))
        return {m.topic: m.text for m in sub.messages if m.retain and m.topic != marker}
    finally:
        sub.close()


@pytest.fixture
def subscribers():
    """``subscribe(broker, topic_filter="#")`` -> a started Subscriber, closed after."""
    made: list[Subscriber] = []

    def subscribe(broker: Mosquitto, topic_filter: str = "#", **kw: Any) -> Subscriber:
        sub = Subscriber(broker, topic_filter, **kw)
        made.append(sub)
        return sub

    yield subscribe
    for sub in made:
        sub.close()


class RecordingLog:
    """A log that keeps its lines (structlog-style calls), to read what was said."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def events(self, level: str) -> list[tuple[str, dict[str, Any]]]:
        return [(event, kw) for lvl, event, kw in self.lines if lvl == level]

    def text(self) -> str:
        return "\n".join(f"{lvl} {event} {kw!r}" for lvl, event, kw in self.lines)


# ------------------------------------------------------------------------------ configs


def app_config(**config: Any):
    return config_from_dict({"config": {**WIRING, **config}}, "/tmp").settings


def broker_config(broker: Mosquitto, **kw: Any) -> BrokerConfig:
    fields: dict[str, Any] = {"host": broker.host, "port": broker.port, "tls": False}
    if broker.users:
        fields["username"], fields["password"] = next(iter(broker.users.items()))
    return BrokerConfig(**(fields | kw))


def status_config(broker: Mosquitto, **kw: Any) -> MqttStatusConfig:
    broker_kw = {k: kw.pop(k) for k in list(kw) if k in BrokerConfig.__dataclass_fields__}
    return MqttStatusConfig(broker_config(broker, **broker_kw), **kw)


def control_config(broker: Mosquitto, **kw: Any) -> MqttControlConfig:
    broker_kw = {k: kw.pop(k) for k in list(kw) if k in BrokerConfig.__dataclass_fields__}
    return MqttControlConfig(broker_config(broker, **broker_kw), **kw)


# ------------------------------------------------------------------------------ snapshots


def slave(twcid: str = "2118", **kw: Any) -> SlaveSnapshot:
    """A TWC with a car charging at 15.94 A of a 16 A offer, as the core shows it."""
    fields = dict(
        twcid=twcid,
        protocol=2,
        state=1,
        state_name="charging",
        allowed_amps=16.0,
        actual_amps=15.94,
        offer_amps=16,
        offer_reason="share of the budget",
        max_amps=32.0,
        vin="5YJ3E1EA7KF000001",
        lifetime_kwh=2345,
        voltages=(238, 0, 0),
        seconds_since_reply=0.2,
        desired_amps=16.0,
        last_vin="5YJ3E1EA7KF000001",
        charger_load_w=3793.7,
        charging_allowed=True,
        car_charging=True,
    )
    return SlaveSnapshot(**(fields | kw))


FIXED = Budget(32.0, "Non Scheduled Charging", "fixed rate: nonScheduledAmpsMax 32A.")


def snapshot(*slaves: SlaveSnapshot, budget: Budget = FIXED, **kw: Any) -> Snapshot:
    return Snapshot(budget, tuple(slaves), True, (), **({"settings": RuntimeSettings()} | kw))


def publication(snap: Snapshot, now_s: float = 0.0) -> Publication:
    return Publication(now_s, (ev.BudgetDecided(snap.budget),), lambda: snap)


class Clock:
    """A monotonic clock the test moves on by hand (for rate limits and gone TWCs)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


def run(coroutine) -> Any:
    return asyncio.run(coroutine)


async def eventually(predicate: Callable[[], Any], timeout_s: float = WAIT_S, what: str = ""):
    """Wait, letting the event loop run, until ``predicate()`` is true; returns its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or predicate}")
        await asyncio.sleep(0.02)


async def settle(seconds: float = 0.3) -> None:
    """Long enough for a message that would arrive to arrive (loopback: a few ms)."""
    await asyncio.sleep(seconds)


__all__ = [
    "Clock",
    "RecordingLog",
    "eventually",
    "settle",
    "Subscriber",
    "app_config",
    "control_config",
    "publication",
    "replace",
    "retained",
    "run",
    "slave",
    "snapshot",
    "status_config",
]
