"""DSMR-reader's JSON telegrams over MQTT (TWCManager's ``DSMRreader`` source).

Config ``sources.DSMRreader`` (TWCManager's keys): ``brokerIP``, ``brokerPort`` (1883),
``username``, ``password``, ``topic`` (default ``dsmr/json``, DSMR-reader's "JSON telegram"
MQTT setting).

Each message on ``topic`` is one JSON document from the smart meter's P1 port:

* ``electricity_currently_delivered`` (kW, often a string such as ``"0.350"``) is the power
  drawn from the grid: the consumption, in watts;
* ``electricity_currently_returned`` (kW) is the power fed into the grid: reported as the
  generation, as TWCManager does. A P1 meter sees only the grid connection, not the panels,
  so set ``config.treatGenerationAsGridDelivery`` and ``config.subtractChargerLoad`` to true,
  as TWCManager's documentation asks.

It is the MQTT source (``sources/mqtt.py``) reading both fields from one topic: a message
without the two fields, or with one that is not a number, is logged and ignored; the broker's
loss is reported and the reading goes stale after ``maxAge`` (TWCManager kept the last value
forever). TWCManager's worst-phase import current (``phase_power_current_l1..3``, its
``getConsumptionAmps``) has no use in twcmaster, which limits the grid by the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import SourceTiming
from twcmaster.sources.mqtt import MqttSource
from twcmaster.sources.registry import Problem, read_text

DEFAULT_TOPIC = "dsmr/json"
DELIVERED = "$.electricity_currently_delivered"
RETURNED = "$.electricity_currently_returned"
MQTT_KEYS = ("brokerIP", "brokerPort", "username", "password")


class DsmrReaderSource(MqttSource):
    name = "DSMRreader"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming, *, log: Any = None):
        super().__init__(_as_mqtt(config), timing, log=log)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = []
        for key, message in MqttSource.check(_as_mqtt(config)):
            key = "topic" if key in ("topicConsumption", "topicGeneration") else key
            if (key, message) not in problems:
                problems.append((key, message))
        return problems

    def describe(self) -> str:
        return f"DSMR-reader on MQTT broker {self.host}:{self.port}, topic {self.topics[0]}"


def _as_mqtt(config: Mapping[str, Any]) -> dict[str, Any]:
    """The MQTT source's keys for DSMR-reader's one JSON topic, in kW."""
    topic = config.get("topic")
    if topic is None or (isinstance(topic, str) and not topic.strip()):
        topic = DEFAULT_TOPIC
    settings = {key: config[key] for key in MQTT_KEYS if key in config}
    if read_text(config, "password") is None or read_text(config, "username") is None:
        settings.pop("password", None)  # TWCManager logs in only with both
        settings.pop("username", None)
    return {
        **settings,
        "topicConsumption": topic,
        "topicGeneration": topic,
        "consumptionPath": DELIVERED,
        "generationPath": RETURNED,
        "unit": "kW",
    }
