"""The car model: VINs, draw below the offer, ramp, start delay, energy, charge limit."""

from __future__ import annotations

import random

import pytest

from twcmaster.sim.car import (
    CarConfig,
    CarPhase,
    SimulatedCar,
    draw_for_offer,
    random_vin,
    vin_check_digit,
    vin_check_digit_ok,
)

NOTES_VIN = "5YJ3E1EA8KF000001"  # §7 T29-T31: "has a valid check digit"


def settle(car: SimulatedCar, offer_amps: float, until_s: float, step_s: float = 1.0) -> float:
    t = 0.0
    while t < until_s:
        t += step_s
        car.step(t, offer_amps)
    return car.actual_amps


def test_vin_check_digit_of_the_notes_example():
    assert vin_check_digit(NOTES_VIN) == "8"
    assert vin_check_digit_ok(NOTES_VIN)
    assert vin_check_digit_ok(NOTES_VIN.lower())


@pytest.mark.parametrize(
    "vin",
    [
        "5YJ3E1EA9KF000001",  # wrong check digit
        "5YJ3E1EA8KF00000",  # 16 characters
        "5YJ3E1EA8KF0000011",  # 18 characters
        "5YJ3E1EA8KO000001",  # O is never used in a VIN
        "00000000000000001",  # sum 1 x 2 = 2: position 9 should be "2"
    ],
)
def test_vin_check_digit_rejects(vin):
    assert not vin_check_digit_ok(vin)


def test_remainder_ten_is_x():
    rng = random.Random(3)
    for _ in range(2000):
        vin = random_vin(rng)
        if vin[8] == "X":
            assert vin_check_digit_ok(vin)
            assert not vin_check_digit_ok(vin[:8] + "0" + vin[9:])
            return
    pytest.fail("no VIN with check digit X in 2000 random ones")


def test_random_vins_are_valid_and_seeded():
    vins = [random_vin(random.Random(seed)) for seed in range(300)]
    assert all(vin_check_digit_ok(v) and len(v) == 17 for v in vins)
    assert vins == [random_vin(random.Random(seed)) for seed in range(300)]
    assert SimulatedCar(seed=5).vin == SimulatedCar(seed=5).vin


def test_non_tesla_car_has_no_vin_and_bad_vin_is_refused():
    assert SimulatedCar(tesla=False).vin is None
    with pytest.raises(ValueError):
        SimulatedCar(vin="5YJ3E1EA9KF000001")


@pytest.mark.parametrize(
    ("offer", "draw"),
    [(40.0, 38.8), (5.0, 4.2), (6.0, 5.19), (32.0, 30.9), (4.99, 0.0), (0.5, 0.0)],
)
def test_draw_sits_slightly_below_the_offer(offer, draw):
    """§6.1: ~38.8 A at 40 A, ~4.2 A at 5 A; nothing below the car's 5 A minimum."""
    assert draw_for_offer(offer, CarConfig()) == pytest.approx(draw, abs=0.02)
    assert settle(SimulatedCar(), offer, 60.0) == pytest.approx(draw, abs=0.02)


def test_on_board_charger_caps_the_draw():
    assert settle(SimulatedCar(CarConfig(max_amps=16.0)), 655.35, 60.0) == 16.0


def test_start_delay_then_ramp_at_about_2_5_amps_per_second():
    car = SimulatedCar()
    car.step(0.0, 32.0)
    assert car.phase is CarPhase.STARTING
    assert car.step(2.9, 32.0) == 0.0  # waking up (start_delay_s = 3)
    assert car.step(4.0, 32.0) == pytest.approx(2.5)  # 1 s of ramp
    assert car.phase is CarPhase.CHARGING  # past 1.3 A
    assert car.step(6.0, 32.0) == pytest.approx(7.5)
    assert car.step(30.0, 32.0) == pytest.approx(30.9, abs=0.02)
    assert car.step(31.0, 10.0) == pytest.approx(30.9 - 5.0, abs=0.02)  # sheds at 5 A/s
    assert car.step(40.0, 10.0) == pytest.approx(draw_for_offer(10.0, CarConfig()))


def test_offer_below_minimum_stops_and_restart_waits_again():
    car = SimulatedCar()
    settle(car, 16.0, 30.0)
    car.step(31.0, 3.0)
    assert car.phase is CarPhase.WAITING
    assert car.step(40.0, 3.0) == 0.0
    car.step(41.0, 3.0)
    car.step(41.0, 16.0)  # the new offer from 41 s on (``allowed`` covers the step before)
    assert car.step(43.5, 16.0) == 0.0  # a new start delay
    assert car.step(45.0, 16.0) > 0.0


def test_energy_is_integrated_exactly_whatever_the_step_size():
    coarse, fine = SimulatedCar(), SimulatedCar()
    coarse.step(0.0, 32.0)
    fine.step(0.0, 32.0)
    coarse.step(3600.0, 32.0, voltage_v=230.0, phases=3)
    for i in range(1, 36001):
        fine.step(i / 10, 32.0, voltage_v=230.0, phases=3)
    assert coarse.energy_kwh == pytest.approx(fine.energy_kwh, rel=1e-9)
    # ~30.9 A x 230 V x 3 phases for an hour, less the start delay and ramp.
    assert coarse.energy_kwh == pytest.approx(30.9 * 230 * 3 / 1000, rel=0.01)


def test_car_stops_at_its_charge_limit():
    config = CarConfig(battery_kwh=10.0, soc_start=0.5, soc_limit=0.6)  # 1 kWh to go
    car = SimulatedCar(config)
    t = 0.0
    while not car.full and t < 3600:
        t += 10.0
        car.step(t, 32.0)
    assert car.full and car.phase is CarPhase.FULL
    assert 1.0 <= car.energy_kwh < 1.1
    assert car.step(t + 30.0, 32.0) == 0.0


def test_repeated_interruptions_make_the_car_refuse_until_replugged():
    car = SimulatedCar(CarConfig(max_interruptions=3))
    t = 0.0
    car.step(t, 0.0)
    for _ in range(4):
        t += 30.0
        car.step(t, 32.0)
        assert car.phase is CarPhase.CHARGING
        car.interrupt()
        t += 30.0
        car.step(t, 0.0)
    car.step(t + 60.0, 32.0)
    assert car.phase is CarPhase.REFUSING and car.actual_amps == 0.0
    car.unplug(t + 61.0)
    assert car.phase is CarPhase.UNPLUGGED
    car.plug(t + 62.0)
    car.step(t + 90.0, 32.0)
    assert car.phase is CarPhase.CHARGING


def test_unplugged_car_draws_nothing():
    car = SimulatedCar(plugged=False)
    assert car.step(10.0, 32.0) == 0.0 and car.phase is CarPhase.UNPLUGGED
    car.plug(10.0)
    assert car.step(30.0, 32.0) > 0.0
    car.unplug(30.0)
    assert car.actual_amps == 0.0
