"""``twcmaster simulate``: a day of solar charging in virtual time, with the real master.

The daemon's own logic (``Core``: bus master, controller, policy) talks bytes to simulated
TWC slaves with cars (``SimulatedBus``), as in the demo, but against a virtual clock: nothing
sleeps, and the clock jumps from one event to the next (a frame's end, a reply, the master's
next wake-up, the next second of accounting), so a day takes seconds. The site's generation
and household consumption come from a profile (``sim/sky.py``) and reach the policy as the
energy sources' ``SiteReading`` through ``Core(site=...)``, shaped like the meter the config
describes: with ``subtractChargerLoad`` its consumption includes the cars' draw, with
``treatGenerationAsGridDelivery`` its "generation" is the export (the profile's consumption
never includes the chargers).

The loop does what ``daemon.Daemon._service`` does with a serial port: it hands the core the
bytes that arrived, sends what ``poll`` returns, and while a reply is due it leaves the
arriving bytes unread until the reply window ends (``reply_pending_until_s``), then reads
them in the wake-up that may send the next frame. A master frame reaches the slaves when its
last byte is on the wire (9600 baud); the slaves answer after their reply delay, and their
bytes reach the master when their last byte has arrived.

Accounting, for each second (and each profile row boundary inside one)::

    P_c  = the cars' charging power: their energy over the second (the car model integrates
           its draw, ramps included) / 1 s; that is sum(draw) x volts x phases
    S    = max(0, generation - consumption)       (consumption excludes the chargers)
    charged_from_surplus  += min(P_c, S) x 1 s
    grid_import_for_charging += P_c - min(P_c, S)  (so charged = from_surplus + grid_import)

**The ideal** is what a controller that followed the surplus exactly each second, in whole
amps between the floor and the limit, would charge::

    amps_ideal = min(floor(S / (volts x phases)), limit), and 0 if below minAmpsPerTWC
    ideal_kwh  = sum(amps_ideal x volts x phases x 1 s)

with ``limit`` = min(wiringMaxAmpsAllTWCs, slaves x wiringMaxAmpsPerTWC). It is the energy an
instant, lossless follower would take from the surplus; it is not an upper bound of
``charged_from_surplus`` (a car held at the floor through a dip below it still uses the
surplus there, which the ideal leaves unused). Volts and phases are the config's
``defaultVoltage`` and ``numberOfPhases``; the simulated TWCs report that voltage.

``charge_starts`` / ``charge_stops``: a car's draw crossing 1 A upwards / downwards (sampled
each second). ``offer_changes``: set-limit heartbeats (``05``/``09``) whose amps differ from the
previous set-limit sent to that TWC (the core's ``OfferChanged`` events).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from twcmaster import events as ev
from twcmaster.assembly import core_outputs
from twcmaster.config import AppConfig, LoadedConfig, config_from_dict
from twcmaster.core import Core
from twcmaster.outputs.base import Outputs
from twcmaster.outputs.console import ConsoleOutput, ConsoleStatus
from twcmaster.protocol.codec import BYTE_TIME_S
from twcmaster.protocol.master import CHARGING_AMPS
from twcmaster.sim.bus import SimulatedBus, make_slaves
from twcmaster.sim.car import CarPhase
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
JOULES_PER_KWH = 3.6e6


def simulation_config() -> LoadedConfig:
    """The built-in configuration (``REFERENCE_CONFIG``)."""
    return config_from_dict(REFERENCE_CONFIG, tempfile.gettempdir())


# --- results -----------------------------------------------------------------------------------


IDEAL_DEFINITION = (
    "per second: amps = min(floor(max(0, generation - consumption) / (volts x phases)), "
    "limit), 0 if below minAmpsPerTWC; ideal_kwh = sum(amps x volts x phases x 1 s)"
)


@dataclass(frozen=True)
class SimulationResult:
    """Totals of one simulated run (energies in kWh)."""

    profile: str
    policy: str
    slaves: int
    voltage_v: float
    phases: int
    min_amps: int
    limit_amps: int
    simulated_s: float
    generation_kwh: float
    consumption_kwh: float
    surplus_kwh: float
    charged_kwh: float
    charged_from_surplus_kwh: float
    grid_import_for_charging_kwh: float
    ideal_kwh: float
    charge_starts: int
    charge_stops: int
    offer_changes: int
    wall_time_s: float
    cars_kwh: tuple[float, ...]  # each car's own energy counter
    car_interruptions: int  # power cuts under a charging car (P2 0 A, lost heartbeats)
    car_refusing_s: float  # time cars refused to charge after too many interruptions
    car_api: bool  # the daemon could start/stop the cars through their (simulated) API
    car_api_requests: int  # start/stop requests it made
    stale_s: float  # time the policy saw a stale reading (injected outages)
    heartbeats: int  # heartbeats the slaves heard
    longest_heartbeat_gap_s: float
    warnings: tuple[str, ...]  # what the core logged at warning level or above (deduplicated)

    @property
    def ratio_to_ideal(self) -> float | None:
        return self.charged_from_surplus_kwh / self.ideal_kwh if self.ideal_kwh > 0 else None

    @property
    def grid_import_share(self) -> float | None:
        if self.charged_kwh <= 0:
            return None
        return self.grid_import_for_charging_kwh / self.charged_kwh

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 4)
        out["cars_kwh"] = [round(v, 4) for v in self.cars_kwh]
        out["warnings"] = list(self.warnings)
        out["ratio_to_ideal"] = _round(self.ratio_to_ideal)
        out["grid_import_share"] = _round(self.grid_import_share)
        out["ideal_definition"] = IDEAL_DEFINITION
        return out

    def summary(self) -> str:
        ratio = "n/a" if self.ratio_to_ideal is None else f"{self.ratio_to_ideal:.1%}"
        share = "n/a" if self.grid_import_share is None else f"{self.grid_import_share:.1%}"
        hours = f"{self.simulated_s / 3600:.2f}".rstrip("0").rstrip(".")
        lines = [
            f"Simulated {hours} h of {self.profile} in {self.wall_time_s:.1f} s: "
            f"{self.slaves} TWC(s), {self.voltage_v:g} V x {self.phases} phase(s), "
            f"{self.min_amps}-{self.limit_amps} A, policy {self.policy}",
            f"  site:      generation {self.generation_kwh:.2f} kWh, consumption "
            f"{self.consumption_kwh:.2f} kWh (chargers excluded), "
            f"surplus {self.surplus_kwh:.2f} kWh",
            f"  charged:   {self.charged_kwh:.2f} kWh, from surplus "
            f"{self.charged_from_surplus_kwh:.2f} kWh, grid import for charging "
            f"{self.grid_import_for_charging_kwh:.2f} kWh ({share})",
            f"  ideal:     {self.ideal_kwh:.2f} kWh; from surplus / ideal = {ratio}",
            f"             ({IDEAL_DEFINITION})",
            f"  behaviour: {self.charge_starts} charge start(s), {self.charge_stops} stop(s), "
            f"{self.offer_changes} offer change(s), {self.car_interruptions} interruption(s)"
            + (f", cars refused {self.car_refusing_s:.0f} s" if self.car_refusing_s else "")
            + (f", {self.car_api_requests} car API request(s)" if self.car_api else ", no car API"),
            f"  bus:       {self.heartbeats} heartbeat(s), longest gap "
            f"{self.longest_heartbeat_gap_s:.2f} s"
            + (f"; stale readings {self.stale_s:.0f} s" if self.stale_s else ""),
        ]
        lines += [f"  warning:   {text}" for text in self.warnings]
        return "\n".join(lines)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- the simulation ----------------------------------------------------------------------------


class _QuietLog:
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


@dataclass
class _Totals:
    generation_j: float = 0.0
    consumption_j: float = 0.0
    surplus_j: float = 0.0
    charged_j: float = 0.0
    from_surplus_j: float = 0.0
    grid_import_j: float = 0.0
    ideal_j: float = 0.0
    starts: int = 0
    stops: int = 0
    offer_changes: int = 0
    refusing_s: float = 0.0
    stale_s: float = 0.0


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
        seed: int = 0,
        start_s: float | None = None,
        end_s: float | None = None,
        day: date = SIM_DATE,
    ) -> None:
        if slaves < 1:
            raise ValueError("at least one simulated TWC")
        self.config = config
        self.sky = sky
        self.start_s = sky.profile.start_s if start_s is None else start_s
        self.end_s = sky.profile.end_s if end_s is None else end_s
        self.volts = float(config.default_voltage_v)
        self.phases = int(config.number_of_phases)
        self.min_amps = int(config.min_amps_per_twc)
        self.limit_amps = int(
            min(config.wiring.max_amps_all_twcs, slaves * config.wiring.max_amps_per_twc)
        )
        self._midnight = datetime.combine(day, datetime.min.time())
        volts = round(self.volts)
        voltage = tuple(volts if i < self.phases else 0 for i in range(3))
        self.bus = SimulatedBus(
            make_slaves(
                slaves,
                protocol=protocol,
                plugged=True,
                max_amps=float(config.wiring.max_amps_per_twc),
                voltage_v=voltage,
                seed=seed,
                powered_on_s=self.start_s,
            )
        )
        self.cars = [slave.car for slave in self.bus.slaves]
        # The simulated cars are Teslas the daemon can start and stop through their API, as
        # TWCManager does by default (§6.7); without it a P2 car is stopped by a 0 A offer.
        self.car_api = SimulatedCarApi(self.bus.slaves) if car_api else None
        self.log = _QuietLog()
        if policy is None:
            policy, policy_name = make_policy(config, policy_name)
        self.policy_name = policy_name or type(policy).__name__
        self.core = Core(
            config,
            policy=policy,
            wallclock=self._wallclock,
            site=self._site,
            car_api=self.car_api is not None,
        )
        self.outputs = Outputs(core_outputs(config, self.log, cars=self.car_api))
        self.totals = _Totals()
        self.now = self.start_s
        self._to_bus: list[tuple[float, bytes]] = []  # (arrival at the slaves, bytes)
        self._to_core: list[tuple[float, bytes]] = []  # (arrival at the master, bytes)
        self._unread = bytearray()  # arrived while reading is paused (daemon: OS buffer)
        self._paused = False
        self._master_free_s = -math.inf  # the master's transmitter is busy until then
        self._wake_s = self.start_s
        self._tick_s = self.start_s  # the last accounting boundary
        self._next_tick = self._next_tick_s()
        self._energy_j = [0.0] * len(self.cars)
        self._charging = [False] * len(self.cars)
        self._started = False
        self._wall_s = 0.0

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
        if not self._started:
            self._started = True
            self.core.start(self.start_s)
            self._service(self.start_s)
        bus = self.bus
        to_bus, to_core = self._to_bus, self._to_core
        while True:
            tick_s = self._next_tick
            bus_s = bus.next_event_s()
            car_s = self.car_api.next_due_s() if self.car_api is not None else None
            t = min(
                tick_s,
                self._wake_s,
                math.inf if bus_s is None else bus_s,
                math.inf if car_s is None else car_s,
                to_bus[0][0] if to_bus else math.inf,
                to_core[0][0] if to_core else math.inf,
            )
            if t > until_s:
                break
            self.now = t
            # In wire order: what the master said reaches the slaves, the slaves answer,
            # their bytes reach the master, the master runs, then the second is accounted.
            if car_s is not None and car_s <= t:
                self.car_api.apply_due(t)
            while to_bus and to_bus[0][0] <= t:
                bus.receive(to_bus.pop(0)[1], t)
            if bus_s is not None and bus_s <= t:
                data = bus.transmit(t)
                if data:
                    to_core.append((t + len(data) * BYTE_TIME_S, data))
            arrived = False
            while to_core and to_core[0][0] <= t:
                self._unread += to_core.pop(0)[1]
                arrived = True
            if t >= self._wake_s or (arrived and not self._paused):
                self._service(t)
            if t >= tick_s:
                self._account(tick_s)
        if until_s >= self.end_s and self._tick_s < self.end_s:
            self._account(self.end_s)
        self.now = until_s
        self._wall_s += time.perf_counter() - wall_start

    def _service(self, now: float) -> None:
        """The daemon's step with the virtual clock: read, send, decide when to wake."""
        step = self.core.service(now, bytes(self._unread))
        self._unread.clear()
        for wire in step.frames:
            start = max(now, self._master_free_s)
            self._master_free_s = start + len(wire) * BYTE_TIME_S
            self._to_bus.append((self._master_free_s, wire))
        self._paused = step.read_after_s is not None
        self._wake_s = step.wake_s
        for event in step.events:
            if isinstance(event, ev.OfferChanged):
                self.totals.offer_changes += 1
        self.outputs.publish(now, step.events, lambda: self.core.snapshot(now))

    def attach_console(self, status: ConsoleStatus) -> None:
        """Print the daemon's console lines for the run (``status`` on the virtual clock)."""
        self.outputs.add(ConsoleOutput(status))

    # -- accounting

    def _next_tick_s(self) -> float:
        """The next accounting boundary: the next whole second, or a profile row inside it."""
        if self._tick_s >= self.end_s:
            return math.inf
        nxt = math.floor(self._tick_s) + 1.0
        change = self.sky.profile.next_change_s(self._tick_s) if not self.sky.wrap else None
        if change is not None and change < nxt:
            nxt = change
        return min(nxt, self.end_s)

    def _account(self, t: float) -> None:
        """Close the interval [last boundary, t): energies, surplus, ideal, starts/stops."""
        totals = self.totals
        dt = t - self._tick_s
        if dt <= 0:
            return
        self.bus.advance(t)
        generation_w, consumption_w = self.sky.site_at(self._tick_s)
        surplus_w = max(0.0, generation_w - consumption_w)
        charged_j = 0.0
        for i, car in enumerate(self.cars):
            energy_j = car.energy_kwh * JOULES_PER_KWH
            charged_j += energy_j - self._energy_j[i]
            self._energy_j[i] = energy_j
            charging = car.actual_amps >= CHARGING_AMPS
            if charging != self._charging[i]:
                self._charging[i] = charging
                if charging:
                    totals.starts += 1
                else:
                    totals.stops += 1
            if car.phase is CarPhase.REFUSING:
                totals.refusing_s += dt
        charging_w = max(0.0, charged_j / dt)
        from_surplus_w = min(charging_w, surplus_w)
        totals.generation_j += generation_w * dt
        totals.consumption_j += consumption_w * dt
        totals.surplus_j += surplus_w * dt
        totals.charged_j += charging_w * dt
        totals.from_surplus_j += from_surplus_w * dt
        totals.grid_import_j += (charging_w - from_surplus_w) * dt
        totals.ideal_j += self.ideal_amps(surplus_w) * self.volts * self.phases * dt
        if self.sky.outage_at(self._tick_s) is not None:
            totals.stale_s += dt
        self._tick_s = t
        self._next_tick = self._next_tick_s()

    def ideal_amps(self, surplus_w: float) -> int:
        """Whole amps an exact surplus follower would offer (see the module docstring)."""
        amps = min(math.floor(surplus_w / (self.volts * self.phases)), self.limit_amps)
        return amps if amps >= self.min_amps else 0

    def result(self) -> SimulationResult:
        totals = self.totals
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
            min_amps=self.min_amps,
            limit_amps=self.limit_amps,
            simulated_s=self._tick_s - self.start_s,
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
            car_api=self.car_api is not None,
            car_api_requests=len(self.car_api.requests) if self.car_api is not None else 0,
            stale_s=totals.stale_s,
            heartbeats=sum(len(s.stats.heartbeat_times_s) for s in self.bus.slaves),
            longest_heartbeat_gap_s=max(gaps, default=0.0),
            warnings=warnings,
        )


# --- policy ------------------------------------------------------------------------------------


#: ``--policy`` values: TWCManager's policy names (any case) or these short forms.
POLICY_ALIASES = {
    "green": "Track Green Energy",
    "charge-now": "Charge Now",
    "scheduled": "Scheduled Charging",
    "non-scheduled": "Non Scheduled Charging",
}
#: ``--policy rules``: no forcing; TWCManager's order by the time of day and settings.json.
RULES = "rules"
DEFAULT_POLICY = "Track Green Energy"


def policy_choice(name: str | None) -> str:
    """The canonical policy name for ``--policy`` (ValueError naming the choices)."""
    from twcmaster.control.policy import POLICIES

    if name is None:
        return DEFAULT_POLICY
    key = name.strip().lower()
    if key == RULES:
        return RULES
    for policy in POLICIES:
        if key == policy.lower():
            return policy
    if key in POLICY_ALIASES:
        return POLICY_ALIASES[key]
    choices = ", ".join([*POLICIES, *POLICY_ALIASES, RULES])
    raise ValueError(f"unknown policy {name!r}: expected one of {choices}")


def make_policy(config: AppConfig, name: str | None = None, store: Any = None) -> tuple[Any, str]:
    """The daemon's policy engine for ``config`` with the sky as its energy source, forced to
    ``name`` (default Track Green Energy, all day). ``rules`` forces nothing: the engine then
    picks by the time of day and ``store``'s settings (None: TWCManager's defaults)."""
    from twcmaster.control.policy import PolicyConfig, PolicyEngine

    choice = policy_choice(name)
    forced = None if choice == RULES else choice
    engine = PolicyEngine(
        PolicyConfig.from_app_config(config, green_sources_configured=True),
        store,
        force_policy=forced,
    )
    return engine, choice


# --- entry point -------------------------------------------------------------------------------


def simulate(
    config: AppConfig,
    profile: Profile,
    *,
    slaves: int = 1,
    policy_name: str | None = None,
    outages: Sequence[Outage] = (),
    progress: Callable[[float], None] | None = None,
    **options: Any,
) -> SimulationResult:
    """Run a whole profile; ``progress(t_s)`` is called every simulated hour."""
    sky = Sky(profile, outages=outages)
    sim = DaySimulation(config, sky, slaves=slaves, policy_name=policy_name, **options)
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


# --- command line ------------------------------------------------------------------------------


def parse_clock_s(text: str) -> float:
    """Seconds from midnight: ``43200``, ``12:00`` or ``12:00:30``."""
    text = text.strip()
    if ":" not in text:
        value = float(text)
    else:
        parts = [float(p) for p in text.split(":")]
        if len(parts) > 3:
            raise ValueError(text)
        value = sum(p * 60 ** (2 - i) for i, p in enumerate(parts + [0.0] * (3 - len(parts))))
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def parse_outage(text: str) -> Outage:
    """``--stale FROM-TO`` (seconds of the day or HH:MM[:SS]) as an ``Outage``."""
    start, sep, end = text.partition("-")
    try:
        if not sep:
            raise ValueError(text)
        outage = Outage(parse_clock_s(start), parse_clock_s(end))
    except ValueError:
        raise ValueError(
            f"--stale {text!r}: expected FROM-TO, in seconds of the day or HH:MM[:SS] "
            "(e.g. 12:00-12:10)"
        ) from None
    if outage.end_s <= outage.start_s:
        raise ValueError(f"--stale {text!r}: the end must come after the start")
    return outage


def run_command(
    profile_path: str,
    loaded: LoadedConfig | None,
    *,
    as_json: bool = False,
    policy: str | None = None,
    slaves: int = 1,
    protocol: int = 2,
    car_api: bool = True,
    stale: Sequence[str] = (),
    out: Any = None,
    err: Any = None,
) -> int:
    """``twcmaster simulate``: 0 on success, 2 for bad input (reported on ``err``)."""
    import sys

    from twcmaster.sim.sky import ProfileError, load_profile

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        policy_name = policy_choice(policy)
        outages = [parse_outage(text) for text in stale]
        profile = load_profile(profile_path)
    except (ValueError, ProfileError) as exc:
        print(f"twcmaster: {exc}", file=err)
        return 2
    if not 1 <= slaves <= 6:
        print("twcmaster: --slaves must be 1 to 6", file=err)
        return 2
    loaded = loaded or simulation_config()
    store = None
    if policy_name == RULES and loaded.path is not None:
        from twcmaster.settings import SETTINGS_FILE_NAME, SettingsStore

        store = SettingsStore(
            os.path.join(loaded.settings.settings_path, SETTINGS_FILE_NAME),
            log=_QuietLog(),
            wiring_max_amps_all_twcs=loaded.settings.wiring.max_amps_all_twcs,
        )
    policy_engine, name = make_policy(loaded.settings, policy_name, store)
    progress = None
    if not as_json and getattr(err, "isatty", lambda: False)():

        def progress(t_s: float) -> None:
            end = "\n" if t_s >= profile.end_s else ""
            print(f"\r  simulated {t_s / 3600:5.2f} h", end=end, file=err, flush=True)

    result = simulate(
        loaded.settings,
        profile,
        slaves=slaves,
        policy=policy_engine,
        policy_name=name,
        protocol=protocol,
        car_api=car_api,
        outages=outages,
        progress=progress,
    )
    print(format_json(result) if as_json else result.summary(), file=out, flush=True)
    return 0
