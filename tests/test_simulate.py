"""The day simulator: the real core against simulated TWCs in virtual time, and its accounting."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import pytest

from twcmaster.config import config_from_dict
from twcmaster.sim.sky import Outage, Profile, Sky, load_profile
from twcmaster.simulate import (
    REFERENCE_CONFIG,
    DaySimulation,
    policy_choice,
    simulate,
    simulation_config,
)
from twcmaster.simulate_command import parse_outage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOUDY_DAY = os.path.join(REPO, "profiles", "cloudy-day.csv")
REQUIRED_KEYS = {
    "generation_kwh", "consumption_kwh", "surplus_kwh", "charged_kwh",
    "charged_from_surplus_kwh", "grid_import_for_charging_kwh", "charge_starts",
    "charge_stops", "offer_changes", "ideal_kwh", "ratio_to_ideal", "grid_import_share",
    "wall_time_s",
}  # fmt: skip


def config(**overrides):
    data = {"config": {**REFERENCE_CONFIG["config"], **overrides}}
    return config_from_dict(data, tempfile.gettempdir()).settings


def half_hour() -> Profile:
    """30 minutes of a sunny noon with a 3-minute cloud and a kettle, 1 s rows."""
    rows = []
    for t in range(1800):
        generation = 1400 if 600 <= t < 780 else 4200 + 50 * math.sin(t / 30)
        consumption = 2500 if 1200 <= t < 1380 else 300
        rows.append((t, round(generation), consumption))
    return Profile.from_rows(rows, name="half hour")


def assert_identities(result):
    assert result.charged_kwh == pytest.approx(
        result.charged_from_surplus_kwh + result.grid_import_for_charging_kwh, abs=1e-9
    )
    assert 0 <= result.charged_from_surplus_kwh <= result.surplus_kwh + 1e-9
    assert result.charged_from_surplus_kwh <= result.charged_kwh + 1e-9
    assert result.grid_import_for_charging_kwh >= 0
    assert result.surplus_kwh <= result.generation_kwh + 1e-9
    # The accounting integrates the car model's own energy counter.
    assert result.charged_kwh == pytest.approx(sum(result.cars_kwh), abs=1e-9)


def test_half_an_hour_runs_in_virtual_time_with_the_real_master():
    started = time.perf_counter()
    result = simulate(simulation_config().settings, half_hour())
    assert time.perf_counter() - started < 20  # virtual time: 1800 s would be real time
    assert result.simulated_s == 1800
    assert result.policy == "Track Green Energy"
    assert (result.voltage_v, result.phases, result.min_amps, result.limit_amps) == (230, 1, 6, 32)
    assert_identities(result)
    # One heartbeat a second to the one TWC, none late; nothing went wrong on the bus.
    assert 1795 <= result.heartbeats <= 1802  # +1: the first one goes out during the burst
    assert result.longest_heartbeat_gap_s <= 1.01
    assert result.warnings == ()
    # Green tracking charged, mostly from the surplus, and moved its offers with the sun.
    assert result.charge_starts == 1
    assert result.charged_kwh > 0.5
    assert result.ratio_to_ideal > 0.8
    assert result.grid_import_share < 0.1
    assert result.offer_changes >= 3


def test_the_ideal_is_computed_as_documented_on_a_hand_checkable_profile():
    profile = Profile.from_rows(
        [
            (0, 3000, 500),  # 2500 W: floor(2500 / 230) = 10 A -> 2300 W
            (600, 1500, 300),  # 1200 W: 5 A, below the 6 A floor -> 0
            (1200, 10_000, 0),  # 43 A, capped at the 32 A wiring limit -> 7360 W
            (1500, 100, 400),  # no surplus
        ],
        end_s=1800,
    )
    result = simulate(simulation_config().settings, profile)
    assert result.ideal_kwh == pytest.approx((2300 * 600 + 0 + 7360 * 300) / 3.6e6)
    assert result.generation_kwh == pytest.approx(
        (3000 + 1500) * 600 / 3.6e6 + 10_100 * 300 / 3.6e6
    )
    assert result.consumption_kwh == pytest.approx((500 + 300) * 600 / 3.6e6 + 400 * 300 / 3.6e6)
    assert result.surplus_kwh == pytest.approx((2500 + 1200) * 600 / 3.6e6 + 10_000 * 300 / 3.6e6)
    assert_identities(result)


def test_the_ideal_uses_the_configs_volts_phases_floor_and_limits():
    three_phase = config(defaultVoltage=240, numberOfPhases=3, minAmpsPerTWC=8)
    sim = DaySimulation(three_phase, Sky(Profile.from_rows([(0, 0, 0)])), slaves=2)
    assert sim.accounting.limit_amps == 32  # min(all TWCs 32, 2 x 32)
    assert sim.accounting.ideal_amps(7 * 720 + 719) == 0  # 7 A: below the 8 A floor
    assert sim.accounting.ideal_amps(8 * 720) == 8
    assert sim.accounting.ideal_amps(1e6) == 32
    narrow = DaySimulation(config(wiringMaxAmpsPerTWC=16), Sky(Profile.from_rows([(0, 0, 0)])))
    assert narrow.accounting.limit_amps == 16
    # The simulated TWCs report the config's voltage on its phases.
    assert [s.voltage_v for s in sim.bus.slaves] == [(240, 240, 240)] * 2


def test_a_fixed_policy_charges_through_the_night_from_the_grid():
    profile = Profile.from_rows([(0, 0, 200), (300, 5000, 200)], end_s=600)
    result = simulate(simulation_config().settings, profile, policy_name="Charge Now")
    assert result.policy == "Charge Now"
    assert result.charge_starts == 1 and result.charge_stops == 0
    assert result.offer_changes == 1  # 0 -> 32 A once
    assert_identities(result)
    # A car at 32 A draws ~31 A: ~7.1 kW. The dark half comes from the grid, the sunny half
    # from the surplus (4.8 kW of it).
    assert result.grid_import_for_charging_kwh == pytest.approx(
        result.charged_kwh - result.charged_from_surplus_kwh
    )
    assert result.charged_from_surplus_kwh == pytest.approx(4800 * 300 / 3.6e6, rel=0.01)
    assert result.grid_import_for_charging_kwh > 0.5


def test_the_console_shows_the_daemons_lines_in_simulated_time():
    """``--console``: the very output the daemon prints (the console is an output of the
    core's events in both), stamped with the simulated clock."""
    profile = Profile.from_rows([(43200, 6000, 300)], end_s=43200 + 120)
    lines = io.StringIO()
    result = simulate(simulation_config().settings, profile, console=lines)
    text = lines.getvalue().splitlines()
    assert text[0] == "12:00:00: Green energy generates 6000W, Consumption 300W, Charger Load 0W"
    assert text[1] == "          Limiting car charging to 26.09A - 1.30A = 24.79A."
    assert text[3].startswith("12:00:00: Policy: Track Green Energy: surplus 24.79A")
    assert any(line.startswith("12:00:01: SHB ") for line in text)
    shb = [line for line in text if ": SHB " in line]
    assert len(shb) < result.heartbeats  # de-duplicated, as the daemon's console is


def test_a_stale_reading_stops_green_charging_and_is_counted():
    profile = Profile.from_rows([(0, 4500, 300)], end_s=900)
    result = simulate(simulation_config().settings, profile, outages=[Outage(400, 500)], protocol=1)
    assert result.stale_s == 100
    assert result.charge_starts == 2 and result.charge_stops == 1  # fail safe, then back
    assert_identities(result)


def test_the_bound_of_several_cars_is_one_car_on_the_circuit_limit():
    sim = DaySimulation(config(wiringMaxAmpsAllTWCs=40), Sky(half_hour()), slaves=2)
    result = sim.run()
    bound = result.bound
    assert bound is not None and bound.starts == result.charge_starts
    assert bound.ideal_kwh == pytest.approx(result.ideal_kwh, rel=1e-9)  # same limit, 40 A
    # Not compared with the run's share: a simulated car offered its 6 A floor draws 5.2 A
    # (protocol notes §6.1), below the floor the bound's plans hold, so a run that holds
    # through the cloud imports less than any of them would.
    assert bound.plan_capture is not None and bound.plan_capture >= 0.97
    assert DaySimulation(config(), Sky(half_hour()), bound=False).run().bound is None


def test_slaves_and_protocol_are_simulated():
    result = simulate(
        simulation_config().settings, half_hour(), slaves=2, protocol=1, policy_name="green"
    )
    assert result.slaves == 2 and len(result.cars_kwh) == 2
    assert result.warnings == ()
    assert_identities(result)


def test_run_until_can_look_in_between():
    sim = DaySimulation(simulation_config().settings, Sky(half_hour()))
    sim.run_until(300)
    assert sim.now == 300 and sim.accounting.totals.charged_j > 0
    assert len(sim.core.master.slaves) == 1
    assert sim.core.budget.policy == "Track Green Energy"
    result = sim.run()
    assert result.simulated_s == 1800


def test_policy_names_and_stale_periods_parse():
    assert policy_choice(None) == "Track Green Energy"
    assert policy_choice("charge now") == "Charge Now"
    assert policy_choice("non-scheduled") == "Non Scheduled Charging"
    assert policy_choice("RULES") == "rules"
    with pytest.raises(ValueError, match="unknown policy 'solar'"):
        policy_choice("solar")
    assert parse_outage("12:00-12:10:30") == Outage(43_200, 43_830)
    assert parse_outage("100-200") == Outage(100, 200)
    with pytest.raises(ValueError, match="FROM-TO"):
        parse_outage("12:00")
    with pytest.raises(ValueError, match="after the start"):
        parse_outage("200-100")


# --- the command ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twcmaster", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_cli_prints_one_json_object(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(
        "timestamp_s,generation_w,consumption_w\n0,4000,300\n300,1000,300\n400,4000,300\n600,0,0\n"
    )
    done = run_cli("--profile", str(path), "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert REQUIRED_KEYS <= set(result)
    assert result["charged_kwh"] == pytest.approx(
        result["charged_from_surplus_kwh"] + result["grid_import_for_charging_kwh"], abs=2e-4
    )
    assert "floor" in result["ideal_definition"]
    assert result["policy"] == "Track Green Energy" and result["slaves"] == 1
    # The clairvoyant bound at the run's starts, and the distance to it.
    bound = result["bound"]
    assert bound["starts"] == result["charge_starts"] and bound["min_capture"] == 0.97
    assert 0 <= bound["import_share"] <= bound["plan_import_share"]
    assert bound["distance_pp"] == pytest.approx(
        (result["grid_import_share"] - bound["import_share"]) * 100, abs=0.02
    )
    assert "virtual car" in bound["definition"]


def test_cli_text_summary_with_a_config_and_options(tmp_path):
    profile = tmp_path / "p.csv"
    profile.write_text("timestamp_s,generation_w,consumption_w\n0,9000,0\n120,9000,0\n")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"config": {"wiringMaxAmpsAllTWCs": 16, "wiringMaxAmpsPerTWC": 16,
                                          "minAmpsPerTWC": 6, "defaultVoltage": 240}}))  # fmt: skip
    done = run_cli("--profile", str(profile), "--config", str(cfg), "--policy", "charge-now")
    assert done.returncode == 0, done.stderr
    assert "240 V x 1 phase(s), 6-16 A, policy Charge Now" in done.stdout
    assert "ideal:" in done.stdout and "charge start" in done.stdout
    assert "bound:     at 1 start(s) and >= 97% capture: import share >= 0.00%" in done.stdout


def test_cli_reports_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_s,generation_w,consumption_w\n0,1,2\n1,x,2\n")
    done = run_cli("--profile", str(bad))
    assert done.returncode == 2
    assert f"{bad}, line 3, column generation_w: 'x' is not a number" in done.stderr
    done = run_cli("--profile", str(bad), "--policy", "solar")
    assert done.returncode == 2 and "unknown policy" in done.stderr


def _on_off_sun(tmp_path, cycles: int, off_s: int = 600) -> Profile:
    """4 kW of surplus for 40 min, then none for ``off_s`` (10 min), ``cycles`` times: a green
    stop each."""
    rows = ["timestamp_s,generation_w,consumption_w"]
    period_s = 2400 + off_s
    for i in range(cycles):
        rows += [f"{i * period_s},4300,300", f"{i * period_s + 2400},0,300"]
    rows.append(f"{cycles * period_s},0,300")
    path = tmp_path / "on-off.csv"
    path.write_text("\n".join(rows) + "\n")
    return load_profile(str(path))


def test_protocol_2_green_stops_go_through_the_car_api_without_power_cuts(tmp_path):
    result = simulate(simulation_config().settings, _on_off_sun(tmp_path, 5))
    assert result.charge_stops == 5 and result.charge_starts == 5
    assert result.car_interruptions == 0 and result.car_refusing_s == 0
    assert result.car_api_requests == 9  # 5 stops, 4 starts (the first start is the car's own)


def test_protocol_2_without_a_car_api_loses_the_car_after_the_cuts(tmp_path):
    """The 0 A fallback: each green stop cuts the power under the car (the simulated P2
    slave's default), and after the 4th the car refuses until it is re-plugged."""
    result = simulate(simulation_config().settings, _on_off_sun(tmp_path, 5), car_api=False)
    assert result.car_interruptions == 4 and result.car_refusing_s > 0
    assert result.charge_starts == 4 and result.car_api_requests == 0


@pytest.mark.parametrize(
    "meter",
    [
        {"subtractChargerLoad": True},  # the meter's consumption includes the chargers
        {"subtractChargerLoad": True, "treatGenerationAsGridDelivery": True},  # export meter
    ],
    ids=["consumption-includes-chargers", "export-meter"],
)
def test_the_meter_the_config_describes_is_simulated(tmp_path, meter):
    """The simulator shows the policy the meter the config says the site has, so a config
    with subtractChargerLoad charges as well as one without (it used to eat its own
    surplus: the chargers were taken off a consumption that never held them)."""
    profile = _on_off_sun(tmp_path, 2)
    plain = simulate(simulation_config().settings, profile)
    metered = simulate(config(**meter), profile)
    assert metered.charged_kwh == pytest.approx(plain.charged_kwh, rel=0.03)
    assert metered.grid_import_for_charging_kwh <= plain.grid_import_for_charging_kwh + 0.05


def test_a_car_api_that_does_nothing_falls_back_to_0_a_with_a_warning(tmp_path):
    """The API is down: three stop requests a minute apart, then the 0 A offer (a cut under
    the simulated P2 car), and a warning that says so."""
    from twcmaster.sim.carapi import CarApiSettings

    sim = DaySimulation(simulation_config().settings, Sky(_on_off_sun(tmp_path, 1)))
    sim.car_api.settings = CarApiSettings(online=False)
    result = sim.run()
    assert result.car_api_requests == 3 and result.car_interruptions == 1
    assert any("after 3 stop requests through its API" in w for w in result.warnings)


# --- the shipped cloudy day, whole (~20 s of simulation, run once for both tests) ----------


@pytest.fixture(scope="module")
def cloudy_day_result():
    """FULL DAY: the shipped cumulus day, reference config, default policy (Track Green
    Energy), one protocol-2 TWC with a never-full car."""
    result = simulate(simulation_config().settings, load_profile(CLOUDY_DAY))
    print(result.summary())
    return result


@pytest.mark.integration
def test_full_day_runs_a_day_of_bytes_in_virtual_time(cloudy_day_result):
    result = cloudy_day_result
    assert result.simulated_s == 86_400
    assert_identities(result)
    assert result.heartbeats >= 86_000 and result.longest_heartbeat_gap_s <= 1.01
    assert result.warnings == ()
    assert result.ideal_kwh > 20 and result.charged_kwh > 10


@pytest.mark.integration
def test_full_day_cloudy_profile_meets_the_issues_targets(cloudy_day_result):
    """The issue's targets: >= 93 % of the ideal from surplus, < 5 % of the charging from
    the grid, < 10 charge starts. Protocol 2: the car is stopped and started through its
    (simulated) API, so no 0 A offer ever cuts the power under it."""
    result = cloudy_day_result
    assert result.charged_from_surplus_kwh >= 0.93 * result.ideal_kwh
    assert result.grid_import_for_charging_kwh < 0.05 * result.charged_kwh
    assert result.charge_starts < 10
    assert result.car_interruptions == 0 and result.car_refusing_s == 0
    assert result.car_api and 0 < result.car_api_requests <= 2 * result.charge_starts + 4


@pytest.mark.parametrize(
    "off_s, wakes",
    [(600, 0), (1800, 4)],  # 10 min: the car stays awake; 30 min: it sleeps before each start
    ids=["short-gaps", "car-asleep-before-each-start"],
)
def test_the_tesla_module_starts_and_stops_frugally_on_an_on_off_day(tmp_path, off_s, wakes):
    """The real Tesla module against the simulated cloud: every green stop and start goes
    through the API, no power cut, commands to a car at least a minute apart, a sleeping car
    woken once per start (after the wake delay), and every call counted by kind."""
    profile = _on_off_sun(tmp_path, 5, off_s)
    result = simulate(simulation_config().settings, profile, tesla=True)
    assert result.charge_stops == 5 and result.charge_starts == 5
    assert result.car_interruptions == 0 and result.car_refusing_s == 0
    assert result.car_api_requests == 9  # 5 stops, 4 starts (the first is the car's own)
    assert result.tesla_calls is not None and result.tesla_calls["command"] == 9
    assert result.tesla_calls["wake"] == wakes
    assert result.tesla_min_command_gap_s is not None and result.tesla_min_command_gap_s >= 60
    assert "Tesla API:" in result.summary()


# --- Min + Green Energy and maxAmpsAllowedFromGrid on a measured day ------------------------

CLEAR_DAY = os.path.join(REPO, "profiles", "payerne_2016-06-24_clear.csv")


def _sampled(sim: DaySimulation, until_s: float, every_s: float = 60.0):
    """(time, the car's draw, the surplus in amps) every minute up to ``until_s``, half-way
    through the profile's minutes (the car has followed the last change by then)."""
    samples = []
    t = sim.now - every_s / 2
    while t < until_s:
        t += every_s
        sim.run_until(t)
        generation_w, consumption_w = sim.sky.site_at(t)
        samples.append((t, sim.cars[0].actual_amps, (generation_w - consumption_w) / 230))
    return samples


def test_min_green_takes_the_floor_from_the_grid_at_dawn_and_the_surplus_above_it():
    """payerne 2016-06-24 (1-minute PV and house load), 06:00-10:00: below the floor the car
    charges at the floor from the grid; once the surplus is above it, the draw follows it."""
    profile = load_profile(CLEAR_DAY)
    sim = DaySimulation(config(), Sky(profile), policy_name="min-green",
                        start_s=6 * 3600, end_s=10 * 3600)  # fmt: skip
    samples = _sampled(sim, 10 * 3600)
    result = sim.result()
    assert result.policy == "Min + Green Energy" and result.charge_starts == 1
    dawn = [draw for t, draw, surplus in samples if t > 6 * 3600 + 120 and surplus < 4]
    assert dawn and all(5.0 <= draw <= 6.0 for draw in dawn)  # the 6 A floor, as the car draws it
    sunny = [(draw, surplus) for t, draw, surplus in samples if t >= 9 * 3600]
    assert all(surplus - 1.5 <= draw <= surplus + 0.6 for draw, surplus in sunny)
    assert result.grid_import_for_charging_kwh > 0.3  # the floor before the sun carries it
    assert result.charged_from_surplus_kwh >= 0.97 * result.ideal_kwh


def test_the_site_import_is_followed_under_a_grid_cap():
    profile = load_profile(CLEAR_DAY)
    capped = config(maxAmpsAllowedFromGrid=5, spikeAmpsProactively=False)
    sim = DaySimulation(capped, Sky(profile), policy_name="Charge Now",
                        start_s=6 * 3600, end_s=9 * 3600)  # fmt: skip
    result = sim.run()
    assert result.grid_cap_a == 5 and result.site_import_peak_a is not None
    assert result.over_grid_cap_s < 0.01 * result.simulated_s  # the cars' reaction time only
    assert result.charged_kwh > 3  # the sun's amps + 5 A of grid, not Charge Now's 32 A
    out = result.to_dict()
    assert out["grid_cap_a"] == 5 and "over_grid_cap_s" in out
    assert "grid cap:  maxAmpsAllowedFromGrid 5 A" in result.summary()
    assert "grid_cap_a" not in sim_result_without_cap()


def sim_result_without_cap() -> dict:
    sim = DaySimulation(config(), Sky(half_hour()), end_s=60)
    return sim.run().to_dict()


def _cloudy_morning(t0_s: float = 27_000, t1_s: float = 34_200) -> Profile:
    """cloudy-day.csv from 07:30 to 09:30: a green stop, then a start (a few seconds of CPU)."""
    day = load_profile(CLOUDY_DAY)
    rows = [(t, g, c) for t, g, c in zip(day.times_s, day.generation_w, day.consumption_w,
                                         strict=True) if t0_s <= t < t1_s]  # fmt: skip
    return Profile.from_rows(rows, end_s=t1_s, name="cloudy-morning")


@pytest.mark.parametrize("slaves", [1, 2])
def test_the_tesla_module_on_a_cloudy_morning_starts_a_car_it_once_saw_asleep(slaves):
    """The full day's 06:00 listing finds the car asleep; here its car has been idle for an
    hour when the module first lists it. Once the car answered a command it is known awake,
    and the core's give-up waits for the module's wake delay: the start goes through the API
    and no "did not start after 3 start requests" warning (cloudy-day --tesla, before: the
    core gave up the very second the module sent the start)."""
    profile = _cloudy_morning()
    sim = DaySimulation(simulation_config().settings, Sky(profile), slaves=slaves, tesla=True)
    for car in sim.cars:
        car._idle_since_s = profile.start_s - 3600  # asleep at the first listing
    result = sim.run()
    assert not [w for w in result.warnings if "did not start" in w], result.warnings
    actions = [action for _, _, action in sim.tesla.cloud.commands]
    assert "stop" in actions, sim.tesla.cloud.commands
    if slaves == 1:  # (with two, the other car takes the current back by itself here)
        assert "start" in actions, sim.tesla.cloud.commands
    assert result.charge_starts >= 1 and result.charge_stops >= 1
    assert result.tesla_min_command_gap_s is None or result.tesla_min_command_gap_s >= 60
    by_car: dict[str, list[float]] = {}
    for at_s, vin, _ in sim.tesla.cloud.commands:
        by_car.setdefault(vin, []).append(at_s)
    for times in by_car.values():
        assert all(b - a >= 60 for a, b in zip(times, times[1:], strict=False))
