"""What the Tesla car API looks like to the rest of twcmaster: the calls the vehicle module
makes, what they return and how they fail. ``client.TeslaClient`` implements it over the
Fleet API (or a relay, or a local signing proxy, which speak the same REST paths),
``ble.TeslaBle`` over Bluetooth LE, ``router.RoutedCarApi`` over both (BLE first).

Every call is billable unless Tesla answered 5xx or nothing at all; each one is reported to
``on_call(kind, vin, billable)`` with kind ``data``, ``command`` or ``wake`` so the module can
count them against the daily budget and show them in the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

CALL_KINDS = ("data", "command", "wake")


class CarApiError(Exception):
    """A call that did not do what was asked. ``billable``: Tesla will charge for it."""

    kind = "error"

    def __init__(self, message: str, *, billable: bool = True, retry_after_s: float | None = None):
        super().__init__(message)
        self.billable = billable
        self.retry_after_s = retry_after_s


class Asleep(CarApiError):
    """408: the car is asleep or offline; wake it first (or leave it)."""

    kind = "asleep"


class RateLimited(CarApiError):
    """429: wait ``retry_after_s`` (from Retry-After / RateLimit-Reset) before the next call."""

    kind = "rate_limited"


class LoginRequired(CarApiError):
    """401 ``login_required`` (or a refresh refused): the user must log in again. Sticky: the
    module stops calling until the token file or config changes."""

    kind = "login_required"


class TokenExpired(CarApiError):
    """401 for an expired access token: refresh and retry once."""

    kind = "token_expired"


class SigningRequired(CarApiError):
    """403 "Tesla Vehicle Command Protocol required": this car only takes signed commands
    (configure ``privateKeyFile``, a signing proxy as ``baseURL``, a relay, or BLE)."""

    kind = "signing_required"


class Forbidden(CarApiError):
    """403 for anything else (missing scopes, not the owner)."""

    kind = "forbidden"


class NotFound(CarApiError):
    """404: no such vehicle on this account."""

    kind = "not_found"


class Transient(CarApiError):
    """5xx, a timeout, a refused connection, a body that is not the API's: try again later.
    Not billable when Tesla answered 5xx or did not answer."""

    kind = "transient"


class Refused(CarApiError):
    """The car answered ``{"result": false, "reason": ...}`` with a reason that is not
    success (e.g. ``disconnected``, ``could_not_wake_buses``)."""

    kind = "refused"


class NotReachable(CarApiError):
    """This backend cannot reach the car now (Bluetooth off or without an adapter, the car out
    of BLE range, a VIN not given to it): another backend may. Nothing was sent: not billable."""

    kind = "not_reachable"

    def __init__(self, message: str) -> None:
        super().__init__(message, billable=False)


@dataclass(frozen=True)
class VehicleInfo:
    vin: str
    name: str  # display_name; "" when the car has none
    state: str  # "online", "asleep", "offline" (as Tesla says)


@dataclass(frozen=True)
class ChargeData:
    """From ``vehicle_data`` (endpoints charge_state, location_data, drive_state)."""

    vin: str
    state: str  # the car's online state
    battery_level: int | None  # % state of charge
    charge_limit_soc: int | None  # % the car's own limit
    charging_state: str | None  # Charging, Stopped, Complete, Disconnected, NoPower, Starting
    scheduled_charging_pending: bool  # the car waits for its own schedule
    charge_current_request: int | None  # A the car asks for
    latitude: float | None  # None when the car did not say (no location scope)
    longitude: float | None


class CarApi(Protocol):
    async def list_vehicles(self) -> list[VehicleInfo]: ...  # GET /api/1/vehicles (data)

    async def vehicle_state(self, vin: str) -> str: ...  # GET /api/1/vehicles/{vin} (data)

    async def charge_data(self, vin: str) -> ChargeData: ...  # vehicle_data (data); 408 asleep

    async def wake_up(self, vin: str) -> str: ...  # POST wake_up (wake); the state it reports

    async def charge_start(self, vin: str) -> str: ...  # (command) the reason; raises Refused

    async def charge_stop(self, vin: str) -> str: ...  # (command)

    async def set_charging_amps(self, vin: str, amps: int) -> str: ...  # (command)

    async def close(self) -> None: ...
