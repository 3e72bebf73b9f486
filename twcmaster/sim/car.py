"""A car at the end of a simulated TWC's cable (sans-I/O: time is a parameter).

The car is what makes a simulated TWC report believable currents: it waits a moment before it
takes current, ramps its draw at a few amps per second, draws a little below the offer, takes
nothing below its minimum, and integrates the energy it receives. Section numbers refer to
``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from twcmaster.protocol.vin import (
    CHECK_DIGIT_INDEX,
    VIN_ALPHABET,
    vin_check_digit,
    vin_check_digit_ok,
)

# --- VINs (ISO 3779) ---------------------------------------------------------------------------

#: World manufacturer identifiers Tesla uses (Fremont, Shanghai, Berlin).
TESLA_WMIS = ("5YJ", "7SA", "LRW", "XP7")
TESLA_MODEL_LETTERS = "3SXY"
MODEL_YEAR_LETTERS = "HJKLMNPRS"  # 2017 .. 2025


def random_vin(rng: random.Random) -> str:
    """A random, valid (check digit included) Tesla-looking VIN."""
    chars = list(rng.choice(TESLA_WMIS) + rng.choice(TESLA_MODEL_LETTERS))
    chars += [rng.choice(VIN_ALPHABET) for _ in range(4)]  # body, restraints, motor
    chars += ["0", rng.choice(MODEL_YEAR_LETTERS), rng.choice("FABC")]  # check, year, plant
    chars += [str(rng.randrange(10)) for _ in range(6)]  # serial
    chars[CHECK_DIGIT_INDEX] = vin_check_digit("".join(chars))
    return "".join(chars)


# --- charging behaviour ------------------------------------------------------------------------

#: Offer -> draw calibration points from §6.1: "about 38.8 A when offered 40 A, about 4.2 A when
#: offered 5 A". The draw is the straight line through them (so 6 A gives ~5.2 A, as in §6.4).
LOW_OFFER_AMPS, LOW_DRAW_AMPS = 5.0, 4.2
HIGH_OFFER_AMPS, HIGH_DRAW_AMPS = 40.0, 38.8
DRAW_SLOPE = (HIGH_DRAW_AMPS - LOW_DRAW_AMPS) / (HIGH_OFFER_AMPS - LOW_OFFER_AMPS)

#: A car counts as charging once it draws this much; §4.2 state 08 lasts "while the car ramps
#: 0 -> 1.3 A", then the TWC reports 01.
STARTED_AMPS = 1.3
SECONDS_PER_HOUR = 3600.0
WATTS_PER_KILOWATT = 1000.0


class CarPhase(enum.Enum):
    """What the car is doing, as the TWC sees it through the pilot and the current."""

    UNPLUGGED = "unplugged"
    WAITING = "waiting"  # plugged, no usable offer: draws nothing
    STARTING = "starting"  # usable offer, waking up / ramping below STARTED_AMPS
    CHARGING = "charging"
    FULL = "full"  # reached its charge limit
    STOPPED = "stopped"  # told to stop from the car's app or API: waits for a start command
    REFUSING = "refusing"  # interrupted too often: wants to be re-plugged (§6.7, §3.5)


#: Phases in which the car draws nothing, whatever the TWC allows.
_HELD_OFF = frozenset({CarPhase.UNPLUGGED, CarPhase.REFUSING, CarPhase.FULL, CarPhase.STOPPED})


@dataclass(frozen=True, slots=True)
class CarConfig:
    """How a simulated car behaves. Defaults: a Tesla that never gets full."""

    #: Below this offer the car takes nothing. §6.1: cars need >= 5 A (P1 minimum; the car's
    #: screen allows no less), and a Tesla treats < 1 A as "do not charge".
    min_amps: float = 5.0
    #: On-board charger limit: the car never draws more, whatever the TWC allows.
    max_amps: float = 48.0
    #: Draw ramps at "about 2-3 A/s" towards the offer (brief; §4.2 state 08 "a few seconds").
    ramp_up_amps_per_s: float = 2.5
    #: Cars shed current faster than they take it; 5 A/s keeps the overshoot after a lowered
    #: offer to a second or two (a guess: no source times it).
    ramp_down_amps_per_s: float = 5.0
    #: Wake-up/negotiation time before the first amp after a usable offer (§4.2: 08 lasts a few
    #: seconds; §6.7: a stopped Tesla comes back "within about 10 s" of a non-zero offer).
    start_delay_s: float = 3.0
    #: None = never full. Otherwise the battery size that the state of charge refers to.
    battery_kwh: float | None = None
    soc_start: float = 0.5  # 0..1, only with battery_kwh
    soc_limit: float = 0.9  # the car stops at this state of charge (state 03, §4.2)
    #: Power cuts a car tolerates per plug-in before it wants to be re-plugged: "about 3 times
    #: per session" for lost heartbeats (§6.7), "after repeated stops" for FC B2 (§3.5).
    max_interruptions: int = 3
    #: Supply assumed when the TWC does not say (the slave passes its own voltage and phases).
    voltage_v: float = 230.0
    phases: int = 1


def draw_for_offer(offer_amps: float, config: CarConfig) -> float:
    """Steady-state draw for an offer: a little below it (§6.1), 0 below the car's minimum."""
    if offer_amps < config.min_amps:
        return 0.0
    draw = LOW_DRAW_AMPS + (offer_amps - LOW_OFFER_AMPS) * DRAW_SLOPE
    return max(0.0, min(draw, config.max_amps))


class SimulatedCar:
    """A car plugged into (or parked at) a simulated TWC.

    ``vin`` is None for a car that gives no VIN (non-Tesla, or CAN off): the TWC's VIN replies
    are then all zero (§1.1, §3.4). Call ``step`` with the current the TWC allowed since the
    previous call; it returns the draw now.
    """

    def __init__(
        self,
        config: CarConfig | None = None,
        *,
        vin: str | None = None,
        tesla: bool = True,
        plugged: bool = True,
        seed: int | None = None,
    ) -> None:
        self.config = config or CarConfig()
        rng = random.Random(seed)
        if vin is not None and not vin_check_digit_ok(vin):
            raise ValueError(f"VIN {vin!r} has a wrong check digit")
        self.vin: str | None = (vin or random_vin(rng)) if tesla else None
        self.energy_kwh = 0.0  # delivered to this car since it was created
        self.soc = self.config.soc_start if self.config.battery_kwh else None
        self._plugged = plugged
        self._draw_amps = 0.0
        self._last_s: float | None = None
        self._ready_at_s: float | None = None  # when the current offer may first be drawn
        self._started = False  # reached STARTED_AMPS under the current offer
        self._full = False
        self._interruptions = 0
        self._charge_enabled = True  # False after a stop from the app/API, until a start
        self._idle_since_s: float | None = None  # since when it has drawn nothing

    # --- plug ---------------------------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        return self._plugged

    def plug(self, now_s: float) -> None:
        """Plug the cable in: a fresh session (interruption count and refusal cleared)."""
        self._plugged = True
        self._last_s = now_s
        self._interruptions = 0
        self._charge_enabled = True  # a Tesla starts on plug-in, whatever it was told before
        self._reset_session()

    def unplug(self, now_s: float) -> None:
        self._plugged = False
        self._last_s = now_s
        self._reset_session()

    def _reset_session(self) -> None:
        self._draw_amps = 0.0
        self._ready_at_s = None
        self._started = False

    # --- state --------------------------------------------------------------------------------

    @property
    def actual_amps(self) -> float:
        return self._draw_amps

    @property
    def full(self) -> bool:
        return self._full

    @property
    def interruptions(self) -> int:
        return self._interruptions

    @property
    def phase(self) -> CarPhase:
        if not self._plugged:
            return CarPhase.UNPLUGGED
        if self._interruptions > self.config.max_interruptions:
            return CarPhase.REFUSING
        if self._full:
            return CarPhase.FULL
        if not self._charge_enabled:
            return CarPhase.STOPPED
        if self._ready_at_s is None:
            return CarPhase.WAITING
        return CarPhase.CHARGING if self._started else CarPhase.STARTING

    def interrupt(self) -> None:
        """The TWC cut the power under the car (relay opened, heartbeats lost, P2 0 A). After
        ``max_interruptions`` of those in one session the car refuses to charge (§6.7)."""
        if self.phase in (CarPhase.STARTING, CarPhase.CHARGING):
            self._interruptions += 1

    @property
    def charge_enabled(self) -> bool:
        """False after ``charge_stop`` until ``charge_start`` or a new plug-in."""
        return self._charge_enabled

    def charge_stop(self) -> None:
        """The car stops charging on its own (app or API): a clean stop, not an interruption.
        It ramps down and then waits, whatever the TWC offers, for ``charge_start`` (§6.7)."""
        self._charge_enabled = False

    def charge_start(self) -> None:
        """The car takes current again as soon as the TWC offers enough."""
        self._charge_enabled = True

    def idle_s(self, now_s: float) -> float:
        """How long it has drawn nothing (0 while drawing; a car asleep needs a wake-up)."""
        if self._idle_since_s is None:
            return 0.0
        return max(0.0, now_s - self._idle_since_s)

    # --- time ---------------------------------------------------------------------------------

    def step(
        self,
        now_s: float,
        allowed_amps: float,
        *,
        voltage_v: float | None = None,
        phases: int | None = None,
    ) -> float:
        """Advance to ``now_s``; ``allowed_amps`` is what the TWC allowed since the last call."""
        # max() and min() written out: the car steps several times a second
        last_s = now_s if self._last_s is None else self._last_s
        self._last_s = last_s if last_s > now_s else now_s
        duration_s = now_s - last_s
        if not duration_s > 0.0:
            duration_s = 0.0
        target = self._target_amps(allowed_amps, last_s)
        amp_seconds = 0.0
        ready_at_s = self._ready_at_s
        if ready_at_s is not None and last_s < ready_at_s:
            waiting_s = ready_at_s - last_s
            if not waiting_s < duration_s:
                waiting_s = duration_s
            amp_seconds += self._ramp(waiting_s, 0.0)  # still waking up
            duration_s -= waiting_s
        if duration_s > 0.0:  # (_ramp of nothing: 0 amp-seconds)
            amp_seconds += self._ramp(duration_s, target)
        if self._draw_amps >= STARTED_AMPS and self._ready_at_s is not None:
            self._started = True
        if self._draw_amps > 0.0:
            self._idle_since_s = None
        elif self._idle_since_s is None:
            self._idle_since_s = now_s
        self._add_energy(amp_seconds, voltage_v, phases)
        return self._draw_amps

    def _target_amps(self, allowed_amps: float, since_s: float) -> float:
        if self.phase in _HELD_OFF:
            self._ready_at_s = None
            if not self._plugged:
                self._draw_amps = 0.0
            return 0.0
        target = draw_for_offer(allowed_amps, self.config)
        if target <= 0.0:
            self._ready_at_s = None
            self._started = False
        elif self._ready_at_s is None:
            self._ready_at_s = since_s + self.config.start_delay_s
        return target

    def _ramp(self, duration_s: float, target: float) -> float:
        """Move the draw towards ``target`` for ``duration_s``; return the amp-seconds drawn."""
        if duration_s <= 0.0:
            return 0.0
        start = self._draw_amps
        rising = target > start
        rate = self.config.ramp_up_amps_per_s if rising else self.config.ramp_down_amps_per_s
        reach_s = abs(target - start) / rate
        if reach_s >= duration_s:
            end = start + (rate if rising else -rate) * duration_s
            self._draw_amps = end
            return (start + end) / 2 * duration_s
        self._draw_amps = target
        return (start + target) / 2 * reach_s + target * (duration_s - reach_s)

    def _add_energy(self, amp_seconds: float, voltage_v: float | None, phases: int | None) -> None:
        volts = self.config.voltage_v if voltage_v is None else voltage_v
        lines = self.config.phases if phases is None else phases
        kwh = amp_seconds * volts * lines / SECONDS_PER_HOUR / WATTS_PER_KILOWATT
        self.energy_kwh += kwh
        if self.soc is None or self.config.battery_kwh is None:
            return
        self.soc = min(1.0, self.soc + kwh / self.config.battery_kwh)
        if self.soc >= self.config.soc_limit:
            self._full = True
