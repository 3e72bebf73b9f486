"""The daemon's logic without I/O: bus master, controller, policy and the status snapshot.

``Core.service(now, data)`` is the one step: fed the bytes that arrived and the time, it
returns the frames to send, when it next needs to run and the **events** of that step
(``events.py``), and performs no side effect: no console, no logging, no car calls. The
asyncio daemon (``daemon.py``) and the day simulator (``simulate.py``) drive this very step,
one with real time and a serial port, the other in virtual time, and both hand the events to
the outputs (``outputs/``), which read the one ``Snapshot``.

Data flows one way (design.md, ARCHITECTURE.md): serial bytes -> bus master -> controller ->
offers -> bus master -> serial bytes; readings -> policy -> budget; core -> events + snapshot
-> outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twcmaster import events as ev
from twcmaster.carview import CarsView
from twcmaster.config import AppConfig
from twcmaster.control.allocation import AllocationSettings, Controller, Offer, SlaveReading
from twcmaster.control.busstop import BusAction, BusCarSeen, BusStep, BusStopper, BusStopSettings
from twcmaster.control.busstop import ChargeStopMode as StopMode
from twcmaster.control.carcommands import CarCommander, CarSeen
from twcmaster.control.green import ChargerView, SiteReading
from twcmaster.control.policy import Budget, FixedBudget, fixed_budget_from_config
from twcmaster.protocol import master as bm
from twcmaster.protocol.gate import WiringLimits
from twcmaster.protocol.messages import (
    SLAVE_STATE_NAMES,
    MasterHeartbeat,
    SlaveState,
    set_limit_command,
)
from twcmaster.quickinit import quick_init
from twcmaster.sessions import ChargeSessions, PlugInEnergy
from twcmaster.settings import RuntimeSettings

ALARM_REPEAT_S = 60.0  # the same alarm is raised again at most this often
ALARM_SHOWN_S = 2 * ALARM_REPEAT_S  # an alarm stays in the snapshot this long after it fired
# Alarms kept at once: noise can name a new TWCID in every frame, and the table must not grow
# with it (the oldest go first).
MAX_ALARMS = 64
# The allocation re-runs when a slave's state or acknowledged limit changes, when a car's draw
# moved by this much, and otherwise at this cadence (for its hold timers).
ALLOCATE_EVERY_S = 2.0
REALLOCATE_ON_DRAW_CHANGE_A = 0.5
# A car drawing this much below its offer is limited by itself (its charger, its charge limit):
# the green start rules count it at what it draws, so that another car may take the rest.
CAR_LIMITED_GAP_AMPS = 3.0
MIN_SERVICE_STEP_S = 0.001  # the driver never sleeps less than this between two steps
SERVICE_RETRY_S = 0.1  # after a failed step, run again this soon
# Events kept for a caller that uses receive/poll and never takes them (service always does).
MAX_PENDING_EVENTS = 4096
# TWCs whose last set-limit (for OfferChanged) and last VIN are remembered; noise may name many.
MAX_TWCS_REMEMBERED = 64
SET_LIMIT_COMMANDS = frozenset({set_limit_command(1), set_limit_command(2)})  # 05, 09
DENIED_REASON = "charging switched off by hand"
NOT_ASKING = frozenset({SlaveState.READY, SlaveState.ERROR})  # S0 of a slave without a car
# How the allocation's reason names the way a held car is being stopped, by chargeStopMode.
CAR_STOP_BY = {
    StopMode.CAR_API: "asked through its API",
    StopMode.PAUSE_HEARTBEATS: "its heartbeats paused",
    StopMode.RELAY_COMMAND: "the TWC's stop command",
}


@dataclass(frozen=True)
class SlaveSnapshot:
    twcid: str  # 4 upper-case hex digits, as TWCManager shows it
    protocol: int
    state: int
    state_name: str
    allowed_amps: float
    actual_amps: float
    offer_amps: int
    offer_reason: str
    max_amps: float
    vin: str | None
    lifetime_kwh: int | None
    voltages: tuple[int, int, int] | None
    seconds_since_reply: float
    car_command: str = ""  # the last start/stop asked of its car, e.g. "stop (budget ...)"
    desired_amps: float = 0.0  # what the plan wanted for it, before spikes, holds and wiring
    last_vin: str | None = None  # the last car's VIN seen on it (kept after the car leaves)
    charger_load_w: float = 0.0  # its car's draw in watts (actual amps x volts x phases)
    charging_allowed: bool = True  # False: switched off by hand (settings twcChargingDenied)
    car_charging: bool = False  # its car draws at least CHARGING_AMPS (TWCManager's carsCharging)
    priority: int = 0  # chargePriority in force for it (higher charges first when short)
    session_kwh: float = 0.0  # given to its car since that car was plugged in (sessions.py)


@dataclass(frozen=True)
class Snapshot:
    """What every output shows for one moment, so they never disagree."""

    budget: Budget
    slaves: tuple[SlaveSnapshot, ...]
    link_up: bool
    alarms: tuple[str, ...]
    # Bugs caught so the bus could go on (they should stay 0): how many, and the last one.
    internal_errors: int = 0
    last_internal_error: str = ""
    # The energy reading the last decision used (None: no source), and the runtime settings
    # in force (charge-now, schedule, forced policy...; None: a fixed budget without them).
    site: SiteReading | None = None
    settings: RuntimeSettings | None = None
    # The car module (Tesla API): the cars on the account, calls today... (None: none).
    cars: CarsView | None = None

    @property
    def total_actual_amps(self) -> float:
        return sum(s.actual_amps for s in self.slaves)

    @property
    def total_offer_amps(self) -> int:
        return sum(s.offer_amps for s in self.slaves)


@quick_init
@dataclass(frozen=True)
class Step:
    """What one ``Core.service`` call returns."""

    frames: tuple[bytes, ...]  # to send, in order
    events: tuple[ev.Event, ...]  # what happened, in order
    wake_s: float  # call service again at the latest then
    # While a reply is due: leave arriving bytes unread until then (read them in the step
    # that may send the next frame: one wake-up per exchange instead of two).
    read_after_s: float | None


def master_settings(config: AppConfig) -> bm.MasterSettings:
    rs485 = config.rs485
    return bm.MasterSettings(
        master_twcid=rs485.master_twcid,
        master_sign=rs485.master_sign,
        slave_timeout_s=rs485.slave_timeout_s,
        trailer_byte=rs485.trailer_byte,
        ask_firmware=config.charge_stop_mode == StopMode.RELAY_COMMAND,
        limits=WiringLimits(
            max_amps_per_twc=config.wiring.max_amps_per_twc,
            max_amps_all_twcs=config.wiring.max_amps_all_twcs,
            min_amps_per_twc=config.min_amps_per_twc,
        ),
    )


def allocation_settings(config: AppConfig) -> AllocationSettings:
    return AllocationSettings(
        wiring_max_amps_all_twcs=config.wiring.max_amps_all_twcs,
        wiring_max_amps_per_twc=config.wiring.max_amps_per_twc,
        min_amps_per_twc=config.min_amps_per_twc,
        spike_amps_proactively=config.spike_amps_proactively,
        spike_amps_reactively=config.spike_amps_reactively,
        spike_amps=config.spike_amps,
        stop_hold_s=config.start_stop_delay_s,
        car_stop_by=CAR_STOP_BY[StopMode(config.charge_stop_mode)],
        rotate_amp_s=_rotate_amp_s(config),
    )


def _rotate_amp_s(config: AppConfig) -> float:
    """greenEnergyRotateKWh as amp-seconds at defaultVoltage (what the controller counts)."""
    watts_per_amp = config.default_voltage_v * config.number_of_phases
    return config.green_energy_rotate_kwh * 3.6e6 / watts_per_amp


class Core:
    """``policy``: a ``PolicyEngine`` (default: the config's fixed rate); ``car_api``: whether
    the cars can be started and stopped through their API (then, with ``chargeStopMode`` 1,
    protocol 2 cars are stopped that way; else with a 0 A offer, as TWCManager does without
    one). ``chargeStopMode`` 2 and 3 stop them from the bus instead (``control/busstop.py``,
    with or without a car API). ``frame_events``:
    also report every frame received, sent, rejected or ignored (for a debug log; default:
    when the config's log level is debug), which costs a little on every exchange.

    The energy reading and the local time come with each step (``service(..., site=,
    local_time=)``): the core never asks anyone for them."""

    def __init__(
        self,
        config: AppConfig,
        *,
        policy: Any = None,
        car_api: bool = False,
        frame_events: bool | None = None,
    ) -> None:
        self.config = config
        self.frame_events = config.log_level <= 10 if frame_events is None else frame_events
        self.master = bm.BusMaster(master_settings(config))
        self.controller = Controller(allocation_settings(config))
        self.policy = policy or fixed_budget_from_config(
            config.non_scheduled_amps_max, config.wiring.max_amps_all_twcs
        )
        self._site: SiteReading | None = None  # the energy sources' latest combined reading
        self._cars_view: CarsView | None = None  # the car module's, with each step
        # The wall clock, for schedules: as given with the step (see ``service``).
        self._local_time_given: datetime | Callable[[], datetime] | None = None
        stop_mode = StopMode(config.charge_stop_mode)
        self.car_commander = CarCommander() if car_api and stop_mode is StopMode.CAR_API else None
        self.bus_stopper = (
            BusStopper(BusStopSettings(stop_mode)) if stop_mode is not StopMode.CAR_API else None
        )
        self.link_up = False
        self.budget: Budget = Budget(0.0, "starting", "no decision yet")
        self.internal_errors = 0
        self._offers: dict[int, Offer] = {}
        self._alarms: dict[tuple[str, int | None], tuple[float, str]] = {}
        self._allocated_s = -math.inf
        self._last_seen: dict[int, tuple[int, float, float]] = {}
        self.sessions = ChargeSessions()
        self.plug_ins = PlugInEnergy()
        self._lifetime_kwh: dict[int, int] = {}  # each TWC's last reported counter
        self._volts: dict[int, float] = {}  # and its volts x phases (_line_volts)
        self._set_limits: dict[int, int] = {}  # twcid -> centiamps of the last set-limit sent
        self._last_internal_error = ""
        self._events: list[ev.Event] = []
        self._last_vins: dict[int, str] = {}  # twcid -> the last VIN it reported
        self._decide_now = False  # request_decision: decide at the next step, not in 2 s
        self._day: object = None  # the local date: the controller's energy today restarts
        self._priorities = dict(config.charge_priority)  # TWCID or VIN -> priority
        self._site_key: tuple[object, ...] = ()  # the last energy reading's figures

    # -- driving it

    def start(self, now: float) -> None:
        """(Re)announce the master: at start and whenever the port (re)opens."""
        self.master.start(now)

    def stop(self, now: float) -> None:
        """Before exiting: 0 A to every slave (see ``BusMaster.stop``)."""
        self.master.stop(now)

    @property
    def stopped(self) -> bool:
        """Every slave has been sent its 0 A heartbeat since ``stop``."""
        return self.master.stopped

    def request_decision(self) -> None:
        """The settings changed (remote control): decide the budget and the offers again at
        the next step, so a change takes effect within one heartbeat."""
        self._decide_now = True

    def set_link(self, up: bool) -> None:
        """The serial line opened (the master announces itself again) or closed."""
        if up != self.link_up:
            self.link_up = up
            self._emit(ev.LinkChanged(up))

    def service(
        self,
        now: float,
        data: bytes = b"",
        *,
        site: SiteReading | None = None,
        local_time: datetime | Callable[[], datetime] | None = None,
        cars: CarsView | None = None,
    ) -> Step:
        """The one step: take ``data`` (bytes that arrived), the energy sources' reading
        (None: none), the local time and the car module's view (None: none, or a car API
        that is always there), send what is due, say when to wake and what happened.
        ``local_time`` may be a function giving it, called only if the step reads the clock
        (a decision): the day simulator's clock costs more than most steps use it.
        Whatever part of it raises, the error is counted and the step still returns (the
        caller re-arms its timer either way)."""
        if site is not None and site is not self._site and self._site_moved(site):
            # React as fast as the sources report: a fall of the surplus left until the next
            # allocation (up to ALLOCATE_EVERY_S) is drawn from the grid meanwhile.
            self._decide_now = True
        self._site, self._local_time_given = site, local_time  # what the policy decides on
        if cars is not self._cars_view:  # the module builds a new view only on a change
            self._cars_view = cars
            if cars is not None:
                self._emit(ev.CarsUpdated(cars))
        frames: list[bytes] = []
        try:
            if data:
                self.receive(data, now)
            if self._decide_now:
                self._decide_now = False
                self._allocate(now)
            frames = self.poll(now)
            wake_s = max(self.next_wakeup_s(now), now + MIN_SERVICE_STEP_S)
            read_after_s = self.reply_pending_until_s
        except Exception as error:
            self.record_error("service step", error, now)
            wake_s, read_after_s = now + SERVICE_RETRY_S, None
        if read_after_s is not None and now >= read_after_s:
            read_after_s = None
        return Step(tuple(frames), self.take_events(), wake_s, read_after_s)

    @property
    def _local_time(self) -> datetime | None:
        """This step's local time (a function given for it is called once, on first use)."""
        given = self._local_time_given
        if given is None or isinstance(given, datetime):
            return given
        self._local_time_given = local_time = given()
        return local_time

    def _site_moved(self, site: SiteReading) -> bool:
        """Whether the energy reading says something new (not only a newer timestamp)."""
        key = (site.generation_w, site.consumption_w, site.grid_w, site.stale)
        moved = key != self._site_key
        self._site_key = key
        return moved and self._site is not None

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the line (``service`` calls this; its events wait for ``take_events``)."""
        if self.frame_events:
            self._emit(ev.BytesReceived(data))
        self._handle(self.master.receive(data, now), now)

    def poll(self, now: float) -> list[bytes]:
        """Every frame due now, in order (usually none or one)."""
        frames = []
        while True:
            wire, events = self.master.poll(now)
            if events:
                self._handle(events, now)
            if wire is None:
                self._expire_alarms(now)
                return frames
            frames.append(wire)

    def next_wakeup_s(self, now: float) -> float:
        return self.master.next_wakeup_s(now)

    @property
    def reply_pending_until_s(self) -> float | None:
        """While a reply is due: when its window ends (the caller may read it then)."""
        if self.master.awaiting_reply:
            return self.master.reply_window_end_s
        return None

    def take_events(self) -> tuple[ev.Event, ...]:
        """The events since the last call, oldest first."""
        taken = tuple(self._events)
        self._events.clear()
        return taken

    def record_error(self, where: str, error: BaseException, now: float) -> None:
        """A bug caught so that the bus goes on: counted in the snapshot and reported."""
        self.internal_errors += 1
        self._last_internal_error = f"{where}: {error!r}"[:200]
        self._emit(ev.InternalError(where, error, self.internal_errors))

    def _emit(self, event: ev.Event) -> None:
        if len(self._events) >= MAX_PENDING_EVENTS:
            del self._events[: MAX_PENDING_EVENTS // 2]  # nobody takes them: keep the newest
        self._events.append(event)

    # -- the bus master's events

    def _handle(self, events: list[bm.Event], now: float) -> None:
        for event in events:
            handler = self._handlers.get(type(event))
            if handler is None:
                continue
            try:
                handler(self, event, now)
            except Exception as error:  # one event must never stop the others or the bus
                self.record_error(f"handling {type(event).__name__}", error, now)

    def _on_heartbeat(self, event: bm.HeartbeatExchanged, now: float) -> None:
        # Allocation needs fresh readings, not one run per reply (it is the costliest step of
        # an exchange): at once when something moved, else every ALLOCATE_EVERY_S.
        seen = self._last_seen.get(event.twcid)
        changed = (
            seen is None
            or seen[:2] != (event.state, event.allowed_amps)
            or abs(seen[2] - event.actual_amps) >= REALLOCATE_ON_DRAW_CHANGE_A
        )
        if changed or now - self._allocated_s >= ALLOCATE_EVERY_S:
            self._allocate(now)
        if changed:
            self._last_seen[event.twcid] = (event.state, event.allowed_amps, event.actual_amps)
        self._emit(ev.HeartbeatExchanged(event.twcid, event.slave_data, event.master_data))
        lifetime_kwh = self._lifetime_kwh.get(event.twcid)
        for change in self.sessions.heartbeat(event.twcid, event.actual_amps, now, lifetime_kwh):
            self._emit(change)
        volts = self._volts.get(event.twcid) or self._line_volts(None)
        self.plug_ins.reply(event.twcid, event.state, event.actual_amps * volts, now)

    def _on_linked(self, event: bm.SlaveLinked, now: float) -> None:
        self._emit(ev.SlaveLinked(event.twcid, event.protocol, event.max_amps))
        wiring_per_twc = self.config.wiring.max_amps_per_twc
        if event.max_amps < wiring_per_twc:
            self._emit(ev.SlaveCapped(event.twcid, event.max_amps, wiring_per_twc))
        self._allocate(now)

    def _on_lost(self, event: bm.SlaveLost, now: float) -> None:
        self.controller.forget(event.twcid)
        if self.car_commander is not None:
            self.car_commander.forget(event.twcid)
        if self.bus_stopper is not None:
            self.bus_stopper.forget(event.twcid)
        self._last_seen.pop(event.twcid, None)
        self._offers.pop(event.twcid, None)
        self._emit(ev.SlaveLost(event.twcid, event.silent_s))
        for change in self.sessions.lost(event.twcid, now, self._lifetime_kwh.get(event.twcid)):
            self._emit(change)

    def _on_alarm(self, event: bm.Alarm, now: float) -> None:
        key = (event.kind, event.twcid)
        last = self._alarms.pop(key, None)  # re-inserted last: the dict stays oldest-first
        self._alarms[key] = (now, event.message)
        if last is None or now - last[0] >= ALARM_REPEAT_S:
            self._emit(ev.AlarmRaised(event.kind, event.twcid, event.message))
        self._expire_alarms(now)

    def _expire_alarms(self, now: float) -> None:
        """Alarms not raised again for ALARM_SHOWN_S (or beyond MAX_ALARMS) are cleared."""
        if not self._alarms:  # the usual case, checked after every poll
            return
        for key, (at, message) in list(self._alarms.items()):
            if now - at < ALARM_SHOWN_S and len(self._alarms) <= MAX_ALARMS:
                break  # oldest first: the rest are newer
            del self._alarms[key]
            self._emit(ev.AlarmCleared(key[0], key[1], message))

    def _on_energy(self, event: bm.EnergyReported, now: float) -> None:
        _remember(self._lifetime_kwh, event.twcid, event.lifetime_kwh)
        _remember(self._volts, event.twcid, self._line_volts(event.voltages))
        self._emit(ev.EnergyReported(event.twcid, event.lifetime_kwh, event.voltages))

    def _on_vin(self, event: bm.VinReported, now: float) -> None:
        if event.vin:
            _remember(self._last_vins, event.twcid, event.vin)
        self._emit(ev.VinReported(event.twcid, event.vin))
        for change in self.sessions.vin(event.twcid, event.vin):
            self._emit(change)
        self.plug_ins.vin(event.twcid, event.vin)

    def _on_firmware(self, event: bm.FirmwareReported, now: float) -> None:
        self._emit(ev.FirmwareReported(event.twcid, event.version))

    def _on_resumed(self, event: bm.HeartbeatsResumed, now: float) -> None:
        amps = event.offer_centiamps / 100
        self._emit(ev.HeartbeatsResumed(event.twcid, amps))

    def _on_relay_ack(self, event: bm.RelayAcknowledged, now: float) -> None:
        if self.bus_stopper is not None:
            self.bus_stopper.acknowledged(event.twcid, event.started)
        self._emit(ev.RelayAcknowledged(event.twcid, event.started))

    def _on_sent(self, event: bm.Sent, now: float) -> None:
        if self.frame_events:
            self._emit(ev.FrameSent(event.wire, event.message.name))
        message = event.message
        if isinstance(message, MasterHeartbeat) and message.command in SET_LIMIT_COMMANDS:
            previous = self._set_limits.get(message.receiver, 0)
            if message.centiamps != previous:
                _remember(self._set_limits, message.receiver, message.centiamps)
                offer = self._offers.get(message.receiver)
                made = offer is not None and offer.offer_amps * 100 == message.centiamps
                reason = offer.reason if made and offer is not None else ""
                self._emit(ev.OfferChanged(message.receiver, previous, message.centiamps, reason))

    def _on_rejected(self, event: bm.FrameRejected, now: float) -> None:
        if self.frame_events:
            self._emit(ev.FrameRejected(event.raw, event.reason))

    def _on_dispatch_failed(self, event: bm.DispatchFailed, now: float) -> None:
        self.record_error("receiving a frame", event.error, now)

    def _on_ignored(self, event: bm.Ignored, now: float) -> None:
        if self.frame_events:
            self._emit(ev.FrameIgnored(event.message.name, event.reason))

    _handlers = {
        bm.HeartbeatExchanged: _on_heartbeat,
        bm.SlaveLinked: _on_linked,
        bm.SlaveLost: _on_lost,
        bm.Alarm: _on_alarm,
        bm.EnergyReported: _on_energy,
        bm.VinReported: _on_vin,
        bm.FirmwareReported: _on_firmware,
        bm.RelayAcknowledged: _on_relay_ack,
        bm.HeartbeatsResumed: _on_resumed,
        bm.Sent: _on_sent,
        bm.FrameRejected: _on_rejected,
        bm.Ignored: _on_ignored,
        bm.DispatchFailed: _on_dispatch_failed,
    }

    # -- deciding

    def _decide(self, now: float, slaves: tuple[bm.SlaveView, ...]) -> Budget:
        """The policy's budget; 0 A when the policy fails (fail safe: less current)."""
        try:
            if isinstance(self.policy, FixedBudget):
                return self.policy.decide(now)
            if self._local_time is None:
                raise ValueError("no local time given: the policy cannot read its schedule")
            chargers = self._charger_view(slaves)
            return self.policy.decide(now, self._local_time, self._site, chargers)
        except Exception as error:
            self.record_error("policy", error, now)
            return Budget(0.0, "error", f"the policy failed ({type(error).__name__}): 0 A")

    def _set_budget(self, budget: Budget) -> None:
        previous = self.budget
        self.budget = budget
        self._emit(ev.BudgetDecided(budget))
        for rule, problem in budget.rule_failures:
            self._emit(ev.PolicyRuleFailed(rule, problem))
        if budget.policy != previous.policy:
            was = "" if previous.policy == "starting" else previous.policy
            self._emit(ev.PolicyChanged(was, budget.policy, budget.reason))
        if budget.stale and not previous.stale:
            self._emit(ev.ReadingStale(budget.problem))
        elif previous.stale and not budget.stale:
            self._emit(ev.ReadingUsable())

    def _charger_view(self, slaves: tuple[bm.SlaveView, ...]) -> ChargerView:
        """What the chargers do now, for the policy's closed loop."""
        volts = [v for s in slaves if s.voltages for v in s.voltages if v > 0]
        return ChargerView(
            actual_amps=sum(s.actual_amps for s in slaves),
            offered_amps=float(sum(s.offer_amps for s in slaves)),
            charging_cars=sum(1 for s in slaves if s.actual_amps >= bm.CHARGING_AMPS),
            voltage_v=sum(volts) / len(volts) if volts else None,
            # Plugged in and charging or asking (§4.2: anything but ready/idle and error).
            cars_wanting=sum(
                1 for s in slaves if s.actual_amps >= bm.CHARGING_AMPS or s.state not in NOT_ASKING
            ),
            capacity_amps=min(
                sum(self._capacity_amps(s) for s in slaves if s.actual_amps >= bm.CHARGING_AMPS),
                float(self.config.wiring.max_amps_all_twcs),
            ),
        )

    def _capacity_amps(self, slave: bm.SlaveView) -> float:
        """The most this charging car could draw: its TWC's cap, or, when it draws well below
        a generous offer (its own charger's limit, or its charge limit tapering), a little
        more than it draws now."""
        cap = min(float(slave.max_amps), float(self.config.wiring.max_amps_per_twc))
        if slave.offer_amps - slave.actual_amps > CAR_LIMITED_GAP_AMPS:
            return min(cap, slave.actual_amps + CAR_LIMITED_GAP_AMPS)
        return cap

    # -- allocation

    def _allocate(self, now: float) -> None:
        self._allocated_s = now
        local_time = self._local_time
        if local_time is not None and local_time.date() != self._day:
            self._day = local_time.date()
            self.controller.new_day()
        slaves = self.master.slave_views()  # as they are before this allocation's offers
        self._set_budget(self._decide(now, slaves))
        denied = self._denied_twcids()
        # A slave whose heartbeats are paused hears no offer: it is left out, and the
        # controller keeps counting its last committed amps until it reports again.
        paused = {s.twcid for s in slaves if s.paused_until_s > now}
        left_out = denied | paused
        readings = [self._reading(s) for s in slaves if s.twcid not in left_out]
        max_cars = getattr(self.budget, "max_cars", None)
        spikes = not getattr(self.budget, "stale", False)  # no spike above a fail-safe value
        try:
            self._offers = self.controller.allocate(
                self.budget.amps, readings, now, max_cars, spikes=spikes
            )
        except Exception as error:
            self.record_error("allocation", error, now)
            self._offer_nothing(slaves)
            return
        for slave in slaves:  # left out of the allocation: their committed amps still count
            if slave.twcid in denied:
                self._offers[slave.twcid] = Offer(slave.twcid, 0, 0.0, DENIED_REASON)
            elif slave.twcid in paused:
                # 0 A is what it hears first when they resume: a car it stopped stays stopped
                # until the allocation, seeing it again, decides otherwise.
                left_s = slave.paused_until_s - now
                reason = f"heartbeats paused {left_s:.0f}s more to stop its car: 0"
                self._offers[slave.twcid] = Offer(slave.twcid, 0, 0.0, reason)
        for twcid, offer in self._offers.items():
            self.master.set_offer(twcid, offer.offer_amps)
        if self.car_commander is not None:
            self._command_cars(now, slaves)
        if self.bus_stopper is not None:
            self._stop_from_bus(now, slaves)

    def _runtime_settings(self) -> RuntimeSettings | None:
        settings = getattr(self.policy, "settings", None)
        return settings if isinstance(settings, RuntimeSettings) else None

    def _denied_twcids(self) -> frozenset[int]:
        """TWCs switched off by hand: offered 0 A whatever the budget."""
        settings = self._runtime_settings()
        if settings is None or not settings.denied_twcids:
            return frozenset()
        return frozenset(int(twcid, 16) for twcid in settings.denied_twcids)

    def _reading(self, slave: bm.SlaveView) -> SlaveReading:
        return SlaveReading(
            twcid=slave.twcid,
            protocol=slave.protocol,
            link_max_amps=slave.max_amps,
            state=slave.state,
            reported_allowed_amps=slave.allowed_amps,
            actual_amps=slave.actual_amps,
            stop_through_car=self._stop_through_car(slave),
            priority=self._priority(slave),
        )

    def _priority(self, slave: bm.SlaveView) -> int:
        """chargePriority set at run time for this TWC (settings.json), else config.json's:
        by the car's VIN when known, else by the TWCID."""
        settings = self._runtime_settings()
        if settings is not None and settings.charge_priority:
            chosen = dict(settings.charge_priority).get(f"{slave.twcid:04X}")
            if chosen is not None:
                return chosen
        priorities = self._priorities
        if not priorities:
            return 0
        vin = slave.vin or self._last_vins.get(slave.twcid)
        if vin and vin.upper() in priorities:
            return priorities[vin.upper()]
        return priorities.get(f"{slave.twcid:04X}", 0)

    def _offer_nothing(self, slaves: tuple[bm.SlaveView, ...]) -> None:
        """Fail safe when the allocation itself failed: 0 A to every slave."""
        self._offers = {}
        for slave in slaves:
            self.master.set_offer(slave.twcid, 0)

    def _stop_through_car(self, slave: bm.SlaveView) -> bool:
        """Whether the controller keeps this P2 car at its minimum until it is stopped (by its
        API or from the bus), rather than cutting it with a 0 A offer (§6.7)."""
        if slave.protocol != 2:
            return False
        if self.bus_stopper is not None:
            return self.bus_stopper.stop_through_bus(slave.twcid, slave.firmware)
        commander = self.car_commander
        if commander is None:
            return False
        if self._cars_view is not None:
            # The car module says whether this car can be reached (token, account, budget);
            # if not, the car is stopped from the bus with a 0 A offer at once.
            vin = slave.vin or self._last_vins.get(slave.twcid)
            if not self._cars_view.usable_for(vin):
                return False
        return commander.stop_through_car(slave.twcid)

    def _command_cars(self, now: float, slaves: tuple[bm.SlaveView, ...]) -> None:
        assert self.car_commander is not None
        seen = [
            CarSeen(
                twcid=s.twcid,
                vin=s.vin,
                state=s.state,
                actual_amps=s.actual_amps,
                offer_amps=self._offers[s.twcid].offer_amps,
                min_amps=self.controller.min_offer_amps(s.protocol),
                car_stop_wanted=self._offers[s.twcid].car_stop_wanted,
            )
            for s in slaves
            if s.protocol == 2 and s.twcid in self._offers
        ]
        delay_s = self._cars_view.start_delay_s if self._cars_view is not None else 0.0
        decision = self.car_commander.decide(now, seen, start_delay_s=delay_s)
        for command in decision.commands:
            self._emit(ev.CarCommandWanted(command))
        for notice in decision.notices:
            self._emit(notice)

    def _stop_from_bus(self, now: float, slaves: tuple[bm.SlaveView, ...]) -> None:
        """chargeStopMode 2 / 3: pause a slave's heartbeats or send it FC B2 / FC B1."""
        assert self.bus_stopper is not None
        seen = [
            BusCarSeen(
                twcid=s.twcid,
                state=s.state,
                actual_amps=s.actual_amps,
                offer_amps=self._offers[s.twcid].offer_amps,
                min_amps=self.controller.min_offer_amps(s.protocol),
                car_stop_wanted=self._offers[s.twcid].car_stop_wanted,
                firmware=s.firmware,
                paused=s.paused_until_s > now,
            )
            for s in slaves
            if s.protocol == 2 and s.twcid in self._offers
        ]
        decision = self.bus_stopper.decide(now, seen)
        for step in decision.steps:
            if self._carry_out(step):
                self._emit(ev.BusStopStep(step))
        for notice in decision.notices:
            self._emit(notice)

    def _carry_out(self, step: BusStep) -> bool:
        """Hand one step to the bus master; False if it refused (stopping, or a relay
        command to a TWC not known to run firmware 4.5.3 or later)."""
        if step.action is BusAction.PAUSE_HEARTBEATS:
            assert step.until_s is not None
            return self.master.pause_heartbeats(step.twcid, step.until_s)
        start = step.action is BusAction.START_RELAY
        return self.master.send_relay_command(step.twcid, start)

    # -- status

    def _car_command_text(self, twcid: int, now: float) -> str:
        command = self.car_commander.last_command(twcid) if self.car_commander else None
        if command is None:
            return ""
        return f"{command.action.value} {now - command.at_s:.0f}s ago ({command.reason})"

    def _line_volts(self, voltages: tuple[int, int, int] | None) -> float:
        """Watts per amp a car draws: the TWC's measured phase voltages summed when it
        reports them (a phase at 0 V carries nothing), else defaultVoltage x numberOfPhases."""
        volts = sum(v for v in voltages or () if v > 0)
        return volts or self.config.default_voltage_v * self.config.number_of_phases

    def _slave_snapshot(self, s: bm.SlaveView, now: float, denied: frozenset[int]) -> SlaveSnapshot:
        offer = self._offers.get(s.twcid)
        return SlaveSnapshot(
            twcid=f"{s.twcid:04X}",
            protocol=s.protocol,
            state=s.state,
            state_name=SLAVE_STATE_NAMES.get(s.state, "unknown"),
            allowed_amps=s.allowed_amps,
            actual_amps=s.actual_amps,
            offer_amps=s.offer_amps,
            offer_reason=offer.reason if offer is not None else "",
            max_amps=s.max_amps,
            vin=s.vin,
            lifetime_kwh=s.lifetime_kwh,
            voltages=s.voltages,
            seconds_since_reply=round(now - s.last_rx_s, 3),
            car_command=self._car_command_text(s.twcid, now),
            desired_amps=offer.desired_amps if offer is not None else 0.0,
            last_vin=self._last_vins.get(s.twcid),
            charger_load_w=round(s.actual_amps * self._line_volts(s.voltages), 1),
            session_kwh=round(self.plug_ins.kwh(s.twcid), 3),
            charging_allowed=s.twcid not in denied,
            car_charging=s.actual_amps >= bm.CHARGING_AMPS,
            priority=self._priority(s),
        )

    def snapshot(self, now: float) -> Snapshot:
        denied = self._denied_twcids()
        slaves = tuple(self._slave_snapshot(s, now, denied) for s in self.master.slave_views())
        recent = tuple(text for at, text in self._alarms.values() if now - at < ALARM_SHOWN_S)
        return Snapshot(
            self.budget,
            slaves,
            self.link_up,
            recent,
            internal_errors=self.internal_errors,
            last_internal_error=self._last_internal_error,
            site=self._site,
            settings=self._runtime_settings(),
            cars=self._cars_view,
        )


def _remember(table: dict[int, Any], twcid: int, value: Any) -> None:
    """``table[twcid] = value``, newest last, the oldest dropped beyond MAX_TWCS_REMEMBERED."""
    table.pop(twcid, None)
    if len(table) >= MAX_TWCS_REMEMBERED:
        del table[next(iter(table))]
    table[twcid] = value
