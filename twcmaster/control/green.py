"""Green energy: how many amps the chargers may use from the solar surplus (pure maths).

``green_budget`` turns one site reading (``SiteReading``, from the energy sources) and a view
of the chargers (``ChargerView``) into a ``GreenBudget``: the surplus in amps, the budget for
the controller and the figures of TWCManager's console lines (``outputs.console.green_lines``
prints them). ``DrawCompensator`` is the one piece with memory: it closes the loop on what the
cars actually draw (below). The policy engine (``policy.py``) owns the state, the anti-flap
rules and the fail-safe; nothing here reads a clock or does I/O.

Surplus (TWCManager's ``getMaxAmpsToDivideGreenEnergy`` / ``getGenerationOffset`` semantics)::

    house_w   = consumption_w - (charger load if subtractChargerLoad)
                (not below 0 unless treatGenerationAsGridDelivery)
    taken_w   = house_w + greenEnergyAmpsOffset (A) + consumptionOffset entries (A or W)
    surplus_w = generation_w - taken_w            (generation_w below 0 counts as 0)
    amps      = watts / (volts x numberOfPhases)

* ``subtractChargerLoad``: the meter's consumption includes the chargers, so their load comes
  off (else a charging car would eat its own surplus: TWCManager #644).
* ``treatGenerationAsGridDelivery``: the "generation" value is export to the grid, i.e. what is
  left after the house *and* the chargers. Then ``house_w`` may go negative: the chargers' load
  is added back. It is only meaningful together with ``subtractChargerLoad`` (as in
  TWCManager; config.py warns when it is set alone).
* volts: the TWCs' measured voltage when known, else the meter's, else ``defaultVoltage``.

The console lines, as TWCManager prints them (``docs``' example, our seed; the console builds
them from the ``GreenBudget``'s figures)::

    Green energy generates 4956W, Consumption 726W, Charger Load 0W
    Limiting car charging to 20.65A - 3.03A = 17.62A.
    Charge when above 6A (minAmpsPerTWC).

The first line has the meter's watts as read and the chargers' load (their draw x volts x
phases). In the second, the first figure is the **generation in amps** (4956 W / 240 V =
20.65 A; a negative offset or a charger load added back counts here) and the second is the
**consumption in amps**: everything taken off the generation: the house (less the chargers
with ``subtractChargerLoad``) plus the offsets (726 W / 240 V = 3.025 A). Each figure is
rounded to whole centiamps, half up, and the result is their difference: 20.65 - 3.03 =
17.62 A. (Plain float formatting would print 3.02 for 3.025, and 17.625 = 17.62 or 17.63; the
seed's numbers only add up this way, and so a reader can check the sum.) The surplus and the
budget use the same centiamps.

Closing the loop on the draw
----------------------------
Cars draw 1-2 A below what they are offered (protocol notes §6.1: 38.8 A for 40 A), and the
controller offers whole amps. With ``budget = surplus`` the cars would leave 1-2 A of surplus
unused (7-14 % at 14 A). TWCManager compensates by adding the surplus still measured to the
current offer; we do the same with an explicit, damped and bounded integrator
(``DrawCompensator``)::

    budget = surplus + compensation
    compensation += (surplus - draw) x min(dt, 5 s) / COMPENSATION_TIME_CONSTANT_S

so in steady state ``draw ~= surplus``, whatever the car's gap is. Why it does not oscillate:

* The surplus is fed forward: a cloud moves the budget at once; the integrator only learns the
  car's gap (a slowly changing property), with a 10 s time constant, well above the 2-5 s dead
  time between an offer and the draw it causes (heartbeat, car ramp of 2-3 A/s). An integral
  loop with gain dt/tau = 0.2 per 2 s step and such a dead time is well damped (no overshoot
  in the closed-loop tests).
* Dead band: the controller offers whole amps, so the draw moves in ~1 A steps; an integrator
  chasing an error smaller than a step would hop between two offers forever (a limit cycle).
  It rests while the draw is between 0.75 A below and 0.25 A above the surplus: a 1 A wide
  band always holds one step, and it leans towards not importing. (The policy adds a raise
  hysteresis of a whole amp on top, so a surplus hovering at an amp boundary does not toggle
  the offer.)
* It learns only while the cars follow their offers (0 <= offer - draw <= 2 A per car, and
  offers not above the last budget): not while a car ramps up or down after a change, not
  while a car takes less than offered for its own reasons (charge limit, on-board charger
  maximum), and not during the controller's spike or stop hold, so it cannot wind up.
* It is bounded to [0, 2 A per charging car] (the gap §6.1 describes) and may only rise while
  the budget is below the wiring limit (anti-windup when the surplus exceeds the circuit).
* The draw it compares with comes from the TWCs (every second), not from the meter, so meter
  lag does not enter this loop. With ``subtractChargerLoad`` the charger load taken off the
  meter's consumption is the one at the meter's time (the policy keeps a short history).

The budget is never above ``wiringMaxAmpsAllTWCs``, never negative, never NaN.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from twcmaster.numbers import finite_number, finite_or, non_negative, whole_count
from twcmaster.quickinit import quick_init

__all__ = [
    "NO_CHARGERS",
    "ChargerView",
    "ConsumptionOffset",
    "DrawCompensator",
    "GreenBudget",
    "GreenSettings",
    "SiteReading",
    "green_budget",
    "reading_problem",
]

# --- sanity bounds --------------------------------------------------------------------------
MIN_PLAUSIBLE_VOLTS = 50.0  # V; a measured voltage outside [50, 500] is ignored
MAX_PLAUSIBLE_VOLTS = 500.0
MAX_PLAUSIBLE_W = 100e6  # W; a site reading above 100 MW is broken, not sunny (fail safe)
MAX_CHARGER_AMPS = 4 * 655.35  # A; four slaves at the most a u16 centiamp field can say

# --- draw compensation (see the module docstring) ------------------------------------------
COMPENSATION_TIME_CONSTANT_S = 10.0  # s; integrator time constant
# s; the same when the cars draw more than the surplus: an import is corrected faster than
# unused surplus is taken up (on the measured shower day: grid share 2.8 % -> see issue 12).
COMPENSATION_IMPORT_TIME_CONSTANT_S = 3.0
COMPENSATION_MAX_STEP_S = 5.0  # s; a longer gap between calls integrates as 5 s
COMPENSATION_MAX_GAP_AMPS = 2.0  # A per charging car; "1-2 A below the offer" (§6.1)
COMPENSATION_DEADBAND_IMPORT_AMPS = 0.25  # A; draw this far above the surplus is tolerated
COMPENSATION_DEADBAND_UNUSED_AMPS = 0.75  # A; and this far below it
# The two bands add up to the controller's 1 A offer step.


@quick_init
@dataclass(frozen=True)
class SiteReading:
    """The site's energy as the policy sees it, from every enabled source combined (the
    sources runner's ``combined``, the simulator's sky)."""

    generation_w: float  # summed PV output of the fresh sources (>= 0)
    consumption_w: float  # summed house load of the fresh sources (>= 0)
    grid_w: float | None  # + import / - export; None when no fresh source measures it
    voltage_v: float | None  # the first fresh source that measures it
    at_s: float  # oldest contributing reading's time (now_s when none contributes)
    stale: bool  # True when any enabled source has no reading younger than its maxAge
    reason: str  # "" or why it is stale, per source, "; "-separated
    sources: tuple[str, ...]  # the sources that contributed
    # Whether a fresh source measured the house's consumption. Green tracking works without it
    # (generation alone, as TWCManager); the grid cap does not: a house taken as 0 W would
    # let the site import far more than the cap.
    house_measured: bool = True


@quick_init
@dataclass(frozen=True)
class ChargerView:
    """What the chargers do now (the daemon fills it from the bus)."""

    actual_amps: float  # sum of the amps the cars draw
    offered_amps: float  # sum of the current offers
    charging_cars: int
    voltage_v: float | None = None  # measured TWC voltage when known (per phase)
    cars_wanting: int = 0  # plugged cars that charge or ask for current (charging included)
    #: The most the charging cars could draw together (their TWCs' caps, or a car's own lower
    #: limit); None: unknown, then one more car is admitted per floor the budget adds.
    capacity_amps: float | None = None


NO_CHARGERS = ChargerView(0.0, 0.0, 0, None)


@dataclass(frozen=True)
class ConsumptionOffset:
    """A load the meter does not see (positive) or a source it does not see (negative)."""

    name: str
    value: float
    unit: str  # "A" or "W"


@dataclass(frozen=True)
class GreenSettings:
    wiring_max_amps_all_twcs: float
    min_amps_per_twc: float = 12.0  # only shown in the console line
    default_voltage_v: float = 240.0
    number_of_phases: int = 1
    subtract_charger_load: bool = False
    treat_generation_as_grid_delivery: bool = False
    amps_offset: float = 0.0  # greenEnergyAmpsOffset (A; positive = more consumption)
    consumption_offsets: tuple[ConsumptionOffset, ...] = ()
    start_margin_amps: float = 0.0  # greenEnergyStartMarginAmps; only shown in the console line


@quick_init
@dataclass(frozen=True)
class GreenBudget:
    """One green-energy computation. Amps are multiples of 0.01 A (but ``compensation_amps``)."""

    amps: float  # budget for the controller: surplus + compensation, in [0, wiring]
    surplus_amps: float  # what the cars should draw: the surplus, in [0, wiring]
    generation_amps: float  # first figure of the console's second line
    consumption_amps: float  # second figure
    compensation_amps: float  # added for the cars' draw below their offers
    generation_w: float  # as the meter said (after sanitising)
    consumption_w: float
    charger_load_w: float  # the chargers' draw in watts (volts x phases x amps)
    surplus_w: float  # generation - consumption taken, in watts (may be negative)
    voltage_v: float
    voltage_source: str  # "TWC", "meter" or "defaultVoltage"
    # The console's figures, exact (outputs/console.py prints them): the second line's
    # generation and consumption in whole centiamps, rounded half up, and their difference.
    generation_centiamps: int = 0
    consumption_centiamps: int = 0
    surplus_centiamps: int = 0
    floor_amps: float = 0.0  # minAmpsPerTWC as the policy applies it (the third line)
    start_margin_amps: float = 0.0  # greenEnergyStartMarginAmps (the third line)


def reading_problem(site: SiteReading | None) -> str | None:
    """Why ``site`` cannot be used for green tracking, or None when it can."""
    if site is None:
        return "no energy reading yet"
    if getattr(site, "stale", True):
        reason = str(getattr(site, "reason", "") or "").strip()
        return f"energy reading is stale ({reason})" if reason else "energy reading is stale"
    for name in ("generation_w", "consumption_w"):
        value = finite_number(getattr(site, name, None))
        if value is None:
            return f"energy reading has no usable {name} ({getattr(site, name, None)!r})"
        if abs(value) > MAX_PLAUSIBLE_W:
            return f"energy reading {name} {value:.4g} W is not plausible"
    return None


def green_budget(
    site: SiteReading,
    chargers: ChargerView | None,
    settings: GreenSettings,
    *,
    compensation_amps: float = 0.0,
    charger_load_amps: float | None = None,
) -> GreenBudget:
    """The green budget for one reading; see the module docstring.

    ``compensation_amps`` comes from a ``DrawCompensator``; ``charger_load_amps`` is the
    chargers' draw to take off the meter's consumption with ``subtractChargerLoad`` (default:
    ``chargers.actual_amps``; the policy passes the draw at the meter's time). A reading that
    ``reading_problem`` rejects gives a zero budget (the policy applies the safe value).
    """
    chargers = chargers or NO_CHARGERS
    wiring = max(finite_or(settings.wiring_max_amps_all_twcs, 0.0), 0.0)
    phases = max(int(settings.number_of_phases), 1)
    volts, volts_from = _volts(chargers, site, settings)
    watts_per_amp = volts * phases
    charger_load_w, shown_load_w = _chargers_w(chargers, charger_load_amps, watts_per_amp)

    problem = reading_problem(site)
    if problem is not None:
        return GreenBudget(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, shown_load_w, 0.0, volts, volts_from)

    generation_w = max(float(site.generation_w), 0.0)
    consumption_w = max(float(site.consumption_w), 0.0)
    taken_w = _taken_w(consumption_w, charger_load_w, settings, watts_per_amp)
    surplus_w = generation_w - taken_w
    generation_ca, consumption_ca = _console_centiamps(generation_w, taken_w, watts_per_amp)
    surplus_ca = generation_ca - consumption_ca
    wiring_ca = math.floor(wiring * 100 + 1e-9)
    surplus_amps = min(max(surplus_ca, 0), wiring_ca) / 100

    compensation = finite_or(compensation_amps, 0.0)
    amps = surplus_amps + compensation if surplus_amps > 0 else 0.0
    amps = min(max(amps, 0.0), wiring_ca / 100)

    return GreenBudget(
        amps=amps,
        surplus_amps=surplus_amps,
        generation_amps=generation_ca / 100,
        consumption_amps=consumption_ca / 100,
        compensation_amps=amps - surplus_amps if surplus_amps > 0 else 0.0,
        generation_w=generation_w,
        consumption_w=consumption_w,
        charger_load_w=shown_load_w,
        surplus_w=surplus_w,
        voltage_v=volts,
        voltage_source=volts_from,
        generation_centiamps=generation_ca,
        consumption_centiamps=consumption_ca,
        surplus_centiamps=surplus_ca,
        floor_amps=finite_or(settings.min_amps_per_twc, 0.0),
        start_margin_amps=non_negative(settings.start_margin_amps),
    )


class DrawCompensator:
    """The integrator that makes the cars' draw, not their offers, meet the surplus.

    Call ``update`` once per decision, before ``green_budget``, with the surplus the budget
    was last aimed at and the chargers now; pass ``may_learn=False`` while the budget is not
    tracking the surplus (held at the floor, stopped, fail-safe). See the module docstring.
    """

    def __init__(self, wiring_amps: float = math.inf) -> None:
        self.amps = 0.0
        self._last_s: float | None = None
        self._wiring_amps = wiring_amps  # a last budget this high is saturated (anti-windup)

    def reset(self) -> None:
        self.amps = 0.0
        self._last_s = None

    def update(
        self,
        now_s: float,
        surplus_amps: float,
        chargers: ChargerView | None,
        *,
        may_learn: bool,
        budget_amps: float | None = None,
    ) -> float:
        """Advance to ``now_s``; return the compensation (A) to add to the surplus.

        ``budget_amps``: the last budget. While the offers are above it (the controller's
        spike or stop hold) the draw says nothing about the car's gap; while it sits at the
        wiring limit (``wiring_amps``) the compensation may only fall (anti-windup).
        """
        chargers = chargers or NO_CHARGERS
        now = finite_number(now_s)
        if now is None:
            return self.amps
        dt = (
            0.0
            if self._last_s is None
            else min(max(now - self._last_s, 0.0), COMPENSATION_MAX_STEP_S)
        )
        self._last_s = now
        cars = whole_count(chargers.charging_cars)
        limit = COMPENSATION_MAX_GAP_AMPS * max(cars, 1)
        actual = non_negative(chargers.actual_amps)
        offered = non_negative(chargers.offered_amps)
        gap = offered - actual
        surplus = finite_or(surplus_amps, 0.0)
        following = cars > 0 and 0.0 <= gap <= limit
        if budget_amps is not None and offered > finite_or(budget_amps, math.inf) + 1e-6:
            following = False
        saturated = budget_amps is not None and budget_amps >= self._wiring_amps
        if may_learn and following and dt > 0:
            error = surplus - actual  # > 0: surplus left unused; < 0: importing
            if error > COMPENSATION_DEADBAND_UNUSED_AMPS and not saturated:
                self.amps += error * dt / COMPENSATION_TIME_CONSTANT_S
            elif error < -COMPENSATION_DEADBAND_IMPORT_AMPS:
                self.amps += error * min(dt / COMPENSATION_IMPORT_TIME_CONSTANT_S, 1.0)
        self.amps = min(max(self.amps, 0.0), limit)
        return self.amps


# ------------------------------------------------------------------------------- helpers


def _volts(
    chargers: ChargerView, site: SiteReading | None, settings: GreenSettings
) -> tuple[float, str]:
    for value, source in (
        (chargers.voltage_v, "TWC"),
        (getattr(site, "voltage_v", None), "meter"),
    ):
        volts = finite_number(value)
        if volts is not None and MIN_PLAUSIBLE_VOLTS <= volts <= MAX_PLAUSIBLE_VOLTS:
            return volts, source
    default = finite_number(settings.default_voltage_v)
    if default is None or not MIN_PLAUSIBLE_VOLTS <= default <= MAX_PLAUSIBLE_VOLTS:
        default = 240.0
    return default, "defaultVoltage"


def _chargers_w(
    chargers: ChargerView, load_amps: float | None, watts_per_amp: float
) -> tuple[float, float]:
    """The chargers' load to take off the meter's consumption (``load_amps``, the draw when
    the meter measured; default: now) and the one the console shows (now), in watts."""
    actual = min(non_negative(chargers.actual_amps), MAX_CHARGER_AMPS)
    load = min(non_negative(actual if load_amps is None else load_amps), MAX_CHARGER_AMPS)
    return load * watts_per_amp, actual * watts_per_amp


def _taken_w(
    consumption_w: float, charger_load_w: float, settings: GreenSettings, watts_per_amp: float
) -> float:
    """Everything taken off the generation: the house (less the chargers with
    subtractChargerLoad; below 0 only with treatGenerationAsGridDelivery) and the offsets."""
    house_w = consumption_w
    if settings.subtract_charger_load:
        house_w -= charger_load_w
    if house_w < 0 and not settings.treat_generation_as_grid_delivery:
        house_w = 0.0
    return house_w + _offsets_w(settings, watts_per_amp)


def _console_centiamps(
    generation_w: float, taken_w: float, watts_per_amp: float
) -> tuple[int, int]:
    """The console's generation and consumption figures in whole centiamps. A negative
    "consumption" (a negative offset, chargers' load added back) is shown as generation, as
    TWCManager's getGeneration does, so both figures stay >= 0."""
    generation_ca = _centiamps((generation_w + max(-taken_w, 0.0)) / watts_per_amp)
    consumption_ca = _centiamps(max(taken_w, 0.0) / watts_per_amp)
    return generation_ca, consumption_ca


def _offsets_w(settings: GreenSettings, watts_per_amp: float) -> float:
    total = finite_or(settings.amps_offset, 0.0) * watts_per_amp
    for offset in settings.consumption_offsets:
        value = finite_or(offset.value, 0.0)
        total += value if offset.unit == "W" else value * watts_per_amp
    return total


@functools.lru_cache(maxsize=1024)  # a reading holds for many decisions; Decimal is slow
def _centiamps(amps: float) -> int:
    """Whole centiamps, half up, from the shortest decimal form (3.025 -> 303, as printed)."""
    return int(Decimal(repr(amps)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)


# --- the chargers' recent draw (subtractChargerLoad) ---------------------------------------
LOAD_HISTORY_S = 900.0  # s; chargers' draw kept to match a lagging meter (subtractChargerLoad)


class LoadHistory:
    """The chargers' draw over the last ``LOAD_HISTORY_S``, to take off a meter's consumption
    as it was when the meter measured (``subtractChargerLoad``; see ``tracking.py``'s
    ``_load_at`` for why today's draw would feed a car's own ramp back into its budget)."""

    def __init__(self) -> None:
        self._loads: deque[tuple[float, float]] = deque()  # (now_s, amps drawn)

    def remember(self, now: float, chargers: ChargerView) -> None:
        loads = self._loads
        if loads and loads[-1][0] > now:
            loads.clear()  # time went backwards: the history no longer lines up
        loads.append((now, non_negative(chargers.actual_amps)))
        while len(loads) > 2 and loads[1][0] <= now - LOAD_HISTORY_S:
            loads.popleft()

    def at(self, at_s: object, now: float, chargers: ChargerView) -> float:
        """The draw at ``at_s`` (the reading's time, on the clock of ``now``)."""
        current = non_negative(chargers.actual_amps)
        at = finite_number(at_s)
        if at is None or at >= now:
            return current
        for when, amps in reversed(self._loads):
            if when <= at:
                return amps
        return self._loads[0][1] if self._loads else current
