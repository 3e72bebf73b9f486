"""The whole Tesla module over HTTP: TeslaCars with the real token keeper and client
(``build_tesla_cars``, as the daemon builds it) against the loopback Fleet API fake, on the
asyncio loop, with the waits shortened (the same rules as test_cars.py in virtual time):
wake then command, back-off, the daily budget, the geofence, per-VIN targeting with two cars
at home, 429 with its header."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime
from types import SimpleNamespace

import pytest

from tests.tesla.fakefleet import FakeCar, FakeFleet
from tests.tesla.test_cars import RecordingLog
from twcmaster.config import config_from_dict
from twcmaster.control.carcommands import CarAction, CarCommand
from twcmaster.sim.car import random_vin
from twcmaster.vehicles.tesla.build import build_tesla_cars

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOME = (47.0, 7.0)
AWAY = (47.05, 7.0)  # 5.6 km away
FAST = dict(  # the rules' waits, shortened for a test in real time
    wake_delay_s=0.3, min_command_interval_s=0.5, backoff_first_s=0.2, backoff_max_s=0.8,
    wake_poll_s=0.1, wake_timeout_s=2.0, data_fresh_s=0.0,
)  # fmt: skip


def vins(n: int) -> list[str]:
    rng = random.Random(11)
    return [random_vin(rng) for _ in range(n)]


class Module:
    """build_tesla_cars against ``fleet`` with a bus stand-in showing which TWC draws."""

    def __init__(self, fleet: FakeFleet, tmp_path, **settings: object) -> None:
        config = config_from_dict({
            "config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32,
                       "settingsPath": str(tmp_path)},
            "vehicle": {"teslaAPI": {
                "enabled": True, "baseURL": fleet.url, "authURL": fleet.auth_url,
                "clientID": "twcmaster-test", "refreshToken": fleet.issue_refresh_token(),
                "homeLatitude": HOME[0], "homeLongitude": HOME[1],
            }},
        }, str(tmp_path)).settings  # fmt: skip
        loop = asyncio.get_running_loop()
        self.cars = build_tesla_cars(
            config, clock=loop.time, wallclock=datetime.now, log=RecordingLog()
        )
        self.cars.settings = dataclasses.replace(self.cars.settings, **{**FAST, **settings})
        self.drawing: dict[int, bool] = {}
        self.cars.snapshot = lambda: SimpleNamespace(slaves=[
            SimpleNamespace(twcid=f"{t:04X}", car_charging=d) for t, d in self.drawing.items()
        ])  # fmt: skip

    async def __aenter__(self) -> Module:
        await self.cars.start()
        for _ in range(100):
            if self.cars.view().state != "starting":
                break
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cars.stop()

    def ask(self, action: CarAction, twcid: int, vin: str | None) -> None:
        self.drawing.setdefault(twcid, action is CarAction.STOP)
        loop = asyncio.get_running_loop()
        self.cars.request(CarCommand(twcid, vin, action, loop.time(), "test"))


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


def commands(fleet: FakeFleet, name: str) -> list[str]:
    return [r.path.split("/")[4] for r in fleet.requests_to(f"*/command/{name}")]


def test_per_vin_targeting_with_two_cars_at_home_and_the_geofence(tmp_path):
    a, b, c = vins(3)
    fleet = FakeFleet([
        FakeCar(a, charging_state="Charging", latitude=HOME[0], longitude=HOME[1]),
        FakeCar(b, charging_state="Charging", latitude=HOME[0], longitude=HOME[1]),
        FakeCar(c, charging_state="Charging", latitude=AWAY[0], longitude=AWAY[1]),
    ])  # fmt: skip

    async def scenario() -> None:
        async with fleet, Module(fleet, tmp_path) as module:
            assert module.cars.view().state == "ok"
            module.ask(CarAction.STOP, twcid=1, vin=b)  # the TWC said: car b
            await settle(0.3)
            assert commands(fleet, "charge_stop") == [b]
            module.ask(CarAction.STOP, twcid=2, vin=None)  # no VIN: cars at home that charge
            await settle(0.5)
            assert sorted(commands(fleet, "charge_stop")) == sorted([b, a])  # never c (away)
            places = {car.vin: car.location for car in module.cars.view().cars}
            assert places == {a: "home", b: "home", c: "away"}

    asyncio.run(scenario())


def test_an_asleep_car_is_woken_after_the_wake_delay_then_started(tmp_path):
    (a,) = vins(1)
    fleet = FakeFleet([FakeCar(a, asleep=True, latitude=HOME[0], longitude=HOME[1])],
                      wake_delay_s=0.3)  # fmt: skip

    async def scenario() -> None:
        async with fleet, Module(fleet, tmp_path) as module:
            module.ask(CarAction.START, twcid=1, vin=a)
            await settle(0.2)
            assert fleet.requests_to(f"*/{a}*") == []  # the offer may wake it: wait first
            await settle(1.5)
            paths = [
                r.path.removeprefix(f"/api/1/vehicles/{a}") for r in fleet.requests_to(f"*/{a}*")
            ]
            assert paths[0] == "/vehicle_data" and paths[1] == "/wake_up"
            assert paths[-2:] == ["/vehicle_data", "/command/charge_start"]
            calls = module.cars.view().cars[0].calls_today
            assert calls["wake"] == 1 and calls["command"] == 1
            assert fleet.cars[a].charging_state == "Charging"

    asyncio.run(scenario())


def test_errors_back_off_and_a_429_holds_every_call(tmp_path):
    a, b = vins(2)
    fleet = FakeFleet(
        [FakeCar(a, charging_state="Charging"), FakeCar(b, charging_state="Charging")]
    )

    async def scenario() -> None:
        async with fleet, Module(fleet, tmp_path, min_command_interval_s=0.0) as module:
            fleet.fail_next("*/command/charge_stop", 503, count=3)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(30):  # the core asking again and again, through three failures
                module.drawing[1] = True
                module.ask(CarAction.STOP, twcid=1, vin=a)
                await settle(0.05)
                if len(fleet.requests_to(f"*/{a}/command/charge_stop")) >= 3:
                    break
            # One more ask after the third failure, then none: it waits out the back-off (0.8 s,
            # the cap) and goes as the fourth. (Asking on while that one is in flight would,
            # with this test's minimum interval of 0, rightly send one more after it.)
            await settle(0.05)
            module.ask(CarAction.STOP, twcid=1, vin=a)
            await settle(1.0)
            assert fleet.cars[a].charging_state == "Stopped"
            assert len(fleet.requests_to(f"*/{a}/command/charge_stop")) == 4  # 3 x 503, then ok
            assert loop.time() - start >= 0.2 + 0.4 + 0.8 - 0.1  # 0.2, 0.4, then the 0.8 cap

            fleet.fail_next("*/command/charge_stop", 429, headers={"Retry-After": "1"})
            module.ask(CarAction.STOP, twcid=1, vin=a)
            await settle(0.2)
            assert module.cars.view().state == "rate_limited"
            module.ask(CarAction.STOP, twcid=2, vin=b)
            await settle(0.5)
            assert fleet.requests_to(f"*/{b}/command/*") == []  # held: Tesla said 1 s
            await settle(0.8)
            assert len(fleet.requests_to(f"*/{b}/command/charge_stop")) == 1

    asyncio.run(scenario())


def test_the_daily_budget_stops_the_calls_and_says_so(tmp_path):
    (a,) = vins(1)
    fleet = FakeFleet([FakeCar(a, charging_state="Charging")])

    async def scenario() -> None:
        async with fleet, Module(fleet, tmp_path, daily_call_budget=2) as module:
            for _ in range(4):
                module.drawing[1] = True
                module.ask(CarAction.STOP, twcid=1, vin=a)
                await settle(0.6)
            assert len(fleet.requests_to(f"*/{a}/command/*")) == 2
            car = module.cars.view().cars[0]
            assert car.budget_left == 0 and "billable calls are spent" in car.bus_only
            assert not module.cars.view().usable_for(a)

    asyncio.run(scenario())


def test_login_required_stops_the_calls_until_a_new_token_is_written(tmp_path):
    import json

    (a,) = vins(1)
    fleet = FakeFleet([FakeCar(a, charging_state="Charging")])

    async def scenario() -> None:
        async with fleet, Module(fleet, tmp_path) as module:
            fleet.revoke_refresh_tokens()  # the user changed the password
            fleet.expire_access_tokens()
            module.ask(CarAction.STOP, twcid=1, vin=a)
            await settle(0.3)
            view = module.cars.view()
            assert view.state == "login_required" and not view.usable_for(a)
            asked = len(fleet.requests)
            await settle(2.0)  # listing retried every backoff_max_s: no request at all
            assert len(fleet.requests) == asked
            fresh = {"access_token": "", "refresh_token": fleet.issue_refresh_token(),
                     "expires_at": 0}  # fmt: skip
            (tmp_path / "tesla-tokens.json").write_text(json.dumps(fresh))
            for _ in range(40):
                await settle(0.1)
                if module.cars.view().state == "ok":
                    break
            assert module.cars.view().state == "ok" and module.cars.view().usable_for(a)

    asyncio.run(scenario())
