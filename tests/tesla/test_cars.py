"""TeslaCars, the frugal part of the Tesla module, in virtual time: which car a request goes
to, when it may go, what it costs, and when the module gives a car back to the bus.

The car API here is an in-memory stand-in that answers at once (the real client against the
loopback Fleet API fake is in test_client.py and test_tesla_daemon.py); it reports each call
as the client does (``on_call``), so the budget is counted the same way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from twcmaster.control.carcommands import CarAction, CarCommand
from twcmaster.vehicles.scheduling import VirtualScheduler
from twcmaster.vehicles.tesla import api
from twcmaster.vehicles.tesla.cars import TeslaCars, TeslaCarsSettings, distance_m

HOME = (47.0, 7.0)
AWAY = (47.1, 7.0)  # about 11 km north
VIN_A = "5YJ3E1EA7KF000001"
VIN_B = "5YJ3E1EA7KF000002"


class RecordingLog:
    """A logger that keeps every line (the Tesla tests read what the module said)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _say(self, message: str, **fields: object) -> None:
        self.lines.append(f"{message} {fields}")

    info = warning = error = debug = _say

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


@dataclass
class Car:
    vin: str
    asleep: bool = False
    at: tuple[float, float] = HOME
    charging_state: str = "Stopped"
    battery_level: int = 50
    charge_limit_soc: int = 80
    scheduled: bool = False
    wake_polls: int = 1  # vehicle_state answers "asleep" this many times after wake_up
    signing: bool = False


class FakeApi:
    """Answers at once, reports every call like the client (one on_call per request)."""

    def __init__(self, cars: list[Car]) -> None:
        self.cars = {car.vin: car for car in cars}
        self.calls: list[tuple[str, str | None, float]] = []
        self.fail: dict[str, list[api.CarApiError]] = {}
        self.on_call = lambda kind, vin, billable: None
        self.clock = lambda: 0.0
        self._polls: dict[str, int] = {}

    def _call(self, method: str, kind: str, vin: str | None) -> None:
        self.calls.append((method, vin, self.clock()))
        errors = self.fail.get(method)
        if errors:
            error = errors.pop(0)
            self.on_call(kind, vin, error.billable)
            raise error
        self.on_call(kind, vin, True)

    def sent(self, method: str) -> list[str | None]:
        return [vin for m, vin, _ in self.calls if m == method]

    async def list_vehicles(self) -> list[api.VehicleInfo]:
        self._call("list", "data", None)
        return [api.VehicleInfo(c.vin, f"car {c.vin[-1]}", c.asleep and "asleep" or "online")
                for c in self.cars.values()]  # fmt: skip

    async def vehicle_state(self, vin: str) -> str:
        self._call("state", "data", vin)
        polls = self._polls.get(vin, 0)
        if polls > 0:
            self._polls[vin] = polls - 1
            return "asleep"
        self.cars[vin].asleep = False
        return "online"

    async def charge_data(self, vin: str) -> api.ChargeData:
        self._call("data", "data", vin)
        car = self.cars[vin]
        if car.asleep:
            raise api.Asleep("vehicle unavailable")
        return api.ChargeData(
            vin, "online", car.battery_level, car.charge_limit_soc, car.charging_state,
            car.scheduled, 16, car.at[0], car.at[1],
        )  # fmt: skip

    async def wake_up(self, vin: str) -> str:
        self._call("wake", "wake", vin)
        self._polls[vin] = self.cars[vin].wake_polls
        return "asleep" if self.cars[vin].wake_polls else "online"

    async def _command(self, method: str, vin: str) -> str:
        self._call(method, "command", vin)
        if self.cars[vin].signing:
            self.on_call("command", vin, True)
            raise api.SigningRequired("Tesla Vehicle Command Protocol required")
        return ""

    async def charge_start(self, vin: str) -> str:
        reason = await self._command("start", vin)
        self.cars[vin].charging_state = "Charging"
        return reason

    async def charge_stop(self, vin: str) -> str:
        reason = await self._command("stop", vin)
        self.cars[vin].charging_state = "Stopped"
        return reason

    async def set_charging_amps(self, vin: str, amps: int) -> str:
        return await self._command("amps", vin)

    async def close(self) -> None:
        pass


class Rig:
    """TeslaCars on a virtual clock, with a bus that shows whether each TWC's car draws."""

    def __init__(self, cars: list[Car], **settings: object) -> None:
        self.now = 1000.0
        self.midnight = datetime(2026, 6, 1)
        self.api = FakeApi(cars)
        self.api.clock = lambda: self.now
        self.drawing: dict[int, bool] = {}
        self.scheduler = VirtualScheduler(lambda: self.now)
        defaults = dict(home_latitude=HOME[0], home_longitude=HOME[1], wake_delay_s=180.0)
        self.log = RecordingLog()
        self.cars = TeslaCars(
            self.api,
            TeslaCarsSettings(**{**defaults, **settings}),  # type: ignore[arg-type]
            clock=lambda: self.now,
            wallclock=lambda: self.midnight + timedelta(hours=12, seconds=self.now),
            scheduler=self.scheduler,
            log=self.log,
            snapshot=self.snapshot,
        )
        self.api.on_call = self.cars.count_call

    def snapshot(self) -> SimpleNamespace:
        slaves = [SimpleNamespace(twcid=f"{twcid:04X}", car_charging=drawing)
                  for twcid, drawing in self.drawing.items()]  # fmt: skip
        return SimpleNamespace(slaves=slaves)

    def start(self) -> None:
        self.scheduler.spawn(self.cars._keep_listing())

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while (due := self.scheduler.next_due_s()) is not None and due <= end:
            self.now = max(self.now, due)
            self.scheduler.run_due(self.now)
        self.now = end

    def ask(self, action: CarAction, twcid: int = 1, vin: str | None = VIN_A) -> None:
        self.drawing.setdefault(twcid, action is CarAction.STOP)
        self.cars.request(CarCommand(twcid, vin, action, self.now, "test"))


def started(cars: list[Car], **settings: object) -> Rig:
    rig = Rig(cars, **settings)
    rig.start()
    assert rig.cars.view().usable, rig.cars.view().message
    return rig


def test_the_account_is_listed_at_start_and_shown():
    rig = started([Car(VIN_A), Car(VIN_B, asleep=True)])
    view = rig.cars.view()
    assert view.state == "ok" and [c.vin for c in view.cars] == [VIN_A, VIN_B]
    assert [c.online for c in view.cars] == ["online", "asleep"]
    assert view.calls_today["data"] == 1  # the account listing: one data call, no car woken
    assert rig.api.sent("wake") == []


def test_a_stop_goes_to_the_vin_on_the_twc_only_even_with_two_cars_at_home():
    rig = started([Car(VIN_A, charging_state="Charging"), Car(VIN_B, charging_state="Charging")])
    rig.ask(CarAction.STOP, twcid=1, vin=VIN_B)
    rig.run(1)
    assert rig.api.sent("stop") == [VIN_B]
    status = {c.vin: c for c in rig.cars.view().cars}
    assert status[VIN_B].last_command == "stop" and status[VIN_B].last_result == "ok"
    assert status[VIN_A].last_command == ""


def test_a_vin_not_on_the_account_is_left_to_the_bus():
    rig = started([Car(VIN_A)])
    other = "5YJ3E1EA7KF999999"
    rig.ask(CarAction.STOP, vin=other)
    rig.run(120)
    assert rig.api.sent("stop") == []
    view = rig.cars.view()
    assert not view.usable_for(other) and view.usable_for(VIN_A)


def test_without_a_vin_only_cars_at_home_that_charge_are_stopped():
    rig = started([
        Car(VIN_A, charging_state="Charging"),
        Car(VIN_B, charging_state="Charging", at=AWAY),
    ])  # fmt: skip
    rig.ask(CarAction.STOP, vin=None)
    rig.run(1)
    assert rig.api.sent("stop") == [VIN_A]
    assert {c.vin: c.location for c in rig.cars.view().cars} == {VIN_A: "home", VIN_B: "away"}


def test_without_a_vin_or_a_home_several_cars_are_not_guessed():
    rig = started([Car(VIN_A, charging_state="Charging"), Car(VIN_B)],
                  home_latitude=None, home_longitude=None)  # fmt: skip
    rig.ask(CarAction.STOP, vin=None)
    rig.run(300)
    assert rig.api.calls[1:] == []
    assert not rig.cars.view().usable_for(None)


def test_without_a_vin_or_a_home_even_the_only_car_is_not_commanded_and_says_why():
    """Issue 11: no VIN from the TWC and no geofence: no command, not even to the account's
    only car (which may be charging somewhere else); its status says what to set."""
    rig = started([Car(VIN_A, charging_state="Charging")],
                  home_latitude=None, home_longitude=None)  # fmt: skip
    rig.ask(CarAction.STOP, vin=None)
    rig.ask(CarAction.START, twcid=2, vin=None)
    rig.run(600)
    assert rig.api.calls[1:] == []
    view = rig.cars.view()
    assert not view.usable_for(None) and view.usable_for(VIN_A)  # its VIN still works
    assert "homeLatitude/homeLongitude" in view.cars[0].without_vin
    rig.ask(CarAction.STOP, vin=VIN_A)
    rig.run(1)
    assert rig.api.sent("stop") == [VIN_A]


def test_without_a_vin_a_car_whose_position_stays_unknown_is_not_commanded():
    rig = started([Car(VIN_A, charging_state="Charging", at=(None, None))])  # type: ignore[arg-type]
    assert "position unknown" in rig.cars.view().cars[0].without_vin
    rig.ask(CarAction.STOP, vin=None)
    rig.run(120)
    assert rig.api.sent("data") == [VIN_A] and rig.api.sent("stop") == []


def test_a_car_that_answered_a_command_is_known_awake_then_unknown_again():
    """The listing said asleep; a stop went through: the next start need not wait the wake
    delay (simulate --tesla on cloudy-day gave up on such a start). The state decays to
    unknown after ``online_fresh_s``, and a start then waits the delay again."""
    rig = started([Car(VIN_A, asleep=True, charging_state="Charging")],
                  min_command_interval_s=0)  # fmt: skip
    rig.api.cars[VIN_A].asleep = False
    assert rig.cars.view().cars[0].online == "asleep"
    rig.ask(CarAction.STOP)
    rig.run(1)
    assert rig.api.sent("stop") == [VIN_A] and rig.cars.view().cars[0].online == "online"
    rig.drawing[1] = False
    rig.ask(CarAction.START)
    rig.run(1)
    assert rig.api.sent("start") == [VIN_A]  # at once: no wake delay
    rig.run(601)
    assert rig.cars.view().cars[0].online == "unknown"
    rig.api.cars[VIN_A].charging_state = "Stopped"
    rig.drawing[1] = False
    rig.ask(CarAction.START)
    rig.run(170)
    assert rig.api.sent("start") == [VIN_A]  # waits the wake delay once more
    rig.run(20)
    assert rig.api.sent("start") == [VIN_A, VIN_A]


@pytest.mark.parametrize("budget", [2, 3, 4, 5, 6, 8])
def test_a_wake_sequence_never_overshoots_the_daily_budget(budget):
    """Every billable call checks the budget: the wake, each poll, the data call after it."""
    rig = started([Car(VIN_A, asleep=True, wake_polls=20)], daily_call_budget=budget)
    for _ in range(4):
        rig.ask(CarAction.START)
        rig.run(2000)
        rig.api._polls[VIN_A] = 20
    billable = rig.cars.view().cars[0].billable_today
    assert billable == budget  # spent, never more
    assert len([c for c in rig.api.calls if c[1] == VIN_A]) <= budget


def test_a_start_waits_the_wake_delay_then_wakes_the_car_once_and_starts_it():
    rig = started([Car(VIN_A, asleep=True, wake_polls=2)])
    rig.ask(CarAction.START)
    rig.run(179)
    assert rig.api.calls[1:] == []  # the offer itself may wake the car: wait first
    rig.run(2 + 60)
    methods = [m for m, _, _ in rig.api.calls[1:]]
    assert methods == ["data", "wake", "state", "state", "state", "data", "start"]
    view = rig.cars.view()
    assert view.calls_today == {"data": 6, "command": 1, "wake": 1}  # the listing too
    assert view.cars[0].last_result == "ok"


def test_a_car_that_started_by_itself_meanwhile_costs_nothing():
    rig = started([Car(VIN_A, asleep=True)])
    rig.ask(CarAction.START)
    rig.run(60)
    rig.drawing[1] = True  # the offer woke it and it draws
    rig.run(300)
    assert rig.api.calls[1:] == []


def test_a_car_known_away_is_never_woken():
    rig = started([Car(VIN_A, at=AWAY)])
    rig.ask(CarAction.START, vin=VIN_A)
    rig.run(200)  # online: its data says it is away (the TWC's VIN: someone else's TWC?)
    rig.api.cars[VIN_A].asleep = True
    rig.cars._cars[VIN_A].data = None
    rig.ask(CarAction.START, vin=VIN_A)
    rig.run(1000)
    assert rig.api.sent("wake") == [] and rig.api.sent("start") == []
    assert "away" in rig.cars.view().cars[0].last_result


@pytest.mark.parametrize(
    "car, why",
    [
        (Car(VIN_A, battery_level=80, charge_limit_soc=80), "at its charge limit"),
        (Car(VIN_A, charging_state="Complete"), "at its charge limit"),
        (Car(VIN_A, scheduled=True), "its own charging schedule"),
        (Car(VIN_A, charging_state="Disconnected"), "not plugged in"),
    ],
)
def test_the_cars_own_limit_and_schedule_are_respected(car, why):
    rig = started([car])
    rig.ask(CarAction.START)
    rig.run(600)
    assert rig.api.sent("start") == []
    assert why in rig.cars.view().cars[0].last_result


def test_at_most_one_command_per_car_per_minute():
    rig = started([Car(VIN_A, charging_state="Charging")])
    times = []
    for _ in range(6):  # the core asking again and again, every 10 s
        rig.drawing[1] = True
        rig.ask(CarAction.STOP)
        rig.run(10)
    rig.run(120)
    times = [t for m, _, t in rig.api.calls if m == "stop"]
    assert len(times) == 2 and times[1] - times[0] >= 60


def test_errors_back_off_exponentially_up_to_the_cap():
    rig = started([Car(VIN_A, charging_state="Charging")], min_command_interval_s=0)
    rig.api.fail["stop"] = [api.Transient("503", billable=False) for _ in range(8)]
    for _ in range(8 * 40):
        rig.drawing[1] = True
        rig.ask(CarAction.STOP)
        rig.run(10)
    times = [t for m, _, t in rig.api.calls if m == "stop"]
    gaps = [round(b - a) for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:5] == [60, 120, 240, 480, 600] and max(gaps) <= 610


def test_a_429_holds_every_call_until_tesla_says():
    rig = started([Car(VIN_A, charging_state="Charging"), Car(VIN_B, charging_state="Charging")])
    rig.api.fail["stop"] = [api.RateLimited("429", retry_after_s=300)]
    rig.ask(CarAction.STOP, twcid=1, vin=VIN_A)
    rig.run(1)
    assert rig.cars.view().state == "rate_limited"
    rig.ask(CarAction.STOP, twcid=2, vin=VIN_B)
    rig.run(290)
    assert rig.api.sent("stop") == [VIN_A]
    rig.run(20)
    assert rig.api.sent("stop") == [VIN_A, VIN_B]
    assert rig.cars.view().state == "ok"


def test_the_daily_budget_hands_the_car_to_the_bus_until_midnight():
    rig = started([Car(VIN_A, charging_state="Charging")], daily_call_budget=3,
                  min_command_interval_s=0, data_fresh_s=0)  # fmt: skip
    for _ in range(10):
        rig.drawing[1] = True
        rig.ask(CarAction.STOP)
        rig.run(61)
    assert len(rig.api.sent("stop")) == 3
    car = rig.cars.view().cars[0]
    assert car.budget_left == 0 and "billable calls are spent" in car.bus_only
    assert not rig.cars.view().usable_for(VIN_A)  # the core stops it with 0 A meanwhile
    rig.now += 24 * 3600  # the next day
    assert rig.cars.view().usable_for(VIN_A)
    assert rig.cars.view().cars[0].calls_today == {"data": 0, "command": 0, "wake": 0}


def test_wakes_have_their_own_daily_budget():
    rig = started([Car(VIN_A, asleep=True, wake_polls=0)], daily_wake_budget=1)
    for _ in range(3):
        rig.api.cars[VIN_A].asleep = True
        rig.cars._cars[VIN_A].online = "asleep"
        rig.cars._cars[VIN_A].data = None
        rig.ask(CarAction.START)
        rig.run(400)
    assert len(rig.api.sent("wake")) == 1
    assert "wakes are spent" in rig.cars.view().cars[0].last_result


def test_a_car_that_needs_signed_commands_goes_to_the_bus_and_says_what_to_do():
    rig = started([Car(VIN_A, charging_state="Charging", signing=True)])
    rig.ask(CarAction.STOP)
    rig.run(1)
    car = rig.cars.view().cars[0]
    assert "privateKeyFile" in car.bus_only and not rig.cars.view().usable_for(VIN_A)


def test_login_required_stops_every_call_without_a_storm():
    rig = Rig([Car(VIN_A)])
    rig.api.fail["list"] = [api.LoginRequired("login_required")]
    rig.start()
    rig.run(24 * 3600)
    assert len(rig.api.calls) == 1
    view = rig.cars.view()
    assert view.state == "login_required" and not view.usable
    assert "log in again" in view.message


def test_a_failing_listing_is_retried_with_a_cap_then_works():
    rig = Rig([Car(VIN_A)])
    rig.api.fail["list"] = [api.Transient("timeout", billable=False)] * 2
    rig.start()
    assert rig.cars.view().state == "error"
    rig.run(1300)
    assert rig.cars.view().state == "ok" and len(rig.api.sent("list")) == 3


def test_geofence_distance_is_metres():
    assert distance_m(*HOME, *HOME) == 0
    assert 11_000 < distance_m(*HOME, *AWAY) < 11_200
