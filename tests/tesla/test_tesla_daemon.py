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


def rig(tmp_path, fleet: FakeFleet, vin: str, refresh_token: str, **tesla: object):
    """A simulated TWC with the car ``vin`` on a pty, and ``twcmaster run``'s config for it
    with the Tesla module pointed at ``fleet`` (``tesla``: more vehicle.teslaAPI keys)."""
    loop = asyncio.get_running_loop()
    car = SimulatedCar(vin=vin, seed=3)
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
            "homeLatitude": HOME[0], "homeLongitude": HOME[1], "wakeDelayS": 5, **tesla,
        }},
    }, str(tmp_path)).settings  # fmt: skip
    return car, twc, sim, port, config


async def shut_down(http: aiohttp.ClientSession, daemon: asyncio.Task, sim, fleet) -> None:
    await http.close()
    daemon.cancel()
    await asyncio.gather(daemon, return_exceptions=True)
    await sim.close()
    await fleet.stop()


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
        car, twc, sim, port, config = rig(tmp_path, fleet, vin_plugged, refresh_token)
        loop = asyncio.get_running_loop()
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
            await shut_down(http, task, sim, fleet)
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


def test_a_tesla_cloud_that_never_answers_delays_no_heartbeat(tmp_path):
    """Every call to the cloud hangs past the client's timeout (the token refresh too): the
    bus loop goes on sending a heartbeat every second, and the HTTP API answers at once. (The
    fake runs in the daemon's own event loop: a call that blocked the loop would also stall
    the fake, and the heartbeats with it.)"""
    rng = random.Random(11)
    vin = random_vin(rng)
    fleet = FakeFleet([FakeCar(vin, name="plugged", charging_state="Charging",
                               latitude=HOME[0], longitude=HOME[1])])  # fmt: skip

    async def scenario() -> tuple[list[float], float, str]:
        await fleet.start()
        refresh_token = fleet.issue_refresh_token()
        car, twc, sim, port, config = rig(tmp_path, fleet, vin, refresh_token, timeoutS=2)
        SettingsStore(tmp_path, wiring_max_amps_all_twcs=32).set_non_scheduled_amps(16)
        daemon = build_daemon(config, ConsoleStatus(_Lines([])))
        task = asyncio.create_task(daemon.run())
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        url = f"http://127.0.0.1:{port}"
        try:
            await until(lambda: car.actual_amps >= 10, 30, "charging at 16 A")
            # From now on nothing answers in time, and the access token must be renewed.
            fleet.expire_access_tokens()
            fleet.fail_next("*", 503, count=1000, delay_s=30)
            async with http.post(url + "/api/v1/nonScheduled", json={"amps": 0}) as answer:
                assert answer.status == 200
            hang_start_s = asyncio.get_running_loop().time()
            await until(lambda: len(fleet.requests) and fleet.requests[-1].path, 10, "a call")
            await asyncio.sleep(6)  # several client timeouts (2 s each)
            started = asyncio.get_running_loop().time()
            async with http.get(url + "/api/v1/snapshot") as answer:
                assert answer.status == 200
                result = (await answer.json())["cars"]["cars"][0]["last_result"]
            http_s = asyncio.get_running_loop().time() - started
            beats = [t for t in twc.stats.heartbeat_times_s if t >= hang_start_s]
        finally:
            await shut_down(http, task, sim, fleet)
        return beats, http_s, result

    beats, http_s, result = asyncio.run(scenario())
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert len(beats) >= 5, beats
    assert max(gaps) <= 1.5, gaps
    assert http_s < 1.0, http_s
    assert "no answer within 2 s" in result, result  # the stop was tried, and timed out
