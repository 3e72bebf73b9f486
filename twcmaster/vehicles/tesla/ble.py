"""``api.CarApi`` over Bluetooth LE (``vehicle.teslaBLE``): the car in range of this machine's
adapter, signed with a key paired with the car as a BLE key. Local, free, no cloud.

tesla-fleet-api speaks the Vehicle Command Protocol over BLE (``VehicleBluetooth``); bleak
scans and connects. The car advertises a local name derived from its VIN (``"S" + the first
16 hex digits of sha1(VIN) + "C"``), so a scan for that name is also the "in range" check.

Each call: scan for the car (``scan_timeout_s``), connect, the library's handshake and the
request (``command_timeout_s``), then disconnect, so the car's few BLE connection slots stay
free for the owners' phone keys. One conversation at a time over the adapter.

At start (or the first call) the adapter is checked once: on Linux bleak uses BlueZ over the
system D-Bus, so no D-Bus socket, no BlueZ or no (powered) adapter means "no Bluetooth
adapter: BLE off", logged once; the backend then stays off until restart and every call
raises ``api.NotReachable`` at once (so ``router.RoutedCarApi`` uses the Fleet API).

Calls are reported to ``on_call(kind, vin, False)``: visible in the day's counts, never
billable. A wake over BLE still counts against the daily wake budget, which also spares the
car's battery.

Errors: out of range, adapter gone -> NotReachable; no answer in time -> Transient; the key
not on the car's whitelist -> Forbidden; the car said no -> Refused; asleep (for data) ->
Asleep. tesla-fleet-api's exceptions derive from BaseException (``TeslaFleetError``) and are
caught by name.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from tesla_fleet_api.exceptions import (
    BluetoothTimeout,
    NotOnWhitelistFault,
    SignedMessageInformationFaultNotOnWhitelist,
    TeslaFleetError,
)

from twcmaster.vehicles.tesla import api
from twcmaster.vehicles.tesla.client import START_OK_REASONS, STOP_OK_REASONS, command_reason

OFF_MESSAGE = "no Bluetooth adapter: BLE off"
PROBE_TIMEOUT_S = 5.0  # the system D-Bus answers in milliseconds when it is there at all
DISCONNECT_TIMEOUT_S = 5.0
CONNECT_ATTEMPTS = 2  # the overall timeout bounds them anyway
BLUEZ = "org.bluez"
ADAPTER_INTERFACE = "org.bluez.Adapter1"
SLEEP_STATES = {1: "online", 2: "asleep"}  # vcsec VehicleSleepStatus_E; 0 is unknown

Probe = Callable[[str | None], Awaitable[str]]
FindDevice = Callable[[str, float, str | None], Awaitable[Any]]


# -- the adapter -------------------------------------------------------------------------------


async def probe_adapter(adapter: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """ "" when BlueZ has the adapter (``adapter``, or any) and it is powered; else why not."""
    if sys.platform != "linux":
        return ""  # bleak's other backends say so per call; those errors map to NotReachable
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    try:
        async with asyncio.timeout(timeout_s):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination=BLUEZ,
                        path="/",
                        interface="org.freedesktop.DBus.ObjectManager",
                        member="GetManagedObjects",
                    )
                )
            finally:
                bus.disconnect()
    except TimeoutError:
        return f"the system D-Bus did not answer within {timeout_s:g} s"
    except (OSError, ValueError) as error:  # no socket, refused, a bad bus address
        return f"no system D-Bus ({type(error).__name__}: {error})"
    except Exception as error:  # authentication refused and the like
        return f"the system D-Bus refused the connection ({type(error).__name__})"
    if reply.message_type == MessageType.ERROR:
        return f"no BlueZ on the system D-Bus ({reply.error_name})"
    return adapter_problem(reply.body[0] if reply.body else {}, adapter)


def adapter_problem(objects: Mapping[str, Mapping[str, Any]], adapter: str | None) -> str:
    """From BlueZ's managed objects (path -> interface -> property -> Variant): "" when the
    adapter is there and powered, else why not."""
    adapters = {
        path.rsplit("/", 1)[-1]: interfaces[ADAPTER_INTERFACE]
        for path, interfaces in objects.items()
        if ADAPTER_INTERFACE in interfaces
    }
    if not adapters:
        return "BlueZ runs but has no adapter"
    name = adapter or sorted(adapters)[0]
    if name not in adapters:
        return f"no adapter {name} (BlueZ has {', '.join(sorted(adapters))})"
    powered = adapters[name].get("Powered")
    if getattr(powered, "value", powered) is False:
        return f"adapter {name} is powered off (bluetoothctl power on)"
    return ""


async def find_device(name: str, timeout_s: float, adapter: str | None) -> Any:
    """The car's advertisement by its local name, or None when not heard within timeout_s."""
    from bleak import BleakScanner
    from tesla_fleet_api.tesla.vehicle.bluetooth import SERVICE_UUID

    options: dict[str, Any] = {"service_uuids": [SERVICE_UUID]}
    if adapter:
        options["bluez"] = {"adapter": adapter}
    return await BleakScanner.find_device_by_name(name, timeout=timeout_s, **options)


def library_vehicle(vin: str, key: ec.EllipticCurvePrivateKey) -> Any:
    """tesla-fleet-api's ``VehicleBluetooth`` for the VIN (not connected yet)."""
    from tesla_fleet_api import TeslaBluetooth

    return TeslaBluetooth().vehicles.createBluetooth(vin, key)


# -- the backend -------------------------------------------------------------------------------


class TeslaBle:
    """``vins``: the cars to reach over BLE; empty: the ones ``learn_vins`` is given (the
    Fleet API account's). ``probe``, ``find`` and ``make_vehicle`` stand in for the adapter
    check, the scan and the library's vehicle in tests."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        vins: Iterable[str] = (),
        *,
        adapter: str | None = None,
        scan_timeout_s: float = 10.0,
        command_timeout_s: float = 30.0,
        on_call: Callable[[str, str | None, bool], None] = lambda *a: None,
        log: Any = None,
        probe: Probe = probe_adapter,
        find: FindDevice = find_device,
        make_vehicle: Callable[[str, Any], Any] = library_vehicle,
    ) -> None:
        self._key = private_key
        self.configured_vins = tuple(vins)
        self._learned: set[str] = set()
        self.adapter = adapter
        self.scan_timeout_s = scan_timeout_s
        self.command_timeout_s = command_timeout_s
        self.on_call = on_call
        self._log = log
        self._probe, self._find, self._make_vehicle = probe, find, make_vehicle
        self.off_reason: str | None = None  # None until the adapter was checked
        self._checked = False
        self._check_lock = asyncio.Lock()
        self._radio = asyncio.Lock()  # one conversation at a time over the adapter
        self._vehicles: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TeslaBle({self.adapter or 'default adapter'}, {self.state})"

    @property
    def state(self) -> str:
        if not self._checked:
            return "starting"
        return "off" if self.off_reason else "on"

    @property
    def vins(self) -> tuple[str, ...]:
        return self.configured_vins or tuple(sorted(self._learned))

    def learn_vins(self, vins: Iterable[str]) -> None:
        """The account's VINs, used when ``vehicle.teslaBLE.vins`` names none."""
        self._learned.update(vins)

    async def start(self) -> bool:
        """Check the adapter once (later calls return the first answer); True when on."""
        async with self._check_lock:
            if not self._checked:
                self.off_reason = await self._checked_probe()
                self._checked = True
                self._say_state()
        return not self.off_reason

    async def _checked_probe(self) -> str:
        try:
            return await self._probe(self.adapter)
        except Exception as error:  # a probe that fails is an adapter we cannot use
            return f"adapter check failed ({type(error).__name__})"

    def _say_state(self) -> None:
        if self._log is None:
            return
        if self.off_reason:
            self._log.warning(OFF_MESSAGE, reason=self.off_reason)
        else:
            self._log.info("Tesla BLE on", adapter=self.adapter or "default", vins=self.vins)

    async def reaches(self, vin: str) -> bool:
        """BLE is on and the car is one of ours (whether it is in range shows at the call)."""
        return await self.start() and vin in self.vins

    async def close(self) -> None:
        for vehicle in self._vehicles.values():
            await _disconnect(vehicle)

    # -- the calls

    async def list_vehicles(self) -> list[api.VehicleInfo]:
        """The cars given to BLE (nothing is asked of a car)."""
        await self._require_on()
        return [api.VehicleInfo(vin=vin, name="", state="unknown") for vin in self.vins]

    async def vehicle_state(self, vin: str) -> str:
        return await self._run("data", vin, _sleep_state)

    async def charge_data(self, vin: str) -> api.ChargeData:
        return await self._run("data", vin, lambda vehicle: _charge_data(vin, vehicle))

    async def wake_up(self, vin: str) -> str:
        return await self._run("wake", vin, _wake)

    async def charge_start(self, vin: str) -> str:
        return await self._run("command", vin, _command("charge_start", START_OK_REASONS))

    async def charge_stop(self, vin: str) -> str:
        return await self._run("command", vin, _command("charge_stop", STOP_OK_REASONS))

    async def set_charging_amps(self, vin: str, amps: int) -> str:
        async def send(vehicle: Any) -> str:
            return command_reason(await vehicle.set_charging_amps(int(amps)), frozenset())

        return await self._run("command", vin, send)

    # -- plumbing

    async def _require_on(self) -> None:
        if not await self.start():
            raise api.NotReachable(f"{OFF_MESSAGE} ({self.off_reason})")

    async def _run(self, kind: str, vin: str, operation: Callable[[Any], Awaitable[Any]]) -> Any:
        """Scan, connect, ``operation(vehicle)``, disconnect; errors as the api's kinds."""
        await self._require_on()
        if vin not in self.vins:
            raise api.NotReachable(f"BLE: {vin} is not one of the cars given to BLE")
        async with self._radio:
            vehicle = self._vehicle(vin)
            try:
                await self._scan(vehicle)
                self.on_call(kind, vin, False)  # the car is there: this one goes out
                async with asyncio.timeout(self.command_timeout_s):
                    await vehicle.connect_if_needed(max_attempts=CONNECT_ATTEMPTS)
                    return await operation(vehicle)
            except TeslaFleetError as error:
                raise _library_error(error) from None
            except TimeoutError:
                raise api.Transient(
                    f"BLE: {vin} did not answer within {self.command_timeout_s:g} s",
                    billable=False,
                ) from None
            except api.CarApiError as error:
                error.billable = False  # a BLE answer never costs anything
                raise
            except Exception as error:  # bleak, D-Bus and the library's ValueErrors
                raise _transport_error(error) from None
            finally:
                await _disconnect(vehicle)

    def _vehicle(self, vin: str) -> Any:
        if vin not in self._vehicles:
            self._vehicles[vin] = self._make_vehicle(vin, self._key)
        return self._vehicles[vin]

    async def _scan(self, vehicle: Any) -> None:
        """Hear the car's advertisement, or NotReachable: out of range (or asleep so deeply
        it does not advertise, which a parked Tesla does not do)."""
        slack_s = 5.0  # the scanner's own start and stop
        try:
            async with asyncio.timeout(self.scan_timeout_s + slack_s):
                device = await self._find(vehicle.ble_name, self.scan_timeout_s, self.adapter)
        except TimeoutError:
            device = None
        if device is None:
            raise api.NotReachable(
                f"BLE: {vehicle.vin} not in range (not heard within {self.scan_timeout_s:g} s)"
            )
        vehicle.set_device(device)


async def _disconnect(vehicle: Any) -> None:
    """Best effort: the connection is gone on its own when the car has left."""
    try:
        async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
            await vehicle.disconnect()
    except (Exception, TeslaFleetError):
        pass


# -- the operations (each given the connected library vehicle) -----------------------------


async def _sleep_state(vehicle: Any) -> str:
    status = await vehicle.vehicle_state()  # the security domain answers while asleep
    if isinstance(status, dict):  # the car's "nominal error" comes as a command answer
        command_reason({"response": status}, frozenset())
        raise api.Transient("BLE: the car answered without its state", billable=False)
    return SLEEP_STATES.get(int(getattr(status, "vehicleSleepStatus", 0)), "unknown")


async def _wake(vehicle: Any) -> str:
    command_reason(await vehicle.wake_up(), frozenset())
    return await _sleep_state(vehicle)  # "asleep" still: the caller polls vehicle_state


async def _charge_data(vin: str, vehicle: Any) -> api.ChargeData:
    from tesla_fleet_api.const import BluetoothVehicleData as Wanted

    state = await _sleep_state(vehicle)
    if state == "asleep":  # the infotainment domain would not answer: wake first (free)
        raise api.Asleep("BLE: the car is asleep", billable=False)
    data = await vehicle.vehicle_data([Wanted.CHARGE_STATE, Wanted.LOCATION_STATE])
    if isinstance(data, dict):
        command_reason({"response": data}, frozenset())
        raise api.Transient("BLE: the car answered without its charge state", billable=False)
    return _charge_data_of(vin, data)


def _charge_data_of(vin: str, data: Any) -> api.ChargeData:
    """From the protobuf ``VehicleData``; a field the car left out is None."""
    charge, location = data.charge_state, data.location_state
    charging = (
        charge.charging_state.WhichOneof("type") if charge.HasField("charging_state") else None
    )
    return api.ChargeData(
        vin=vin,
        state="online",
        battery_level=_present(charge, "battery_level"),
        charge_limit_soc=_present(charge, "charge_limit_soc"),
        charging_state=charging,  # the same words as the Fleet API's (Charging, Stopped, ...)
        scheduled_charging_pending=_present(charge, "scheduled_charging_pending") is True,
        charge_current_request=_present(charge, "charge_current_request"),
        latitude=_present(location, "latitude"),
        longitude=_present(location, "longitude"),
    )


def _present(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _command(name: str, ok_reasons: frozenset[str]) -> Callable[[Any], Awaitable[str]]:
    async def send(vehicle: Any) -> str:
        return command_reason(await getattr(vehicle, name)(), ok_reasons)

    return send


# -- errors ------------------------------------------------------------------------------------


def _library_error(error: TeslaFleetError) -> api.CarApiError:
    if isinstance(error, BluetoothTimeout):
        return api.Transient("BLE: the car did not answer in time", billable=False)
    if isinstance(error, NotOnWhitelistFault | SignedMessageInformationFaultNotOnWhitelist):
        return api.Forbidden(
            "BLE: the car does not know this key (pair privateKeyFile's key with the car "
            "as a BLE key)",
            billable=False,
        )
    message = getattr(error, "message", "") or str(error)
    return api.CarApiError(f"BLE: {type(error).__name__}: {message}"[:160], billable=False)


def _transport_error(error: Exception) -> api.CarApiError:
    """bleak's and D-Bus's errors: the adapter or the link, never the car's answer."""
    name = type(error).__name__
    if name in ("BleakDeviceNotFoundError", "BleakBluetoothNotAvailableError"):
        return api.NotReachable(f"BLE: {name}")
    if isinstance(error, OSError):  # the D-Bus socket went away, the adapter was unplugged
        return api.NotReachable(f"BLE: {name}: {error}"[:160])
    return api.Transient(f"BLE: {name}: {error}"[:160], billable=False)
