"""The Bluetooth backend (``vehicle.teslaBLE``): its config, the adapter check, the command
mapping, and the router that puts BLE first and the Fleet API behind it.

The adapter check runs for real: this machine has no Bluetooth adapter (no system D-Bus), so
the "BLE off" path is the one exercised. A machine with a working adapter skips those tests.
The car is a stand-in for tesla-fleet-api's ``VehicleBluetooth`` answering with the
library's own protobuf messages; the scan is a stand-in that hears the car or not."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime
from typing import Any

import pytest
from bleak.exc import BleakDeviceNotFoundError, BleakError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dbus_fast import Variant
from tesla_fleet_api.exceptions import BluetoothTimeout, InvalidCommand, NotOnWhitelistFault
from tesla_fleet_api.tesla.vehicle.proto.vcsec_pb2 import VehicleSleepStatus_E, VehicleStatus
from tesla_fleet_api.tesla.vehicle.proto.vehicle_pb2 import (
    ChargeState,
    LocationState,
    VehicleData,
)

from tests.tesla.test_cars import RecordingLog
from twcmaster.assembly import tesla_cars
from twcmaster.config import ConfigError, config_from_dict
from twcmaster.vehicles.tesla import api
from twcmaster.vehicles.tesla.ble import (
    OFF_MESSAGE,
    TeslaBle,
    adapter_problem,
    library_vehicle,
    probe_adapter,
)
from twcmaster.vehicles.tesla.router import RoutedCarApi

VIN = "5YJ3E1EA7KF000001"
OTHER_VIN = "5YJ3E1EA7KF000002"
WIRING = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32}
KEY = ec.generate_private_key(ec.SECP256R1())


def _no_adapter_here() -> str:
    reason = asyncio.run(probe_adapter(None))
    if not reason:
        pytest.skip("this machine has a usable Bluetooth adapter")
    return reason


# -- config --------------------------------------------------------------------------------


def _load(ble: dict[str, Any], **vehicle: Any):
    data = {"config": WIRING, "vehicle": {"teslaBLE": ble, **vehicle}}
    return config_from_dict(data, "/srv/twc")


def _errors(ble: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        _load(ble)
    return {problem.key_path: problem.message for problem in caught.value.problems}


def _key_file(tmp_path) -> str:
    """A real EC key: check-config loads the file (and names it when it cannot)."""
    path = tmp_path / "ble-key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                     serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return str(path)


def test_config_reads_every_key_and_upper_cases_vins(tmp_path):
    key_file = _key_file(tmp_path)
    loaded = _load({
        "enabled": True, "privateKeyFile": key_file,
        "vins": [VIN.lower(), VIN, OTHER_VIN], "adapter": "hci1",
        "scanTimeoutS": 5, "commandTimeoutS": 20,
    })  # fmt: skip
    ble = loaded.settings.tesla_ble
    assert ble is not None
    assert ble.private_key_file == key_file
    assert ble.vins == (VIN, OTHER_VIN)  # the same VIN twice is one car
    assert (ble.adapter, ble.scan_timeout_s, ble.command_timeout_s) == ("hci1", 5.0, 20.0)
    assert not [w for w in loaded.warnings if "teslaBLE" in w.key_path]  # known and used


def test_config_defaults_and_off_unless_enabled(tmp_path):
    ble = _load({"enabled": True, "privateKeyFile": _key_file(tmp_path)}).settings.tesla_ble
    assert ble is not None
    assert (ble.vins, ble.adapter, ble.scan_timeout_s, ble.command_timeout_s) == (
        (), None, 10.0, 30.0,
    )  # fmt: skip
    off = _load({"privateKeyFile": "k.pem"})
    assert off.settings.tesla_ble is None
    assert off.warnings == ()  # kept for later, switched off: no noise
    assert _load({"enabled": False}).settings.tesla_ble is None


@pytest.mark.parametrize(
    ("ble", "key_path", "words"),
    [
        ({"privateKeyFile": None}, "vehicle.teslaBLE.privateKeyFile", "missing"),
        ({"privateKeyFile": ""}, "vehicle.teslaBLE.privateKeyFile", "missing"),
        ({"privateKeyFile": 7}, "vehicle.teslaBLE.privateKeyFile", "text"),
        ({"vins": VIN}, "vehicle.teslaBLE.vins", "a list of VINs"),
        ({"vins": [VIN, "5YJ3E1EA7KF00000I"]}, "vehicle.teslaBLE.vins[1]", "17-character VIN"),
        ({"vins": [12]}, "vehicle.teslaBLE.vins[0]", "17-character VIN"),
        ({"adapter": "bluetooth0"}, "vehicle.teslaBLE.adapter", "hci0"),
        ({"scanTimeoutS": 0}, "vehicle.teslaBLE.scanTimeoutS", "seconds from 1 to 60"),
        ({"commandTimeoutS": "x"}, "vehicle.teslaBLE.commandTimeoutS", "seconds from 5"),
        ({"enabled": "yes"}, "vehicle.teslaBLE.enabled", "true or false"),
    ],
)
def test_bad_values_name_their_key_path(ble, key_path, words):
    errors = _errors({"enabled": True, "privateKeyFile": "k.pem", **ble})
    assert key_path in errors, errors
    assert words in errors[key_path]


def test_unknown_key_in_the_section_is_an_error():
    errors = _errors({"enabled": True, "privateKeyFile": "k.pem", "vin": [VIN]})
    assert "vehicle.teslaBLE.vin" in errors


# -- the adapter check, for real on this machine -----------------------------------------


def test_no_adapter_here_says_so_once_and_stays_off():
    _no_adapter_here()
    log, made, calls = RecordingLog(), [], []

    def make_vehicle(vin: str, key: Any) -> Any:
        made.append(vin)  # never: nothing is scanned or connected while off
        raise AssertionError("no vehicle while BLE is off")

    ble = TeslaBle(KEY, [VIN], log=log, make_vehicle=make_vehicle,
                   on_call=lambda *call: calls.append(call))  # fmt: skip

    async def scenario() -> list[api.CarApiError]:
        started = time.monotonic()
        assert await ble.start() is False
        assert time.monotonic() - started < 5.0  # one quick check, no waiting on a radio
        errors = []
        for call in (
            ble.charge_start(VIN), ble.charge_stop(VIN), ble.set_charging_amps(VIN, 16),
            ble.wake_up(VIN), ble.vehicle_state(VIN), ble.charge_data(VIN),
            ble.list_vehicles(),
        ):  # fmt: skip
            with pytest.raises(api.NotReachable) as caught:
                await call
            errors.append(caught.value)
        assert await ble.start() is False  # asked again: the first answer, no new check
        return errors

    errors = asyncio.run(scenario())
    assert ble.state == "off" and ble.off_reason
    assert log.count(OFF_MESSAGE) == 1 and len(log.lines) == 1
    assert all(not e.billable and OFF_MESSAGE in str(e) for e in errors)
    assert made == [] and calls == []
    assert not asyncio.run(ble.reaches(VIN))


def test_ble_only_config_without_adapter_is_a_clear_not_usable_state(tmp_path):
    _no_adapter_here()
    key_file = _key_file(tmp_path)
    config = config_from_dict({
        "config": {**WIRING, "settingsPath": str(tmp_path)},
        "vehicle": {"teslaBLE": {"enabled": True, "privateKeyFile": key_file,
                                 "vins": [VIN]}},
    }, str(tmp_path)).settings  # fmt: skip
    log = RecordingLog()

    async def scenario() -> Any:
        cars = tesla_cars(config, clock=time.monotonic, wallclock=datetime.now, log=log)
        assert cars is not None  # the module runs without teslaAPI
        await cars.start()
        for _ in range(100):
            if cars.view().state != "starting":
                break
            await asyncio.sleep(0.01)
        view = cars.view()
        await cars.stop()
        return view

    view = asyncio.run(scenario())
    assert view.enabled and not view.usable  # the core stops cars from the bus
    assert view.state == "error" and OFF_MESSAGE in view.message
    assert log.count(OFF_MESSAGE) == 1


def _key_file(tmp_path) -> str:
    path = tmp_path / "ble-key.pem"
    path.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


@pytest.mark.parametrize(
    "client_id, token",
    [("app-id", "r"), (None, "r"), ("app-id", None)],
    ids=["both", "no-app", "no-token-yet"],
)
def test_both_configured_route_ble_first_and_without_an_app_ble_alone(tmp_path, client_id, token):
    fleet = {"enabled": True} | ({"clientID": client_id} if client_id else {})
    fleet |= {"refreshToken": token} if token else {}
    config = config_from_dict({
        "config": {**WIRING, "settingsPath": str(tmp_path)},
        "vehicle": {"teslaAPI": fleet,
                    "teslaBLE": {"enabled": True, "privateKeyFile": _key_file(tmp_path)}},
    }, str(tmp_path)).settings  # fmt: skip
    log = RecordingLog()
    cars = tesla_cars(config, clock=time.monotonic, wallclock=datetime.now, log=log)
    assert isinstance(cars.api, RoutedCarApi) and cars.api.ble is not None
    if client_id and token:
        assert type(cars.api.fleet).__name__ == "TeslaClient" and cars.tokens is not None
    else:
        assert cars.api.fleet is None and log.count("BLE only") == 1
    assert cars.api.ble.on_call == cars.count_call  # counted, never billable
    asyncio.run(cars.api.close())


@pytest.mark.parametrize("content", [None, b"not a key", b"rsa"], ids=["missing", "junk", "rsa"])
def test_a_missing_or_wrong_ble_key_file_is_named_by_check_config(tmp_path, content):
    path = tmp_path / "no.pem"
    if content == b"rsa":
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        content = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())  # fmt: skip
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        config_from_dict({
            "config": WIRING,
            "vehicle": {"teslaBLE": {"enabled": True, "privateKeyFile": str(path)}},
        }, str(tmp_path))  # fmt: skip
    [problem] = error.value.problems
    assert problem.key_path == "vehicle.teslaBLE.privateKeyFile" and "no.pem" in problem.message


def test_no_car_module_when_neither_backend_is_configured():
    config = config_from_dict({"config": WIRING, "vehicle": {"teslaAPI": {"enabled": False}}}, "/")
    assert (
        tesla_cars(
            config.settings, clock=time.monotonic, wallclock=datetime.now, log=RecordingLog()
        )
        is None
    )


def test_adapter_problem_reads_bluez_objects():
    def adapter(powered: bool) -> dict[str, Any]:
        return {"org.bluez.Adapter1": {"Powered": Variant("b", powered)}}

    objects = {"/org/bluez": {}, "/org/bluez/hci0": adapter(True)}
    assert adapter_problem(objects, None) == ""
    assert adapter_problem(objects, "hci0") == ""
    assert "no adapter hci1 (BlueZ has hci0)" in adapter_problem(objects, "hci1")
    assert "powered off" in adapter_problem({"/org/bluez/hci0": adapter(False)}, None)
    assert "no adapter" in adapter_problem({"/org/bluez": {}}, None)


def test_the_library_vehicle_is_found_by_the_name_derived_from_the_vin():
    vehicle = library_vehicle(VIN, KEY)  # the real VehicleBluetooth, not connected
    assert vehicle.ble_name == "S" + hashlib.sha1(VIN.encode()).hexdigest()[:16] + "C"
    for name in ("set_device", "connect_if_needed", "disconnect", "vehicle_state",
                 "vehicle_data", "wake_up", "charge_start", "charge_stop",
                 "set_charging_amps"):  # fmt: skip
        assert callable(getattr(vehicle, name)), name


# -- the command mapping, with a stand-in for the library's vehicle -----------------------


class Car:
    """Stands in for ``VehicleBluetooth``: the library's answers (dicts and protobufs)."""

    def __init__(self, vin: str, *, asleep: bool = False) -> None:
        self.vin = vin
        self.ble_name = "S" + hashlib.sha1(vin.encode()).hexdigest()[:16] + "C"
        self.asleep = asleep
        self.calls: list[str] = []
        self.raises: dict[str, BaseException] = {}
        self.answers: dict[str, dict[str, Any]] = {}
        self.hang = False
        self.connected = False
        self.device: Any = None

    def set_device(self, device: Any) -> None:
        self.device = device

    async def connect_if_needed(self, max_attempts: int = 1) -> None:
        self.connected = True

    async def disconnect(self) -> bool:
        self.connected = False
        return True

    async def _answer(self, name: str) -> dict[str, Any]:
        self.calls.append(name)
        if self.hang:
            await asyncio.sleep(3600)
        if name in self.raises:
            raise self.raises[name]
        return self.answers.get(name, {"response": {"result": True, "reason": ""}})

    async def charge_start(self) -> dict[str, Any]:
        return await self._answer("charge_start")

    async def charge_stop(self) -> dict[str, Any]:
        return await self._answer("charge_stop")

    async def set_charging_amps(self, amps: int) -> dict[str, Any]:
        return await self._answer(f"set_charging_amps {amps}")

    async def wake_up(self) -> dict[str, Any]:
        answer = await self._answer("wake_up")
        self.asleep = False
        return answer

    async def vehicle_state(self) -> VehicleStatus:
        await self._answer("vehicle_state")
        sleep = (
            VehicleSleepStatus_E.VEHICLE_SLEEP_STATUS_ASLEEP
            if self.asleep
            else (VehicleSleepStatus_E.VEHICLE_SLEEP_STATUS_AWAKE)
        )
        return VehicleStatus(vehicleSleepStatus=sleep)

    async def vehicle_data(self, endpoints: list[Any]) -> VehicleData:
        await self._answer("vehicle_data")
        charge = ChargeState(battery_level=55, charge_limit_soc=80, charge_current_request=16,
                             scheduled_charging_pending=False)  # fmt: skip
        charge.charging_state.Stopped.SetInParent()
        return VehicleData(charge_state=charge,
                           location_state=LocationState(latitude=47.0, longitude=7.0))  # fmt: skip


class Fleet:
    """The Fleet API client's stand-in: records what reached the cloud."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.listed = [api.VehicleInfo(VIN, "Red", "online"),
                       api.VehicleInfo(OTHER_VIN, "Blue", "asleep")]  # fmt: skip

    async def list_vehicles(self) -> list[api.VehicleInfo]:
        self.calls.append("list_vehicles")
        return self.listed

    def __getattr__(self, name: str) -> Any:
        async def call(vin: str, *args: Any) -> str:
            self.calls.append(f"{name} {vin}")
            return "online" if name in ("wake_up", "vehicle_state") else "fleet"

        return call

    async def close(self) -> None:
        self.calls.append("close")


def _ble(
    cars: list[Car],
    *,
    in_range: bool = True,
    vins: tuple[str, ...] | None = None,
    log: RecordingLog | None = None,
    timeout_s: float = 30.0,
) -> tuple[TeslaBle, list[tuple]]:
    reported: list[tuple] = []
    by_vin = {car.vin: car for car in cars}

    async def adapter_present(adapter: str | None) -> str:
        return ""

    async def scan(name: str, timeout_s: float, adapter: str | None) -> Any:
        return f"device {name}" if in_range else None

    ble = TeslaBle(
        KEY, [car.vin for car in cars] if vins is None else vins,
        command_timeout_s=timeout_s, scan_timeout_s=1.0, log=log,
        on_call=lambda *call: reported.append(call), probe=adapter_present, find=scan,
        make_vehicle=lambda vin, key: by_vin[vin],
    )  # fmt: skip
    return ble, reported


def test_commands_go_to_the_car_over_ble_and_are_never_billable():
    car = Car(VIN)
    ble, reported = _ble([car])

    async def scenario() -> list[Any]:
        return [
            await ble.charge_start(VIN), await ble.charge_stop(VIN),
            await ble.set_charging_amps(VIN, 13), await ble.vehicle_state(VIN),
        ]  # fmt: skip

    assert asyncio.run(scenario()) == ["", "", "", "online"]
    assert car.calls == ["charge_start", "charge_stop", "set_charging_amps 13", "vehicle_state"]
    assert reported == [("command", VIN, False)] * 3 + [("data", VIN, False)]
    assert car.device == f"device {car.ble_name}" and not car.connected  # found by name, let go


def test_charge_data_over_ble_reads_the_charge_and_location_state():
    data = asyncio.run(_ble([Car(VIN)])[0].charge_data(VIN))
    assert data == api.ChargeData(
        vin=VIN, state="online", battery_level=55, charge_limit_soc=80,
        charging_state="Stopped", scheduled_charging_pending=False,
        charge_current_request=16, latitude=47.0, longitude=7.0,
    )  # fmt: skip


def test_an_asleep_car_is_woken_over_ble():
    car = Car(VIN, asleep=True)
    ble, reported = _ble([car])

    async def scenario() -> str:
        with pytest.raises(api.Asleep) as caught:
            await ble.charge_data(VIN)  # data needs the infotainment computer awake
        assert not caught.value.billable
        return await ble.wake_up(VIN)

    assert asyncio.run(scenario()) == "online"
    assert car.calls == ["vehicle_state", "wake_up", "vehicle_state"]
    assert reported[-1] == ("wake", VIN, False)


@pytest.mark.parametrize(
    ("raised", "kind", "words"),
    [
        (BluetoothTimeout(), api.Transient, "did not answer in time"),
        (NotOnWhitelistFault(), api.Forbidden, "BLE key"),
        (InvalidCommand(), api.CarApiError, "InvalidCommand"),
        (BleakError("org.bluez.Error.Failed"), api.Transient, "BleakError"),
        (BleakDeviceNotFoundError("AA:BB"), api.NotReachable, "BleakDeviceNotFoundError"),
        (ConnectionResetError("gone"), api.NotReachable, "ConnectionResetError"),
        (ValueError("No private key."), api.Transient, "ValueError"),
    ],
)
def test_library_and_bleak_errors_become_api_errors(raised, kind, words):
    car = Car(VIN)
    car.raises["charge_start"] = raised
    ble, _ = _ble([car])
    with pytest.raises(api.CarApiError) as caught:
        asyncio.run(ble.charge_start(VIN))
    assert type(caught.value) is kind
    assert words in str(caught.value) and not caught.value.billable
    assert not car.connected


def test_a_refusal_is_the_cars_reason_and_not_billable():
    car = Car(VIN)
    car.answers["charge_start"] = {"response": {"result": False, "reason": "disconnected"}}
    car.answers["charge_stop"] = {"response": {"result": False, "reason": "not_charging"}}
    ble, _ = _ble([car])
    with pytest.raises(api.Refused, match="disconnected") as caught:
        asyncio.run(ble.charge_start(VIN))
    assert not caught.value.billable
    assert asyncio.run(ble.charge_stop(VIN)) == "not_charging"  # already what was asked


def test_every_call_has_a_timeout():
    car = Car(VIN)
    car.hang = True
    ble, _ = _ble([car], timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(api.Transient, match="did not answer within 0.2 s"):
        asyncio.run(ble.charge_stop(VIN))
    assert time.monotonic() - started < 2.0


def test_out_of_range_and_unknown_vins_are_not_reachable():
    ble, reported = _ble([Car(VIN)], in_range=False)
    with pytest.raises(api.NotReachable, match="not in range"):
        asyncio.run(ble.charge_start(VIN))
    with pytest.raises(api.NotReachable, match="not one of the cars"):
        asyncio.run(ble.charge_start(OTHER_VIN))
    assert reported == []  # nothing reached a car


# -- the router --------------------------------------------------------------------------


def test_router_ble_in_range_makes_no_cloud_call():
    car, fleet = Car(VIN), Fleet()
    router = RoutedCarApi(_ble([car])[0], fleet)
    assert asyncio.run(router.charge_start(VIN)) == ""
    assert asyncio.run(router.charge_data(VIN)).battery_level == 55
    assert fleet.calls == [] and car.calls[0] == "charge_start"
    assert router.last_backend == {VIN: "ble"} and router.ble_skipped == {}


def test_router_ble_out_of_range_uses_the_fleet_api_and_says_so_once():
    log, fleet = RecordingLog(), Fleet()
    router = RoutedCarApi(_ble([Car(VIN)], in_range=False)[0], fleet, log=log)

    async def scenario() -> list[str]:
        return [await router.charge_start(VIN), await router.charge_stop(VIN)]

    assert asyncio.run(scenario()) == ["fleet", "fleet"]
    assert fleet.calls == [f"charge_start {VIN}", f"charge_stop {VIN}"]
    assert router.last_backend[VIN] == "fleet"
    assert "not_reachable" in router.ble_skipped[VIN]
    assert log.count("Fleet API instead of BLE") == 1


def test_router_ble_timeout_falls_back_but_the_cars_own_answers_stay_on_ble():
    car, fleet = Car(VIN), Fleet()
    car.raises["charge_stop"] = BluetoothTimeout()
    car.answers["charge_start"] = {"response": {"result": False, "reason": "complete"}}
    router = RoutedCarApi(_ble([car])[0], fleet)
    assert asyncio.run(router.charge_stop(VIN)) == "fleet"
    with pytest.raises(api.Refused):
        asyncio.run(router.charge_start(VIN))  # the cloud would say the same, billed
    assert fleet.calls == [f"charge_stop {VIN}"]
    asleep = Car(OTHER_VIN, asleep=True)
    router = RoutedCarApi(_ble([asleep])[0], fleet)
    with pytest.raises(api.Asleep):
        asyncio.run(router.charge_data(OTHER_VIN))
    assert fleet.calls == [f"charge_stop {VIN}"]


def test_router_ble_off_uses_the_fleet_api():
    _no_adapter_here()
    fleet, log = Fleet(), RecordingLog()
    ble = TeslaBle(KEY, [VIN], log=log)  # the real adapter check: none here
    router = RoutedCarApi(ble, fleet, log=log)

    async def scenario() -> list[str]:
        await router.start()
        return [await router.wake_up(VIN), await router.set_charging_amps(VIN, 10)]

    assert asyncio.run(scenario()) == ["online", "fleet"]
    assert fleet.calls == [f"wake_up {VIN}", f"set_charging_amps {VIN}"]
    assert router.last_backend[VIN] == "fleet" and "BLE off" in router.ble_skipped[VIN]
    assert log.count(OFF_MESSAGE) == 1


def test_router_learns_ble_vins_from_the_account_when_none_are_configured():
    cars = [Car(VIN), Car(OTHER_VIN)]
    fleet = Fleet()
    ble, _ = _ble(cars, vins=())
    router = RoutedCarApi(ble, fleet)

    async def scenario() -> None:
        assert await router.charge_start(VIN) == "fleet"  # not known to BLE yet
        await router.list_vehicles()
        assert await router.charge_start(VIN) == ""

    asyncio.run(scenario())
    assert ble.vins == (VIN, OTHER_VIN)
    assert fleet.calls == [f"charge_start {VIN}", "list_vehicles"]


def test_router_with_ble_only_lists_the_configured_vins_and_passes_errors_through():
    router = RoutedCarApi(_ble([Car(VIN)], in_range=False)[0], None)
    assert asyncio.run(router.list_vehicles()) == [api.VehicleInfo(VIN, "", "unknown")]
    with pytest.raises(api.NotReachable):
        asyncio.run(router.charge_start(VIN))
    assert router.last_backend[VIN] == "ble"
    with pytest.raises(ValueError):
        RoutedCarApi(None, None)


def test_router_close_closes_both():
    fleet = Fleet()
    asyncio.run(RoutedCarApi(_ble([Car(VIN)])[0], fleet).close())
    assert fleet.calls == ["close"]


def test_ble_alone_without_vins_takes_the_vin_the_twc_reports():
    from twcmaster.control.carcommands import CarAction, CarCommand
    from twcmaster.vehicles.scheduling import AsyncioScheduler
    from twcmaster.vehicles.tesla.cars import TeslaCars, TeslaCarsSettings

    car = Car(VIN)
    ble, reported = _ble([car], vins=())
    router = RoutedCarApi(ble, None)

    async def scenario() -> Any:
        cars = TeslaCars(
            router,
            TeslaCarsSettings(),
            clock=time.monotonic,
            wallclock=datetime.now,
            scheduler=AsyncioScheduler(),
            log=RecordingLog(),
        )
        ble.on_call = cars.count_call
        await cars._list_vehicles()  # no VINs yet: an empty list, and usable
        assert cars.view().usable and cars.view().cars == ()
        cars.request(CarCommand(1, VIN, CarAction.STOP, time.monotonic(), "test"))
        for _ in range(100):
            if car.calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        view = cars.view()
        await cars.stop()
        return view

    view = asyncio.run(scenario())
    assert car.calls == ["charge_stop"] and ble.vins == (VIN,)
    (status,) = view.cars
    assert (status.vin, status.last_result, status.via) == (VIN, "ok", "ble")
    assert status.calls_today["command"] == 1 and status.billable_today == 0
    assert not RoutedCarApi(ble, Fleet()).adopt_vin(OTHER_VIN)  # an account's list decides
