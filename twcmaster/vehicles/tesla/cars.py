"""The Tesla vehicle module: turns the core's start/stop requests (``CarCommand``) into calls
to the car API, frugally and only for the right car.

Which car (TWCManager #128 sends to every car at home):
* the VIN the TWC reported, and only if that car is on this account (another account's car,
  or a non-Tesla, is left to the bus: the core then stops it with a 0 A offer);
* no VIN: only the cars last seen inside the home geofence (issue 11); with no home set, or
  a car whose position is unknown, none: that TWC's car is stopped from the bus, and each
  car's status says why (``without_vin``).

Frugal (Tesla bills per call; TWCManager users' top complaints, anchors §6):
* at most one command per car per ``min_command_interval_s``;
* a start waits ``wake_delay_s`` first (the offer itself may wake the car, which then starts
  by itself) and is dropped when the TWC shows the car drawing by then;
* a car is woken only for a start, only when it is known to be at home (or is the TWC's own
  VIN), at most ``daily_wake_budget`` times a day, never when known to be away;
* charge data is reused for ``data_fresh_s``; the car's own limit and schedule are respected
  (a full car, or one waiting for its schedule, is not started);
* errors back off exponentially up to ``backoff_max_s``; a 429 holds every call until the
  time Tesla names; ``login_required`` stops all calls until the token changes;
* after ``daily_call_budget`` billable calls a car is stopped from the bus only until
  midnight, and the status says so.

I/O-free in the sense that matters: the API and the scheduler are given, so the same code
runs on the daemon's loop and in the day simulator's virtual time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from twcmaster.carview import NO_CALLS, CarStatus, CarsView
from twcmaster.vehicles.tesla import api

if TYPE_CHECKING:
    from twcmaster.control.carcommands import CarCommand

START, STOP = "start", "stop"  # CarAction values (the module reads them, not the core's enum)
DAY_CHECK_S = 60.0  # budgets reset within a minute of midnight
ACCOUNT = ""  # the ledger's key for calls that are about no car (listing the vehicles)
EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class TeslaCarsSettings:
    home_latitude: float | None = None
    home_longitude: float | None = None
    home_radius_m: float = 150.0
    daily_call_budget: int = 60
    daily_wake_budget: int = 10
    wake_delay_s: float = 180.0
    min_command_interval_s: float = 60.0  # TWCManager: one start/stop a minute
    data_fresh_s: float = 300.0
    backoff_first_s: float = 60.0
    backoff_max_s: float = 600.0  # TWCManager's cap: 10 minutes
    rate_limit_default_s: float = 60.0  # a 429 that names no time
    wake_poll_s: float = 15.0
    wake_timeout_s: float = 120.0  # an asleep car may need ~2 min (anchors §5)
    not_woken_retry_s: float = 1800.0  # TWCManager: retry a car that would not wake in 30 min
    relist_s: float = 6 * 3600.0
    # How long what Tesla last said about a car being awake holds: a car idle for ~15 min
    # falls asleep, so after this its state is "unknown" again (and a start waits the wake
    # delay, since the offer itself may wake it).
    online_fresh_s: float = 600.0

    @classmethod
    def from_config(cls, config: Any) -> TeslaCarsSettings:
        return cls(
            home_latitude=config.home_latitude,
            home_longitude=config.home_longitude,
            home_radius_m=config.home_radius_m,
            daily_call_budget=config.daily_call_budget,
            daily_wake_budget=config.daily_wake_budget,
            wake_delay_s=config.wake_delay_s,
        )

    @property
    def has_home(self) -> bool:
        return self.home_latitude is not None and self.home_longitude is not None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine): plenty for a geofence of a few hundred metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class _Car:
    vin: str
    name: str = ""
    online: str = "unknown"
    online_at_s: float = -math.inf  # when Tesla said ``online`` (see ``online_fresh_s``)
    location: str = "unknown"
    data: api.ChargeData | None = None
    data_at_s: float = -math.inf
    last_command: str = ""
    last_result: str = ""
    last_command_wall: str = ""
    next_call_s: float = -math.inf  # rate limit and back-off
    errors_in_row: int = 0
    bus_only: str = ""  # sticky reasons (signing, forbidden, not found); the budget is daily
    wish: CarCommand | None = None
    wish_since_s: float = 0.0
    busy: bool = False


@dataclass
class _Ledger:
    """Calls per car (ACCOUNT: none) per kind, today; billable ones apart."""

    day: date | None = None
    calls: dict[str, dict[str, int]] = field(default_factory=dict)
    billable: dict[str, int] = field(default_factory=dict)

    def roll(self, today: date) -> bool:
        if self.day == today:
            return False
        self.day = today
        self.calls.clear()
        self.billable.clear()
        return True

    def count(self, kind: str, vin: str, billable: bool) -> None:
        kinds = self.calls.setdefault(vin, dict(NO_CALLS))
        kinds[kind] = kinds.get(kind, 0) + 1
        if billable:
            self.billable[vin] = self.billable.get(vin, 0) + 1

    def of(self, vin: str) -> dict[str, int]:
        """Today's calls for ``vin`` by kind."""
        return dict(self.calls.get(vin, NO_CALLS))


class TeslaCars:
    """``request(CarCommand)`` (never blocks), ``start``/``stop`` (a daemon service),
    ``view()`` (for the snapshot). ``tokens``: the ``TokenKeeper`` (for its state), or None;
    ``snapshot``: the core's snapshot, to drop a request the bus shows is no longer needed."""

    def __init__(
        self,
        api_: api.CarApi | None,
        settings: TeslaCarsSettings,
        *,
        clock: Callable[[], float],
        wallclock: Callable[[], datetime],
        scheduler: Any,
        log: Any,
        snapshot: Callable[[], Any] | None = None,
        tokens: Any = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        state: tuple[str, str] = ("starting", "listing the cars on the Tesla account"),
    ) -> None:
        self.api = api_
        self.settings = settings
        self.clock = clock
        self.wallclock = wallclock
        self.scheduler = scheduler
        self.log = log
        self.snapshot = snapshot
        self.tokens = tokens
        self.prepare = prepare
        self.closing: list[Callable[[], Awaitable[None]]] = []  # more to close at stop
        self._cars: dict[str, _Car] = {}
        self._ledger = _Ledger()
        self._state, self._message = state
        self._account_hold_s = -math.inf  # a 429 holds every call until then
        self._listed = False
        self._stopping = False
        self._view: CarsView | None = None
        self._day_checked_until_s = -math.inf

    # -- the service

    async def start(self) -> None:
        if self.api is None:
            self.log.warning("Tesla car API off", reason=self._message)
            return
        self.scheduler.spawn(self._keep_listing())

    async def stop(self) -> None:
        self._stopping = True
        await self.scheduler.close()
        if self.api is not None:
            await self.api.close()
        for close in self.closing:
            await close()

    async def _keep_listing(self) -> None:
        """At start and every ``relist_s``: the token works and the cars are there (a bad
        token or a missing car shows at once, not at the first cloud). Looked at every
        ``backoff_max_s``: while something is wrong (a failed listing, login required) it is
        tried again then. With login required that costs no request: the token keeper sends
        nothing until its file changes, and a token written there is picked up."""
        next_list_s = -math.inf
        while not self._stopping:
            if self.clock() >= next_list_s or self._state not in ("ok", "rate_limited"):
                try:
                    await self._list_vehicles()
                except Exception as error:  # the module must never end; say why and retry
                    self.log.error("Tesla account: listing failed", error=repr(error)[:200])
                if self.api is None or (self._state in _TOKEN_MESSAGES and self.tokens is None):
                    return  # nothing can change until a restart
                next_list_s = self.clock() + self.settings.relist_s
            await self.scheduler.sleep(self.settings.backoff_max_s)

    async def _list_vehicles(self) -> None:
        if self.api is None:
            return
        try:
            if self.prepare is not None:
                await self.prepare()  # a token first: it names the region's host
            vehicles = await self.api.list_vehicles()
        except api.CarApiError as error:
            if not self._token_missing():
                self._account_error(error)
            return
        for info in vehicles:
            car = self._cars.setdefault(info.vin, _Car(info.vin))
            car.name = info.name
            self._set_online(car, info.state)
        self._listed = True
        self._set_state("ok", self._account_summary(vehicles))
        self.log.info("Tesla account", cars=self._account_summary(vehicles))

    def _token_missing(self) -> bool:
        state = getattr(self.tokens, "state", "ok")
        if state in _TOKEN_MESSAGES:
            self._set_state(state, _TOKEN_MESSAGES[state])
            self.log.warning("Tesla car API off", reason=_TOKEN_MESSAGES[state])
            return True
        return False

    @staticmethod
    def _account_summary(vehicles: list[api.VehicleInfo]) -> str:
        if not vehicles:
            return "no cars on this Tesla account"
        cars = ", ".join(f"{v.vin} ({v.name or 'no name'}, {v.state})" for v in vehicles)
        return f"{len(vehicles)} car(s): {cars}"

    # -- requests from the core

    def request(self, command: CarCommand) -> None:
        if not self._usable():
            return  # the core knows (view().usable) and stops from the bus
        for car in self._targets(command):
            if car.wish is None or car.wish.action != command.action:
                car.wish_since_s = command.at_s  # the wake delay counts from the first ask
            car.wish = command
            if not car.busy:
                car.busy = True
                self.scheduler.spawn(self._work(car))

    def _usable(self) -> bool:
        return self.api is not None and self._listed and self._state in ("ok", "rate_limited")

    def _targets(self, command: CarCommand) -> list[_Car]:
        if command.vin is not None:
            car = self._cars.get(command.vin) or self._adopted(command.vin)
            return [car] if car is not None and not self._bus_only_reason(car) else []
        cars = [car for car in self._cars.values() if not self._bus_only_reason(car)]
        if not self.settings.has_home:
            return []  # no VIN and no geofence: we do not guess (issue 11)
        # An untargeted start wakes only a car known to be at home; a stop goes to a charging
        # car, which is awake: its position is fetched if unknown.
        if command.action.value == START:
            return [car for car in cars if car.location == "home"]
        return [car for car in cars if car.location != "away"]

    def _adopted(self, vin: str) -> _Car | None:
        """A VIN the TWC reported that no list names: taken when the API takes it (BLE alone
        with no VINs configured; a car that does not know our key then refuses, for free)."""
        adopt = getattr(self.api, "adopt_vin", None)
        if adopt is None or not adopt(vin):
            return None
        self._changed()
        return self._cars.setdefault(vin, _Car(vin))

    async def _work(self, car: _Car) -> None:
        """Carry out the car's latest wish, waiting for the rate limit, back-off and wake
        delay first; a newer wish replaces an older one that has not gone out yet."""
        try:
            while car.wish is not None and not self._stopping:
                wait_s = self._wait_before(car, car.wish)
                if wait_s > 0:
                    await self.scheduler.sleep(wait_s)
                    continue
                command, car.wish = car.wish, None
                await self._carry_out(car, command)
                self._changed()
        except Exception as error:  # never the end of the module
            self.log.error("Tesla car job failed", vin=car.vin, error=repr(error)[:200])
        finally:
            car.busy = False

    def _wait_before(self, car: _Car, command: CarCommand) -> float:
        now = self.clock()
        wait_s = max(car.next_call_s, self._account_hold_s) - now
        if command.action.value == START and self._online(car) != "online":
            wait_s = max(wait_s, car.wish_since_s + self.settings.wake_delay_s - now)
        return wait_s

    async def _carry_out(self, car: _Car, command: CarCommand) -> None:
        if not self._still_wanted(command):
            return
        if self._bus_only_reason(car):
            return
        if command.action.value == STOP:
            await self._stop(car, command)
        else:
            await self._start(car, command)

    def _still_wanted(self, command: CarCommand) -> bool:
        """The bus may have settled it meanwhile: a car that started by itself needs no start,
        one that stopped drawing needs no stop."""
        if self.snapshot is None:
            return True
        twcid = f"{command.twcid:04X}"
        slave = next((s for s in self.snapshot().slaves if s.twcid == twcid), None)
        if slave is None:
            return False
        return not slave.car_charging if command.action.value == START else slave.car_charging

    async def _stop(self, car: _Car, command: CarCommand) -> None:
        if command.vin is None:  # untargeted: stop only a car that is charging at home
            data = await self._charge_data(car, may_wake=False)
            if data is None or car.location != "home" or data.charging_state != "Charging":
                return
        await self._command(car, "stop", self.api.charge_stop)  # type: ignore[union-attr]

    async def _start(self, car: _Car, command: CarCommand) -> None:
        data = await self._charge_data(car, may_wake=True)
        if data is None:
            return
        reason = self._why_not_start(car, data)
        if reason:
            self._note(car, "start", f"not sent: {reason}")
            return
        await self._command(car, "start", self.api.charge_start)  # type: ignore[union-attr]

    def _why_not_start(self, car: _Car, data: api.ChargeData) -> str:
        if car.location == "away":
            return "the car is away from home"
        if data.charging_state == "Disconnected":
            return "the car is not plugged in"
        if data.charging_state in ("Charging", "Starting"):
            return "already charging"
        limit, level = data.charge_limit_soc, data.battery_level
        if data.charging_state == "Complete" or (
            limit is not None and level is not None and level >= limit
        ):
            return "at its charge limit"
        if data.scheduled_charging_pending:
            return "it waits for its own charging schedule"
        return ""

    async def _charge_data(self, car: _Car, *, may_wake: bool) -> api.ChargeData | None:
        now = self.clock()
        if car.data is not None and now - car.data_at_s < self.settings.data_fresh_s:
            return car.data
        if self._budget_spent(car):
            return None
        try:
            return self._got_data(car, await self.api.charge_data(car.vin))  # type: ignore[union-attr]
        except api.Asleep:
            self._set_online(car, "asleep")
        except api.CarApiError as error:
            self._failed(car, error)
            return None
        if not may_wake or not await self._wake(car) or self._budget_spent(car):
            return None
        try:
            return self._got_data(car, await self.api.charge_data(car.vin))  # type: ignore[union-attr]
        except api.CarApiError as error:
            self._failed(car, error)
            return None

    def _got_data(self, car: _Car, data: api.ChargeData) -> api.ChargeData:
        car.data, car.data_at_s = data, self.clock()
        self._set_online(car, data.state or "online")
        if data.latitude is not None and data.longitude is not None and self.settings.has_home:
            home = distance_m(
                data.latitude,
                data.longitude,
                self.settings.home_latitude,  # type: ignore[arg-type]
                self.settings.home_longitude,  # type: ignore[arg-type]
            )
            car.location = "home" if home <= self.settings.home_radius_m else "away"
        return data

    async def _wake(self, car: _Car) -> bool:
        """Wake an asleep car for a start, if allowed; True once it is online."""
        if car.location == "away":
            self._note(car, "start", "not sent: asleep and away from home (not woken)")
            return False
        if self._ledger.of(car.vin)["wake"] >= self.settings.daily_wake_budget:
            self._note(car, "start", "not sent: asleep, and today's wakes are spent")
            return False
        # Every billable call checks the daily budget first: the polls included.
        if self._budget_spent(car):
            return False
        try:
            state = await self.api.wake_up(car.vin)  # type: ignore[union-attr]
            waited_s = 0.0
            while state != "online" and waited_s < self.settings.wake_timeout_s:
                await self.scheduler.sleep(self.settings.wake_poll_s)
                waited_s += self.settings.wake_poll_s
                if self._budget_spent(car):
                    self._note(car, "start", "not sent: today's call budget ran out while waking")
                    return False
                state = await self.api.vehicle_state(car.vin)  # type: ignore[union-attr]
        except api.CarApiError as error:
            self._failed(car, error)
            return False
        self._set_online(car, state)
        if state != "online":
            car.next_call_s = self.clock() + self.settings.not_woken_retry_s
            self._note(car, "start", "not sent: the car did not wake up")
            return False
        return True

    async def _command(self, car: _Car, action: str, call: Callable[[str], Any]) -> None:
        if self._budget_spent(car):
            return
        car.next_call_s = self.clock() + self.settings.min_command_interval_s
        try:
            reason = await call(car.vin)
        except api.CarApiError as error:
            self._failed(car, error, action)
            return
        car.errors_in_row = 0
        car.data = None  # what the car does now has changed
        # It answered a command: it is awake now (the 06:00 listing's "asleep" no longer
        # holds, so the next start need not wait the wake delay), until that goes stale.
        self._set_online(car, "online")
        self._note(car, action, "ok" if not reason else f"ok ({reason})")

    def _set_online(self, car: _Car, state: str) -> None:
        car.online, car.online_at_s = state, self.clock()

    def _online(self, car: _Car) -> str:
        """What Tesla last said (online, asleep...), or "unknown" once ``online_fresh_s``
        old: a car falls asleep, or is woken by its owner, without telling us."""
        if self.clock() - car.online_at_s > self.settings.online_fresh_s:
            return "unknown"
        return car.online

    def _note(self, car: _Car, action: str, result: str) -> None:
        car.last_command, car.last_result = action, result
        car.last_command_wall = self.wallclock().isoformat(timespec="seconds")
        self.log.info(f"Tesla {action}", vin=car.vin, result=result)
        self._changed()

    # -- errors, budget, back-off

    def _failed(self, car: _Car, error: api.CarApiError, action: str = "") -> None:
        if isinstance(error, api.RateLimited | api.LoginRequired):
            self._account_error(error)
        elif isinstance(error, api.SigningRequired):
            car.bus_only = (
                "this car takes signed commands only: set vehicle.teslaAPI.privateKeyFile, a "
                "signing proxy as baseURL, or use a relay"
            )
        elif isinstance(error, api.Forbidden | api.NotFound):
            car.bus_only = f"the account may not command this car ({error})"
        else:
            car.errors_in_row += 1
            back_off_s = self.settings.backoff_first_s * 2 ** (car.errors_in_row - 1)
            car.next_call_s = self.clock() + min(back_off_s, self.settings.backoff_max_s)
        if action:
            self._note(car, action, f"failed: {error.kind} ({error})")
        else:
            self.log.warning("Tesla call failed", vin=car.vin, kind=error.kind, error=str(error))
            self._changed()

    def _account_error(self, error: api.CarApiError) -> None:
        if isinstance(error, api.LoginRequired):
            self._set_state("login_required", _TOKEN_MESSAGES["login_required"])
        elif isinstance(error, api.RateLimited):
            hold_s = error.retry_after_s or self.settings.rate_limit_default_s
            self._account_hold_s = self.clock() + hold_s
            self._set_state("rate_limited", f"Tesla asked us to wait {hold_s:.0f} s (429)")
        else:
            self._set_state("error", f"Tesla account: {error.kind} ({error})")

    def count_call(self, kind: str, vin: str | None, billable: bool) -> None:
        """Every HTTP request the client makes (its ``on_call``)."""
        self._roll_day()
        self._ledger.count(kind, vin or ACCOUNT, billable)
        if self._state == "rate_limited" and self.clock() >= self._account_hold_s:
            self._set_state("ok", "calls allowed again after the rate limit")
        self._changed()

    def _roll_day(self) -> None:
        """A new day clears the budgets. The date is read at most every ``DAY_CHECK_S``:
        ``view()`` runs with every step of the bus."""
        if self.clock() < self._day_checked_until_s:
            return
        self._day_checked_until_s = self.clock() + DAY_CHECK_S
        if self._ledger.roll(self.wallclock().date()):
            self._changed()

    def _budget_spent(self, car: _Car) -> bool:
        self._roll_day()
        return self._ledger.billable.get(car.vin, 0) >= self.settings.daily_call_budget

    def _bus_only_reason(self, car: _Car) -> str:
        if car.bus_only:
            return car.bus_only
        if self._budget_spent(car):
            return (
                f"today's {self.settings.daily_call_budget} billable calls are spent: "
                "stopped from the bus until midnight"
            )
        return ""

    # -- status

    def _set_state(self, state: str, message: str) -> None:
        if (state, message) != (self._state, self._message):
            self._state, self._message = state, message
            self._changed()

    def _changed(self) -> None:
        self._view = None

    def view(self) -> CarsView:
        self._roll_day()  # a new day clears the budgets (and the cached view)
        if self._view is None:
            self._view = self._build_view()
        return self._view

    def _build_view(self) -> CarsView:
        cars = tuple(self._car_status(car) for car in self._cars.values())
        totals = dict(NO_CALLS)
        for kinds in self._ledger.calls.values():
            for kind, n in kinds.items():
                totals[kind] = totals.get(kind, 0) + n
        return CarsView(
            enabled=True,
            state=self._state,
            message=self._message,
            usable=self._usable(),
            untargeted_ok=self.settings.has_home,
            cars=cars,
            calls_today=totals,
            start_delay_s=self.settings.wake_delay_s,
        )

    def _car_status(self, car: _Car) -> CarStatus:
        data = car.data
        billable = self._ledger.billable.get(car.vin, 0)
        next_s = max(car.next_call_s, self._account_hold_s) - self.clock()
        next_at = ""
        if next_s > 0:
            next_at = self._wall_in(next_s)
        return CarStatus(
            vin=car.vin,
            name=car.name,
            location=car.location,
            online=self._online(car),
            battery_level=data.battery_level if data else None,
            charge_limit_soc=data.charge_limit_soc if data else None,
            charging_state=data.charging_state if data else None,
            last_command=car.last_command,
            last_result=car.last_result,
            last_command_at=car.last_command_wall,
            next_command_at=next_at,
            calls_today=self._ledger.of(car.vin),
            billable_today=billable,
            budget_left=max(0, self.settings.daily_call_budget - billable),
            bus_only=self._bus_only_reason(car),
            via=getattr(self.api, "last_backend", {}).get(car.vin, ""),  # the router's
            without_vin=self._without_vin(car),
        )

    def _without_vin(self, car: _Car) -> str:
        """Why a TWC that reports no VIN cannot command this car ("" = it can: at home)."""
        if not self.settings.has_home:
            return NO_HOME
        if car.location == "away":
            return "bus only: away from home"
        if car.location != "home":
            return "position unknown: commanded only once seen inside the home geofence"
        return ""

    def _wall_in(self, seconds: float) -> str:
        return (self.wallclock() + timedelta(seconds=seconds)).isoformat(timespec="seconds")


NO_HOME = (
    "bus only: set vehicle.teslaAPI.homeLatitude/homeLongitude (or homeLat/homeLon) so a car "
    "without a VIN from the TWC can be told at home"
)

_TOKEN_MESSAGES = {
    "no_token": (
        "no Tesla refresh token yet: set vehicle.teslaAPI.refreshToken (README: the Tesla car "
        "API); until then cars are stopped from the bus"
    ),
    "login_required": (
        "Tesla says login_required: log in again and write the new refresh token to the "
        'token file ({"refresh_token": "..."}: read again within 10 minutes, no restart) '
        "or to vehicle.teslaAPI.refreshToken and restart; until then cars are stopped from "
        "the bus"
    ),
}
