"""The console builds the green-energy lines from the budget's figures (TWCManager's format,
the seed's numbers) and says when the policy fell back to the safe value."""

from __future__ import annotations

from dataclasses import replace

from tests.control.sites import make_site
from twcmaster.control.green import ChargerView, GreenSettings, green_budget
from twcmaster.control.policy import Budget
from twcmaster.outputs.console import green_lines


def test_the_seeds_lines():
    computed = green_budget(
        make_site(4956, 726),
        ChargerView(0, 0, 0),
        GreenSettings(wiring_max_amps_all_twcs=32, min_amps_per_twc=6, default_voltage_v=240),
    )
    assert green_lines(Budget(1, "Track Green Energy", "", green=computed)) == (
        "Green energy generates 4956W, Consumption 726W, Charger Load 0W",
        "Limiting car charging to 20.65A - 3.03A = 17.62A.",
        "Charge when above 6A (minAmpsPerTWC).",
    )


def test_fail_safe_and_fixed_budgets():
    stale = Budget(0.0, "Track Green Energy", "r", stale=True, problem="energy reading is stale")
    assert green_lines(stale) == (
        "Green energy reading unusable (energy reading is stale); charging at the safe 0A "
        "(greenEnergySafeAmps).",
    )
    assert green_lines(replace(stale, stale=False)) == ()
