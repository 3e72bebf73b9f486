"""What the car module shows: one ``CarsView`` in the core's ``Snapshot`` (so the console,
MQTT, HTTP and the web page all read the same), and what the core needs to know from it:
whether a TWC's car can be stopped through its API or only from the bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

NO_CALLS: Mapping[str, int] = MappingProxyType({"data": 0, "command": 0, "wake": 0})


@dataclass(frozen=True)
class CarStatus:
    """One car on the Tesla account."""

    vin: str
    name: str
    location: str  # "home", "away" or "unknown" (from its last reported position)
    online: str  # "online", "asleep", "offline" or "unknown" (as Tesla last said)
    battery_level: int | None  # %
    charge_limit_soc: int | None  # % (the car's own limit)
    charging_state: str | None  # as Tesla says: Charging, Stopped, Complete, Disconnected...
    last_command: str  # "start", "stop" or "" (none yet)
    last_result: str  # "ok", "refused: disconnected", "not sent: at its charge limit"...
    last_command_at: str  # local time, ISO 8601; "" when none
    next_command_at: str  # the earliest the next command may go (rate limit, back-off)
    calls_today: Mapping[str, int] = field(default_factory=lambda: dict(NO_CALLS))
    billable_today: int = 0
    budget_left: int = 0  # billable calls left today
    bus_only: str = ""  # why this car is stopped from the bus only ("" = through its API)
    via: str = ""  # where its last call went: "ble" or "fleet"; "" with one backend or none yet
    # Why a TWC that reports no VIN cannot have this car commanded ("" = it can: at home).
    without_vin: str = ""


@dataclass(frozen=True)
class CarsView:
    """The car module as a whole. ``usable``: commands can go out now (a token, the account
    listed, no login needed, not rate limited for long); ``untargeted_ok``: a TWC that gave
    no VIN can still be matched to a car (only with a home geofence, issue 11)."""

    enabled: bool
    state: str  # "starting", "ok", "no_token", "login_required", "rate_limited", "error"
    message: str
    usable: bool = False
    untargeted_ok: bool = False
    cars: tuple[CarStatus, ...] = ()
    # Every call today by kind (data, command, wake), the account's own calls included.
    calls_today: Mapping[str, int] = field(default_factory=lambda: dict(NO_CALLS))
    # How long the module may hold a start before it acts (its wake delay): the core's
    # give-up on a car that does not start counts only after it (control/carcommands.py).
    start_delay_s: float = 0.0

    @cached_property  # asked for each slave at every allocation
    def bus_only_vins(self) -> frozenset[str]:
        return frozenset(car.vin for car in self.cars if car.bus_only)

    @cached_property
    def account_vins(self) -> frozenset[str]:
        return frozenset(car.vin for car in self.cars)

    def usable_for(self, vin: str | None) -> bool:
        """Whether a stop for the car with this VIN (None: the TWC gave none) can go through
        the car's API; if not, the core stops it from the bus (a 0 A offer)."""
        if not self.usable:
            return False
        if vin is None:
            return self.untargeted_ok
        return vin in self.account_vins and vin not in self.bus_only_vins
