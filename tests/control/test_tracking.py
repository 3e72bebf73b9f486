"""Green tracking's phases (tracking.py): the table in its docstring, step by step, and the
reason text built apart from the decision. The rules' numbers are tested through the policy
engine in test_policy.py; here the tracker is driven directly with a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.control.sites import V, make_site, policy_config
from twcmaster.control.green import ChargerView, GreenSettings
from twcmaster.control.tracking import (
    GreenDecision,
    GreenPhase,
    GreenRule,
    GreenTracker,
    green_reason,
)

SETTINGS = GreenSettings(wiring_max_amps_all_twcs=32, min_amps_per_twc=6, default_voltage_v=V)
OFF, WAITING, TRACKING = GreenPhase.OFF, GreenPhase.WAITING_TO_START, GreenPhase.TRACKING
FLEXING, HOLDING, SHEDDING = GreenPhase.FLEXING, GreenPhase.HOLDING, GreenPhase.SHEDDING


cfg = policy_config


def cars(n: int = 0, amps_each: float = 0.0, wanting: int | None = None) -> ChargerView:
    """``n`` cars drawing what they are offered (nothing for the compensator to learn)."""
    total = n * amps_each
    return ChargerView(total, total, n, None, n if wanting is None else wanting)


def step(
    tracker: GreenTracker, now: float, surplus_amps: float, view: ChargerView | None = None
) -> GreenDecision:
    site = make_site(V * surplus_amps, 0.0, at_s=now)
    return tracker.decide(now, site, view or cars(), SETTINGS)


def phases(decisions) -> list[tuple[GreenPhase, GreenRule]]:
    return [(d.phase, d.rule) for d in decisions]


def test_off_waiting_tracking_holding_and_off_again():
    tracker = GreenTracker(cfg(hold_wh=15.0, hold_growth=1.0))
    assert phases([step(tracker, 0, 2.0)]) == [(OFF, GreenRule.BELOW_START_LEVEL)]
    waiting = step(tracker, 2, 15.0)
    assert (waiting.phase, waiting.rule, waiting.left_s, waiting.amps) == (
        WAITING, GreenRule.START_DELAY, 30.0, 0.0,
    )  # fmt: skip
    assert step(tracker, 20, 15.0).phase is WAITING
    started = step(tracker, 32, 15.0)  # 30 s at the start level
    assert (started.phase, started.rule, started.amps, started.max_cars) == (
        TRACKING, GreenRule.FOLLOWS_SURPLUS, 15.0, 1,
    )  # fmt: skip
    dip = [step(tracker, t, 2.0, cars(1, 14.0)) for t in range(34, 94, 2)]
    assert set(phases(dip)) == {(HOLDING, GreenRule.HOLD_BUDGET)}
    assert {d.amps for d in dip} == {6.0}  # the floor
    # About 4 A short of it (920 W) for 30 steps of 2 s: within the 15 Wh
    assert (dip[0].dip_s, dip[-1].dip_s, dip[-1].hold_allowance_wh) == (0.0, 58.0, 15.0)
    short_wh = [(d.figures.need_amps - d.figures.budget_amps) * V * 2 / 3600 for d in dip]
    assert dip[-1].hold_wh == pytest.approx(sum(short_wh)) and 14 < sum(short_wh) < 15
    stopped = step(tracker, 94, 2.0, cars(1, 6.0))
    assert (stopped.phase, stopped.rule, stopped.amps, stopped.max_cars) == (
        OFF, GreenRule.STOPPED, 0.0, 0,
    )  # fmt: skip
    assert tracker.phase is OFF


def test_a_dip_back_above_the_floor_goes_back_to_tracking():
    tracker = GreenTracker(cfg(start_delay_s=0))
    assert step(tracker, 0, 15.0).phase is TRACKING
    assert step(tracker, 2, 3.0, cars(1, 14.0)).phase is HOLDING
    assert step(tracker, 4, 12.0, cars(1, 6.0)).phase is TRACKING


def test_below_the_start_level_waiting_falls_back_to_off():
    tracker = GreenTracker(cfg())
    assert step(tracker, 0, 15.0).phase is WAITING
    assert phases([step(tracker, 2, 4.0)]) == [(OFF, GreenRule.BELOW_START_LEVEL)]
    assert step(tracker, 4, 15.0).left_s == 30.0  # the start timer starts again


def test_the_minimum_off_time_keeps_it_waiting_after_a_stop():
    tracker = GreenTracker(cfg(start_delay_s=0, hold_wh=0, min_off_time_s=100))
    assert step(tracker, 0, 15.0).phase is TRACKING
    assert step(tracker, 2, 1.0, cars(1, 14.0)).rule is GreenRule.STOPPED
    again = step(tracker, 10, 15.0)
    assert (again.phase, again.rule, again.left_s) == (WAITING, GreenRule.MIN_OFF_TIME, 92.0)
    assert step(tracker, 102, 15.0).phase is TRACKING


def test_flex_amps_keep_the_floor_without_a_dip_timer():
    tracker = GreenTracker(cfg(start_delay_s=0, flex_amps=4))
    assert step(tracker, 0, 15.0).phase is TRACKING
    flexed = [step(tracker, t, 3.0, cars(1, 6.0)) for t in range(2, 200, 2)]
    assert set(phases(flexed)) == {(FLEXING, GreenRule.FLEX)}
    assert {d.amps for d in flexed} == {6.0}


def test_several_cars_shed_to_those_the_budget_feeds():
    tracker = GreenTracker(cfg(start_delay_s=0, hold_wh=15.5, hold_growth=1.0))
    step(tracker, 0, 20.0, cars(2, 0.0))
    assert step(tracker, 2, 20.0, cars(2, 9.0)).max_cars == 2  # both charge: both count
    dip = [step(tracker, t, 8.0, cars(2, 6.0)) for t in range(4, 204, 2)]
    at = next(i for i, d in enumerate(dip) if d.phase is not HOLDING)
    held, shed = dip[:at], dip[at]
    # 8 A + 2 A for the cars' draw below their offers: 2 A short, 460 W, 15.5 Wh in ~121 s
    assert {d.amps for d in held} == {12.0} and 58 <= len(held) <= 63
    assert (shed.phase, shed.rule, shed.max_cars) == (SHEDDING, GreenRule.SHED, 1)
    assert 8.0 <= shed.amps == shed.rule_amps == shed.figures.budget_amps < 12.0
    assert step(tracker, 210, 7.0, cars(1, 7.0)).phase is TRACKING


def test_an_unusable_reading_is_the_fail_safe_from_any_phase():
    config = cfg(start_delay_s=0, green_energy_safe_amps=6)
    tracker = GreenTracker(config)
    assert step(tracker, 0, 15.0).phase is TRACKING
    safe = tracker.decide(2, None, cars(1, 14.0), SETTINGS)
    assert (safe.phase, safe.rule, safe.amps, safe.figures, safe.max_cars) == (
        OFF, GreenRule.UNUSABLE_READING, 6.0, None, None,
    )  # fmt: skip
    assert safe.problem == "no energy reading yet"
    assert green_reason(safe, config) == (
        "no energy reading yet: safe value greenEnergySafeAmps 6A"
    )
    assert step(tracker, 4, 15.0, cars(1, 6.0)).phase is TRACKING  # no start delay here


def test_entering_with_a_car_charging_counts_it_as_started_long_ago():
    tracker = GreenTracker(cfg(min_on_time_s=1800))
    tracker.enter(cars(1, 16.0))
    assert tracker.phase is TRACKING
    held = step(tracker, 0, 2.0, cars(1, 16.0))
    assert (held.phase, held.rule, held.max_cars) == (HOLDING, GreenRule.HOLD_BUDGET, 1)
    tracker.enter(cars())
    assert tracker.phase is OFF


@pytest.mark.parametrize("rule", [r for r in GreenRule if r is not GreenRule.UNUSABLE_READING])
def test_every_rule_has_its_sentence(rule):
    config = cfg(smoothing_s=10, flex_amps=2, use_flex_amps_to_start_charge=True)
    tracker = GreenTracker(config)
    figures = step(tracker, 0, 9.0).figures
    decision = GreenDecision(OFF, rule, 6.0, figures, rule_amps=7.5, left_s=12.4, dip_s=3)
    text = green_reason(decision, config)
    assert text.startswith("surplus 9.00A (smoothed 9.00A) + 0.00A for the cars' draw")
    assert "{" not in text and "}" not in text


def test_the_reason_is_built_from_the_decisions_facts():
    config = cfg()
    tracker = GreenTracker(config)
    figures = step(tracker, 0, 9.0).figures
    waiting = GreenDecision(WAITING, GreenRule.START_DELAY, 0.0, figures, 0, left_s=12.4)
    assert green_reason(waiting, config) == (
        "surplus 9.00A + 0.00A for the cars' draw below their offers = 9.00A reaches the 6A "
        "start level; waiting 12s more (greenEnergyStartDelay 30s)"
    )
    kept = replace(waiting, phase=TRACKING, rule=GreenRule.RISE_HYSTERESIS, rule_amps=8.5)
    assert green_reason(kept, config) == (
        "surplus 9.00A + 0.00A for the cars' draw below their offers = 9.00A; kept at 8.50A "
        "until it rises by 1A"
    )
