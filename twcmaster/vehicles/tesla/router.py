"""``api.CarApi`` over two backends: Bluetooth LE first (local, free), the Fleet API when BLE
cannot serve the call (off, not one of its cars, out of range, no answer in time, a key the
car does not know).

The car's own answers stay with BLE: a refusal (``Refused``) or "asleep" (``Asleep``, for
data) would be the same over the cloud, only billed. With no Fleet API configured, BLE is all
there is and its errors pass through (BLE off: ``NotReachable`` from every call, so the
module shows it cannot reach the cars and the core stops them from the bus).

``last_backend`` (VIN -> "ble" or "fleet": where the last call went) and ``ble_skipped``
(VIN -> why BLE did not serve it) are for the status.
"""

from __future__ import annotations

from typing import Any

from twcmaster.vehicles.tesla import api
from twcmaster.vehicles.tesla.ble import TeslaBle

BLE, FLEET = "ble", "fleet"
CAR_ANSWERS = (api.Refused, api.Asleep)  # the car answered: the cloud would say the same


class RoutedCarApi:
    def __init__(self, ble: TeslaBle | None, fleet: api.CarApi | None, *, log: Any = None):
        if ble is None and fleet is None:
            raise ValueError("RoutedCarApi needs BLE, the Fleet API or both")
        self.ble, self.fleet = ble, fleet
        self._log = log
        self.last_backend: dict[str, str] = {}
        self.ble_skipped: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RoutedCarApi(ble={self.ble!r}, fleet={self.fleet!r})"

    async def start(self) -> None:
        """Check the adapter now, so "BLE off" is said at start-up, not at the first car."""
        if self.ble is not None:
            await self.ble.start()

    async def close(self) -> None:
        for backend in (self.ble, self.fleet):
            if backend is not None:
                await backend.close()

    def adopt_vin(self, vin: str) -> bool:
        """A VIN the TWC reported: with BLE alone and no ``vins`` configured, BLE takes it
        (the TWC is the only list there is). With an account, its list decides."""
        if self.fleet is not None or self.ble is None or self.ble.configured_vins:
            return False
        self.ble.learn_vins([vin])
        return True

    # -- the calls

    async def list_vehicles(self) -> list[api.VehicleInfo]:
        """The account's cars (and BLE learns their VINs); BLE's own list without an account."""
        if self.fleet is None:
            assert self.ble is not None
            return await self.ble.list_vehicles()
        vehicles = await self.fleet.list_vehicles()
        if self.ble is not None:
            self.ble.learn_vins(vehicle.vin for vehicle in vehicles)
        return vehicles

    async def vehicle_state(self, vin: str) -> str:
        return await self._routed(vin, "vehicle_state")

    async def charge_data(self, vin: str) -> api.ChargeData:
        return await self._routed(vin, "charge_data")  # BLE reads the charge state too

    async def wake_up(self, vin: str) -> str:
        return await self._routed(vin, "wake_up")

    async def charge_start(self, vin: str) -> str:
        return await self._routed(vin, "charge_start")

    async def charge_stop(self, vin: str) -> str:
        return await self._routed(vin, "charge_stop")

    async def set_charging_amps(self, vin: str, amps: int) -> str:
        return await self._routed(vin, "set_charging_amps", amps)

    # -- routing

    async def _routed(self, vin: str, call: str, *args: Any) -> Any:
        if self.fleet is None:  # BLE only: its answer, whatever it is
            assert self.ble is not None
            self.last_backend[vin] = BLE
            return await getattr(self.ble, call)(vin, *args)
        if self.ble is not None:
            if await self.ble.reaches(vin):
                served, result = await self._try_ble(vin, call, *args)
                if served:
                    return result
            else:
                self._skipped(vin, call, self._why_not_ble(vin))
        self.last_backend[vin] = FLEET
        return await getattr(self.fleet, call)(vin, *args)

    async def _try_ble(self, vin: str, call: str, *args: Any) -> tuple[bool, Any]:
        """(True, the answer) when BLE served the call; (False, None) to use the Fleet API."""
        assert self.ble is not None
        self.last_backend[vin] = BLE
        try:
            result = await getattr(self.ble, call)(vin, *args)
        except CAR_ANSWERS:
            self.ble_skipped.pop(vin, None)
            raise
        except api.CarApiError as error:
            self._skipped(vin, call, f"{error.kind}: {error}")
            return False, None
        self.ble_skipped.pop(vin, None)
        return True, result

    def _why_not_ble(self, vin: str) -> str:
        assert self.ble is not None
        if self.ble.off_reason:
            return f"BLE off ({self.ble.off_reason})"
        return "not one of the cars given to BLE"

    def _skipped(self, vin: str, call: str, reason: str) -> None:
        """Say it when the reason changes, not at every call: a car away from home would
        otherwise log each minute."""
        if self.ble_skipped.get(vin) != reason and self._log is not None:
            self._log.info("Tesla: Fleet API instead of BLE", vin=vin, call=call, reason=reason)
        self.ble_skipped[vin] = reason
