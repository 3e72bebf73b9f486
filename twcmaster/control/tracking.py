"""Track Green Energy as a state machine: the start, hold and stop rules of ``policy.py``.

``GreenTracker.decide`` reads one site reading through the green maths (``green.py``: the
surplus, the draw compensator) and moves between named phases. Each decision is a small frozen
``GreenDecision`` (the phase, the amps, the rule that chose them and the facts that rule
weighed); ``green_reason`` turns it into the policy's sentence, apart from the deciding. The
rules and their defaults are explained in ``policy.py``'s docstring.

Phases (``GreenPhase``) and what moves between them, conditions tried in this order::

    from               condition                                            next
    OFF                budget (+ flex, useFlexAmpsToStartCharge) below     OFF
                       the start level (floor + greenEnergyStartMarginAmps)
                       else the start timer starts                         as WAITING_TO_START
    WAITING_TO_START   below the start level                               OFF
                       at it for greenEnergyStartDelay and off for         start: as charging
                       greenEnergyMinOffTime
                       else                                                WAITING_TO_START
    charging: TRACKING, FLEXING, HOLDING, SHEDDING (the budget decides, whichever of them)
                       budget feeds every charging car's floor             TRACKING
                       budget + greenEnergyFlexAmps feeds them             FLEXING
                       below them for less than startStopDelay, or on     HOLDING
                       for less than greenEnergyMinOnTime
                       several cars, budget + flex feeds one floor         SHEDDING
                       else                                                OFF (stop)
    any                reading missing, stale or unusable                  OFF (fail safe)

A change of policy into or out of green tracking starts afresh (``enter``): in TRACKING when
cars already charge (they count as started long ago: a dip holds them at the floor rather than
waiting for a new start), else in OFF. The number of cars admitted (``Budget.max_cars``) has
its own small rule (``_Admission``).

Sans-I/O like the rest of control/: time comes in as ``now_s``; the tracker keeps its state
between calls.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twcmaster.control.green import (
    LOAD_HISTORY_S,
    ChargerView,
    DrawCompensator,
    GreenBudget,
    GreenSettings,
    LoadHistory,
    SiteReading,
    green_budget,
    reading_problem,
)
from twcmaster.numbers import finite_number, whole_count
from twcmaster.quickinit import quick_init

if TYPE_CHECKING:
    from twcmaster.control.policy import PolicyConfig

__all__ = [
    "LOAD_HISTORY_S",
    "RAISE_HYSTERESIS_AMPS",
    "GreenDecision",
    "GreenFigures",
    "GreenPhase",
    "GreenRule",
    "GreenTracker",
    "green_reason",
]

# While tracking, the budget follows every fall at once but a rise only once it amounts to a
# whole amp, the controller's offer step. Without it, a surplus hovering at an amp boundary
# toggles the offer (14, 15, 14 ...): each rise below 16 A triggers the controller's
# proactive spike (16 A for 5 s) and restarts its 5 s hold on lowering, both of which draw
# from the grid. The draw still meets the surplus: the compensator keeps learning against the
# surplus itself, so a rise that is really needed builds up and goes through. On the shipped
# cloudy day: grid share of charging 5.6 % -> 4.8 %, surplus used unchanged, offer changes
# about halved.
RAISE_HYSTERESIS_AMPS = 1.0

MAX_STEP_S = 10.0  # s; a longer gap between decisions adds no more to a dip's grid energy
# A; another car is admitted once the budget is this much over what the charging cars can draw
# (and feeds one more floor): a car at its limit no longer leaves the rest of the sun unused.
SPREAD_MARGIN_AMPS = 1.0
_EPS = 1e-9  # A; tolerance for sums of centiamp floats


class GreenPhase(enum.Enum):
    """Where green tracking stands after a decision (the table in the module docstring)."""

    OFF = "off"  # not charging: below the start level, stopped, or the reading is unusable
    WAITING_TO_START = "waiting to start"  # at the start level; the start timers run
    TRACKING = "tracking"  # charging: the budget follows the surplus, every car's floor fed
    FLEXING = "flexing"  # charging at the floors: greenEnergyFlexAmps of grid tops them up
    HOLDING = "holding"  # charging at the floors through a dip (startStopDelay, MinOnTime)
    SHEDDING = "shedding"  # the dip lasted: only the cars the budget can feed keep charging


CHARGING = frozenset(
    {GreenPhase.TRACKING, GreenPhase.FLEXING, GreenPhase.HOLDING, GreenPhase.SHEDDING}
)


class GreenRule(enum.Enum):
    """Which rule chose the amps: the wording of the reason (``green_reason``)."""

    BELOW_START_LEVEL = enum.auto()  # OFF
    STOPPED = enum.auto()  # OFF: below the floors for startStopDelay
    UNUSABLE_READING = enum.auto()  # OFF: the fail-safe value
    START_DELAY = enum.auto()  # WAITING_TO_START: greenEnergyStartDelay runs
    MIN_OFF_TIME = enum.auto()  # WAITING_TO_START: greenEnergyMinOffTime runs
    FOLLOWS_SURPLUS = enum.auto()  # TRACKING
    RISE_HYSTERESIS = enum.auto()  # TRACKING: a rise below a whole amp waits
    RAISE_DELAY = enum.auto()  # TRACKING: a rise right after a fall waits (greenEnergyRaiseDelay)
    FLEX = enum.auto()  # FLEXING
    HOLD_BUDGET = enum.auto()  # HOLDING: the dip's grid energy is within greenEnergyHoldWh
    MIN_ON_TIME = enum.auto()  # HOLDING: greenEnergyMinOnTime runs
    SHED = enum.auto()  # SHEDDING


@quick_init
@dataclass(frozen=True)
class GreenFigures:
    """One reading through the green maths: the amps the rules weigh."""

    computed: GreenBudget  # green.green_budget's result (the console's figures)
    surplus_amps: float  # the surplus the cars should draw (smoothed when configured)
    compensation_amps: float  # added for the cars' draw below their offers
    budget_amps: float  # surplus + compensation, in [0, wiring]; 0 without a surplus
    cars: int  # cars charging now
    need_amps: float  # the floors of the charging cars (at least one), at most the wiring
    cars_wanting: int = 0  # plugged cars that charge or ask for current
    capacity_amps: float | None = None  # what the charging cars could draw (ChargerView)


@quick_init
@dataclass(frozen=True)
class GreenDecision:
    """One green decision: the phase it leads to, the budget, and why (as facts)."""

    phase: GreenPhase
    rule: GreenRule
    amps: float  # the budget for the controller, in [0, wiring]
    figures: GreenFigures | None  # None: the fail safe (the reading could not be used)
    max_cars: int | None = None  # cars the start rules admit (None: the fail safe, no limit)
    rule_amps: float = 0.0  # what the rule chose before the wiring cap (kept, shed)
    left_s: float = 0.0  # how long the timer that decided still runs
    dip_s: float = 0.0  # how long the budget has been below the cars' floors
    problem: str = ""  # UNUSABLE_READING: why
    hold_wh: float = 0.0  # grid energy the hold through this dip has cost so far
    hold_allowance_wh: float = 0.0  # what it may cost (greenEnergyHoldWh, grown per start)
    start_level_amps: float = 0.0  # the budget a start needs now (grows with today's starts)


# --- the reason text ----------------------------------------------------------------------

_HOLDING = "{figures} is below the {need:g}A floor of {cars} for {dip_s:.0f}s; holding at the floor"
_REASONS: dict[GreenRule, str] = {
    GreenRule.UNUSABLE_READING: "{problem}: safe value greenEnergySafeAmps {amps:g}A",
    GreenRule.BELOW_START_LEVEL: (
        "{figures}{with_flex} is below the {start_level:g}A needed to start"
    ),
    GreenRule.START_DELAY: (
        "{figures}{with_flex} reaches the {start_level:g}A start level; waiting {left_s:.0f}s "
        "more (greenEnergyStartDelay {start_delay_s:g}s)"
    ),
    GreenRule.MIN_OFF_TIME: (
        "{figures}{with_flex} reaches the {start_level:g}A start level; off for {left_s:.0f}s "
        "more (greenEnergyMinOffTime {min_off_time_s:g}s)"
    ),
    GreenRule.FOLLOWS_SURPLUS: "{figures}",
    GreenRule.RISE_HYSTERESIS: "{figures}; kept at {rule_amps:.2f}A until it rises by {rise:g}A",
    GreenRule.RAISE_DELAY: (
        "{figures}; kept at {rule_amps:.2f}A: it fell less than {raise_delay_s:g}s ago "
        "(greenEnergyRaiseDelay)"
    ),
    GreenRule.FLEX: (
        "{figures}; {flex:g}A greenEnergyFlexAmps keeps {cars} at the {floor:g}A floor ({need:g}A)"
    ),
    GreenRule.HOLD_BUDGET: (
        _HOLDING + " ({hold_wh:.0f} of {hold_allowance_wh:.0f} Wh of grid, greenEnergyHoldWh)"
    ),
    GreenRule.MIN_ON_TIME: _HOLDING + ", on for {left_s:.0f}s more (greenEnergyMinOnTime)",
    GreenRule.SHED: (
        "{figures} has not fed the {need:g}A floor of {cars} for {dip_s:.0f}s ({hold_wh:.0f} Wh "
        "of grid, over greenEnergyHoldWh): {rule_amps:.2f}A for the cars it can feed"
    ),
    GreenRule.STOPPED: (
        "{figures} has been below the {need:g}A floor for {dip_s:.0f}s ({hold_wh:.0f} Wh of "
        "grid, over greenEnergyHoldWh): stop charging"
    ),
}


def green_reason(decision: GreenDecision, config: PolicyConfig) -> str:
    """The decision in one sentence, without the policy's own reason or the full stop."""
    template = _REASONS[decision.rule]
    f = decision.figures
    if f is None:
        return template.format(problem=decision.problem, amps=decision.amps)
    c = config
    smoothed = f" (smoothed {f.surplus_amps:.2f}A)" if c.smoothing_s > 0 else ""
    if f.computed.surplus_centiamps > round(f.computed.surplus_amps * 100):
        # The console's green line shows the whole surplus; say why this figure is less.
        smoothed += f" (of {f.computed.surplus_centiamps / 100:.2f}A: the wiring limit)"
    figures = (
        f"surplus {f.computed.surplus_amps:.2f}A{smoothed} + {f.compensation_amps:.2f}A for "
        f"the cars' draw below their offers = {f.budget_amps:.2f}A"
    )
    flex_start = _flex_to_start(c)
    return template.format(
        figures=figures,
        with_flex=f" with {flex_start:g}A flex" if flex_start > 0 else "",
        start_level=decision.start_level_amps or _start_level(c),
        cars=f"{max(f.cars, 1)} car{'s' if f.cars > 1 else ''}",
        need=f.need_amps,
        floor=c.floor_amps,
        flex=c.flex_amps,
        rise=RAISE_HYSTERESIS_AMPS,
        rule_amps=decision.rule_amps,
        left_s=decision.left_s,
        dip_s=decision.dip_s,
        start_delay_s=c.start_delay_s,
        min_off_time_s=c.min_off_time_s,
        raise_delay_s=c.raise_delay_s,
        hold_wh=decision.hold_wh,
        hold_allowance_wh=decision.hold_allowance_wh,
    )


# --- the tracker --------------------------------------------------------------------------


@dataclass
class _Admission:
    """How many cars the green rules let charge (``Budget.max_cars``).

    One more car may start once the budget has fed one more floor for
    ``greenEnergyStartDelay`` s, as the first car had to (cars charging always count); the car
    admitted last has its own ``greenEnergyMinOnTime``.
    """

    admitted: int = 0
    admitted_at_s: float = -math.inf  # when the last of them was admitted
    since_s: float | None = None  # the budget has fed one more car's floor since

    def first(self, now: float) -> None:
        self.admitted, self.admitted_at_s, self.since_s = 1, now, None

    def none(self) -> None:
        self.admitted, self.since_s = 0, None

    def update(self, now: float, f: GreenFigures, config: PolicyConfig) -> bool:
        """Whether one more car was admitted now: once the budget feeds one more floor, and,
        with the charging cars' capacity known, is more than they can draw (by
        SPREAD_MARGIN_AMPS). Cars are concentrated: one car takes the surplus up to its
        limit before a second starts; then they share it (spread as the surplus grows)."""
        self.admitted = max(self.admitted, f.cars if f.capacity_amps is None else 0, 1)
        needed = (self.admitted + 1) * config.floor_amps
        if f.capacity_amps is not None:
            needed = max(needed, f.capacity_amps + SPREAD_MARGIN_AMPS)
        if (
            f.cars_wanting <= self.admitted
            or f.cars < self.admitted  # an admitted car is still starting
            or f.budget_amps + _EPS < needed
        ):
            self.since_s = None
            return False
        if self.since_s is None or self.since_s > now:
            self.since_s = now
        if now - self.since_s < config.start_delay_s:
            return False
        self.admitted += 1
        self.admitted_at_s = now
        self.since_s = None
        return True

    def shed(self, amps: float, cars: int, floor: float) -> None:
        """Only the cars ``amps`` can feed at the floor (at least one)."""
        self.admitted = max(1, min(cars, math.floor((amps + _EPS) / floor)))
        self.since_s = None


@dataclass
class _GreenState:
    """What green tracking remembers between decisions (afresh on every ``enter``)."""

    phase: GreenPhase = GreenPhase.OFF
    budget_amps: float = 0.0  # the last budget
    aimed_amps: float = 0.0  # the surplus the last budget aimed the cars' draw at
    on_since_s: float = -math.inf  # the last start
    off_since_s: float = -math.inf  # the last stop
    start_since_s: float | None = None  # WAITING_TO_START: at the start level since
    dip_since_s: float | None = None  # HOLDING, SHEDDING: below the cars' floors since
    admission: _Admission = field(default_factory=_Admission)
    tracked_amps: float = 0.0  # the last budget computed while tracking, before any hold
    dip_wh: float = 0.0  # HOLDING: grid energy the hold through this dip has cost
    fell_at_s: float = -math.inf  # when that budget last fell by a whole amp or more
    ema_amps: float | None = None  # greenEnergySmoothingSeconds: the average so far
    ema_at_s: float | None = None


class GreenTracker:
    """Green tracking's phases and memory; see the module docstring."""

    def __init__(self, config: PolicyConfig) -> None:
        self._config = config
        self._state = _GreenState()
        self._compensator = DrawCompensator(float(config.wiring_max_amps_all_twcs))
        self._loads = LoadHistory()
        self._starts_today = 0  # green starts (first car and each car admitted) since new_day
        self._last_s: float | None = None  # the previous decision, for the dip's energy
        self._dt_s = 0.0  # seconds since it (at most MAX_STEP_S)

    @property
    def config(self) -> PolicyConfig:
        return self._config

    def use_flex(self, flex_amps: float) -> None:
        """The flex of the policy in force: greenEnergyFlexAmps, or a rule's allowed_flex."""
        if flex_amps != self._config.flex_amps:
            self._config = dataclasses.replace(self._config, flex_amps=flex_amps)

    @property
    def phase(self) -> GreenPhase:
        return self._state.phase

    def new_day(self) -> None:
        """Local midnight: today's starts count from 0 again (the hold budget and the start
        level grow with them)."""
        self._starts_today = 0

    @property
    def starts_today(self) -> int:
        return self._starts_today

    def enter(self, chargers: ChargerView) -> None:
        """A policy change into or out of green tracking: fresh anti-flap state.

        A car already charging (Charge Now or a schedule just ended) counts as started long
        ago: it gets the dip rules (held at the floor up to startStopDelay), not a new start.
        """
        self._state = _GreenState()
        self._compensator.reset()
        cars = whole_count(chargers.charging_cars)
        if cars > 0:
            self._state.phase = GreenPhase.TRACKING
            self._state.admission.admitted = cars

    def remember_load(self, now: float, chargers: ChargerView) -> None:
        """The chargers' draw now, for ``_load_at`` (called on every decision, any policy);
        kept only when it is read: with subtractChargerLoad."""
        if self._config.subtract_charger_load:
            self._loads.remember(now, chargers)

    def decide(
        self,
        now: float,
        site: SiteReading | None,
        chargers: ChargerView,
        settings: GreenSettings,
    ) -> GreenDecision:
        """The next decision; ``settings`` are the green maths' (with today's offsets)."""
        last, self._last_s = self._last_s, now
        self._dt_s = 0.0 if last is None else min(max(now - last, 0.0), MAX_STEP_S)
        problem = reading_problem(site)
        if problem is not None:
            return self._fail_safe(now, chargers, problem)
        assert site is not None
        figures = self._read(now, site, chargers, settings)
        decision = _TRANSITIONS[self._state.phase](self, now, figures, chargers)
        st = self._state
        st.phase, st.budget_amps = decision.phase, decision.amps
        # The compensator compares the cars' draw with the surplus itself, also while a rise
        # waits for the hysteresis: it learns the cars' gap, not our rounding. While a rise
        # waits for the raise delay, the cars are aimed below the surplus on purpose: the gap
        # to learn is the one to what they were given.
        if decision.rule is GreenRule.RAISE_DELAY:
            st.aimed_amps = decision.rule_amps - figures.compensation_amps
        else:
            st.aimed_amps = figures.surplus_amps
        return decision

    # -- reading --------------------------------------------------------------------------------

    @property
    def _followed_surplus(self) -> bool:
        """The last budget followed the surplus (tracking, above 0 A): the compensator may
        learn from the draw, and a rise may wait for the hysteresis or the raise delay."""
        return self._state.phase is GreenPhase.TRACKING and self._state.budget_amps > 0

    def _read(
        self, now: float, site: SiteReading, chargers: ChargerView, settings: GreenSettings
    ) -> GreenFigures:
        c = self._config
        st = self._state
        wiring = float(c.wiring_max_amps_all_twcs)
        compensation = self._compensator.update(
            now,
            st.aimed_amps,
            chargers,
            may_learn=self._followed_surplus,
            budget_amps=st.budget_amps,
        )
        load = self._load_at(site.at_s, now, chargers) if c.subtract_charger_load else None
        computed = green_budget(
            site, chargers, settings, compensation_amps=compensation, charger_load_amps=load
        )
        surplus = self._smoothed(now, computed.surplus_amps)
        budget = min(surplus + compensation, wiring) if surplus > 0 else 0.0
        cars = whole_count(chargers.charging_cars)
        need = min(c.floor_amps * max(cars, 1), wiring)
        return GreenFigures(
            computed,
            surplus,
            compensation,
            max(budget, 0.0),
            cars,
            need,
            whole_count(getattr(chargers, "cars_wanting", 0)),
            finite_number(getattr(chargers, "capacity_amps", None)),
        )

    def _load_at(self, at_s: object, now: float, chargers: ChargerView) -> float:
        """The chargers' draw when the meter measured (``site.at_s``, same clock as now_s).

        With subtractChargerLoad the meter's consumption includes the chargers as they were
        then; taking off today's draw instead feeds a car's own ramp back into its budget
        (the oscillation of TWCManager #644 with slow meters).
        """
        return self._loads.at(at_s, now, chargers)

    def _smoothed(self, now: float, surplus: float) -> float:
        """The surplus through the optional exponential moving average."""
        st = self._state
        tau = self._config.smoothing_s
        if tau <= 0:
            return surplus
        if st.ema_amps is None or st.ema_at_s is None or now < st.ema_at_s:
            st.ema_amps, st.ema_at_s = surplus, now
            return surplus
        weight = 1.0 - math.exp(-(now - st.ema_at_s) / tau)
        st.ema_amps += weight * (surplus - st.ema_amps)
        st.ema_at_s = now
        return st.ema_amps

    # -- off: the start rule ------------------------------------------------------------------

    def _from_off(self, now: float, f: GreenFigures, chargers: ChargerView) -> GreenDecision:
        """OFF: the start level starts the start timer (a start at once without delays)."""
        if not self._at_start_level(f):
            return self._decision(GreenPhase.OFF, GreenRule.BELOW_START_LEVEL, f)
        self._state.start_since_s = now
        return self._start_timers(now, f, chargers)

    def _from_waiting(self, now: float, f: GreenFigures, chargers: ChargerView) -> GreenDecision:
        """WAITING_TO_START: back to OFF below the start level, else the timers run on."""
        st = self._state
        if not self._at_start_level(f):
            st.start_since_s = None
            return self._decision(GreenPhase.OFF, GreenRule.BELOW_START_LEVEL, f)
        if st.start_since_s is None or st.start_since_s > now:
            st.start_since_s = now  # the clock went back
        return self._start_timers(now, f, chargers)

    def _at_start_level(self, f: GreenFigures) -> bool:
        return f.budget_amps + _flex_to_start(self._config) + _EPS >= self._start_level_now(f)

    def _starts_counted(self) -> float:
        """Today's starts: what makes the next start dearer. Counted for the site, not per
        car: with several cars concentrated, a cloud stops and restarts the one charging,
        and a shorter hold per car would only spread more starts over them."""
        return float(self._starts_today)

    def _start_level_now(self, f: GreenFigures) -> float:
        """The start level, raised by greenEnergyStartMarginPerStart for each start made
        today per car that wants current: late in a broken day a start needs a firmer
        surplus (with several cars each has its own share of the day's starts)."""
        per_start = self._config.start_margin_per_start_amps
        per_car = self._starts_counted() / max(f.cars_wanting, 1)
        return _start_level(self._config) + per_start * per_car

    def _hold_allowance_wh(self) -> float:
        """What a hold through a dip may cost: greenEnergyHoldWh, times greenEnergyHoldGrowth
        for each start made today (the fewer starts left, the dearer a stop)."""
        c = self._config
        return c.hold_wh * c.hold_growth ** self._starts_counted()

    def _start_timers(self, now: float, f: GreenFigures, chargers: ChargerView) -> GreenDecision:
        """At the start level since ``start_since_s``: start once greenEnergyStartDelay and
        greenEnergyMinOffTime are over."""
        c = self._config
        st = self._state
        assert st.start_since_s is not None
        waited = now - st.start_since_s
        off_for = now - st.off_since_s
        waiting = GreenPhase.WAITING_TO_START
        if waited < c.start_delay_s:
            left = c.start_delay_s - waited
            return self._decision(waiting, GreenRule.START_DELAY, f, left_s=left)
        if off_for < c.min_off_time_s:
            left = c.min_off_time_s - off_for
            return self._decision(waiting, GreenRule.MIN_OFF_TIME, f, left_s=left)
        st.on_since_s, st.dip_since_s, st.start_since_s = now, None, None
        st.dip_wh = 0.0
        st.admission.first(now)
        self._starts_today += 1
        return self._charging(now, f, chargers)

    # -- charging: the budget decides the phase ------------------------------------------------

    def _charging(self, now: float, f: GreenFigures, chargers: ChargerView) -> GreenDecision:
        """TRACKING, FLEXING, HOLDING or SHEDDING, whichever the budget calls for."""
        if self._state.admission.update(now, f, self._config):
            self._starts_today += 1
        if f.budget_amps + _EPS >= f.need_amps:
            self._state.dip_wh = 0.0
            return self._track(now, f)
        if f.budget_amps + self._config.flex_amps + _EPS >= f.need_amps:
            self._state.dip_since_s = None
            self._state.dip_wh = 0.0
            return self._decision(GreenPhase.FLEXING, GreenRule.FLEX, f, rule_amps=f.need_amps)
        return self._dip(now, f)

    def _track(self, now: float, f: GreenFigures) -> GreenDecision:
        """TRACKING: the budget follows the surplus; a rise may wait (hysteresis, raise delay)."""
        st = self._state
        st.dip_since_s = None
        budget, last, need = f.budget_amps, st.budget_amps, f.need_amps
        was_tracking = self._followed_surplus
        fell = self._fell_recently(now, budget, was_tracking)
        if was_tracking and last >= need and last < budget < last + RAISE_HYSTERESIS_AMPS:
            rule, amps = GreenRule.RISE_HYSTERESIS, last  # see RAISE_HYSTERESIS_AMPS
        elif was_tracking and fell and budget > last >= need:
            rule, amps = GreenRule.RAISE_DELAY, last
        else:
            rule, amps = GreenRule.FOLLOWS_SURPLUS, budget
        return self._decision(GreenPhase.TRACKING, rule, f, rule_amps=amps)

    def _fell_recently(self, now: float, budget: float, was_tracking: bool) -> bool:
        """Whether the tracked budget fell by a whole amp or more within ``raise_delay_s``.

        A rise right after a fall waits: a load switching every few seconds (an induction
        hob, a pulsing heater) would otherwise pull the cars up and down with it. A rise
        after a steady spell (a cloud passing, the morning sun) goes through at once."""
        st = self._state
        if not was_tracking:
            st.fell_at_s = -math.inf
        elif budget <= st.tracked_amps - RAISE_HYSTERESIS_AMPS:
            st.fell_at_s = now
        st.tracked_amps = budget
        return now - st.fell_at_s < self._config.raise_delay_s

    def _dip(self, now: float, f: GreenFigures) -> GreenDecision:
        """Below the cars' floors: HOLDING while the grid energy the hold costs stays within
        its allowance (and the minimum on-time runs), then SHEDDING or OFF."""
        c = self._config
        st = self._state
        if st.dip_since_s is None or st.dip_since_s > now:
            st.dip_since_s = now
        dip_for = now - st.dip_since_s
        short_amps = max(f.need_amps - f.budget_amps - c.flex_amps, 0.0)
        st.dip_wh += short_amps * self._watts_per_amp(f) * self._dt_s / 3600.0
        allowance = self._hold_allowance_wh()
        # The car started last has its own minimum on-time, as the first one has.
        admitted_at = st.admission.admitted_at_s if f.cars > 1 else -math.inf
        on_for = now - max(st.on_since_s, admitted_at)
        if st.dip_wh < allowance:
            return self._holding(GreenRule.HOLD_BUDGET, f, 0.0, dip_for, allowance)
        if on_for < c.min_on_time_s:
            left = c.min_on_time_s - on_for
            return self._holding(GreenRule.MIN_ON_TIME, f, left, dip_for, allowance)
        hold = {"dip_s": dip_for, "hold_wh": st.dip_wh, "hold_allowance_wh": allowance}
        if f.cars > 1 and f.budget_amps + c.flex_amps + _EPS >= c.floor_amps:
            amps = max(f.budget_amps, c.floor_amps)
            st.admission.shed(amps, f.cars, c.floor_amps)
            return self._decision(GreenPhase.SHEDDING, GreenRule.SHED, f, rule_amps=amps, **hold)
        st.off_since_s = now
        st.dip_since_s = st.start_since_s = None
        st.dip_wh = 0.0
        st.admission.none()
        return self._decision(GreenPhase.OFF, GreenRule.STOPPED, f, **hold)

    def _watts_per_amp(self, f: GreenFigures) -> float:
        """Watts one amp of charging carries: the measured voltage when known, x phases."""
        c = self._config
        volts = f.computed.voltage_v if f.computed.voltage_v > 0 else c.default_voltage_v
        return volts * c.number_of_phases

    def _holding(
        self, rule: GreenRule, f: GreenFigures, left_s: float, dip_s: float, allowance: float
    ) -> GreenDecision:
        return self._decision(
            GreenPhase.HOLDING,
            rule,
            f,
            rule_amps=f.need_amps,
            left_s=left_s,
            dip_s=dip_s,
            hold_wh=self._state.dip_wh,
            hold_allowance_wh=allowance,
        )

    # -- results ------------------------------------------------------------------------------

    def _decision(
        self,
        phase: GreenPhase,
        rule: GreenRule,
        f: GreenFigures,
        *,
        rule_amps: float = 0.0,
        left_s: float = 0.0,
        dip_s: float = 0.0,
        hold_wh: float = 0.0,
        hold_allowance_wh: float = 0.0,
    ) -> GreenDecision:
        amps = min(rule_amps, float(self._config.wiring_max_amps_all_twcs))
        if not (math.isfinite(amps) and amps > 0):
            amps = 0.0
        admitted = self._state.admission.admitted if phase in CHARGING else 0
        return GreenDecision(
            phase, rule, amps, f, admitted, rule_amps, left_s, dip_s,
            hold_wh=hold_wh, hold_allowance_wh=hold_allowance_wh,
            start_level_amps=self._start_level_now(f),
        )  # fmt: skip

    def _fail_safe(self, now: float, chargers: ChargerView, problem: str) -> GreenDecision:
        """OFF at greenEnergySafeAmps. Not a flap: the restart is not delayed by
        greenEnergyMinOffTime, only by the start rule (the reading must show the surplus for
        greenEnergyStartDelay)."""
        c = self._config
        st = self._state
        safe = min(max(c.green_energy_safe_amps, 0.0), float(c.wiring_max_amps_all_twcs))
        st.phase, st.off_since_s = GreenPhase.OFF, -math.inf
        st.start_since_s = st.dip_since_s = None
        st.admission.none()
        st.ema_amps = st.ema_at_s = None
        self._compensator.update(now, 0.0, chargers, may_learn=False)
        rule = GreenRule.UNUSABLE_READING
        return GreenDecision(GreenPhase.OFF, rule, safe, None, problem=problem)


#: Each phase's transition function (the table in the module docstring): the phases that
#: charge share one, in which the budget decides the next phase.
_TRANSITIONS: dict[
    GreenPhase, Callable[[GreenTracker, float, GreenFigures, ChargerView], GreenDecision]
] = {
    GreenPhase.OFF: GreenTracker._from_off,
    GreenPhase.WAITING_TO_START: GreenTracker._from_waiting,
    GreenPhase.TRACKING: GreenTracker._charging,
    GreenPhase.FLEXING: GreenTracker._charging,
    GreenPhase.HOLDING: GreenTracker._charging,
    GreenPhase.SHEDDING: GreenTracker._charging,
}


def _start_level(config: PolicyConfig) -> float:
    """The budget a start needs: the floor plus greenEnergyStartMarginAmps."""
    return config.floor_amps + config.start_margin_amps


def _flex_to_start(config: PolicyConfig) -> float:
    """Grid amps that count towards a start (useFlexAmpsToStartCharge)."""
    return config.flex_amps if config.use_flex_amps_to_start_charge else 0.0
