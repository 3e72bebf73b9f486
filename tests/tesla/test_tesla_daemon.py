"""The Tesla module in the daemon as ``twcmaster run`` builds it (``build_daemon``): simulated
TWCs on a pty, the loopback Fleet API fake with two cars at home on the account, the HTTP API
on loopback. When the budget falls below the floor, the car on the TWC (its VIN from the bus)
is stopped through the API, and only that car; the snapshot shows the account; no token ever
reaches an output."""

from __future__ import annotations

import asyncio
import json
import random

import aiohttp
import pytest

from tests.http.test_live import until
from tests.integration.rig import _Lines
from tests.mosquitto import free_port
from tests.tesla.fakefleet import FakeCar, FakeFleet
from twcmaster.config import config_from_dict
from twcmaster.daemon import build_daemon
from twcmaster.outputs.console import ConsoleStatus
from twcmaster.settings import SettingsStore
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.car import SimulatedCar, random_vin
from twcmaster.sim.runner import PtyBus
from twcmaster.sim.slave import SimulatedSlave

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

TWCID = 0x2345
HOME = (47.0, 7.0)


def test_the_car_on_the_twc_is_stopped_through_the_api_and_no_token_leaks(tmp_path, capsys):
    rng = random.Random(7)
    vin_plugged, vin_other = random_vin(rng), random_vin(rng)
    fleet = FakeFleet([
        FakeCar(vin_plugged, name="plugged", charging_state="Charging", latitude=HOME[0],
                longitude=HOME[1]),
        FakeCar(vin_other, name="other", charging_state="Charging", latitude=HOME[0],
                longitude=HOME[1]),
    ])  # fmt: skip

    async def scenario() -> dict:
        await fleet.start()
        refresh_token = fleet.issue_refresh_token()
        loop = asyncio.get_running_loop()
        car = SimulatedCar(vin=vin_plugged, seed=3)
        twc = SimulatedSlave(TWCID, 0x22, 2, max_amps=32.0, car=car, seed=3,
                             powered_on_s=loop.time())  # fmt: skip
        sim = PtyBus(SimulatedBus([twc]))
        sim.start()
        port = free_port()
        config = config_from_dict({
            "config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32,
                       "minAmpsPerTWC": 6, "startStopDelay": 0,
                       "settingsPath": str(tmp_path)},
            "interface": {"RS485": {"port": sim.path}},
            "control": {"HTTP": {"enabled": True, "listenPort": port}},
            "vehicle": {"teslaAPI": {
                "enabled": True, "baseURL": fleet.url, "authURL": fleet.auth_url,
                "clientID": "twcmaster-test", "refreshToken": refresh_token,
                "homeLatitude": HOME[0], "homeLongitude": HOME[1], "wakeDelayS": 5,
            }},
        }, str(tmp_path)).settings  # fmt: skip
        SettingsStore(tmp_path, wiring_max_amps_all_twcs=32).set_non_scheduled_amps(16)
        lines: list[str] = []
        daemon = build_daemon(config, ConsoleStatus(_Lines(lines), clock=loop.time))
        task = asyncio.create_task(daemon.run())
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        url = f"http://127.0.0.1:{port}"
        try:

            def listed() -> bool:
                cars = daemon.snapshot().cars
                return cars is not None and cars.state == "ok"

            def vin_read() -> bool:
                slaves = daemon.snapshot().slaves
                return bool(slaves) and slaves[0].vin == vin_plugged

            await until(listed, 10, "the account listed")
            await until(vin_read, 30, "the VIN read")
            await until(lambda: car.actual_amps >= 10, 15, "charging at 16 A")

            # The sun goes: 0 A for non-scheduled charging. The car is kept at its floor
            # until it stops, and asked to stop through the API: the plugged one only.
            async with http.post(url + "/api/v1/nonScheduled", json={"amps": 0}) as answer:
                assert answer.status == 200
            await until(lambda: fleet.requests_to("*/command/charge_stop"), 10, "a stop sent")
            stops = fleet.requests_to("*/command/charge_stop")
            assert [r.path for r in stops] == [f"/api/1/vehicles/{vin_plugged}/command/charge_stop"]
            car.charge_stop()  # the real car would now stop drawing
            await until(lambda: twc.limit_amps == 0, 15, "0 A once the car stopped")
            await asyncio.sleep(2)
            assert len(fleet.requests_to("*/command/charge_stop")) == 1
            assert fleet.cars[vin_other].charging_state == "Charging"  # never touched

            async with http.get(url + "/api/v1/snapshot") as answer:
                snapshot = await answer.json()
        finally:
            await http.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sim.close()
            await fleet.stop()
        # Without the time of day each line starts with ("15:39:05: ").
        snapshot["_console"] = [line.split(": ", 1)[-1] for line in lines]
        snapshot["_tokens"] = fleet.tokens_issued()
        return snapshot

    snapshot = asyncio.run(scenario())
    cars = {car["vin"]: car for car in snapshot["cars"]["cars"]}
    assert snapshot["cars"]["state"] == "ok" and set(cars) == {vin_plugged, vin_other}
    assert cars[vin_plugged]["last_command"] == "stop"
    assert cars[vin_plugged]["last_result"].startswith("ok")
    assert cars[vin_plugged]["calls_today"]["command"] == 1
    assert cars[vin_plugged]["next_command_at"] > cars[vin_plugged]["last_command_at"]
    assert cars[vin_other]["last_command"] == ""
    console = snapshot.pop("_console")
    assert any(line.startswith("Tesla API: ok: 2 car(s)") for line in console), console
    # (Its position stays unknown: a targeted stop needs no data call.)
    stopped = [line for line in console if line.startswith(f"Car {vin_plugged} (plugged): ")]
    assert any("; stop at " in line and ": ok; next command from " in line
               and "/60 calls today" in line for line in stopped), stopped  # fmt: skip

    # A canary: the tokens Tesla issued appear nowhere but in the token file.
    tokens = snapshot.pop("_tokens")
    assert tokens, "the fake issued no token"
    printed = capsys.readouterr()
    everything = [json.dumps(snapshot), printed.out, printed.err]
    everything += [p.read_text(errors="replace") for p in tmp_path.iterdir()
                   if p.is_file() and p.name != "tesla-tokens.json"]  # fmt: skip
    for token in tokens:
        assert not any(token in text for text in everything)
    token_file = tmp_path / "tesla-tokens.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert any(token in token_file.read_text() for token in tokens)
