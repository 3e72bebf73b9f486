"""The console builds the green-energy lines from the budget's figures: the very lines the
policy used to carry as text (checked against them on every green computation here)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.control.sites import make_site
from twcmaster.control.green import ChargerView, GreenSettings, green_budget
from twcmaster.control.policy import Budget
from twcmaster.outputs.console import green_lines

watts = st.floats(min_value=-2000, max_value=40000, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    generation=watts,
    consumption=watts,
    actual=st.floats(min_value=0, max_value=64, allow_nan=False),
    subtract=st.booleans(),
    treat=st.booleans(),
    offset=st.floats(min_value=-10, max_value=10, allow_nan=False),
    margin=st.sampled_from([0, 0.5, 2, 3.25]),
    floor=st.sampled_from([5, 6, 6.5, 12]),
    volts=st.sampled_from([None, 120.0, 230.0, 241.5]),
)
def test_green_lines_are_todays_lines(
    generation, consumption, actual, subtract, treat, offset, margin, floor, volts
):
    settings_ = GreenSettings(
        wiring_max_amps_all_twcs=40,
        min_amps_per_twc=floor,
        default_voltage_v=240,
        subtract_charger_load=subtract,
        treat_generation_as_grid_delivery=treat,
        amps_offset=offset,
        start_margin_amps=margin,
    )
    chargers = ChargerView(actual, actual, 1 if actual else 0, volts)
    computed = green_budget(make_site(generation, consumption), chargers, settings_)
    budget = Budget(computed.amps, "Track Green Energy", "why", computed.lines, green=computed)
    assert green_lines(budget) == computed.lines


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
