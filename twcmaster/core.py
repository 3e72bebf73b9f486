"""The daemon's logic without I/O: bus master, controller, policy and the status snapshot.

Fed received bytes and the time, it returns the frames to send and says when it next needs to
run (sans-I/O, like the parts it wires). The asyncio daemon (``daemon.py``) and the day
simulator (``simulate.py``) drive the very same object, one with real time and a serial port,
the other in virtual time.

Data flows one way (design.md): serial bytes -> bus master -> controller -> offers -> bus
master -> serial bytes, and every output reads the same snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twcmaster.config import AppConfig
from twcmaster.control.allocation import AllocationSettings, Controller, Offer, SlaveReading
from twcmaster.control.carcommands import CarCommand, CarCommander, CarSeen
from twcmaster.control.policy import Budget, FixedBudget, fixed_budget_from_config
from twcmaster.logs import get_logger
from twcmaster.outputs.console import ConsoleStatus, green_lines
from twcmaster.protocol import master as bm
from twcmaster.protocol.gate import WiringLimits
from twcmaster.protocol.messages import SLAVE_STATE_NAMES

ALARM_REPEAT_S = 60.0  # the same alarm is logged again at most this often
ALARM_SHOWN_S = 2 * ALARM_REPEAT_S  # an alarm stays in the snapshot this long after it fired
# Alarms kept at once: noise can name a new TWCID in every frame, and the table must not grow
# with it (the oldest go first).
MAX_ALARMS = 64
# The allocation re-runs when a slave's state or acknowledged limit changes, when a car's draw
# moved by this much, and otherwise at this cadence (for its hold timers).
ALLOCATE_EVERY_S = 2.0
REALLOCATE_ON_DRAW_CHANGE_A = 0.5
GREEN_LINES_REPEAT_S = 60.0  # green-energy console lines with new watts but the same amps
ERROR_LOG_REPEAT_S = 60.0  # an internal error's traceback is logged at most this often per place


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

    @property
    def total_actual_amps(self) -> float:
        return sum(s.actual_amps for s in self.slaves)

    @property
    def total_offer_amps(self) -> int:
        return sum(s.offer_amps for s in self.slaves)


def master_settings(config: AppConfig) -> bm.MasterSettings:
    rs485 = config.rs485
    return bm.MasterSettings(
        master_twcid=rs485.master_twcid,
        master_sign=rs485.master_sign,
        slave_timeout_s=rs485.slave_timeout_s,
        trailer_byte=rs485.trailer_byte,
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
    )


class Core:
    def __init__(
        self,
        config: AppConfig,
        *,
        console: ConsoleStatus | None = None,
        policy: Any = None,
        wallclock: Callable[[], datetime] = datetime.now,
        site: Callable[[float], Any] | None = None,
        cars: Any = None,
        log: Any = None,
    ) -> None:
        self.config = config
        self.log = log or get_logger("twcmaster")
        self.master = bm.BusMaster(master_settings(config))
        self.controller = Controller(allocation_settings(config))
        self.policy = policy or fixed_budget_from_config(
            config.non_scheduled_amps_max, config.wiring.max_amps_all_twcs
        )
        self.console = console
        self.wallclock = wallclock
        self.site = site  # now -> the sources' combined SiteReading (None: no sources)
        # Something with ``request(CarCommand)`` that starts/stops cars (a car API), or None:
        # then protocol 2 cars are stopped with a 0 A offer, as TWCManager does without one.
        self.cars = cars
        self.car_commander = CarCommander() if cars is not None else None
        self.link_up = False
        self.budget: Budget = Budget(0.0, "starting", "no decision yet")
        self.offers: dict[int, Offer] = {}
        self._alarms: dict[str, tuple[float, str]] = {}
        self._log_frames = config.log_level <= 10
        self._allocated_s = -math.inf
        self._last_seen: dict[int, tuple[int, float, float]] = {}
        self._shown_lines: tuple[str, ...] = ()
        self._lines_shown_s = -math.inf
        self._shown_decision: tuple[str, str] | None = None
        self.internal_errors = 0
        self._last_internal_error = ""
        self._error_logged_s: dict[str, float] = {}

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

    def receive(self, data: bytes, now: float) -> None:
        if self._log_frames:
            self.log.debug("rx", bytes=data.hex(" "))
        self._handle(self.master.receive(data, now), now)

    def poll(self, now: float) -> list[bytes]:
        """Every frame due now, in order (usually none or one)."""
        frames = []
        while True:
            wire, events = self.master.poll(now)
            self._handle(events, now)
            if wire is None:
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

    def record_error(self, where: str, error: BaseException, now: float) -> None:
        """A bug caught so that the bus goes on: counted in the snapshot and logged, with its
        traceback at most once every ERROR_LOG_REPEAT_S per place (no log flood)."""
        self.internal_errors += 1
        self._last_internal_error = f"{where}: {error!r}"[:200]
        logged_s = self._error_logged_s.get(where)
        if logged_s is None or now - logged_s >= ERROR_LOG_REPEAT_S:
            self._error_logged_s[where] = now
            self.log.error(
                "internal error, carrying on",
                where=where,
                error=repr(error)[:200],
                count=self.internal_errors,
                exc_info=error,
            )

    # -- events

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
        if self.console is not None:
            self.console.heartbeat(event.twcid, event.slave_data, event.master_data)

    def _on_linked(self, event: bm.SlaveLinked, now: float) -> None:
        self.log.info(
            "slave linked",
            twcid=f"{event.twcid:04X}",
            protocol=event.protocol,
            max_amps=event.max_amps,
        )
        if event.max_amps < self.config.wiring.max_amps_per_twc:
            self.log.warning(
                "slave's own maximum is below wiringMaxAmpsPerTWC: offers are capped at it",
                twcid=f"{event.twcid:04X}",
                slave_max_amps=event.max_amps,
                wiring_max_amps_per_twc=self.config.wiring.max_amps_per_twc,
            )
        self._allocate(now)

    def _on_lost(self, event: bm.SlaveLost, now: float) -> None:
        self.controller.forget(event.twcid)
        if self.car_commander is not None:
            self.car_commander.forget(event.twcid)
        self._last_seen.pop(event.twcid, None)
        self.offers.pop(event.twcid, None)
        self.log.warning(
            "slave lost", twcid=f"{event.twcid:04X}", silent_s=round(event.silent_s, 1)
        )

    def _on_alarm(self, event: bm.Alarm, now: float) -> None:
        key = f"{event.kind}:{event.twcid}"
        last = self._alarms.pop(key, None)  # re-inserted last: the dict stays oldest-first
        self._alarms[key] = (now, event.message)
        self._forget_old_alarms(now)
        if last is None or now - last[0] >= ALARM_REPEAT_S:
            self.log.error(event.message, alarm=event.kind)
            if self.console is not None:
                self.console.line(f"ALARM: {event.message}")

    def _forget_old_alarms(self, now: float) -> None:
        for key, (at, _) in list(self._alarms.items()):
            if now - at < ALARM_SHOWN_S and len(self._alarms) <= MAX_ALARMS:
                break  # oldest first: the rest are newer
            del self._alarms[key]

    def _on_energy(self, event: bm.EnergyReported, now: float) -> None:
        self.log.info(
            "energy report",
            twcid=f"{event.twcid:04X}",
            lifetime_kwh=event.lifetime_kwh,
            voltages=list(event.voltages),
        )

    def _on_vin(self, event: bm.VinReported, now: float) -> None:
        self.log.info("vehicle", twcid=f"{event.twcid:04X}", vin=event.vin or "none")

    def _on_sent(self, event: bm.Sent, now: float) -> None:
        if self._log_frames:
            self.log.debug("tx", frame=event.wire.hex(" "), message=event.message.name)

    def _on_rejected(self, event: bm.FrameRejected, now: float) -> None:
        if self._log_frames:
            self.log.debug("frame rejected", raw=event.raw.hex(" "), reason=event.reason)

    def _on_dispatch_failed(self, event: bm.DispatchFailed, now: float) -> None:
        self.record_error("receiving a frame", event.error, now)

    def _on_ignored(self, event: bm.Ignored, now: float) -> None:
        if self._log_frames:
            self.log.debug("ignored", message=event.message.name, reason=event.reason)

    def _decide(self, now: float) -> Budget:
        """The policy's budget; 0 A when the policy fails (fail safe: less current)."""
        try:
            if isinstance(self.policy, FixedBudget):
                return self.policy.decide(now)
            site = self.site(now) if self.site is not None else None
            return self.policy.decide(now, self.wallclock(), site, self.charger_view())
        except Exception as error:
            self.record_error("policy", error, now)
            return Budget(0.0, "error", f"the policy failed ({type(error).__name__}): 0 A")

    def _show_budget(self, budget: Budget) -> None:
        """The green-energy lines of TWCManager's console, when they change (not every tick),
        and the policy's decision when it changes."""
        if self.console is None:
            return
        lines = green_lines(budget)
        # The watts move every second while a car ramps: reprint when the resulting amps
        # change, or the figures after GREEN_LINES_REPEAT_S.
        now = self._allocated_s
        if lines and (
            lines[1:] != self._shown_lines[1:]
            or (lines != self._shown_lines and now - self._lines_shown_s >= GREEN_LINES_REPEAT_S)
        ):
            self.console.line("\n".join(lines))
            self._shown_lines = lines
            self._lines_shown_s = now
        decision = (budget.policy, budget.reason) if not lines else (budget.policy, "")
        if decision != self._shown_decision:
            self.console.line(f"Policy: {budget.policy}: {budget.reason}")
            self._shown_decision = decision

    def charger_view(self) -> Any:
        """What the chargers do now, for the policy's closed loop."""
        from twcmaster.control.green import ChargerView

        slaves = list(self.master.slaves.values())
        volts = [v for s in slaves if s.voltages for v in s.voltages if v > 0]
        return ChargerView(
            actual_amps=sum(s.actual_amps for s in slaves),
            offered_amps=float(sum(s.offer_amps for s in slaves)),
            charging_cars=sum(1 for s in slaves if s.actual_amps >= bm.CHARGING_AMPS),
            voltage_v=sum(volts) / len(volts) if volts else None,
            # Plugged in and charging or asking (§4.2: anything but 0 idle and 2 error).
            cars_wanting=sum(
                1 for s in slaves if s.actual_amps >= bm.CHARGING_AMPS or s.state not in (0, 2)
            ),
        )

    _handlers = {
        bm.HeartbeatExchanged: _on_heartbeat,
        bm.SlaveLinked: _on_linked,
        bm.SlaveLost: _on_lost,
        bm.Alarm: _on_alarm,
        bm.EnergyReported: _on_energy,
        bm.VinReported: _on_vin,
        bm.Sent: _on_sent,
        bm.FrameRejected: _on_rejected,
        bm.Ignored: _on_ignored,
        bm.DispatchFailed: _on_dispatch_failed,
    }

    # -- allocation

    def _allocate(self, now: float) -> None:
        self._allocated_s = now
        self.budget = self._decide(now)
        self._show_budget(self.budget)
        readings = [
            SlaveReading(
                twcid=s.twcid,
                protocol=s.protocol,
                link_max_amps=s.max_centiamps / 100,
                state=s.state,
                reported_allowed_amps=s.allowed_amps,
                actual_amps=s.actual_amps,
                stop_through_car=self._stop_through_car(s),
            )
            for s in self.master.slaves.values()
        ]
        max_cars = getattr(self.budget, "max_cars", None)
        try:
            self.offers = self.controller.allocate(self.budget.amps, readings, now, max_cars)
        except Exception as error:
            self.record_error("allocation", error, now)
            self._offer_nothing()
            return
        for twcid, offer in self.offers.items():
            self.master.set_offer(twcid, offer.offer_amps)
        if self.car_commander is not None:
            self._command_cars(now)

    def _offer_nothing(self) -> None:
        """Fail safe when the allocation itself failed: 0 A to every slave."""
        self.offers = {}
        for twcid in self.master.slaves:
            self.master.set_offer(twcid, 0)

    def _stop_through_car(self, slave: bm.Slave) -> bool:
        commander = self.car_commander
        return (
            commander is not None
            and slave.protocol == 2
            and commander.stop_through_car(slave.twcid)
        )

    def _command_cars(self, now: float) -> None:
        assert self.car_commander is not None
        seen = [
            CarSeen(
                twcid=s.twcid,
                vin=s.vin,
                state=s.state,
                actual_amps=s.actual_amps,
                offer_amps=self.offers[s.twcid].offer_amps,
                min_amps=self.controller.min_offer_amps(s.protocol),
                car_stop_wanted=self.offers[s.twcid].car_stop_wanted,
            )
            for s in self.master.slaves.values()
            if s.protocol == 2 and s.twcid in self.offers
        ]
        for command in self.car_commander.decide(now, seen):
            self._send_car_command(command)
        for twcid, message in self.car_commander.notices:
            self.log.warning(message, twcid=f"{twcid:04X}")
            if self.console is not None:
                self.console.line(f"TWC {twcid:04X}: {message}.")
        self.car_commander.notices.clear()

    def _send_car_command(self, command: CarCommand) -> None:
        twcid = f"{command.twcid:04X}"
        self.log.info(
            "car command",
            action=command.action.value,
            twcid=twcid,
            vin=command.vin or "unknown",
            reason=command.reason,
        )
        if self.console is not None:
            car = command.vin or "the car"
            self.console.line(
                f"Asking {car} on TWC {twcid} to {command.action.value} charging: {command.reason}."
            )
        try:
            self.cars.request(command)
        except Exception as error:  # a failing car API never stops the charging control
            self.log.error("car command failed", twcid=twcid, error=repr(error))

    # -- status

    def _car_command_text(self, twcid: int, now: float) -> str:
        command = self.car_commander.last_command(twcid) if self.car_commander else None
        if command is None:
            return ""
        return f"{command.action.value} {now - command.at_s:.0f}s ago ({command.reason})"

    def snapshot(self, now: float) -> Snapshot:
        slaves = tuple(
            SlaveSnapshot(
                twcid=f"{s.twcid:04X}",
                protocol=s.protocol,
                state=s.state,
                state_name=SLAVE_STATE_NAMES.get(s.state, "unknown"),
                allowed_amps=s.allowed_amps,
                actual_amps=s.actual_amps,
                offer_amps=s.offer_amps,
                offer_reason=self.offers[s.twcid].reason if s.twcid in self.offers else "",
                max_amps=s.max_centiamps / 100,
                vin=s.vin,
                lifetime_kwh=s.lifetime_kwh,
                voltages=s.voltages,
                seconds_since_reply=round(now - s.last_rx_s, 3),
                car_command=self._car_command_text(s.twcid, now),
            )
            for s in self.master.slaves.values()
        )
        recent = tuple(text for at, text in self._alarms.values() if now - at < ALARM_SHOWN_S)
        return Snapshot(
            self.budget,
            slaves,
            self.link_up,
            recent,
            internal_errors=self.internal_errors,
            last_internal_error=self._last_internal_error,
        )
