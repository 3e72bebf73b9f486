"""Stopping protocol-2 cars from the bus, without a car API (TWCManager ``chargeStopMode`` 2, 3).

Why (protocol notes §6.7): a 0 A offer does not reliably stop a car on protocol 2. Without a
car API (or for a car that has none) the bus offers two other ways:

* **Mode 2, pause the heartbeats.** The master sends that one slave nothing for
  ``HEARTBEAT_PAUSE_S``. About 10 s without a heartbeat the slave decides it lost its master
  (link-ready again), about 30 s after the last one it stops the charge (§5.1); then its
  heartbeats resume with the offer the allocation gives it. The other slaves keep theirs.
* **Mode 3, the TWC's stop command.** ``FC B2`` opens the TWC's relay, ``FC B1`` closes it
  again (§3.5), only on firmware 4.5.3 or later; on a TWC whose firmware is unknown or older
  the car is stopped with a 0 A offer instead, and the owner is told once.

Both cut the car's power without telling it over CAN. A Tesla tolerates about three such
interruptions per plug-in session before it wants to be re-plugged (§6.7, §3.5), so at most
``MAX_STOPS_PER_SESSION`` are spent per session; after that the car is stopped with the 0 A
offer (TWCManager's behaviour without a car API), with a warning.

As with the car API (``carcommands.py``) the controller keeps such a car at its minimum until
the stop has taken effect (``SlaveReading.stop_through_car``, the offer's
``car_stop_wanted``); ``decide`` turns that into actions for the bus master. Sans-I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from twcmaster.control.carcommands import CarNotice
from twcmaster.protocol.master import CHARGING_AMPS, RELAY_COMMAND_MIN_FIRMWARE

#: TWCManager's hold. The slave stops the charge about 30 s after its last heartbeat (§5.1,
#: §6.7, "20-30 s"): 60 s leaves it twice that, so the car has stopped before they resume.
HEARTBEAT_PAUSE_S = 60.0
#: At most one stop or start command per slave this often (as TWCManager's car commands).
MIN_COMMAND_INTERVAL_S = 60.0
#: Power cuts a Tesla tolerates per plug-in session before it wants to be re-plugged (§6.7).
MAX_STOPS_PER_SESSION = 3
#: FC B1 sent without the relay reporting closed (FD B1) before we stop asking.
MAX_START_ATTEMPTS = 3
STATE_IDLE = 0  # S0 ready/idle: the car was unplugged, a new session starts (§4.2)


class ChargeStopMode(enum.IntEnum):
    CAR_API = 1
    PAUSE_HEARTBEATS = 2
    RELAY_COMMAND = 3


class BusAction(enum.Enum):
    PAUSE_HEARTBEATS = "pause heartbeats"
    STOP_RELAY = "stop command"
    START_RELAY = "start command"


@dataclass(frozen=True)
class BusStopSettings:
    mode: ChargeStopMode
    pause_s: float = HEARTBEAT_PAUSE_S
    min_interval_s: float = MIN_COMMAND_INTERVAL_S
    max_stops_per_session: int = MAX_STOPS_PER_SESSION
    max_start_attempts: int = MAX_START_ATTEMPTS


@dataclass(frozen=True)
class BusCarSeen:
    """What the bus and the controller say about one protocol-2 slave right now."""

    twcid: int
    state: int  # S0
    actual_amps: float
    offer_amps: int
    min_amps: int
    car_stop_wanted: bool  # held at its minimum only until the bus stops it
    firmware: tuple[int, int, int, int] | None
    paused: bool  # its heartbeats are paused now


@dataclass(frozen=True)
class BusStep:
    """One thing to do on the bus, and why (for the console and the log)."""

    twcid: int
    action: BusAction
    at_s: float
    until_s: float | None  # PAUSE_HEARTBEATS: when they resume
    message: str


@dataclass(frozen=True)
class BusDecision:
    steps: tuple[BusStep, ...] = ()
    notices: tuple[CarNotice, ...] = ()


@dataclass
class _Track:
    stops: int = 0  # power cuts spent in this plug-in session
    gave_up: bool = False  # cap reached: 0 A offers until the car is unplugged
    last_at_s: float | None = None  # the last pause or command
    relay_open: bool = False  # we sent FC B2 and no FD B1 came since
    start_attempts: int = 0
    told_firmware: bool = False  # the mode 3 fallback was explained


def relay_firmware_ok(firmware: tuple[int, int, int, int] | None) -> bool:
    return firmware is not None and tuple(firmware[:3]) >= RELAY_COMMAND_MIN_FIRMWARE


@dataclass
class BusStopper:
    settings: BusStopSettings
    _tracks: dict[int, _Track] = field(default_factory=dict)

    def stop_through_bus(self, twcid: int, firmware: tuple[int, int, int, int] | None) -> bool:
        """Whether the controller should keep this car at its minimum until the bus stops
        it (False: stop it with a 0 A offer)."""
        track = self._tracks.get(twcid)
        if track is not None and track.gave_up:
            return False
        relay = self.settings.mode is ChargeStopMode.RELAY_COMMAND
        return relay_firmware_ok(firmware) if relay else True

    def acknowledged(self, twcid: int, started: bool) -> None:
        """The slave answered FD B1 (``started``) or FD B2."""
        track = self._tracks.setdefault(twcid, _Track())
        track.relay_open = not started
        if started:
            track.start_attempts = 0

    def forget(self, twcid: int) -> None:
        self._tracks.pop(twcid, None)

    def decide(self, now_s: float, cars: Iterable[BusCarSeen]) -> BusDecision:
        steps: list[BusStep] = []
        notices: list[CarNotice] = []
        for car in cars:
            track = self._tracks.setdefault(car.twcid, _Track())
            outcome = self._decide_one(now_s, car, track)
            if isinstance(outcome, BusStep):
                track.last_at_s = now_s
                steps.append(outcome)
            elif outcome is not None:
                notices.append(outcome)
        return BusDecision(tuple(steps), tuple(notices))

    def _decide_one(self, now: float, car: BusCarSeen, track: _Track) -> BusStep | CarNotice | None:
        drawing = car.actual_amps >= CHARGING_AMPS
        if car.state == STATE_IDLE and not drawing and not car.paused:
            track.stops, track.gave_up = 0, False  # unplugged: a new session
        if car.paused:
            return None
        if self.settings.mode is ChargeStopMode.RELAY_COMMAND:
            return self._relay(now, car, track, drawing)
        if car.car_stop_wanted and drawing and not track.gave_up:
            return self._cut(now, car, track, BusAction.PAUSE_HEARTBEATS)
        return None

    def _may_act(self, now: float, track: _Track) -> bool:
        last = track.last_at_s
        return last is None or now - last >= self.settings.min_interval_s

    def _relay(
        self, now: float, car: BusCarSeen, track: _Track, drawing: bool
    ) -> BusStep | CarNotice | None:
        if not relay_firmware_ok(car.firmware):
            return self._explain_firmware(car, track, drawing)
        if car.car_stop_wanted and drawing and not track.gave_up:
            return self._cut(now, car, track, BusAction.STOP_RELAY)
        wants_power = car.offer_amps >= car.min_amps > 0 and not car.car_stop_wanted
        if track.relay_open and wants_power and not drawing and self._may_act(now, track):
            return self._start(now, car, track)
        return None

    def _cut(
        self, now: float, car: BusCarSeen, track: _Track, action: BusAction
    ) -> BusStep | CarNotice | None:
        cap = self.settings.max_stops_per_session
        if track.stops >= cap:
            track.gave_up = True
            return CarNotice(car.twcid, (
                f"its car was already stopped {track.stops} times this session by a "
                f"{action.value} (a Tesla tolerates about {MAX_STOPS_PER_SESSION}): stopping "
                f"it with a 0 A offer until it is unplugged"
            ))  # fmt: skip
        if not self._may_act(now, track):
            return None
        track.stops += 1
        if action is BusAction.STOP_RELAY:
            track.relay_open, track.start_attempts = True, 0
            text = "sending the stop command (FC B2) to stop its car"
            until = None
        else:
            until = now + self.settings.pause_s
            text = f"pausing its heartbeats for {self.settings.pause_s:.0f}s to stop its car"
        text += f", budget below its minimum ({track.stops} of {cap} this session)"
        return BusStep(car.twcid, action, now, until, text)

    def _start(self, now: float, car: BusCarSeen, track: _Track) -> BusStep | CarNotice:
        if track.start_attempts >= self.settings.max_start_attempts:
            track.relay_open = False  # it does not answer: leave it be
            return CarNotice(car.twcid, (
                f"no acknowledgement after {track.start_attempts} start commands (FC B1): "
                "its relay may still be open"
            ))  # fmt: skip
        track.start_attempts += 1
        text = f"sending the start command (FC B1): offered {car.offer_amps}A again"
        return BusStep(car.twcid, BusAction.START_RELAY, now, None, text)

    def _explain_firmware(self, car: BusCarSeen, track: _Track, drawing: bool) -> CarNotice | None:
        """Once per TWC, when a car must stop: why it gets a 0 A offer instead."""
        if track.told_firmware or not (drawing and car.offer_amps == 0):
            return None
        track.told_firmware = True
        known = ".".join(map(str, car.firmware)) if car.firmware else "unknown"
        need = ".".join(map(str, RELAY_COMMAND_MIN_FIRMWARE))
        return CarNotice(car.twcid, (
            f"chargeStopMode 3 needs firmware {need} or later (this TWC: {known}): "
            "stopping its car with a 0 A offer instead"
        ))  # fmt: skip
