"""A simulated car API (the Tesla cloud or BLE as the daemon sees it), in virtual time.

``request`` takes a ``CarCommand`` from the core and the car acts on it after a delay: the
round trip and the car's reaction (``command_delay_s``), plus a wake-up when the car has drawn
nothing for long enough to be asleep. Assumptions, not measurements: a charging or recently
stopped Tesla answers within seconds; an idle one falls asleep after about 15 minutes and a
wake-up takes about half a minute (TWCManager waits for "online" after ``wake_up``).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from twcmaster.control.carcommands import CarAction, CarCommand
from twcmaster.sim.slave import SimulatedSlave


@dataclass(frozen=True)
class CarApiSettings:
    command_delay_s: float = 5.0  # request to the car acting on it
    asleep_after_idle_s: float = 900.0  # a car that drew nothing this long is asleep
    wake_s: float = 30.0  # extra delay to wake a sleeping car
    online: bool = True  # False: every request fails (API down, car out of reach)


class SimulatedCarApi:
    """Applies start/stop requests to the cars of simulated slaves."""

    def __init__(self, slaves: list[SimulatedSlave], settings: CarApiSettings | None = None):
        self.settings = settings or CarApiSettings()
        self._slaves = list(slaves)
        self._due: list[tuple[float, int, CarCommand]] = []
        self._order = itertools.count()
        self.requests: list[CarCommand] = []
        self.applied = 0

    def request(self, command: CarCommand) -> None:
        self.requests.append(command)
        slave = self._slave_for(command)
        if slave is None or not self.settings.online:
            return
        delay_s = self.settings.command_delay_s
        if slave.car.idle_s(command.at_s) >= self.settings.asleep_after_idle_s:
            delay_s += self.settings.wake_s
        heapq.heappush(self._due, (command.at_s + delay_s, next(self._order), command))

    def next_due_s(self) -> float | None:
        return self._due[0][0] if self._due else None

    def apply_due(self, now_s: float) -> None:
        """Let the cars act on every request due by ``now_s``, each at its own time."""
        while self._due and self._due[0][0] <= now_s:
            at_s, _, command = heapq.heappop(self._due)
            slave = self._slave_for(command)
            if slave is None:
                continue
            slave.advance(at_s)  # the car has been drawing under the old state until then
            if command.action is CarAction.STOP:
                slave.car.charge_stop()
            else:
                slave.car.charge_start()
            self.applied += 1

    def _slave_for(self, command: CarCommand) -> SimulatedSlave | None:
        """The TWC the command's car is plugged into: by VIN when given (as a real API would
        address the car), else by the TWC."""
        if command.vin is not None:
            for slave in self._slaves:
                if slave.car is not None and slave.car.vin == command.vin:
                    return slave
            return None
        return next((slave for slave in self._slaves if slave.twcid == command.twcid), None)
