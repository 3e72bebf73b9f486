"""The site's grid-import cap (TWCManager's ``maxAmpsAllowedFromGrid``), applied to every budget.

``maxAmpsAllowedFromGrid`` (config.json, amps per phase, like every amps figure here) is the
most the whole site (house and chargers) may draw from the grid. TWCManager reads it as a
limit on the amps its non-green policies divide: generation + the target - the house's
consumption. twcmaster applies it to the budget of **every** policy as it leaves the policy
engine (Charge Now, Scheduled, Non Scheduled, Track Green Energy with its flex and its hold at
the floor, Min + Green Energy)::

    headroom = maxAmpsAllowedFromGrid + surplus
    surplus  = (generation - the house - offsets) / (volts x phases)    (may be negative)
    budget   = min(budget, max(headroom, 0))

where ``surplus`` is exactly the green maths' (``green.green_budget``: the same
``subtractChargerLoad`` / ``treatGenerationAsGridDelivery`` handling, the same consumption
offsets, the chargers' load at the meter's time), so grid = house - generation + the cars'
draw <= the cap as long as the cars draw no more than the budget. They draw less (1-2 A below
their offers), and no compensation is added here: the cap leans towards importing less.

* **Fresh reading**: the budget is at most the headroom (0 when the house alone takes the cap).
* **Stale or missing reading**: the cap cannot be checked, so the budget is at most
  ``greenEnergySafeAmps`` (0 by default): fail safe, never fail open. With the cap set and no
  energy source enabled, the loader warns that this is every decision. The same when no fresh
  source measures the house (generation alone: the house would count as 0 W).
* **Never above the wiring**: the policy's budget already is not, and the cap only lowers it.

What it does not bound: the controller's transients beyond the budget (a proactive spike held
5 s, a car that just started kept at its minimum up to ``startStopDelay``, a car being asked
to stop through its API): the TWCs' and the cars' reaction time, as for the wiring's budget.

**How many cars** (``CapAdmission``): when the headroom cannot feed every car's floor, the
controller serves fewer cars. A house load hovering at the edge would then drop and re-admit
a car every few seconds (a stop, a start, and the raise spike of the car that stays, each
time). So a car the cap dropped comes back only once the headroom has fed its floor plus
``READMIT_MARGIN_AMPS`` for ``greenEnergyStartDelay`` s (``Budget.max_cars``, which the
controller obeys; with no car admitted, the budget is 0). Drops are at once. On a measured
day (payerne 06-06, 2 cars, Min + Green Energy, cap 16 A) this took 27 starts to 21.

**Rises by whole amps**: while the cap holds the budget down, it rises only once the room
has grown by a whole amp (the controller's offer step; falls at once). A house load wobbling
by less toggled the offer, and each raise below 16 A spikes the car for 5 s: on payerne 06-06,
1 car, Charge Now, cap 16 A: offer changes 391 -> 307, time over the cap 410 -> 321 s, energy
charged -0.8 %.

``maxAmpsAllowedFromGrid`` 0 means no import at all: the chargers only ever get the surplus,
whatever the policy. (TWCManager takes 0 as "not set" in green tracking and as a 0 A limit in
the other policies; both are covered by "only the surplus".)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twcmaster.control.green import (
    ChargerView,
    GreenSettings,
    SiteReading,
    green_budget,
    reading_problem,
)
from twcmaster.numbers import finite_number

if TYPE_CHECKING:
    from twcmaster.control.policy import Budget

__all__ = ["CapAdmission", "GridCap", "cap_budget", "grid_headroom_amps"]

READMIT_MARGIN_AMPS = 1.0  # A; a dropped car comes back once the headroom feeds its floor + this
_EPS = 1e-9  # A


@dataclass(frozen=True)
class GridCap:
    """How ``maxAmpsAllowedFromGrid`` bore on one budget (the snapshot shows it)."""

    max_amps: float  # maxAmpsAllowedFromGrid
    headroom_amps: float | None  # what the chargers may draw under it; None: reading unusable
    capped: bool  # the budget was lowered to the headroom (or to the safe value)
    problem: str = ""  # why the reading cannot be used


def grid_headroom_amps(
    max_amps: float,
    site: SiteReading,
    chargers: ChargerView,
    settings: GreenSettings,
    load_amps: float | None = None,
) -> float:
    """What the chargers may draw so the site's import stays at ``max_amps``: the cap plus the
    (signed) surplus of the green maths, whole centiamps rounded down, never below 0. The
    reading must be usable (``green.reading_problem`` is None)."""
    computed = green_budget(site, chargers, settings, charger_load_amps=load_amps)
    headroom_ca = math.floor(max_amps * 100 + _EPS) + computed.surplus_centiamps
    return max(headroom_ca, 0) / 100


def cap_budget(
    budget: Budget,
    max_amps: float,
    safe_amps: float,
    site: SiteReading | None,
    chargers: ChargerView,
    settings: GreenSettings,
    load_amps: float | None = None,
) -> Budget:
    """``budget`` under the grid cap (see the module docstring), with a ``GridCap`` saying how
    it bore on it and, when it lowered it, a sentence more in the reason."""
    problem = reading_problem(site)
    if problem is None and site is not None and not site.house_measured:
        problem = "no fresh energy source measures the house's consumption"
    if problem is not None:
        safe = max(finite_number(safe_amps) or 0.0, 0.0)
        capped = budget.amps > safe + _EPS
        info = GridCap(max_amps, None, capped, problem)
        if not capped:
            return dataclasses.replace(budget, grid_cap=info)
        reason = (
            f"{budget.reason} {_sentence(problem)}: maxAmpsAllowedFromGrid {max_amps:g}A "
            f"cannot be checked, so greenEnergySafeAmps {safe:g}A."
        )
        return dataclasses.replace(
            budget,
            amps=safe,
            reason=reason,
            stale=True,
            problem=problem,
            fallback="greenEnergySafeAmps",
            grid_cap=info,
        )
    assert site is not None
    headroom = grid_headroom_amps(max_amps, site, chargers, settings, load_amps)
    capped = budget.amps > headroom + _EPS
    info = GridCap(max_amps, headroom, capped)
    if not capped:
        return dataclasses.replace(budget, grid_cap=info)
    reason = (
        f"{budget.reason} Capped at {headroom:.2f}A by maxAmpsAllowedFromGrid {max_amps:g}A "
        "(the site's grid draw, house included)."
    )
    return dataclasses.replace(budget, amps=headroom, reason=reason, grid_cap=info)


class CapAdmission:
    """How many cars the headroom feeds at their floor, with a slow way back (the module
    docstring); None while it has fed every car."""

    def __init__(self) -> None:
        self.admitted: int | None = None
        self._since_s: float | None = None  # the headroom has fed one more car since
        self._capped_amps: float | None = None  # the last budget the cap lowered

    def steady(self, budget: Budget) -> Budget:
        """A capped budget rises only by a whole amp (the controller's offer step): a house
        load wobbling by less would toggle the offer, and each raise below 16 A spikes."""
        cap = budget.grid_cap
        if cap is None or not cap.capped or cap.headroom_amps is None:
            self._capped_amps = None
            return budget
        last = self._capped_amps
        if last is not None and last < budget.amps < last + READMIT_MARGIN_AMPS:
            budget = dataclasses.replace(budget, amps=last)
        self._capped_amps = budget.amps
        return budget

    def reset(self) -> None:
        self.admitted, self._since_s = None, None

    def update(
        self, now: float, headroom_amps: float, floor_amps: float, cars: int, delay_s: float
    ) -> int | None:
        """``cars``: the cars that want current now. Returns the limit (None: none)."""
        fed = math.floor((headroom_amps + _EPS) / floor_amps) if floor_amps > 0 else cars
        if self.admitted is None:
            if fed >= cars:
                return None
            self.admitted = fed  # the first drop
        if fed < self.admitted:
            self.admitted, self._since_s = fed, None
        elif headroom_amps + _EPS >= (self.admitted + 1) * floor_amps + READMIT_MARGIN_AMPS:
            if self._since_s is None or self._since_s > now:
                self._since_s = now
            if now - self._since_s >= delay_s:
                self.admitted, self._since_s = self.admitted + 1, None
        else:
            self._since_s = None
        if self.admitted >= cars:
            self.reset()  # every car fed: no limit until the next drop
        return self.admitted


def limit_cars(budget: Budget, admitted: int | None, cars: int) -> Budget:
    """``budget`` with at most ``admitted`` cars (``CapAdmission``); 0 cars: 0 A."""
    if admitted is None or (budget.max_cars is not None and budget.max_cars <= admitted):
        return budget
    reason = (
        f"{budget.reason} Under maxAmpsAllowedFromGrid {admitted} of {cars} car(s) at the "
        f"floor; another once the headroom feeds its floor + {READMIT_MARGIN_AMPS:g}A for a "
        "while (greenEnergyStartDelay)."
    )
    if admitted <= 0:
        return dataclasses.replace(budget, amps=0.0, max_cars=0, reason=reason)
    return dataclasses.replace(budget, max_cars=admitted, reason=reason)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
