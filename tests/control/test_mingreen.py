"""Min + Green Energy (evcc's Min+PV): the floor always, from any source; the surplus above it.

Virtual time (``now_s`` is an argument); the engine is the real ``PolicyEngine`` forced to the
mode, as the settings, MQTT and HTTP force it.
"""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.sites import V, make_site, policy_config
from twcmaster.control.green import ChargerView
from twcmaster.control.policy import POLICY_GREEN, POLICY_MIN_GREEN, PolicyEngine
from twcmaster.outputs.console import green_lines
from twcmaster.settings import RuntimeSettings, SettingsStore

NOON = datetime(2024, 6, 3, 12)
HOUSE_W = 500.0


def engine(**changes) -> PolicyEngine:
    return PolicyEngine(policy_config(**changes), None, force_policy=POLICY_MIN_GREEN)


def view(cars_wanting: int = 1, charging: int = 1, draw: float = 0.0, offer: float = 0.0):
    return ChargerView(draw, offer, charging, None, cars_wanting=cars_wanting)


def surplus(amps: float, at_s: float = 0.0):
    return make_site(V * amps + HOUSE_W, HOUSE_W, at_s=at_s)


def test_at_night_every_car_that_wants_current_gets_its_floor_from_the_grid():
    budget = engine().decide(0.0, NOON, make_site(0.0, 800.0), view(cars_wanting=2))
    assert budget.policy == POLICY_MIN_GREEN
    assert budget.amps == 12.0  # 2 cars x 6 A
    assert not budget.stale
    assert "the 12A floor of 2 cars (minAmpsPerTWC 6A) from any source" in budget.reason
    assert "is below it" in budget.reason


def test_a_surplus_above_the_floors_is_followed():
    budget = engine().decide(0.0, NOON, surplus(17.5), view(cars_wanting=2))
    assert budget.amps == 17.5
    assert budget.green is not None and budget.green.surplus_amps == 17.5
    assert ", above the 12A floor of 2 cars" in budget.reason


def test_a_car_that_wants_nothing_reserves_nothing_and_one_floor_is_kept_ready():
    assert engine().decide(0.0, NOON, surplus(0), view(cars_wanting=0, charging=0)).amps == 6.0
    assert engine().decide(0.0, NOON, surplus(0), view(cars_wanting=1, charging=0)).amps == 6.0


def test_the_floor_is_at_least_what_a_protocol_2_twc_accepts():
    assert engine(min_amps_per_twc=5).decide(0.0, NOON, surplus(0), view()).amps == 6.0
    assert engine(min_amps_per_twc=10).decide(0.0, NOON, surplus(0), view()).amps == 10.0


def test_never_above_the_wiring():
    budget = engine(wiring_max_amps_all_twcs=16).decide(0.0, NOON, surplus(0), view(3, 3))
    assert budget.amps == 16.0  # 3 floors of 6 A do not fit: the controller serves two
    assert engine(wiring_max_amps_all_twcs=16).decide(0.0, NOON, surplus(40), view()).amps == 16


@pytest.mark.parametrize("site", [None, make_site(9000.0, 0.0, stale=True, reason="Fronius")])
def test_an_unusable_reading_keeps_the_floor_and_says_so(site):
    budget = engine().decide(0.0, NOON, site, view(cars_wanting=2))
    assert budget.amps == 12.0 and budget.stale and budget.problem
    assert budget.fallback == "the floor, minAmpsPerTWC"
    assert green_lines(budget)[0].endswith("charging at the safe 12A (the floor, minAmpsPerTWC).")
    safe = engine(green_energy_safe_amps=20).decide(0.0, NOON, site, view(cars_wanting=2))
    assert safe.amps == 20.0 and safe.fallback == "greenEnergySafeAmps"


def test_the_console_says_the_floor_comes_from_any_source():
    budget = engine().decide(0.0, NOON, surplus(8), view())
    lines = green_lines(budget)
    assert lines[1] == "Limiting car charging to 10.17A - 2.17A = 8.00A."
    assert lines[2] == "Charge at least 6A (minAmpsPerTWC) from any source, more from surplus."


def test_the_draw_is_brought_up_to_the_surplus_and_a_small_rise_waits_for_a_whole_amp():
    eng = engine()
    offer = draw = 0.0
    for step in range(60):  # a car that draws 0.8 A below its whole-amp offer
        budget = eng.decide(2.0 * step, NOON, surplus(14.0), view(1, 1, draw, offer))
        draw, offer = max(offer - 0.8, 0.0), float(math.floor(budget.amps))
    assert 13.25 <= draw <= 14.25
    settled = budget.amps
    risen = eng.decide(122.0, NOON, surplus(14.5), view(1, 1, draw, offer))
    assert risen.amps == settled and "until it rises by 1A" in risen.reason
    fallen = eng.decide(124.0, NOON, surplus(12.0), view(1, 1, draw, offer))
    assert fallen.amps < settled


def test_chosen_by_hand_in_settings_json_like_the_other_policies(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    store.set_forced_policy(POLICY_MIN_GREEN)
    assert SettingsStore(tmp_path / "settings.json").settings.forced_policy == POLICY_MIN_GREEN
    eng = PolicyEngine(policy_config(), store)
    night = datetime(2024, 6, 3, 23)
    budget = eng.decide(0.0, night, make_site(0.0, 400.0), view())
    assert budget.policy == POLICY_MIN_GREEN and budget.amps == 6.0
    assert "chosen by hand (forcedPolicy)" in budget.reason


def test_leaving_and_entering_the_mode_starts_its_memory_afresh():
    class Store:
        settings = RuntimeSettings(forced_policy=POLICY_MIN_GREEN)

    store = Store()
    eng = PolicyEngine(policy_config(), store)
    assert eng.decide(0.0, NOON, surplus(20), view()).amps == 20.0
    store.settings = RuntimeSettings(forced_policy=POLICY_GREEN)
    assert eng.decide(2.0, NOON, surplus(20), view()).policy == POLICY_GREEN
    store.settings = RuntimeSettings(forced_policy=POLICY_MIN_GREEN)
    assert eng.decide(4.0, NOON, surplus(0), view()).amps == 6.0


# -------------------------------------------------------------------- properties

wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-5e4, 5e4))
readings = st.one_of(
    st.none(),
    st.builds(make_site, generation_w=wild, consumption_w=wild, stale=st.booleans(), at_s=wild),
    st.builds(make_site, generation_w=st.floats(0, 15000), consumption_w=st.floats(0, 3000)),
)
views = st.builds(
    ChargerView, actual_amps=wild, offered_amps=wild, charging_cars=st.integers(-1, 4),
    voltage_v=st.one_of(st.none(), wild), cars_wanting=st.integers(-1, 4),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wiring=st.integers(6, 80),
    min_amps=st.integers(5, 40),
    safe=st.floats(0, 100),
    subtract=st.booleans(),
    sequence=st.lists(st.tuples(st.floats(-30, 90), readings, views), max_size=30),
)
def test_never_below_the_floor_while_a_car_wants_current_never_above_the_wiring(
    wiring, min_amps, safe, subtract, sequence
):
    eng = engine(
        wiring_max_amps_all_twcs=wiring, min_amps_per_twc=min_amps,
        green_energy_safe_amps=safe, subtract_charger_load=subtract,
    )  # fmt: skip
    floor = max(min_amps, 6)
    now = 0.0
    for dt, site, chargers in sequence:
        now += dt
        budget = eng.decide(now, NOON, site, chargers)
        assert budget.policy == POLICY_MIN_GREEN
        assert not math.isnan(budget.amps) and 0.0 <= budget.amps <= wiring
        cars = max(chargers.cars_wanting, chargers.charging_cars, 1)
        assert budget.amps >= min(floor * cars, wiring)  # the floor of every car that wants
