"""The foreground status console, in TWCManager's line format (people grep for it).

One line per slave heartbeat exchange, for example (P2, 9-byte data blocks)::

    11:57:49: SHB 1234: 00 00.00/00.00A 0000 0000  M: 09 00.00/17.00A 0000 0000

Fields, left to right (the same layout as TWCManager's ``TWCSlave.print_status``):

``11:57:49:``
    local time ``%H:%M:%S`` (``11:57:49.123:`` with milliseconds), then a colon.
``SHB 1234:``
    "slave heartbeat" and the slave's TWCID as 4 hex digits.
``00``
    S0, the slave's state byte (00 ready, 01 charging, 03 do not charge, 04 ready to
    charge, 08 starting, 09 acknowledged ...).
``00.00/00.00A``
    the amps the car actually draws (S3-S4) / the limit the slave applies (S1-S2), from
    centiamps, printed like ``%05.2f`` (``655.35`` for FF FF).
``0000 0000``
    the remaining bytes in pairs of hex: S5-S6, and S7-S8 on protocol 2.
``  M:``
    two spaces, then the master block as last sent to that slave (we are the master, so
    TWCManager's optional master TWCID after the ``M`` never appears):
``09``
    M0, the command byte (00 no change, 05 set limit (P1), 09 set limit (P2) ...).
``00.00/17.00A``
    M3-M4 / M1-M2 read as amps, the same positions as for the slave. M1-M2 is the limit
    offered; M3-M4 is not an amp value (M3 is the "master has a car plugged in" flag, 00
    for us), TWCManager prints it as one anyway and so do we.
``0000 0000``
    M5-M6, and M7-M8 on protocol 2.

Other status lines (green energy, limits) are printed with the same time stamp prefix.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from twcmaster import events as ev
from twcmaster.policies import POLICY_MIN_GREEN

if TYPE_CHECKING:  # the console reads these; it never imports the core's machinery
    from twcmaster.carview import CarStatus
    from twcmaster.control.green import GreenBudget
    from twcmaster.control.policy import Budget
    from twcmaster.outputs.base import Publication

TIME_FORMAT = "%H:%M:%S"
MIN_BLOCK_BYTES = 5  # state/command byte + two amp fields
FIRST_PAIR_INDEX = 5  # bytes from here on are printed as hex pairs
DEFAULT_REPEAT_AFTER_S = 60.0
GREEN_LINES_REPEAT_S = 60.0  # green-energy lines with new watts but the same amps
# Like TWCManager: a heartbeat line that only differs by < 1 A of actual draw is not reprinted.
CONSOLE_AMPS_JITTER_A = 1.0


def format_timestamp(now_local: datetime, *, milliseconds: bool = False) -> str:
    """ "11:57:49" or "11:57:49.123"."""
    text = now_local.strftime(TIME_FORMAT)
    if milliseconds:
        text += f".{now_local.microsecond // 1000:03d}"
    return text


def format_heartbeat_body(slave_twcid: int, slave_data: bytes, master_data: bytes) -> str:
    """The heartbeat line without its time stamp: "SHB 1234: ...  M: ..."."""
    return f"SHB {slave_twcid:04X}: {_format_block(slave_data)}  M: {_format_block(master_data)}"


def format_heartbeat_line(
    now_local: datetime,
    slave_twcid: int,
    slave_data: bytes,
    master_data: bytes,
    *,
    milliseconds: bool = False,
) -> str:
    """One TWCManager-style line for a heartbeat exchange with one slave.

    ``slave_data`` is S0..S6 (P1) or S0..S8 (P2); ``master_data`` is M0..M6 / M0..M8 as
    last sent to that slave.
    """
    stamp = format_timestamp(now_local, milliseconds=milliseconds)
    return f"{stamp}: {format_heartbeat_body(slave_twcid, slave_data, master_data)}"


def green_lines(budget: Budget) -> tuple[str, ...]:
    """TWCManager's green-energy lines for a budget (none when it is not tracking green).

    As its docs print them (our seed)::

        Green energy generates 4956W, Consumption 726W, Charger Load 0W
        Limiting car charging to 20.65A - 3.03A = 17.62A.
        Charge when above 6A (minAmpsPerTWC).

    The second line's figures are exact centiamps from ``green.green_budget`` (see there why
    they are rounded half up), so the sum adds up as printed.
    """
    if budget.stale:
        return (
            f"Green energy reading unusable ({budget.problem}); "
            f"charging at the safe {budget.amps:g}A ({budget.fallback}).",
        )
    green = budget.green
    if green is None:
        return ()
    return (
        f"Green energy generates {green.generation_w:.0f}W, Consumption "
        f"{green.consumption_w:.0f}W, Charger Load {green.charger_load_w:.0f}W",
        f"Limiting car charging to {_centiamps_text(green.generation_centiamps)}A - "
        f"{_centiamps_text(green.consumption_centiamps)}A = "
        f"{_centiamps_text(green.surplus_centiamps)}A.",
        _charge_when_above(green, floor_always=budget.policy == POLICY_MIN_GREEN),
    )


def _centiamps_text(centiamps: int) -> str:
    sign = "-" if centiamps < 0 else ""
    value = abs(centiamps)
    return f"{sign}{value // 100}.{value % 100:02d}"


def _charge_when_above(green: GreenBudget, *, floor_always: bool = False) -> str:
    floor, margin = green.floor_amps, green.start_margin_amps
    if floor_always:  # Min + Green Energy: no start level
        return f"Charge at least {floor:.0f}A (minAmpsPerTWC) from any source, more from surplus."
    if margin <= 0:
        return f"Charge when above {floor:.0f}A (minAmpsPerTWC)."
    return (
        f"Charge when above {floor + margin:g}A "
        f"(minAmpsPerTWC {floor:g}A + greenEnergyStartMarginAmps {margin:g}A)."
    )


def _format_block(data: bytes) -> str:
    """``SS aa.aa/ll.llA PPPP PPPP``: byte 0, amps of bytes 3-4 / 1-2, then pairs."""
    if len(data) < MIN_BLOCK_BYTES:
        raise ValueError(f"heartbeat data {data.hex(' ')!r}: expected at least 5 bytes")
    head = f"{data[0]:02X} {_format_amps(data[3], data[4])}/{_format_amps(data[1], data[2])}A"
    pairs = [data[i : i + 2].hex().upper() for i in range(FIRST_PAIR_INDEX, len(data), 2)]
    return " ".join([head, *pairs])


def _format_amps(high: int, low: int) -> str:
    """Big-endian centiamps as ``%05.2f`` would print them, without floats."""
    centiamps = high << 8 | low
    return f"{centiamps // 100:02d}.{centiamps % 100:02d}"


def _actual_centiamps(slave_data: bytes) -> int:
    return slave_data[3] << 8 | slave_data[4]


@dataclass(frozen=True)
class _Printed:
    key: bytes  # the data blocks, with the actual amps blanked
    actual_centiamps: int
    at_s: float


class ConsoleStatus:
    """Prints heartbeat lines (de-duplicated per slave) and other status lines.

    A heartbeat line is skipped when it equals, time stamp aside, the last one printed for
    that slave less than ``repeat_after_s`` ago. ``amps_jitter_a`` (default 0: off) also
    skips lines whose only change is the car's actual current moving by less than that
    many amps since the last printed line; TWCManager uses 1.0 (and 600 s for
    ``repeat_after_s``) so a charging car does not print a line every second.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        milliseconds: bool = False,
        repeat_after_s: float = DEFAULT_REPEAT_AFTER_S,
        amps_jitter_a: float = 0.0,
        slave_power_lines: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._stream = stream  # None: sys.stdout at the time of printing
        self._slave_power_lines = slave_power_lines
        self._milliseconds = milliseconds
        self._repeat_after_s = repeat_after_s
        self._jitter_centiamps = round(amps_jitter_a * 100)
        self._clock = clock
        self._wallclock = wallclock
        self._last: dict[int, _Printed] = {}

    def heartbeat(self, slave_twcid: int, slave_data: bytes, master_data: bytes) -> None:
        # Compare raw bytes with the actual amps blanked, so a jitter-only change compares
        # equal; formatting waits until a line is really printed (this runs every second).
        key = _without_actual(slave_data) + b"|" + bytes(master_data)
        actual = _actual_centiamps(slave_data)
        now_s = self._clock()
        if self._is_repeat(self._last.get(slave_twcid), key, actual, now_s):
            return
        body = format_heartbeat_body(slave_twcid, slave_data, master_data)  # validates too
        self._last[slave_twcid] = _Printed(key, actual, now_s)
        self.line(body)
        if self._slave_power_lines:  # TWCManager's companion line (S0 in decimal)
            self.line(f"Slave power for TWCID {slave_twcid:04X}, status: {slave_data[0]}")

    def line(self, text: str) -> None:
        """Print a status line after the time stamp; continuation lines are indented."""
        prefix = format_timestamp(self._wallclock(), milliseconds=self._milliseconds) + ": "
        indent = "\n" + " " * len(prefix)
        self._write(prefix + indent.join(text.splitlines() or [""]) + "\n")

    def _is_repeat(self, last: _Printed | None, key: bytes, actual: int, now_s: float) -> bool:
        if last is None or now_s - last.at_s >= self._repeat_after_s:
            return False
        amps_moved = abs(actual - last.actual_centiamps)
        return key == last.key and (amps_moved == 0 or amps_moved < self._jitter_centiamps)

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(text)
        stream.flush()  # docker logs and pipes must see each line as it happens


def _without_actual(slave_data: bytes) -> bytes:
    return slave_data[:3] + b"\x00\x00" + slave_data[5:]


def car_line(car: CarStatus) -> str:
    """``Car 5YJ3...0001 (Daisy): home, online, 64% of 80%, Stopped; stop at 12:01:05: ok;
    next command from 12:02:05; 4/60 calls today``."""
    soc = ""
    if car.battery_level is not None:
        limit = f" of {car.charge_limit_soc}%" if car.charge_limit_soc is not None else ""
        soc = f", {car.battery_level}%{limit}"
    state = f", {car.charging_state}" if car.charging_state else ""
    name = f" ({car.name})" if car.name else ""
    line = f"Car {car.vin}{name}: {car.location}, {car.online}{soc}{state}"
    if car.last_command:
        at = car.last_command_at[11:19]  # the time of day of the ISO timestamp
        line += f"; {car.last_command} at {at}: {car.last_result}"
    if car.next_command_at:
        line += f"; next command from {car.next_command_at[11:19]}"
    line += f"; {car.billable_today}/{car.billable_today + car.budget_left} calls today"
    if car.bus_only:
        line += f"; from the bus only: {car.bus_only}"
    elif car.without_vin:
        line += f"; without a VIN from its TWC: {car.without_vin}"
    return line


class ConsoleOutput:
    """The console as an output of the core: its lines from the step's events.

    * ``SHB`` lines for heartbeat exchanges (``ConsoleStatus.heartbeat``: de-duplicated);
    * the green-energy lines when the amps they show change (the watts move every second
      while a car ramps: those are reprinted after ``GREEN_LINES_REPEAT_S``), and
      ``Policy: <name>: <reason>`` when the decision changes (the reason is left out of
      that comparison while green lines show the figures);
    * ``ALARM:`` lines, car start/stop requests and the car commands' notices;
    * ``TWC <id>: offering <amps>A: <reason>.`` when a TWC is offered current after none,
      and ``offer withdrawn (0A)`` when it goes back to none: which car starts, and why;
    * TWCManager's event lines, word for word: ``Slave power for TWCID <id>, status: <S0>``
      after each SHB line printed, ``New policy selected; changing to <policy>``, and ``Charge
      Session Started`` / ``updated`` (the car's VIN came) / ``Stopped for Slave TWC <id>``.
    """

    def __init__(self, status: ConsoleStatus) -> None:
        self.status = status
        self._shown_lines: tuple[str, ...] = ()
        self._lines_shown_s = -math.inf
        self._shown_decision: tuple[str, str] | None = None
        self._shown_cars: dict[str, str] = {}  # "" (the module) or a VIN -> its line

    def publish(self, publication: Publication) -> None:
        for event in publication.events:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(self, event, publication.now_s)

    def _heartbeat(self, event: ev.HeartbeatExchanged, now: float) -> None:
        self.status.heartbeat(event.twcid, event.slave_data, event.master_data)

    def _budget(self, event: ev.BudgetDecided, now: float) -> None:
        budget = event.budget
        lines = green_lines(budget)
        if lines and (
            lines[1:] != self._shown_lines[1:]
            or (lines != self._shown_lines and now - self._lines_shown_s >= GREEN_LINES_REPEAT_S)
        ):
            self.status.line("\n".join(lines))
            self._shown_lines = lines
            self._lines_shown_s = now
        decision = (budget.policy, budget.reason) if not lines else (budget.policy, "")
        if decision != self._shown_decision:
            self.status.line(f"Policy: {budget.policy}: {budget.reason}")
            self._shown_decision = decision

    def _cars(self, event: ev.CarsUpdated, now: float) -> None:
        """The Tesla module's state, and each car, when what the line says changes."""
        view = event.view
        lines = {"": f"Tesla API: {view.state}: {view.message}"}
        for car in view.cars:
            lines[car.vin] = car_line(car)
        for key, line in lines.items():
            if self._shown_cars.get(key) != line:
                self.status.line(line)
                self._shown_cars[key] = line

    def _offer(self, event: ev.OfferChanged, now: float) -> None:
        """A car's charge offered or withdrawn (not every change of its amps: the heartbeat
        lines show those): who starts and stops, and why."""
        why = f": {event.reason}" if event.reason else ""
        if event.previous_centiamps == 0 and event.centiamps > 0:
            self.status.line(f"TWC {event.twcid:04X}: offering {event.centiamps / 100:.2f}A{why}.")
        elif event.previous_centiamps > 0 and event.centiamps == 0:
            self.status.line(f"TWC {event.twcid:04X}: offer withdrawn (0A){why}.")

    def _policy(self, event: ev.PolicyChanged, now: float) -> None:
        self.status.line(f"New policy selected; changing to {event.policy}")

    def _session_started(self, event: ev.ChargeSessionStarted, now: float) -> None:
        self.status.line(f"Charge Session Started for Slave TWC {event.twcid:04X}")

    def _session_updated(self, event: ev.ChargeSessionUpdated, now: float) -> None:
        self.status.line(f"Charge Session updated for Slave TWC {event.twcid:04X}")

    def _session_stopped(self, event: ev.ChargeSessionStopped, now: float) -> None:
        self.status.line(f"Charge Session Stopped for Slave TWC {event.twcid:04X}")

    def _alarm(self, event: ev.AlarmRaised, now: float) -> None:
        self.status.line(f"ALARM: {event.message}")

    def _car_command(self, event: ev.CarCommandWanted, now: float) -> None:
        command = event.command
        car = command.vin or "the car"
        self.status.line(
            f"Asking {car} on TWC {command.twcid:04X} to {command.action.value} charging: "
            f"{command.reason}."
        )

    def _car_notice(self, event: ev.CarNotice, now: float) -> None:
        self.status.line(f"TWC {event.twcid:04X}: {event.message}.")

    def _bus_stop(self, event: ev.BusStopStep, now: float) -> None:
        self.status.line(f"TWC {event.step.twcid:04X}: {event.step.message}.")

    def _resumed(self, event: ev.HeartbeatsResumed, now: float) -> None:
        self.status.line(
            f"TWC {event.twcid:04X}: heartbeats resumed after the pause, offering "
            f"{event.offer_amps:.2f}A."
        )

    def _relay_ack(self, event: ev.RelayAcknowledged, now: float) -> None:
        what = "start (FD B1)" if event.started else "stop (FD B2)"
        self.status.line(f"TWC {event.twcid:04X} acknowledged the {what} command.")

    _handlers: dict[type, Callable[[ConsoleOutput, Any, float], None]] = {
        ev.HeartbeatExchanged: _heartbeat,
        ev.BudgetDecided: _budget,
        ev.OfferChanged: _offer,
        ev.AlarmRaised: _alarm,
        ev.CarCommandWanted: _car_command,
        ev.CarsUpdated: _cars,
        ev.CarNotice: _car_notice,
        ev.BusStopStep: _bus_stop,
        ev.RelayAcknowledged: _relay_ack,
        ev.HeartbeatsResumed: _resumed,
        ev.PolicyChanged: _policy,
        ev.ChargeSessionStarted: _session_started,
        ev.ChargeSessionUpdated: _session_updated,
        ev.ChargeSessionStopped: _session_stopped,
    }
