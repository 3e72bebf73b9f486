"""Starting and stopping cars through the car (Tesla API), for slaves a 0 A offer cannot stop.

Why (protocol notes §6.7): on protocol 1 a 0 A offer stops a Tesla cleanly and a non-zero offer
brings it back. On protocol 2 nothing on the bus stops a car reliably: ``09 00 00`` is "not
reliable" (a car may keep drawing its minimum, or take it as a power cut, and a Tesla wants to
be re-plugged after about three cuts). TWCManager's default (``chargeStopMode`` 1) asks the car
instead. So do we, when a car API is configured:

* **Stop.** The controller keeps such a car at its minimum (within the wiring) instead of
  cutting it (``SlaveReading.stop_through_car``) and marks the offer ``car_stop_wanted``. We
  ask the car to stop; once it has stopped drawing, the controller offers 0 A, which the slave
  then applies to a car that draws nothing (no power cut). If the car still draws after
  ``max_stop_attempts`` requests, we give up on the car for this stop and fall back to the
  0 A offer (TWCManager's behaviour without a car API), with a warning.
* **Start.** A car *we* stopped that draws nothing while offered at least its minimum is asked
  to start. Cars that stopped on their own (full, scheduled, stopped by their owner) are left
  alone: we only undo our own stops, so no command is spent on a car that does not want it.
  The car module may hold a start for a while (the Tesla module waits ``wakeDelayS``, 180 s,
  for an asleep car: the offer itself may wake it), so the ``max_start_attempts`` that lead
  to giving up count only from when the module could first act (``start_delay_s``, from its
  view): otherwise, one request a minute, we would give up the very second it sends the start.
* **Rate.** At most one request per slave per ``min_interval_s`` (TWCManager: one a minute;
  the Tesla API charges per command).

Sans-I/O: ``decide`` is given the time and what the bus shows and returns the requests; the
caller hands them to whatever talks to the cars.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from twcmaster.protocol.master import CHARGING_AMPS  # a car drawing less does not charge
from twcmaster.quickinit import quick_init


class CarAction(enum.Enum):
    START = "start"
    STOP = "stop"


@dataclass(frozen=True)
class CarCommand:
    """One request for the car on a TWC."""

    twcid: int
    vin: str | None  # the car's VIN when the TWC told us (commands go to that car only)
    action: CarAction
    at_s: float  # monotonic time of the request
    reason: str


@dataclass(frozen=True)
class CarCommandSettings:
    min_interval_s: float = 60.0  # between two requests for the same TWC (TWCManager: 60 s)
    max_stop_attempts: int = 3  # stop requests without effect before falling back to 0 A
    max_start_attempts: int = 3  # start requests without effect before leaving the car be
    start_after_s: float = 10.0  # offered enough this long without drawing before a start


@quick_init
@dataclass(frozen=True)
class CarSeen:
    """What the bus and the controller say about one slave's car right now."""

    twcid: int
    vin: str | None
    state: int  # S0
    actual_amps: float
    offer_amps: int
    min_amps: int
    car_stop_wanted: bool  # the controller keeps it at its minimum only until the car stops


@dataclass(frozen=True)
class CarNotice:
    """Something the commander gave up on, for the owner (a warning)."""

    twcid: int
    message: str


@dataclass(frozen=True)
class CarDecision:
    """What one ``CarCommander.decide`` call wants done and has to say."""

    commands: tuple[CarCommand, ...] = ()
    notices: tuple[CarNotice, ...] = ()


@dataclass
class _CarTrack:
    stopped_by_us: bool = False
    stop_attempts: int = 0  # stop requests sent for the current stop
    start_attempts: int = 0  # start requests sent since the car last drew
    gave_up: bool = False  # the car ignored our stops: the controller may offer 0 A
    offered_since_s: float | None = None  # offered >= its minimum without drawing, since
    drawing: bool = False  # at the previous call
    vin: str | None = None  # the car's last known VIN (the TWC forgets it when it stops)
    last_command: CarCommand | None = None
    first_start_s: float | None = None  # the first start request since the car last drew


@dataclass
class CarCommander:
    settings: CarCommandSettings = field(default_factory=CarCommandSettings)
    _tracks: dict[int, _CarTrack] = field(default_factory=dict)
    _start_delay_s: float = 0.0  # the car module's, at the latest ``decide``

    def stop_through_car(self, twcid: int) -> bool:
        """Whether the controller should keep this slave's car at its minimum until it stops."""
        track = self._tracks.get(twcid)
        return track is None or not track.gave_up

    def last_command(self, twcid: int) -> CarCommand | None:
        track = self._tracks.get(twcid)
        return track.last_command if track is not None else None

    def forget(self, twcid: int) -> None:
        self._tracks.pop(twcid, None)

    def decide(
        self, now_s: float, cars: Iterable[CarSeen], *, start_delay_s: float = 0.0
    ) -> CarDecision:
        """``start_delay_s``: how long the car module may hold a start before acting."""
        self._start_delay_s = start_delay_s
        commands, notices = [], []
        for car in cars:
            track = self._tracks.get(car.twcid)
            if track is None:  # (not setdefault: that would build a _CarTrack every time)
                track = self._tracks[car.twcid] = _CarTrack()
            drawing = self._observe(now_s, car, track)
            outcome = self._request(now_s, car, track, drawing)
            if isinstance(outcome, CarCommand):
                track.last_command = outcome
                commands.append(outcome)
            elif outcome is not None:
                notices.append(outcome)
        return CarDecision(tuple(commands), tuple(notices))

    def _observe(self, now: float, car: CarSeen, track: _CarTrack) -> bool:
        """Update what we know of the car; returns whether it draws current."""
        drawing = car.actual_amps >= CHARGING_AMPS
        if car.state == 0 and not drawing:  # idle: unplugged, or nothing to undo
            track.stopped_by_us = track.gave_up = False
            track.stop_attempts = 0
            track.vin = None
        if car.vin is not None:
            track.vin = car.vin
        if not car.car_stop_wanted:
            track.stop_attempts = 0
            if not (car.offer_amps == 0 and drawing):  # still falling back to 0 A
                track.gave_up = False
        if drawing:
            track.offered_since_s = None
            if not track.drawing and not car.car_stop_wanted:
                # It started again. (Not merely "draws": a stop may still be on its way
                # while the budget has come back; the car then stops and is ours to start.)
                track.stopped_by_us = False
            track.start_attempts = 0
            track.first_start_s = None
        elif car.offer_amps >= car.min_amps > 0 and not car.car_stop_wanted:
            if track.offered_since_s is None:
                track.offered_since_s = now
        else:
            track.offered_since_s = None
        track.drawing = drawing
        return drawing

    def _request(
        self, now: float, car: CarSeen, track: _CarTrack, drawing: bool
    ) -> CarCommand | CarNotice | None:
        last = track.last_command
        may_ask = last is None or now - last.at_s >= self.settings.min_interval_s
        if car.car_stop_wanted and drawing and not track.gave_up:
            return self._stop(now, car, track) if may_ask else None
        if (
            track.stopped_by_us
            and not drawing
            and car.state != 2
            and track.offered_since_s is not None
            and now - track.offered_since_s >= self.settings.start_after_s
            and may_ask
        ):
            return self._start(now, car, track)
        return None

    def _stop(self, now: float, car: CarSeen, track: _CarTrack) -> CarCommand | CarNotice:
        if track.stop_attempts >= self.settings.max_stop_attempts:
            track.gave_up = True
            return CarNotice(car.twcid, (
                f"the car still draws {car.actual_amps:.1f}A after {track.stop_attempts} "
                "stop requests through its API: offering 0 A instead"
            ))  # fmt: skip
        track.stop_attempts += 1
        track.stopped_by_us = True
        return CarCommand(car.twcid, track.vin, CarAction.STOP, now, "budget below its minimum")

    def _start(self, now: float, car: CarSeen, track: _CarTrack) -> CarCommand | CarNotice:
        if track.start_attempts >= self.settings.max_start_attempts:
            track.stopped_by_us = False  # it will not start: leave it to its owner
            return CarNotice(car.twcid, (
                f"the car did not start after {track.start_attempts} start requests "
                "through its API: leaving it to its owner"
            ))  # fmt: skip
        if track.first_start_s is None:
            track.first_start_s = now
        if now >= track.first_start_s + self._start_delay_s:
            track.start_attempts += 1  # the module could act on it: it counts
        return CarCommand(
            car.twcid, track.vin, CarAction.START, now, f"offered {car.offer_amps}A again"
        )
