"""Min + Green Energy (evcc's "Min+PV"): the floor always, anything above it from the surplus.

A mode the user chooses by hand (``forcedPolicy``, ``control/policy``, ``/api/setPolicy``,
the Home Assistant select, ``simulate --policy min-green``), whatever the time of day::

    floors = minAmpsPerTWC (at least 6 A, what a protocol-2 TWC takes)
             x the cars that want current (charging, or plugged in and asking; at least one)
    green  = surplus + compensation          (green.green_budget, green.DrawCompensator)
    budget = min(max(floors, green), wiringMaxAmpsAllTWCs)

so every car that wants current charges at its floor, from the grid when the sun cannot carry
it (at night, at dawn and dusk, under a cloud), and the cars share whatever surplus there is
above the floors. There are no start or stop rules: nothing is stopped for lack of sun, so
nothing flaps. Cars that are full or unplugged reserve nothing (they do not want current).

The surplus part follows green tracking's maths: the draw compensator learns the cars' gap
below their offers while the budget follows the surplus (above the floors), and a rise waits
until it amounts to a whole amp (``RAISE_HYSTERESIS_AMPS``); falls are followed at once.

A stale or missing reading: the surplus is unknown, the floors are not; the budget is the
floors (or ``greenEnergySafeAmps`` when that is more), ``Budget.stale`` set and the reason
naming the problem. ``maxAmpsAllowedFromGrid`` (``gridcap.py``), applied after this, wins over
the floor: a site limit, like the wiring.

Sans-I/O: time comes in as ``now``; the tracker keeps its memory between calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twcmaster.control.green import (
    ChargerView,
    DrawCompensator,
    GreenBudget,
    GreenSettings,
    SiteReading,
    green_budget,
    reading_problem,
)
from twcmaster.control.tracking import RAISE_HYSTERESIS_AMPS
from twcmaster.numbers import whole_count

if TYPE_CHECKING:
    from twcmaster.control.policy import PolicyConfig

__all__ = ["MinGreenDecision", "MinGreenTracker", "min_green_reason"]

_EPS = 1e-9  # A


@dataclass(frozen=True)
class MinGreenDecision:
    amps: float  # the budget, in [0, wiring]
    floors_amps: float  # the cars' floors together, at most the wiring
    cars: int  # cars counted for the floors (at least one)
    computed: GreenBudget | None  # the green maths; None: the reading cannot be used
    green_amps: float = 0.0  # surplus + compensation (a rise under a whole amp held back)
    problem: str = ""  # why the reading cannot be used


class MinGreenTracker:
    """Min + Green Energy's memory: the draw compensator and the last budget."""

    def __init__(self, config: PolicyConfig) -> None:
        self._config = config
        self._compensator = DrawCompensator(float(config.wiring_max_amps_all_twcs))
        self._last_amps = 0.0  # the last budget
        self._last_green = 0.0  # its green part
        self._aimed = 0.0  # the surplus the last budget aimed the cars' draw at
        self._followed = False  # the last budget followed the surplus (above the floors)

    def enter(self) -> None:
        """A policy change into this mode: no memory of earlier surpluses."""
        self._compensator.reset()
        self._last_amps = self._last_green = self._aimed = 0.0
        self._followed = False

    def decide(
        self,
        now: float,
        site: SiteReading | None,
        chargers: ChargerView,
        settings: GreenSettings,
        load_amps: float | None = None,
    ) -> MinGreenDecision:
        """The budget now; ``load_amps``: the chargers' draw at the reading's time
        (``subtractChargerLoad``)."""
        c = self._config
        wiring = float(c.wiring_max_amps_all_twcs)
        cars = max(whole_count(chargers.cars_wanting), whole_count(chargers.charging_cars), 1)
        floors = min(c.floor_amps * cars, wiring)
        problem = reading_problem(site)
        if problem is not None:
            self._compensator.update(now, 0.0, chargers, may_learn=False)
            self._followed, self._last_green = False, 0.0
            self._last_amps = min(max(floors, c.green_energy_safe_amps), wiring)
            return MinGreenDecision(self._last_amps, floors, cars, None, problem=problem)
        assert site is not None
        compensation = self._compensator.update(
            now,
            self._aimed,
            chargers,
            may_learn=self._followed,
            budget_amps=self._last_amps,
        )
        computed = green_budget(
            site, chargers, settings, compensation_amps=compensation, charger_load_amps=load_amps
        )
        green = computed.amps
        last = self._last_green
        if self._followed and last < green < last + RAISE_HYSTERESIS_AMPS:
            green = last  # a rise waits until it amounts to a whole amp (tracking.py)
        amps = min(max(floors, green), wiring)
        self._followed = green > floors + _EPS
        self._last_amps, self._last_green, self._aimed = amps, green, computed.surplus_amps
        return MinGreenDecision(amps, floors, cars, computed, green)


def min_green_reason(decision: MinGreenDecision, config: PolicyConfig) -> str:
    """The decision in one sentence, without the policy's own reason or the full stop."""
    d = decision
    cars = f"{d.cars} car{'s' if d.cars > 1 else ''}"
    floors = f"the {d.floors_amps:g}A floor of {cars} (minAmpsPerTWC {config.floor_amps:g}A)"
    computed = d.computed
    if computed is None:
        extra = ""
        if d.amps > d.floors_amps + _EPS:
            extra = f"; greenEnergySafeAmps {config.green_energy_safe_amps:g}A"
        return f"{d.problem}: {floors} from any source{extra}"
    figures = (
        f"surplus {computed.surplus_amps:.2f}A + {computed.compensation_amps:.2f}A for the "
        f"cars' draw below their offers = {computed.amps:.2f}A"
    )
    if abs(d.green_amps - computed.amps) > _EPS:
        figures += f" (kept at {d.green_amps:.2f}A until it rises by {RAISE_HYSTERESIS_AMPS:g}A)"
    if d.green_amps > d.floors_amps + _EPS:
        return f"{figures}, above {floors}"
    return f"{floors} from any source; {figures} is below it"
