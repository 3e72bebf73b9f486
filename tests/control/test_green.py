"""Green energy maths: the seed's console lines, meter flags, offsets, volts, the closed loop.

Pure functions and a fake clock: nothing sleeps.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.control.sites import make_site
from twcmaster.control.allocation import AllocationSettings, Controller, SlaveReading
from twcmaster.control.green import (
    COMPENSATION_MAX_GAP_AMPS,
    ChargerView,
    ConsumptionOffset,
    DrawCompensator,
    GreenBudget,
    GreenSettings,
    green_budget,
    reading_problem,
)
from twcmaster.control.policy import POLICY_GREEN, Budget
from twcmaster.outputs.console import green_lines
from twcmaster.sim.car import CarConfig, SimulatedCar


def gs(**changes) -> GreenSettings:
    base = GreenSettings(wiring_max_amps_all_twcs=32, min_amps_per_twc=6, default_voltage_v=240)
    return replace(base, **changes)


def lines(computed: GreenBudget) -> tuple[str, ...]:
    """The console's green lines for a budget tracking this computation."""
    return green_lines(Budget(computed.amps, POLICY_GREEN, "", green=computed))


def cars(actual: float = 0.0, offered: float = 0.0, n: int = 0, volts=None) -> ChargerView:
    return ChargerView(actual, offered, n, volts)


# ------------------------------------------------------------------- the seed's lines


def test_the_seed_console_lines_are_reproduced_from_its_numbers():
    """docs: 4956 W generated, 726 W consumed, no charger load, 240 V, minAmpsPerTWC 6."""
    budget = green_budget(make_site(4956, 726), cars(), gs())
    assert lines(budget) == (
        "Green energy generates 4956W, Consumption 726W, Charger Load 0W",
        "Limiting car charging to 20.65A - 3.03A = 17.62A.",
        "Charge when above 6A (minAmpsPerTWC).",
    )
    # The figures: generation amps 4956/240 = 20.65, consumption amps 726/240 = 3.025,
    # each rounded half up to centiamps, and the surplus is their difference.
    assert budget.generation_amps == 20.65
    assert budget.consumption_amps == 3.03
    assert budget.surplus_amps == 17.62
    assert budget.amps == 17.62
    assert budget.voltage_source == "defaultVoltage"


def test_figures_are_whole_centiamps_half_up_and_add_up():
    budget = green_budget(make_site(1000, 100), cars(), gs())  # 4.1666.. and 0.41666..
    assert lines(budget)[1] == "Limiting car charging to 4.17A - 0.42A = 3.75A."
    assert budget.surplus_amps == 3.75


def test_a_deficit_prints_a_negative_result_and_budgets_zero():
    budget = green_budget(make_site(480, 960), cars(), gs())
    assert lines(budget)[1] == "Limiting car charging to 2.00A - 4.00A = -2.00A."
    assert budget.surplus_amps == 0.0
    assert budget.amps == 0.0
    assert budget.surplus_w == -480


def test_start_margin_is_shown_in_the_third_line():
    line = lines(green_budget(make_site(4956, 726), cars(), gs(start_margin_amps=2)))[2]
    assert line == "Charge when above 8A (minAmpsPerTWC 6A + greenEnergyStartMarginAmps 2A)."


# ---------------------------------------------------------------- meter semantics


def test_subtract_charger_load_takes_the_chargers_off_a_meter_that_includes_them():
    charging = cars(actual=16, offered=17, n=1)  # 16 A x 240 V = 3840 W
    meter_with_car = make_site(6000, 600 + 3840)
    plain = green_budget(meter_with_car, charging, gs())
    assert plain.surplus_amps == 6.5  # the car eats its own surplus (TWCManager #644)
    fixed = green_budget(meter_with_car, charging, gs(subtract_charger_load=True))
    assert fixed.surplus_amps == 22.5  # (6000 - 600) / 240
    assert lines(fixed)[0] == "Green energy generates 6000W, Consumption 4440W, Charger Load 3840W"
    assert lines(fixed)[1] == "Limiting car charging to 25.00A - 2.50A = 22.50A."


def test_subtract_charger_load_uses_the_load_the_meter_saw_when_given():
    site = make_site(6000, 600 + 10 * 240)  # the meter saw the car at 10 A ...
    now = cars(actual=16, offered=17, n=1)  # ... it has ramped to 16 A since
    aligned = green_budget(site, now, gs(subtract_charger_load=True), charger_load_amps=10)
    assert aligned.surplus_amps == 22.5
    assert aligned.charger_load_w == 16 * 240  # the line shows the chargers now
    naive = green_budget(site, now, gs(subtract_charger_load=True))
    assert naive.surplus_amps == 25.0  # house taken as 0 W: the ramp inflated the surplus


def test_without_treat_generation_as_grid_delivery_the_house_is_never_negative():
    # The charger load exceeds the consumption: a meter that does not include the chargers
    # configured with subtractChargerLoad; TWCManager clamps the house at 0.
    budget = green_budget(make_site(4800, 1000), cars(16, 17, 1), gs(subtract_charger_load=True))
    assert budget.surplus_amps == 20.0  # 4800 / 240: nothing taken


def test_treat_generation_as_grid_delivery_adds_the_chargers_back_to_the_export():
    flags = gs(subtract_charger_load=True, treat_generation_as_grid_delivery=True)
    charging = cars(actual=16, offered=17, n=1)  # 3840 W
    exporting = green_budget(make_site(1200, 0), charging, flags)  # 1200 W still exported
    assert exporting.surplus_amps == 21.0  # (1200 + 3840) / 240
    assert lines(exporting)[1] == "Limiting car charging to 21.00A - 0.00A = 21.00A."
    importing = green_budget(make_site(0, 480), charging, flags)  # the site imports 480 W
    assert importing.surplus_amps == 14.0  # (3840 - 480) / 240
    # the chargers' 3840 W less the 480 W import, shown as generation (nothing is "consumed")
    assert lines(importing)[1] == "Limiting car charging to 14.00A - 0.00A = 14.00A."


def test_negative_generation_counts_as_zero():
    assert green_budget(make_site(-300, 0), cars(), gs()).amps == 0.0


# ------------------------------------------------------------------------- offsets


def test_offsets_in_amps_and_watts_are_taken_off_the_surplus():
    offsets = (ConsumptionOffset("pool", 480, "W"), ConsumptionOffset("heater", 2, "A"))
    budget = green_budget(
        make_site(4800, 600), cars(), gs(amps_offset=1, consumption_offsets=offsets)
    )
    # 600 W + 1 A (240 W) + 480 W + 2 A (480 W) = 1800 W taken
    assert lines(budget)[1] == "Limiting car charging to 20.00A - 7.50A = 12.50A."
    assert budget.surplus_amps == 12.5


def test_negative_offsets_count_as_unseen_generation():
    offsets = (ConsumptionOffset("garage pv", -960, "W"),)
    budget = green_budget(make_site(2400, 480), cars(), gs(consumption_offsets=offsets))
    # taken = 480 - 960 = -480 W: shown as generation, as TWCManager does
    assert lines(budget)[1] == "Limiting car charging to 12.00A - 0.00A = 12.00A."
    assert budget.surplus_amps == 12.0


def test_offsets_follow_the_volts_and_phases():
    offsets = (ConsumptionOffset("a", 1, "A"),)
    budget = green_budget(
        make_site(6900, 0), cars(volts=230), gs(number_of_phases=3, consumption_offsets=offsets)
    )
    assert budget.surplus_amps == 9.0  # 6900 / (3 x 230) = 10 A, minus 1 A


# --------------------------------------------------------------------------- volts


def test_volts_come_from_the_twcs_then_the_meter_then_the_default():
    site = make_site(4600, 0, voltage_v=235)
    twc = green_budget(site, cars(volts=230), gs())
    assert (twc.voltage_v, twc.voltage_source, twc.surplus_amps) == (230, "TWC", 20.0)
    meter = green_budget(site, cars(), gs())
    assert (meter.voltage_v, meter.voltage_source) == (235, "meter")
    default = green_budget(make_site(4800, 0), cars(volts=0.0), gs())
    assert (default.voltage_v, default.voltage_source, default.surplus_amps) == (
        240, "defaultVoltage", 20.0,
    )  # fmt: skip


@pytest.mark.parametrize("volts", [0, 12, 900, math.nan, math.inf, -230])
def test_implausible_measured_volts_are_ignored(volts):
    budget = green_budget(make_site(4800, 0, voltage_v=volts), cars(volts=volts), gs())
    assert budget.voltage_source == "defaultVoltage"


def test_three_phases_divide_by_three_times_the_volts():
    budget = green_budget(make_site(13800, 0), cars(volts=230), gs(number_of_phases=3))
    assert budget.surplus_amps == 20.0


# --------------------------------------------------------------- limits and fail safe


def test_the_budget_never_exceeds_the_wiring_limit():
    budget = green_budget(make_site(20000, 0), cars(30, 31, 1), gs(), compensation_amps=2)
    assert lines(budget)[1] == "Limiting car charging to 83.33A - 0.00A = 83.33A."
    assert budget.surplus_amps == 32.0
    assert budget.amps == 32.0
    assert budget.compensation_amps == 0.0


def test_compensation_adds_to_the_surplus_but_never_makes_a_deficit_positive():
    assert green_budget(make_site(2400, 0), cars(), gs(), compensation_amps=1.5).amps == 11.5
    assert green_budget(make_site(0, 500), cars(), gs(), compensation_amps=1.5).amps == 0.0


@pytest.mark.parametrize(
    ("site", "problem"),
    [
        (None, "no energy reading yet"),
        (make_site(5000, 0, stale=True, reason="Fronius: no reply for 75 s"), "Fronius: no reply"),
        (make_site(5000, 0, stale=True), "stale"),
        (make_site(math.nan, 0), "generation_w"),
        (make_site(5000, math.inf), "consumption_w"),
        (make_site(1e12, 0), "not plausible"),
    ],
)
def test_unusable_readings_give_zero_and_say_why(site, problem):
    assert problem in reading_problem(site)
    budget = green_budget(site, cars(10, 11, 1), gs())
    assert (budget.amps, budget.surplus_amps, budget.surplus_centiamps) == (0.0, 0.0, 0)
    # (the policy says why: its fail-safe budget, tested in test_policy.py)


# ------------------------------------------------------------------ the compensator


def test_compensator_learns_the_gap_and_stops_inside_the_dead_band():
    comp = DrawCompensator()
    surplus = 14.0
    for step in range(60):
        offered = math.floor(surplus + comp.amps)
        view = cars(actual=offered - 0.8, offered=offered, n=1)
        comp.update(step * 2.0, surplus, view, may_learn=True)
    assert 0.8 <= comp.amps <= 1.2
    assert surplus - 0.25 <= math.floor(surplus + comp.amps) - 0.8 <= surplus + 0.75


def test_compensator_does_not_wind_up_while_the_car_takes_less_than_offered():
    comp = DrawCompensator()
    for step in range(100):  # car limited to 10 A by its own charger, offered 20
        comp.update(step * 2.0, 20.0, cars(10, 20, 1), may_learn=True)
    assert comp.amps == 0.0


def test_compensator_is_bounded_per_charging_car_and_never_negative():
    comp = DrawCompensator()
    for step in range(200):  # a car that always draws 1.9 A below and a huge surplus gap
        comp.update(step * 2.0, 30.0, cars(20, 21.9, 1), may_learn=True)
    assert comp.amps == COMPENSATION_MAX_GAP_AMPS
    for step in range(200, 400):  # now draws above the surplus: falls to 0, not below
        comp.update(step * 2.0, 5.0, cars(20, 21, 1), may_learn=True)
    assert comp.amps == 0.0


def test_compensator_only_falls_while_saturated_and_ignores_spikes_and_holds():
    comp = DrawCompensator(wiring_amps=32.0)
    for step in range(50):  # the last budget sat at the 32 A wiring limit
        comp.update(step * 2.0, 40.0, cars(31, 32, 1), may_learn=True, budget_amps=32.0)
    assert comp.amps == 0.0
    for step in range(50, 100):  # the controller spiked to 16 A over a 9 A budget
        comp.update(step * 2.0, 8.0, cars(15, 16, 1), may_learn=True, budget_amps=9.0)
    assert comp.amps == 0.0
    for step in range(100, 150):
        comp.update(step * 2.0, 20.0, cars(15, 16, 1), may_learn=False)
    assert comp.amps == 0.0


# ------------------------------------------------------------------ the closed loop


def _steady_offers(history: list[int], last: int) -> bool:
    return len(set(history[-last:])) == 1


def test_closed_loop_draw_converges_to_the_surplus_without_oscillating():
    """Car model: draws offer - 0.8 A one step (2 s) after the offer; whole-amp offers."""
    settings_ = gs(default_voltage_v=230)
    site = make_site(230 * 14.3 + 400, 400)  # surplus 14.30 A
    comp = DrawCompensator()
    offer, draw = 0, 0.0
    offers, draws = [], []
    for step in range(150):
        now = step * 2.0
        view = cars(draw, offer, 1 if draw >= 1 else 0)
        amps = comp.update(now, 14.3, view, may_learn=True)
        budget = green_budget(site, view, settings_, compensation_amps=amps)
        draw = max(offer - 0.8, 0.0)  # responds to the previous offer
        offer = math.floor(budget.amps)
        offers.append(offer)
        draws.append(draw)
    # Without compensation the car would sit at 14 - 0.8 = 13.2 A: 1.1 A of surplus unused.
    assert offers[0] == 14
    assert _steady_offers(offers, 100)  # settled for the last 200 s: no limit cycle
    assert -0.25 <= draws[-1] - 14.3 <= 0.25  # 15 - 0.8 = 14.2 A
    assert max(draws) <= 14.3 + 0.25  # never overshot into importing
    assert all(a <= b for a, b in zip(offers, offers[1:], strict=False))  # monotonic approach


def test_closed_loop_follows_a_changing_surplus_with_the_real_controller_and_car():
    """allocation.Controller + sim.car.SimulatedCar: draw ~ surplus after each step change."""
    ctrl = Controller(
        AllocationSettings(32, 32, 6, spike_amps_proactively=False, spike_amps_reactively=False)
    )
    car = SimulatedCar(CarConfig(voltage_v=230), seed=1)
    comp = DrawCompensator()
    settings_ = gs(default_voltage_v=230)
    offer, aimed = 0, 0.0
    for phase, surplus in enumerate((10.0, 21.5, 7.4, 16.0)):
        offers = []
        for second in range(240):
            now = phase * 240.0 + second
            draw = car.step(now, offer)
            if second % 2:
                continue
            view = cars(draw, offer, 1 if draw >= 1 else 0)
            amps = comp.update(now, aimed, view, may_learn=draw >= 1)
            budget = green_budget(
                make_site(230 * surplus, 0), view, settings_, compensation_amps=amps
            )
            aimed = budget.surplus_amps
            reading = SlaveReading(0x1234, 2, 32.0, 1 if draw >= 1 else 4, float(offer), draw)
            offer = ctrl.allocate(budget.amps, [reading], now)[0x1234].offer_amps
            offers.append(offer)
        assert _steady_offers(offers, 40), (surplus, offers[-40:])  # last 80 s: steady
        # the compensator's dead band: 0.75 A below to 0.25 A above the surplus
        assert -0.75 <= car.actual_amps - surplus <= 0.25, (surplus, car.actual_amps)


# ------------------------------------------------------------------------ properties

wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.just(1e300),
    st.just(-0.0),
)


@settings(max_examples=300, deadline=None)
@given(
    gen=wild,
    con=wild,
    volts=st.one_of(st.none(), wild),
    stale=st.booleans(),
    actual=wild,
    offered=wild,
    n=st.integers(-2, 5),
    twc_volts=st.one_of(st.none(), wild),
    wiring=st.integers(1, 200),
    phases=st.integers(1, 3),
    default_v=st.floats(100, 480),
    subtract=st.booleans(),
    treat=st.booleans(),
    offset=st.floats(-100, 100),
    offset_w=st.floats(-1e5, 1e5),
    comp=wild,
    load=st.one_of(st.none(), wild),
)
def test_budget_is_never_above_wiring_never_negative_never_nan(
    gen, con, volts, stale, actual, offered, n, twc_volts, wiring, phases, default_v,
    subtract, treat, offset, offset_w, comp, load,
):  # fmt: skip
    settings_ = GreenSettings(
        wiring_max_amps_all_twcs=wiring,
        min_amps_per_twc=6,
        default_voltage_v=default_v,
        number_of_phases=phases,
        subtract_charger_load=subtract,
        treat_generation_as_grid_delivery=treat,
        amps_offset=offset,
        consumption_offsets=(ConsumptionOffset("x", offset_w, "W"),),
    )
    site = make_site(gen, con, voltage_v=volts, stale=stale)
    budget = green_budget(
        site,
        ChargerView(actual, offered, n, twc_volts),
        settings_,
        compensation_amps=comp,
        charger_load_amps=load,
    )
    for value in (budget.amps, budget.surplus_amps):
        assert not math.isnan(value)
        assert 0.0 <= value <= wiring
    if reading_problem(site) is not None:
        assert budget.amps == 0.0
    assert len(lines(budget)) == 3
