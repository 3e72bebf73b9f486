"""The simulated slave, driven message by message with a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from twcmaster.protocol import codec, messages
from twcmaster.protocol.messages import Code
from twcmaster.sim.car import CarConfig, SimulatedCar, vin_check_digit_ok
from twcmaster.sim.slave import (
    LINKREADY_BURST_COUNT,
    P2ZeroOffer,
    SimulatedSlave,
    SlaveOptions,
    State,
)

MASTER = 0x7777
SLAVE_ID = 0x1234


def make(protocol: int = 2, *, car: SimulatedCar | None | str = "car", **kwargs) -> SimulatedSlave:
    if car == "car":
        car = SimulatedCar(seed=1)
    return SimulatedSlave(SLAVE_ID, 0x55, protocol, car=car, seed=1, **kwargs)


def heartbeat(
    slave: SimulatedSlave,
    t: float,
    command: int = 0,
    amps: float = 0.0,
    receiver: int | None = None,
) -> messages.SlaveHeartbeat | None:
    """Send one master heartbeat; return the slave's reply (None when it says nothing)."""
    target = slave.twcid if receiver is None else receiver
    msg = messages.MasterHeartbeat.build(MASTER, target, command, round(amps * 100), slave.protocol)
    replies = slave.handle(msg, t)
    assert len(replies) <= 1
    return replies[0] if replies else None


def run(slave: SimulatedSlave, start: float, end: float, command: int = 0, amps: float = 0.0):
    """Heartbeats every second from ``start`` to ``end``; the first one carries the command."""
    replies = []
    t = start
    while t <= end:
        replies.append(heartbeat(slave, t, command if t == start else 0, amps if t == start else 0))
        t += 1.0
    return replies


def request(slave: SimulatedSlave, code: Code, t: float, length: int = 16) -> list:
    return slave.handle(messages.AddressedRequest(code, MASTER, slave.twcid, length), t)


def body_length(message: messages.Message) -> int:
    return len(message.to_payload()) + 1


def charging_slave(protocol: int = 2, amps: float = 32.0, **kwargs) -> SimulatedSlave:
    slave = make(protocol, **kwargs)
    command = 0x09 if protocol == 2 else 0x05
    replies = run(slave, 2.0, 30.0, command, amps)
    assert replies[-1].state == State.CHARGING
    return slave


# --- heartbeats and states ----------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "length"), [(1, 14), (2, 16)])
def test_unit_without_car_reports_ready_and_the_idle_offset(protocol, length):
    slave = make(protocol, car=None)
    reply = heartbeat(slave, 1.0)
    assert (reply.sender, reply.receiver) == (SLAVE_ID, MASTER)
    assert (reply.state, reply.allowed_centiamps, reply.actual_centiamps) == (0x00, 0, 25)
    assert body_length(reply) == length


def test_heartbeats_for_other_ids_get_no_reply():
    slave = make()
    assert heartbeat(slave, 1.0, receiver=0x4321) is None
    assert slave.stats.heartbeat_times_s == []


def test_p2_state_sequence_04_08_01_while_the_car_ramps():
    slave = make(2)
    first = heartbeat(slave, 2.0)
    assert (first.state, first.allowed_centiamps) == (State.READY_TO_CHARGE, 0)  # asking
    replies = run(slave, 3.0, 30.0, 0x09, 32.0)
    states = [r.state for r in replies]
    assert states[0] == State.STARTING
    assert set(states[:3]) == {State.STARTING}  # a few seconds of 08
    assert states[-1] == State.CHARGING
    assert states == sorted(states, key=[State.STARTING, State.CHARGING].index)
    assert all(r.allowed_centiamps == 3200 for r in replies)
    actual = [r.actual_centiamps / 100 for r in replies]
    rises = [b - a for a, b in zip(actual, actual[1:], strict=False) if b - a > 0.01]
    assert rises and max(rises) <= 3.0  # about 2.5 A/s
    assert actual[-1] == pytest.approx(30.9, abs=0.05)  # a little below 32 A (§6.1)


def test_p1_zero_offer_stops_the_car_in_state_03_and_a_new_limit_restarts_it():
    slave = charging_slave(protocol=1, amps=16.0)
    stopped = run(slave, 31.0, 45.0, 0x05, 0.0)
    assert {r.state for r in stopped} == {State.DO_NOT_CHARGE}
    assert stopped[-1].allowed_centiamps == 0 and stopped[-1].actual_centiamps == 25  # §6.6
    assert body_length(stopped[-1]) == 14
    restarted = run(slave, 46.0, 70.0, 0x05, 16.0)
    assert restarted[0].state == State.STARTING and restarted[-1].state == State.CHARGING


def test_p2_set_limit_05_counts_before_charging_only_and_09_always():
    slave = make(2)
    assert heartbeat(slave, 2.0, 0x05, 20.0).allowed_centiamps == 2000  # before charging
    run(slave, 3.0, 30.0)
    assert heartbeat(slave, 31.0, 0x05, 10.0).allowed_centiamps == 2000  # ignored now
    assert slave.stats.ignored_limits == 1
    assert heartbeat(slave, 32.0, 0x09, 10.0).allowed_centiamps == 1000
    last = run(slave, 33.0, 45.0)[-1]
    assert last.actual_centiamps / 100 == pytest.approx(9.14, abs=0.02)


def test_p2_zero_offer_stops_the_car_and_repeated_stops_need_a_replug():
    slave = charging_slave(protocol=2, options=SlaveOptions(p2_zero_offer=P2ZeroOffer.STOP))
    t = 31.0
    for _ in range(4):  # the car tolerates 3 interruptions per session (CarConfig default)
        stopped = run(slave, t, t + 10, 0x09, 0.0)[-1]
        assert (stopped.state, stopped.allowed_centiamps) == (State.DO_NOT_CHARGE, 0)
        assert stopped.actual_centiamps == 25
        again = run(slave, t + 11, t + 40, 0x09, 32.0)[-1]
        t += 41
    assert again.state == State.DO_NOT_CHARGE and again.actual_centiamps == 25  # refuses
    slave.unplug(t)
    slave.plug(t + 5)
    assert run(slave, t + 10, t + 40, 0x09, 32.0)[-1].state == State.CHARGING


def test_p2_zero_offer_can_be_ignored_instead():
    slave = charging_slave(protocol=2, options=SlaveOptions(p2_zero_offer=P2ZeroOffer.IGNORE))
    last = run(slave, 31.0, 40.0, 0x09, 0.0)[-1]
    assert (last.state, last.allowed_centiamps) == (State.CHARGING, 3200)
    assert slave.stats.ignored_limits == 1


def test_slave_copies_any_limit_and_records_the_highest():
    slave = make(2)
    heartbeat(slave, 2.0, 0x09, 655.35)
    reply = run(slave, 3.0, 40.0)[-1]
    assert reply.allowed_centiamps == 0xFFFF  # §4.1: 655.35 A accepted
    assert slave.stats.max_limit_centiamps == 0xFFFF
    assert reply.actual_centiamps == 4800  # only the car's own charger limits it
    heartbeat(slave, 41.0, 0x09, 16.0)
    assert slave.stats.max_limit_centiamps == 0xFFFF


def test_ack_08_with_amps_sets_the_limit_and_no_change_keeps_it():
    slave = make(1)
    assert heartbeat(slave, 2.0, 0x08, 0.0).allowed_centiamps == 0
    assert heartbeat(slave, 3.0, 0x08, 48.0).allowed_centiamps == 4800
    assert heartbeat(slave, 4.0, 0x00).allowed_centiamps == 4800


def test_unknown_heartbeat_commands_are_counted_not_obeyed():
    slave = make(1)
    heartbeat(slave, 2.0, 0x05, 16.0)
    assert heartbeat(slave, 3.0, 0x09, 32.0).allowed_centiamps == 1600  # 09 is P2 only
    slave.handle(messages.MasterHeartbeat(MASTER, SLAVE_ID, bytes([0x06, 0, 0, 0, 0, 0, 0])), 4)
    assert slave.stats.unknown_commands == 2


def test_p1_slave_accepts_twcmanager_nine_byte_heartbeats():
    slave = make(1)
    hb = messages.MasterHeartbeat.build(MASTER, SLAVE_ID, 0x05, 1600, protocol=2)
    (reply,) = slave.handle(hb, 2.0)
    assert reply.allowed_centiamps == 1600 and body_length(reply) == 14


def test_error_command_02_gets_one_error_reply_then_silence_until_reset():
    slave = charging_slave(protocol=2)
    error = messages.MasterHeartbeat(MASTER, SLAVE_ID, bytes.fromhex("020400000000000000"))
    (reply,) = slave.handle(error, 31.0)
    assert reply.state == State.ERROR
    assert slave.stats.error_commands == 1
    assert run(slave, 32.0, 60.0) == [None] * 29  # silent
    assert slave.poll(200.0) == [] and slave.next_event_s() is None  # no link-ready either
    assert len(slave.stats.heartbeat_times_s) == 29 + 29 + 1  # arrivals are still counted
    assert slave.car.actual_amps == 0.0  # and the car stopped
    slave.reset(300.0)
    assert heartbeat(slave, 301.0).state == State.READY_TO_CHARGE


# --- link-ready and the master's presence (§3.2, §5.1) ------------------------------------------


def linkready_times(slave: SimulatedSlave, start: float, end: float, step: float = 0.1):
    times = []
    for i in range(round((end - start) / step) + 1):
        t = start + i * step
        for message in slave.poll(t):
            assert isinstance(message, messages.SlaveLinkReady)
            times.append(round(t, 3))
    return times


@pytest.mark.parametrize(("protocol", "length"), [(1, 14), (2, 16)])
def test_link_ready_every_10_s_without_a_master(protocol, length):
    slave = make(protocol, max_amps=80.0)
    times = linkready_times(slave, 0.0, 45.0)
    assert 1.0 <= times[0] <= 2.1  # shortly after power-up, with jitter
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx([10.0] * 4)
    (message,) = slave.poll(times[-1] + 10.0)
    assert (message.sender, message.sign, message.max_centiamps) == (SLAVE_ID, 0x55, 8000)
    assert body_length(message) == length


def test_late_poll_gives_one_link_ready_not_a_catch_up_burst():
    slave = make()
    assert len(slave.poll(35.0)) == 1
    assert slave.poll(35.0) == [] and slave.next_event_s() == pytest.approx(45.0)


def test_link_ready_jitter_differs_between_units():
    firsts = {
        linkready_times(SimulatedSlave(SLAVE_ID, 1, seed=seed), 0.0, 3.0, 0.01)[0]
        for seed in range(10)
    }
    assert len(firsts) > 3


def test_link_ready_stops_with_heartbeats_and_resumes_10_s_after_the_last():
    slave = make()
    assert linkready_times(slave, 0.0, 5.0)
    for t in range(5, 60):
        heartbeat(slave, float(t))
        assert slave.poll(t + 0.5) == []
        assert slave.has_master(t + 0.5)
    # Last heartbeat at 59 s: master lost at 69 s, link-ready again from then on.
    assert linkready_times(slave, 59.5, 90.0) == [69.0, 79.0, 89.0]
    assert not slave.has_master(69.0)


def test_charging_car_stops_about_30_s_after_the_last_heartbeat():
    slave = charging_slave()
    slave.advance(59.0)  # last heartbeat at 30 s
    assert slave.car.actual_amps > 30.0
    slave.advance(70.0)
    assert slave.car.actual_amps == 0.0
    back = heartbeat(slave, 71.0)
    assert (back.state, back.allowed_centiamps) == (State.DO_NOT_CHARGE, 0)
    assert run(slave, 72.0, 100.0, 0x09, 32.0)[-1].state == State.CHARGING  # a new limit


def test_id_collision_makes_the_slave_pick_a_new_id_and_sign():
    slave = make()
    slave.handle(messages.MasterLinkReady(1, SLAVE_ID, 0x77), 1.0)
    assert slave.twcid != SLAVE_ID and slave.stats.id_changes == 1
    assert slave.twcid not in (0x0000, 0x7777)
    assert not {slave.twcid >> 8, slave.twcid & 0xFF} & {0xC0, 0xDB}
    assert heartbeat(slave, 2.0, receiver=SLAVE_ID) is None  # the old ID is gone
    (message,) = slave.poll(30.0)
    assert message.sender == slave.twcid and (message.sender, message.sign) != (SLAVE_ID, 0x55)
    slave.handle(messages.MasterLinkReady(2, 0x4242, 0x77), 31.0)  # another ID: no change
    assert slave.stats.id_changes == 1


def test_second_master_link_ready_2_is_answered_with_five_link_readies():
    slave = make()
    linkready_times(slave, 0.0, 3.0)  # the power-up link-ready is out of the way
    slave.handle(messages.MasterLinkReady(2, MASTER, 0x77), 4.0)
    assert slave.next_event_s() > 5.0  # the first LR2 is ignored
    slave.handle(messages.MasterLinkReady(2, MASTER, 0x77), 4.125)
    assert slave.next_event_s() == pytest.approx(4.325)  # ~0.2 s later
    assert len(linkready_times(slave, 4.2, 5.0, 0.025)) == LINKREADY_BURST_COUNT
    for t in (4.25, 4.375, 4.5):  # the rest of the same burst: no more answers
        slave.handle(messages.MasterLinkReady(2, MASTER, 0x77), t)
    assert linkready_times(slave, 4.6, 6.0) == []


def test_link_ready_2_answer_can_be_turned_off():
    slave = make(options=SlaveOptions(answer_second_linkready2=False))
    linkready_times(slave, 0.0, 3.0)
    for t in (4.0, 4.125, 4.25):
        slave.handle(messages.MasterLinkReady(2, MASTER, 0x77), t)
    assert linkready_times(slave, 4.2, 6.0) == []


# --- queries (§3.4, §3.5) -----------------------------------------------------------------------


def test_energy_report_forms_and_counter():
    p2 = charging_slave(
        protocol=2, voltage_v=(230, 231, 229), options=SlaveOptions(lifetime_kwh=100)
    )
    (report,) = request(p2, Code.REQUEST_ENERGY, 30.5)
    assert body_length(report) == 20 and report.voltages == (230, 231, 229)
    assert report.phase_half_amps == (62, 62, 62)  # ~30.9 A in 0.5 A steps
    run(p2, 31.0, 3630.0)  # an hour at ~30.9 A x 230 V x 3 phases: ~21 kWh
    (later,) = request(p2, Code.REQUEST_ENERGY, 3631.0)
    assert later.counter == 100 + 21
    old_p2 = make(2, firmware=(4, 0, 0, 0))
    (short,) = request(old_p2, Code.REQUEST_ENERGY, 1.0)
    assert body_length(short) == 16 and short.phase_half_amps is None
    (p1_report,) = request(make(1), Code.REQUEST_ENERGY, 1.0, length=14)
    assert body_length(p1_report) == 16 and p1_report.voltages == (230, 0, 0)


def test_vin_parts_join_to_the_cars_vin():
    slave = make(2)
    codes = (Code.REQUEST_VIN1, Code.REQUEST_VIN2, Code.REQUEST_VIN3)
    parts = [request(slave, code, 1.0, length=15)[0] for code in codes]  # TM sends 15 bytes
    assert [p.part for p in parts] == [1, 2, 3]
    assert all(body_length(p) == 20 for p in parts)
    vin = "".join(p.text for p in parts)
    assert vin == slave.car.vin and vin_check_digit_ok(vin)


@pytest.mark.parametrize("car", [None, SimulatedCar(tesla=False), SimulatedCar(plugged=False)])
def test_vin_is_all_zero_without_a_tesla(car):
    slave = make(2, car=car)
    (part,) = request(slave, Code.REQUEST_VIN1, 1.0)
    assert part.text == "" and part.to_payload()[4:] == bytes(15)


def test_firmware_serial_and_old_form_queries():
    slave = make(2)
    (firmware,) = request(slave, Code.REQUEST_FIRMWARE, 1.0)
    assert firmware.version == (4, 5, 3, 0) and body_length(firmware) == 16
    (serial,) = request(slave, Code.REQUEST_SERIAL, 1.0)
    assert len(serial.text) == 11 and serial.text[7:11] == f"{SLAVE_ID:04X}"  # DV's reading
    old = messages.UnaddressedMessage(Code.REQUEST_OLD_FIRMWARE, 16)
    (reply,) = slave.handle(old, 1.0)
    assert reply.code == Code.OLD_FIRMWARE and reply.data == bytes([4, 5, 3])
    assert slave.handle(messages.UnaddressedMessage(Code.IDLE, 14), 1.0) == []


def test_older_firmware_does_not_answer_extended_queries():
    p1 = make(1)
    for code in (Code.REQUEST_VIN1, Code.REQUEST_FIRMWARE, Code.REQUEST_SERIAL, Code.STOP_CHARGING):
        assert request(p1, code, 1.0, length=14) == []
    assert p1.stats.unsupported_requests == 4


def test_start_stop_commands_open_and_close_the_relay():
    slave = charging_slave(protocol=2)
    (ack,) = request(slave, Code.STOP_CHARGING, 31.0)
    assert (ack.code, ack.sender) == (Code.ACK_STOP, slave.twcid) and body_length(ack) == 16
    assert not slave.relay_closed
    stopped = run(slave, 32.0, 40.0)[-1]
    assert stopped.state == State.DO_NOT_CHARGE and stopped.actual_centiamps == 25
    (plug_state,) = request(slave, Code.REQUEST_PLUG_STATE, 40.5)
    assert plug_state.data == b"\x03"
    (ack,) = request(slave, Code.START_CHARGING, 41.0)
    assert ack.code == Code.ACK_START and slave.relay_closed
    assert run(slave, 42.0, 70.0)[-1].state == State.CHARGING


def test_requests_for_other_ids_are_ignored():
    slave = make(2)
    other = messages.AddressedRequest(Code.REQUEST_ENERGY, MASTER, 0x4321)
    assert slave.handle(other, 1.0) == []


def test_unknown_and_blocked_codes_are_counted():
    slave = make(2)
    unknown = messages.decode(codec.frame(bytes.fromhex("FB99") + bytes(13))[1:-1])
    assert slave.handle(unknown, 1.0) == [] and slave.stats.unknown_codes == 1
    silence = messages.Unknown(0xFCA1, bytes.fromhex("FCA1") + bytes(13), "blocked code")
    slave.handle(silence, 2.0)
    assert slave.stats.blocked_codes == 1
    assert heartbeat(slave, 3.0) is None  # FC A1: silent for about 5 s (§3.1)
    assert heartbeat(slave, 7.5) is not None
    flash_write = messages.Unknown(0xFC19, bytes.fromhex("FC19") + bytes(13), "blocked code")
    slave.handle(flash_write, 8.0)
    assert slave.stats.blocked_codes == 2
    assert heartbeat(slave, 9.0) is None and slave.next_event_s() is None  # locked up


def test_heartbeat_intervals_for_benchmarks():
    slave = make()
    for t in (1.0, 2.5, 3.5, 6.0):
        heartbeat(slave, t)
    assert slave.stats.heartbeat_intervals_s() == [1.5, 1.0, 2.5]


def test_every_reply_passes_the_slave_allow_list():
    slave = charging_slave(protocol=2)
    replies = [heartbeat(slave, 31.0)]
    for code in (
        Code.REQUEST_ENERGY,
        Code.REQUEST_VIN1,
        Code.REQUEST_VIN2,
        Code.REQUEST_VIN3,
        Code.REQUEST_SERIAL,
        Code.REQUEST_FIRMWARE,
        Code.REQUEST_PLUG_STATE,
        Code.STOP_CHARGING,
        Code.START_CHARGING,
    ):
        replies += request(slave, code, 32.0)
    replies += slave.poll(100.0)
    for reply in replies:
        wire = messages.encode_for_tx(reply, 0xFE, messages.SLAVE_TX_CODES)
        (frame,) = codec.FrameParser().feed(wire, 0.0)
        assert messages.decode(frame.body) == reply


def test_car_config_reaches_the_reply():
    car = SimulatedCar(CarConfig(battery_kwh=1.0, soc_start=0.95, soc_limit=0.96))
    slave = make(2, car=car)
    last = run(slave, 2.0, 60.0, 0x09, 32.0)[-1]
    assert car.full and last.state == State.DO_NOT_CHARGE  # at its charge limit (§4.2)
