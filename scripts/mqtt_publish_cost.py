#!/usr/bin/env python3
"""What MQTT status costs the bus loop per core step, with 4 TWCs.

Run from the repository root: ``PYTHONPATH=. .venv/bin/python scripts/mqtt_publish_cost.py``

* ``status_values``: every topic's payload built from one snapshot;
* ``MqttStatus.publish``: the whole call an output makes per step (the values, the rate
  rules, the TWCs' tracking), with the broker unreachable so nothing leaves the process.
"""

from __future__ import annotations

import timeit

from tests.mqtt.conftest import app_config, publication, slave, snapshot
from twcmaster.config.interfaces import BrokerConfig, MqttStatusConfig
from twcmaster.outputs.mqtt import MqttStatus
from twcmaster.outputs.mqtttopics import status_values

STEPS = 5000


def per_step_us(call) -> float:
    return timeit.timeit(call, number=STEPS) / STEPS * 1e6


def main() -> None:
    app = app_config()
    snap = snapshot(*(slave(f"{0x2118 + i:04X}") for i in range(4)))
    status = MqttStatus(MqttStatusConfig(BrokerConfig("127.0.0.1", 9, False)), app)
    status.publish(publication(snap))  # the first step announces the TWCs
    print(f"status_values, 4 TWCs: {per_step_us(lambda: status_values(snap, app)):.0f} us/step")
    cost = per_step_us(lambda: status.publish(publication(snap)))
    print(f"MqttStatus.publish, 4 TWCs, broker down: {cost:.0f} us/step")


if __name__ == "__main__":
    main()
