"""The simulated car API: a stop is a clean stop (not a power cut), a start needs the API,
commands take effect after their delay, and a sleeping car wakes first."""

from __future__ import annotations

from tests.sim.test_slave import heartbeat, make
from twcmaster.control.carcommands import CarAction, CarCommand
from twcmaster.protocol.messages import HeartbeatCommand
from twcmaster.sim.car import CarPhase
from twcmaster.sim.carapi import CarApiSettings, SimulatedCarApi
from twcmaster.sim.slave import State

P2_SET = HeartbeatCommand.SET_LIMIT_P2


def charging_slave():
    slave = make(2)
    heartbeat(slave, 0.0, P2_SET, 16.0)
    for t in range(1, 30):
        heartbeat(slave, float(t))
    assert slave.car.phase is CarPhase.CHARGING and slave.actual_amps > 10
    return slave


def command(slave, action: CarAction, at_s: float, vin: str | None = None) -> CarCommand:
    return CarCommand(slave.twcid, vin, action, at_s, "test")


def test_a_stop_through_the_api_is_clean_and_only_the_api_starts_the_car_again():
    slave = charging_slave()
    api = SimulatedCarApi([slave])
    api.request(command(slave, CarAction.STOP, 30.0, vin=slave.car.vin))
    assert api.next_due_s() == 35.0
    api.apply_due(34.9)
    assert slave.car.phase is CarPhase.CHARGING
    api.apply_due(35.0)
    for t in range(35, 45):
        heartbeat(slave, float(t))
    assert slave.actual_amps == 0.0 and slave.car.phase is CarPhase.STOPPED
    assert slave.state(45.0) is State.DO_NOT_CHARGE  # §4.2: 03 after the car's own stop
    # 0 A to a car that draws nothing is no power cut; a new offer does not start it.
    heartbeat(slave, 45.0, P2_SET, 0.0)
    heartbeat(slave, 46.0, P2_SET, 16.0)
    for t in range(47, 80):
        heartbeat(slave, float(t))
    assert slave.car.interruptions == 0 and slave.actual_amps == 0.0
    api.request(command(slave, CarAction.START, 80.0))
    api.apply_due(85.0)
    for t in range(80, 100):
        heartbeat(slave, float(t))
    assert slave.car.phase is CarPhase.CHARGING and slave.actual_amps > 10
    assert api.applied == 2 and len(api.requests) == 2


def test_a_sleeping_car_wakes_first_and_an_offline_api_does_nothing():
    slave = charging_slave()
    api = SimulatedCarApi([slave], CarApiSettings(command_delay_s=5.0, wake_s=30.0))
    api.request(command(slave, CarAction.STOP, 30.0))
    api.apply_due(35.0)
    for t in range(35, 2000, 10):
        heartbeat(slave, float(t))
    assert slave.car.idle_s(2000.0) > 900.0  # asleep
    api.request(command(slave, CarAction.START, 2000.0))
    assert api.next_due_s() == 2035.0
    offline = SimulatedCarApi([slave], CarApiSettings(online=False))
    offline.request(command(slave, CarAction.STOP, 2000.0))
    assert offline.next_due_s() is None and len(offline.requests) == 1


def test_a_command_for_an_unknown_vin_reaches_no_car():
    slave = charging_slave()
    api = SimulatedCarApi([slave])
    api.request(command(slave, CarAction.STOP, 30.0, vin="5YJ3E1EA7KF000316"))
    api.apply_due(100.0)
    assert api.applied == 0 and slave.car.phase is CarPhase.CHARGING
