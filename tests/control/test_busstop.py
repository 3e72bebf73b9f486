"""BusStopper's rules alone (sans-I/O, fake clock), the config key, and the simulated TWC's
reaction to paused heartbeats and to FC B2 / FC B1 as the protocol notes describe it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from twcmaster.config import ConfigError, config_from_dict
from twcmaster.control.busstop import (
    BusAction,
    BusCarSeen,
    BusStep,
    BusStopper,
    BusStopSettings,
    ChargeStopMode,
)
from twcmaster.control.carcommands import CarNotice
from twcmaster.protocol import messages
from twcmaster.protocol.messages import Code
from twcmaster.sim.car import SimulatedCar
from twcmaster.sim.slave import SimulatedSlave

TWC = 0x2222
NEW = (4, 5, 3, 0)


def seen(**changes) -> BusCarSeen:
    base = dict(
        twcid=TWC,
        state=1,
        actual_amps=16.0,
        offer_amps=6,
        min_amps=6,
        car_stop_wanted=True,
        firmware=NEW,
        paused=False,
    )
    return BusCarSeen(**{**base, **changes})


def stopper(mode: int) -> BusStopper:
    return BusStopper(BusStopSettings(ChargeStopMode(mode)))


def test_mode_2_pauses_once_a_minute_at_most_three_times_then_gives_up():
    bus = stopper(2)
    steps = []
    for minute in range(4):
        now = minute * 70.0
        steps += bus.decide(now, [seen()]).steps
        assert not bus.decide(now + 1, [seen(paused=True)]).steps  # quiet while paused
    assert [s.action for s in steps] == [BusAction.PAUSE_HEARTBEATS] * 3
    assert steps[0].until_s == 60.0 and "1 of 3" in steps[0].message
    (notice,) = bus.decide(300.0, [seen()]).notices or (None,)
    assert notice is None or isinstance(notice, CarNotice)
    assert not bus.stop_through_bus(TWC, None)  # the controller now offers 0 A
    bus.decide(400.0, [seen(state=0, actual_amps=0.25, car_stop_wanted=False)])  # unplugged
    assert bus.stop_through_bus(TWC, None)


def test_mode_2_gives_up_with_a_warning_naming_the_count():
    bus = stopper(2)
    for minute in range(3):
        bus.decide(minute * 70.0, [seen()])
    decision = bus.decide(210.0, [seen()])
    assert not decision.steps
    (notice,) = decision.notices
    assert "3 times" in notice.message and "0 A offer" in notice.message


def test_mode_2_does_nothing_while_the_controller_does_not_ask():
    bus = stopper(2)
    assert bus.decide(0.0, [seen(car_stop_wanted=False)]) == bus.decide(
        1.0, [seen(actual_amps=0.3)]
    )
    assert not bus.decide(2.0, [seen(car_stop_wanted=False)]).steps


def test_mode_3_stop_then_start_a_minute_later_and_only_after_the_ack():
    bus = stopper(3)
    (stop,) = bus.decide(0.0, [seen()]).steps
    assert stop.action is BusAction.STOP_RELAY and stop.until_s is None
    bus.acknowledged(TWC, started=False)
    offered = seen(actual_amps=0.25, state=3, offer_amps=6, car_stop_wanted=False)
    assert not bus.decide(30.0, [offered]).steps  # at most one command a minute
    (start,) = bus.decide(60.0, [offered]).steps
    assert start.action is BusAction.START_RELAY
    bus.acknowledged(TWC, started=True)
    assert not bus.decide(200.0, [offered]).steps  # closed: nothing more to undo


def test_mode_3_needs_known_firmware_453_and_says_so_once():
    bus = stopper(3)
    for firmware in (None, (4, 5, 2, 0), (0, 4, 5, 3)):
        assert not bus.stop_through_bus(TWC, firmware)
    assert bus.stop_through_bus(TWC, NEW)
    cut = seen(firmware=None, offer_amps=0, car_stop_wanted=False)
    (notice,) = bus.decide(0.0, [cut]).notices
    assert "4.5.3" in notice.message and "unknown" in notice.message
    assert not bus.decide(1.0, [cut]).notices
    assert not bus.decide(2.0, [cut]).steps


def test_mode_3_start_gives_up_after_three_unanswered_start_commands():
    bus = stopper(3)
    bus.decide(0.0, [seen()])
    offered = seen(actual_amps=0.0, state=3, car_stop_wanted=False)
    actions = [bus.decide(60.0 * k, [offered]) for k in range(1, 5)]
    assert [len(d.steps) for d in actions] == [1, 1, 1, 0]
    assert "FC B1" in actions[3].notices[0].message


def test_bus_steps_are_frozen_values():
    step = BusStep(TWC, BusAction.PAUSE_HEARTBEATS, 0.0, 60.0, "x")
    with pytest.raises(AttributeError):
        step.twcid = 1  # type: ignore[misc]


# --- config ------------------------------------------------------------------------------------


def load(data: dict):
    base = {"config": {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32}}
    for key, value in data.items():
        base[key] = {**base.get(key, {}), **value}
    return config_from_dict(base, "/tmp").settings


def test_charge_stop_mode_from_vehicle_tesla_api_then_config_then_1():
    assert load({}).charge_stop_mode == 1
    assert load({"config": {"chargeStopMode": 2}}).charge_stop_mode == 2
    assert load({"config": {"chargeStopMode": "3"}}).charge_stop_mode == 3  # TWCManager's strings
    both = {"config": {"chargeStopMode": 2}, "vehicle": {"teslaAPI": {"chargeStopMode": 3}}}
    assert load(both).charge_stop_mode == 3
    assert load(both).tesla_api.charge_stop_mode == 3  # the module's copy agrees
    off = {"vehicle": {"teslaAPI": {"enabled": False, "chargeStopMode": 2}}}
    assert load(off).charge_stop_mode == 2 and load(off).tesla_api is None


@pytest.mark.parametrize(
    ("data", "key_path"),
    [
        ({"vehicle": {"teslaAPI": {"chargeStopMode": 4}}}, "vehicle.teslaAPI.chargeStopMode"),
        ({"config": {"chargeStopMode": "two"}}, "config.chargeStopMode"),
    ],
)
def test_a_bad_charge_stop_mode_names_its_key(data, key_path):
    with pytest.raises(ConfigError) as error:
        load(data)
    assert key_path in str(error.value) and "pause the TWC's heartbeats" in str(error.value)


def test_check_config_names_the_key(tmp_path):
    bad = tmp_path / "config.json"
    wiring = '"config": {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32}'
    bad.write_text("{" + wiring + ', "vehicle": {"teslaAPI": {"chargeStopMode": 9}}}')
    result = subprocess.run(
        [sys.executable, "-m", "twcmaster", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "vehicle.teslaAPI.chargeStopMode" in result.stderr


# --- the simulated TWC -------------------------------------------------------------------------

MASTER = messages.TWCMANAGER_MASTER_ID


def charging_twc(firmware=NEW) -> SimulatedSlave:
    twc = SimulatedSlave(TWC, 0x21, 2, car=SimulatedCar(seed=3), seed=3, firmware=firmware)
    for k in range(40):  # 40 s of 16 A heartbeats: the car charges
        twc.handle(messages.MasterHeartbeat.build(MASTER, TWC, 9, 1600, 2), float(k))
    assert twc.actual_amps > 10
    return twc


def test_sim_without_heartbeats_link_ready_at_10s_car_stops_at_30s():
    twc = charging_twc()
    last_s = 39.0
    assert not twc.poll(last_s + 9.0)
    assert [m.code for m in twc.poll(last_s + 10.5)] == [Code.SLAVE_LINKREADY]
    twc.advance(last_s + 29.0)
    assert twc.actual_amps > 10
    twc.advance(last_s + 31.0)
    assert twc.car.interruptions == 1  # the power is cut; the car's draw ramps down
    twc.advance(last_s + 45.0)
    assert twc.actual_amps == 0


@pytest.mark.parametrize(("firmware", "answers"), [(NEW, True), ((4, 0, 0, 0), False)])
def test_sim_relay_commands_only_from_firmware_453(firmware, answers):
    twc = charging_twc(firmware)
    stop = messages.AddressedRequest(Code.STOP_CHARGING, MASTER, TWC)
    replies = twc.handle(stop, 40.0)
    if not answers:
        assert replies == [] and twc.relay_closed and twc.actual_amps > 10
        return
    assert [r.code for r in replies] == [Code.ACK_STOP] and not twc.relay_closed
    assert twc.car.interruptions == 1
    twc.advance(55.0)
    assert twc.actual_amps == 0
    start = messages.AddressedRequest(Code.START_CHARGING, MASTER, TWC)
    assert [r.code for r in twc.handle(start, 56.0)] == [Code.ACK_START] and twc.relay_closed
