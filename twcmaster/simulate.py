"""``twcmaster simulate``: a day of solar charging in virtual time, with the real master.

The daemon's own logic (``Core``: bus master, controller, policy) talks bytes to simulated
TWC slaves with cars (``SimulatedBus``), as in the demo, but against a virtual clock: nothing
sleeps, and the clock jumps from one event to the next (a frame's end, a reply, the master's
next wake-up, the next second of accounting), so a day takes seconds. The site's generation
and household consumption come from a profile (``sim/sky.py``) and reach the policy as the
energy sources' ``SiteReading`` with each ``Core.service`` step, shaped like the meter the config
describes: with ``subtractChargerLoad`` its consumption includes the cars' draw, with
``treatGenerationAsGridDelivery`` its "generation" is the export (the profile's consumption
never includes the chargers).

The loop does what ``daemon.Daemon._service`` does with a serial port: it hands the core the
bytes that arrived, sends what ``poll`` returns, and while a reply is due it leaves the
arriving bytes unread until the reply window ends (``reply_pending_until_s``), then reads
them in the wake-up that may send the next frame. A master frame reaches the slaves when its
last byte is on the wire (9600 baud); the slaves answer after their reply delay, and their
bytes reach the master when their last byte has arrived.

The accounting (energies, the ideal, starts and stops, offer changes) is
``sim/accounting.py``; the command line, ``simulate_command.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TextIO

from twcmaster import events as ev
from twcmaster.assembly import core_outputs
from twcmaster.config import AppConfig, LoadedConfig, config_from_dict
from twcmaster.core import Core
from twcmaster.outputs.base import Outputs
from twcmaster.outputs.console import CONSOLE_AMPS_JITTER_A, ConsoleOutput, ConsoleStatus
from twcmaster.policies import FORCEABLE_POLICIES, POLICIES, POLICY_GREEN, POLICY_MIN_GREEN
from twcmaster.protocol.codec import BYTE_TIME_S
from twcmaster.sim.accounting import JOULES_PER_KWH, DayAccounting, SimulationResult
from twcmaster.sim.bound import profile_bound
from twcmaster.sim.bus import SimulatedBus, make_slaves
from twcmaster.sim.carapi import SimulatedCarApi
from twcmaster.sim.sky import Outage, Profile, Sky

#: The issue's reference case: one TWC on a 40 A breaker (32 A continuous), 230 V single
#: phase, charging from 6 A.
REFERENCE_CONFIG: dict[str, Any] = {
    "config": {
        "wiringMaxAmpsAllTWCs": 32,
        "wiringMaxAmpsPerTWC": 32,
        "minAmpsPerTWC": 6,
        "defaultVoltage": 230,
        "numberOfPhases": 1,
    },
}
#: The simulated calendar day (the shipped profiles' sun is late May's); the policy sees
#: this date with the profile's time of day as its local time.
SIM_DATE = date(2024, 5, 25)


def simulation_config() -> LoadedConfig:
    """The built-in configuration (``REFERENCE_CONFIG``)."""
    return config_from_dict(REFERENCE_CONFIG, tempfile.gettempdir())


# --- the simulation ----------------------------------------------------------------------------


class QuietLog:
    """Core's logger in a simulation: info and debug are dropped (a day would print
    thousands of lines); warnings and errors are kept, once per distinct message."""

    def __init__(self) -> None:
        self.problems: dict[str, int] = {}

    def _keep(self, event: str, **fields: Any) -> None:
        detail = ", ".join(f"{k}={v}" for k, v in fields.items())
        key = f"{event} ({detail})" if detail else event
        self.problems[key] = self.problems.get(key, 0) + 1

    def debug(self, event: str, **fields: Any) -> None:
        pass

    info = debug

    def warning(self, event: str, **fields: Any) -> None:
        self._keep(event, **fields)

    error = warning
    exception = warning


@dataclass(frozen=True)
class _TeslaRig:
    """The Tesla module in virtual time: the simulated cloud, its jobs' scheduler, the module."""

    cloud: Any
    scheduler: Any
    cars: Any

    def calls_by_kind(self) -> dict[str, int]:
        """Every call of the run (the module's own count is per day, and days roll)."""
        return {kind: self.cloud.calls.get(kind, 0) for kind in ("data", "command", "wake")}

    def min_command_gap_s(self) -> float | None:
        last: dict[str, float] = {}
        gaps = []
        for at_s, vin, _ in self.cloud.commands:
            if vin in last:
                gaps.append(at_s - last[vin])
            last[vin] = at_s
        return min(gaps, default=None)


class DaySimulation:
    """One run: ``Core`` against ``SimulatedBus`` in virtual time, fed by a ``Sky``.

    ``run()`` goes from the profile's start to its end and returns a ``SimulationResult``;
    ``run_until(t_s)`` advances part of the way (for tests that look in between).
    """

    def __init__(
        self,
        config: AppConfig,
        sky: Sky,
        *,
        slaves: int = 1,
        policy: Any = None,
        policy_name: str | None = None,
        protocol: int = 2,
        car_api: bool = True,
        tesla: bool = False,
        seed: int = 0,
        start_s: float | None = None,
        end_s: float | None = None,
        day: date = SIM_DATE,
        bound: bool = True,
    ) -> None:
        if slaves < 1:
            raise ValueError("at least one simulated TWC")
        self.config = config
        self.sky = sky
        self.start_s = sky.profile.start_s if start_s is None else start_s
        self.end_s = sky.profile.end_s if end_s is None else end_s
        self.volts = float(config.default_voltage_v)
        self.phases = int(config.number_of_phases)
        self.with_bound = bound
        self._midnight = datetime.combine(day, datetime.min.time())
        self.bus = self._simulated_bus(slaves, protocol, seed)
        self.cars = [slave.car for slave in self.bus.slaves]
        # The simulated cars are Teslas the daemon can start and stop through their API, as
        # TWCManager does by default (§6.7); without it a P2 car is stopped by a 0 A offer.
        # With ``tesla`` the real Tesla module drives them, against a simulated cloud.
        self.car_api = SimulatedCarApi(self.bus.slaves) if car_api and not tesla else None
        self.log = QuietLog()
        self.tesla = self._tesla_module(config) if tesla else None
        if policy is None:
            policy, policy_name = make_policy(config, policy_name)
        self.policy_name = policy_name or type(policy).__name__
        cars = self.tesla.cars if self.tesla is not None else self.car_api
        self.core = Core(config, policy=policy, car_api=cars is not None)
        self.outputs = Outputs(core_outputs(config, self.log, cars=cars))
        self.accounting = DayAccounting(
            sky,
            self.cars,
            volts=self.volts,
            phases=self.phases,
            min_amps=int(config.min_amps_per_twc),
            limit_amps=int(
                min(config.wiring.max_amps_all_twcs, slaves * config.wiring.max_amps_per_twc)
            ),
            start_s=self.start_s,
            end_s=self.end_s,
            grid_cap_amps=config.max_amps_allowed_from_grid,
        )
        self.now = self.start_s
        self._to_bus: list[tuple[float, bytes]] = []  # (arrival at the slaves, bytes)
        self._to_core: list[tuple[float, bytes]] = []  # (arrival at the master, bytes)
        self._unread = bytearray()  # arrived while reading is paused (daemon: OS buffer)
        self._paused = False
        self._master_free_s = -math.inf  # the master's transmitter is busy until then
        self._wake_s = self.start_s
        self._started = False
        self._bus_cached = False  # see run_until
        self._bus_s: float | None = None
        self._wall_s = 0.0

    def _simulated_bus(self, slaves: int, protocol: int, seed: int) -> SimulatedBus:
        """The TWCs, with cars plugged in, reporting the config's voltage on its phases."""
        volts = round(self.volts)
        voltage = tuple(volts if i < self.phases else 0 for i in range(3))
        return SimulatedBus(
            make_slaves(
                slaves,
                protocol=protocol,
                plugged=True,
                max_amps=float(self.config.wiring.max_amps_per_twc),
                voltage_v=voltage,
                seed=seed,
                powered_on_s=self.start_s,
            )
        )

    def _tesla_module(self, config: AppConfig) -> _TeslaRig:
        from twcmaster.sim.teslacloud import HOME_LAT, HOME_LON, SimulatedTeslaCloud
        from twcmaster.vehicles.scheduling import VirtualScheduler
        from twcmaster.vehicles.tesla.cars import TeslaCars, TeslaCarsSettings

        def clock() -> float:
            return self.now

        cloud = SimulatedTeslaCloud(self.bus.slaves, clock)
        settings = TeslaCarsSettings(home_latitude=HOME_LAT, home_longitude=HOME_LON)
        if config.tesla_api is not None:  # the user's budgets, wake delay...; our home
            settings = dataclasses.replace(
                TeslaCarsSettings.from_config(config.tesla_api),
                home_latitude=HOME_LAT,
                home_longitude=HOME_LON,
            )
        scheduler = VirtualScheduler(clock)
        cars = TeslaCars(
            cloud, settings, clock=clock, wallclock=self._wallclock, scheduler=scheduler,
            log=self.log, snapshot=lambda: self.core.snapshot(self.now),
        )  # fmt: skip
        cloud.on_call = cars.count_call
        return _TeslaRig(cloud, scheduler, cars)

    def attach_console(self, status: ConsoleStatus) -> None:
        """Print the daemon's console lines for the run (``status`` on the virtual clock)."""
        self.outputs.add(ConsoleOutput(status))

    # -- what the core sees

    def _wallclock(self) -> datetime:
        return self._midnight + timedelta(seconds=self.now)

    def _site(self, now_s: float) -> Any:
        """The sky as the user's meter reports it. The profile's consumption excludes the
        chargers; a config that says the meter includes them (``subtractChargerLoad``) or
        reports export as "generation" (``treatGenerationAsGridDelivery``) gets a reading
        with the cars' draw in it, as that meter would show."""
        reading = self.sky.reading(now_s)
        treat = self.config.treat_generation_as_grid_delivery
        if reading.stale or not (treat or self.config.subtract_charger_load):
            return reading
        chargers_w = sum(car.actual_amps for car in self.cars) * self.volts * self.phases
        if treat:
            net_w = reading.generation_w - reading.consumption_w - chargers_w
            return dataclasses.replace(
                reading, generation_w=max(net_w, 0.0), consumption_w=max(-net_w, 0.0)
            )
        return dataclasses.replace(reading, consumption_w=reading.consumption_w + chargers_w)

    # -- running

    def run(self) -> SimulationResult:
        self.run_until(self.end_s)
        return self.result()

    def run_until(self, until_s: float) -> None:
        """Advance the virtual clock to ``until_s`` (at most the end), event by event."""
        wall_start = time.perf_counter()
        until_s = min(until_s, self.end_s)
        # The simulated bus's next event changes only when it is fed, polled or advanced: it
        # is kept between those (a stand-in bus, e.g. the soak's faulty one, is asked each
        # time). Refreshed here: a caller may have plugged a car in between two calls.
        self._bus_cached = type(self.bus) is SimulatedBus
        self._bus_s = self.bus.next_event_s()
        if not self._started:
            self._started = True
            if self.tesla is not None:
                self.tesla.scheduler.spawn(self.tesla.cars._keep_listing())
            self.core.start(self.start_s)
            self._service(self.start_s)
        accounting = self.accounting
        car_api = self.car_api if self.tesla is None else None
        while True:
            # The clock jumps to the next thing that happens: an accounting boundary, the
            # master's wake-up, a slave's reply, a car API action, or bytes reaching either
            # side; min() of the candidates, compared one by one (this runs for every event).
            bus_s = self._bus_s if self._bus_cached else self.bus.next_event_s()
            if car_api is not None:
                car_s = car_api.next_due_s()
            else:
                car_s = self._car_due_s()
            tick_s = accounting.next_tick_s
            at_s = tick_s if tick_s < self._wake_s else self._wake_s
            if bus_s is not None and bus_s < at_s:
                at_s = bus_s
            if car_s is not None and car_s < at_s:
                at_s = car_s
            if self._to_bus and self._to_bus[0][0] < at_s:
                at_s = self._to_bus[0][0]
            # Bytes reaching a master that is not reading (a reply is due) wait for its next
            # step: their arrival alone changes nothing, so it is no event of its own.
            if self._to_core and not self._paused and self._to_core[0][0] < at_s:
                at_s = self._to_core[0][0]
            if at_s > until_s:
                break
            self.now = at_s
            self._step(at_s, tick_s, bus_s, car_s)
        if until_s >= self.end_s and self.accounting.closed_s < self.end_s:
            self._account(self.end_s)
        self.now = until_s
        self._wall_s += time.perf_counter() - wall_start

    def _car_due_s(self) -> float | None:
        if self.tesla is not None:
            due = [self.tesla.cloud.next_due_s(), self.tesla.scheduler.next_due_s()]
            return min((t for t in due if t is not None), default=None)
        return self.car_api.next_due_s() if self.car_api is not None else None

    def _step(self, t: float, tick_s: float, bus_s: float | None, car_s: float | None) -> None:
        """Everything due at ``t``, in wire order: what the master said reaches the slaves,
        the slaves answer, their bytes reach the master, the master runs, then the second is
        accounted (each part as it was due when the clock jumped: ``tick_s``, ``bus_s`` and
        ``car_s``)."""
        if car_s is not None and car_s <= t:
            if self.tesla is not None:
                self.tesla.cloud.apply_due(t)
                self.tesla.scheduler.run_due(t)
            else:
                assert self.car_api is not None
                self.car_api.apply_due(t)
        to_bus = self._to_bus
        if to_bus and to_bus[0][0] <= t:
            while to_bus and to_bus[0][0] <= t:
                self.bus.receive(to_bus.pop(0)[1], t)
            if self._bus_cached:
                self._bus_s = self.bus.next_event_s()
        if bus_s is not None and bus_s <= t:
            data = self.bus.transmit(t)
            if self._bus_cached:
                self._bus_s = self.bus.next_event_s()
            if data:
                self._to_core.append((t + len(data) * BYTE_TIME_S, data))
        arrived = False
        to_core = self._to_core
        while to_core and to_core[0][0] <= t:
            self._unread += to_core.pop(0)[1]
            arrived = True
        if t >= self._wake_s or (arrived and not self._paused):
            self._service(t)
        if t >= tick_s:
            self._account(tick_s)

    def _service(self, now: float) -> None:
        """The daemon's step with the virtual clock: read, send, decide when to wake."""
        cars = self.tesla.cars.view() if self.tesla is not None else None
        # The local time as the function giving it (self.now is ``now`` during the step): the
        # core reads it only when it decides (one step in eight), and building a datetime is
        # one of the costlier parts of a step.
        step = self.core.service(
            now, bytes(self._unread), site=self._site(now), local_time=self._wallclock,
            cars=cars,
        )  # fmt: skip
        self._unread.clear()
        for wire in step.frames:
            start = self._master_free_s if self._master_free_s > now else now
            self._master_free_s = start + len(wire) * BYTE_TIME_S
            self._to_bus.append((self._master_free_s, wire))
        self._paused = step.read_after_s is not None
        self._wake_s = step.wake_s
        for event in step.events:
            if isinstance(event, ev.OfferChanged):
                self.accounting.totals.offer_changes += 1
        self.outputs.publish(now, step.events, lambda: self.core.snapshot(now))

    def _account(self, t: float) -> None:
        if t > self.accounting.closed_s:
            self.bus.advance(t)
            if self._bus_cached:
                self._bus_s = self.bus.next_event_s()
            self.accounting.close(t)

    def result(self) -> SimulationResult:
        totals = self.accounting.totals
        gaps = [max(slave.stats.heartbeat_intervals_s(), default=0.0) for slave in self.bus.slaves]
        warnings = tuple(f"profile: {note}" for note in self.sky.profile.notes) + tuple(
            text if count == 1 else f"{text} (x{count})"
            for text, count in self.log.problems.items()
        )
        return SimulationResult(
            profile=self.sky.profile.name,
            policy=self.policy_name,
            slaves=len(self.bus.slaves),
            voltage_v=self.volts,
            phases=self.phases,
            min_amps=self.accounting.min_amps,
            limit_amps=self.accounting.limit_amps,
            simulated_s=self.accounting.closed_s - self.start_s,
            generation_kwh=totals.generation_j / JOULES_PER_KWH,
            consumption_kwh=totals.consumption_j / JOULES_PER_KWH,
            surplus_kwh=totals.surplus_j / JOULES_PER_KWH,
            charged_kwh=totals.charged_j / JOULES_PER_KWH,
            charged_from_surplus_kwh=totals.from_surplus_j / JOULES_PER_KWH,
            grid_import_for_charging_kwh=totals.grid_import_j / JOULES_PER_KWH,
            ideal_kwh=totals.ideal_j / JOULES_PER_KWH,
            charge_starts=totals.starts,
            charge_stops=totals.stops,
            offer_changes=totals.offer_changes,
            wall_time_s=self._wall_s,
            cars_kwh=tuple(car.energy_kwh for car in self.cars),
            car_interruptions=sum(car.interruptions for car in self.cars),
            car_refusing_s=totals.refusing_s,
            car_api=self.car_api is not None or self.tesla is not None,
            car_api_requests=self._car_requests(),
            stale_s=totals.stale_s,
            heartbeats=sum(len(s.stats.heartbeat_times_s) for s in self.bus.slaves),
            longest_heartbeat_gap_s=max(gaps, default=0.0),
            warnings=warnings,
            tesla_calls=self.tesla.calls_by_kind() if self.tesla else None,
            tesla_min_command_gap_s=self.tesla.min_command_gap_s() if self.tesla else None,
            bound=self._bound(totals.starts) if self.with_bound else None,
            car_starts=tuple(self.accounting.car_starts),
            **self._grid_cap_figures(totals),
        )

    def _grid_cap_figures(self, totals: Any) -> dict[str, Any]:
        cap = self.accounting.grid_cap_amps
        if cap is None:
            return {}
        peak = totals.site_import_peak_a if math.isfinite(totals.site_import_peak_a) else None
        return {
            "grid_cap_a": cap,
            "site_import_peak_a": peak,
            "over_grid_cap_s": totals.over_grid_cap_s,
        }

    def _bound(self, starts: int) -> Any:
        """The clairvoyant bound over the simulated window at the run's starts (all cars:
        one virtual car with the circuit's limit, see ``sim/bound.py``)."""
        if self.sky.wrap and self.accounting.closed_s > self.sky.profile.end_s:
            return None  # the demo's endless day: no single day to bound
        return profile_bound(
            self.sky.profile,
            volts=self.volts,
            phases=self.phases,
            min_amps=self.accounting.min_amps,
            limit_amps=self.accounting.limit_amps,
            starts=starts,
            start_s=self.start_s,
            end_s=self.accounting.closed_s,
        )

    def _car_requests(self) -> int:
        if self.tesla is not None:
            return len(self.tesla.cloud.commands)
        return len(self.car_api.requests) if self.car_api is not None else 0


# --- policy ------------------------------------------------------------------------------------


#: ``--policy`` values: the policy names (any case) or these short forms (``minpv``: evcc's).
POLICY_ALIASES = {
    **dict(zip(("charge-now", "scheduled", "green", "non-scheduled"), POLICIES, strict=True)),
    "min-green": POLICY_MIN_GREEN,
    "minpv": POLICY_MIN_GREEN,
}
#: ``--policy rules``: no forcing; TWCManager's order by the time of day and settings.json.
RULES = "rules"
DEFAULT_POLICY = POLICY_GREEN


def policy_choice(name: str | None) -> str:
    """The canonical policy name for ``--policy`` (ValueError naming the choices)."""

    if name is None:
        return DEFAULT_POLICY
    key = name.strip().lower()
    if key == RULES:
        return RULES
    for policy in FORCEABLE_POLICIES:
        if key == policy.lower():
            return policy
    if key in POLICY_ALIASES:
        return POLICY_ALIASES[key]
    choices = ", ".join([*FORCEABLE_POLICIES, *POLICY_ALIASES, RULES])
    raise ValueError(f"unknown policy {name!r}: expected one of {choices}")


def make_policy(config: AppConfig, name: str | None = None, store: Any = None) -> tuple[Any, str]:
    """The daemon's policy engine for ``config`` with the sky as its energy source, forced to
    ``name`` (default Track Green Energy, all day). ``rules`` forces nothing: the engine then
    picks by the time of day and ``store``'s settings (None: TWCManager's defaults)."""
    from twcmaster.control.policy import build_policy

    choice = policy_choice(name)
    forced = None if choice == RULES else choice
    return build_policy(config, store, force_policy=forced), choice


# --- entry point -------------------------------------------------------------------------------


def simulate(
    config: AppConfig,
    profile: Profile,
    *,
    slaves: int = 1,
    policy_name: str | None = None,
    outages: Sequence[Outage] = (),
    progress: Callable[[float], None] | None = None,
    console: TextIO | None = None,
    **options: Any,
) -> SimulationResult:
    """Run a whole profile; ``progress(t_s)`` is called every simulated hour; ``console``
    gets the daemon's console lines, stamped with the simulated time."""
    sky = Sky(profile, outages=outages)
    sim = DaySimulation(config, sky, slaves=slaves, policy_name=policy_name, **options)
    if console is not None:
        sim.attach_console(
            ConsoleStatus(
                console,
                milliseconds=config.display_milliseconds,
                amps_jitter_a=CONSOLE_AMPS_JITTER_A,
                clock=lambda: sim.now,
                wallclock=sim._wallclock,
            )
        )
    if progress is None:
        return sim.run()
    t = sim.start_s
    while t < sim.end_s:
        t = min(sim.end_s, t + 3600.0)
        sim.run_until(t)
        progress(t)
    return sim.result()


def format_json(result: SimulationResult) -> str:
    return json.dumps(result.to_dict(), sort_keys=False)
