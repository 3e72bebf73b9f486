"""Policy rules in the daemon as ``twcmaster run`` builds it (``build_daemon``): a simulated
TWC with a car on a pty, a rule of the user's before the built-ins, and its webhooks called on
a real HTTP server on loopback: the rule's amps reach the car, ``enter`` and ``start`` arrive
with the status."""

from __future__ import annotations

import asyncio

import pytest

from tests.http.test_live import until
from tests.integration.rig import _Lines
from tests.sources.conftest import Canned, LoopbackHTTPServer
from twcmaster.config import config_from_dict
from twcmaster.daemon import build_daemon
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.car import SimulatedCar
from twcmaster.sim.runner import PtyBus
from twcmaster.sim.slave import SimulatedSlave

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TWCID = 0x3456


def test_a_rule_drives_the_car_and_its_webhooks_are_called(tmp_path):
    server = LoopbackHTTPServer()
    server.route("/enter", Canned.json({}), method="POST")
    server.route("/start", Canned.json({}), method="POST")

    async def scenario() -> list:
        loop = asyncio.get_running_loop()
        car = SimulatedCar(seed=5)
        twc = SimulatedSlave(TWCID, 0x34, 2, max_amps=32.0, car=car, seed=5,
                             powered_on_s=loop.time())  # fmt: skip
        sim = PtyBus(SimulatedBus([twc]))
        sim.start()
        rule = {
            "name": "Cheap power", "match": ["tm_hour"], "condition": ["gte"], "value": [0],
            "charge_amps": 10,
            "webhooks": {"enter": f"{server.url}/enter", "start": f"{server.url}/start"},
        }  # fmt: skip
        config = config_from_dict({
            "config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32,
                       "minAmpsPerTWC": 6, "settingsPath": str(tmp_path)},
            "interface": {"RS485": {"port": sim.path}},
            "policy": {"extend": {"before": [rule]}},
        }, str(tmp_path)).settings  # fmt: skip
        lines: list[str] = []
        daemon = build_daemon(config, ConsoleStatus(_Lines(lines), clock=loop.time))
        task = asyncio.create_task(daemon.run())
        try:
            await until(lambda: server.requests_to("/enter"), 15, "enter called")
            await until(lambda: car.actual_amps > 3, 30, "the car charging")
            await until(lambda: server.requests_to("/start"), 15, "start called")
            snapshot = daemon.snapshot()
            assert snapshot.budget.policy == "Cheap power" and snapshot.budget.amps == 10
            await until(lambda: twc.limit_amps == 10, 15, "the rule's 10 A offered")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sim.close()
        return [r.json() for r in server.requests_to("/enter") + server.requests_to("/start")]

    try:
        bodies = asyncio.run(scenario())
    finally:
        server.close()
    assert [body["currentPolicy"] for body in bodies] == ["Cheap power", "Cheap power"]
    assert bodies[1]["chargerLoadAmps"] > 3
