"""The bus glue: master bytes in, slave bytes out, half duplex, and the demo scenario."""

from __future__ import annotations

import random

import pytest

from twcmaster.protocol import codec, messages
from twcmaster.protocol.messages import Code
from twcmaster.sim.bus import DemoConfig, DemoScenario, SimulatedBus, make_slaves
from twcmaster.sim.slave import SimulatedSlave, State

MASTER = 0x7777
T27_TM_VIN_REQUEST = bytes.fromhex("C0 FB EE 77 77 03 2E 00 00 00 00 00 00 00 00 0D C0")


def master_bytes(*msgs: messages.Message) -> bytes:
    return b"".join(messages.encode_for_tx(m) for m in msgs)


def heartbeat_bytes(receiver: int, command: int = 0, amps: float = 0.0, protocol: int = 2):
    hb = messages.MasterHeartbeat.build(MASTER, receiver, command, round(amps * 100), protocol)
    return master_bytes(hb)


def parse(data: bytes) -> list[messages.Message]:
    events = codec.FrameParser().feed(data, 0.0)
    assert all(isinstance(e, codec.Frame) for e in events), events
    return [messages.decode(e.body) for e in events]


def one_slave_bus(**kwargs) -> tuple[SimulatedBus, SimulatedSlave]:
    slave = SimulatedSlave(0x032E, 0x55, 2, seed=1)
    return SimulatedBus([slave], **kwargs), slave


def test_heartbeat_bytes_in_reply_bytes_out_with_trailers():
    bus, slave = one_slave_bus()
    bus.receive(heartbeat_bytes(0x032E, 0x09, 16.0), 5.0)
    assert bus.next_event_s() == pytest.approx(5.02)  # after reply_delay_s
    assert bus.transmit(5.01) == b""
    data = bus.transmit(5.02)
    assert data.endswith(b"\xc0\xfe")  # a trailer byte after the frame, like real units
    (reply,) = parse(data)
    assert isinstance(reply, messages.SlaveHeartbeat)
    assert (reply.sender, reply.receiver, reply.allowed_centiamps) == (0x032E, MASTER, 0)


def test_frames_split_across_reads_and_tm_15_byte_requests_are_understood():
    bus, slave = one_slave_bus()
    wire = heartbeat_bytes(0x032E) + b"\xfe\x00" + T27_TM_VIN_REQUEST  # garbage between
    for i in range(0, len(wire), 3):
        bus.receive(wire[i : i + 3], 1.0 + i / 1000)
    replies = parse(bus.transmit(2.0))
    assert [r.code for r in replies] == [Code.SLAVE_HEARTBEAT, Code.VIN1]
    assert bus.stats.frames_received == 2 and bus.stats.bad_frames == 0


def test_trailer_can_be_turned_off_and_bad_frames_are_counted():
    bus, slave = one_slave_bus(trailer=None)
    corrupt = bytearray(heartbeat_bytes(0x032E))
    corrupt[8] ^= 0x01
    bus.receive(bytes(corrupt), 1.0)
    assert bus.stats.bad_frames == 1 and bus.transmit(1.0) == b""  # no reply
    bus.receive(heartbeat_bytes(0x032E), 3.0)
    data = bus.transmit(4.0)
    assert data[0] == data[-1] == 0xC0


def test_link_readies_come_from_poll_when_due():
    bus, slave = one_slave_bus()
    first_s = bus.next_event_s()
    assert 1.0 <= first_s <= 2.0
    assert bus.transmit(first_s - 0.01) == b""
    (linkready,) = parse(bus.transmit(first_s))
    assert linkready == messages.SlaveLinkReady(0x032E, 0x55, 3200, 2)
    assert bus.next_event_s() == pytest.approx(first_s + 10.0)


def test_half_duplex_replies_never_overlap():
    slaves = make_slaves(3, seed=4)
    bus = SimulatedBus(slaves)
    # An old-form query has no ID: every unit answers (§8 Q19); they must queue up.
    bus.receive(master_bytes(messages.UnaddressedMessage(Code.REQUEST_OLD_FIRMWARE, 16)), 0.5)
    frame_s = 19 * codec.BYTE_TIME_S  # 16-byte body + 2 delimiters + trailer
    times = []
    while len(times) < 3:
        due = bus.next_event_s()
        data = bus.transmit(due)
        if data:
            times.append(due)
            assert len(parse(data)) == 1
    assert times[0] == pytest.approx(0.52)
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx([frame_s] * 2)


def test_late_transmit_returns_everything_due_in_order():
    bus = SimulatedBus(make_slaves(2, seed=4))
    for slave in bus.slaves:
        bus.receive(heartbeat_bytes(slave.twcid), 3.0)
    replies = parse(bus.transmit(60.0))
    heartbeats = [r for r in replies if isinstance(r, messages.SlaveHeartbeat)]
    assert [r.sender for r in heartbeats] == [s.twcid for s in bus.slaves]


def test_plug_and_unplug_through_the_bus():
    bus, slave = one_slave_bus()
    bus.receive(heartbeat_bytes(0x032E), 1.0)
    assert parse(bus.transmit(2.0))[-1].state == State.READY
    bus.plug(0, True, 2.0)
    bus.receive(heartbeat_bytes(0x032E), 5.0)
    assert parse(bus.transmit(6.0))[-1].state == State.READY_TO_CHARGE
    bus.plug(0, False)  # at the latest time the bus has seen
    bus.receive(heartbeat_bytes(0x032E), 7.0)
    assert parse(bus.transmit(8.0))[-1].state == State.READY


def test_default_ids_are_distinct_and_safe():
    for seed in range(200):
        slaves = make_slaves(3, seed=seed)
        ids = [s.twcid for s in slaves]
        assert len(set(ids)) == 3
        for twcid in ids:
            assert twcid not in (0x0000, 0x7777)
            assert not {twcid >> 8, twcid & 0xFF} & {0xC0, 0xDB}
    assert [s.twcid for s in make_slaves(3, seed=9)] == [s.twcid for s in make_slaves(3, seed=9)]


class TinyMaster:
    """Just enough master to drive the bus: heartbeat each known slave once a second,
    offering a fixed limit (09 on P2) until the slave reports it, then 00 (§6.6)."""

    def __init__(self, offer_amps: float) -> None:
        self.offer_centiamps = round(offer_amps * 100)
        self.slaves: dict[int, int] = {}  # twcid -> last reported allowed centiamps
        self.parser = codec.FrameParser()
        self.replies: list[messages.SlaveHeartbeat] = []

    def hear(self, data: bytes) -> None:
        for event in self.parser.feed(data, 0.0):
            message = messages.decode(event.body)
            if isinstance(message, messages.SlaveLinkReady):
                self.slaves.setdefault(message.sender, -1)
            elif isinstance(message, messages.SlaveHeartbeat):
                self.slaves[message.sender] = message.allowed_centiamps
                self.replies.append(message)

    def heartbeats(self) -> bytes:
        out = b""
        for twcid, allowed in self.slaves.items():
            command = 0x09 if allowed != self.offer_centiamps else 0x00
            out += heartbeat_bytes(twcid, command, self.offer_centiamps / 100)
        return out


def test_a_tiny_master_gets_two_cars_charging_without_busy_polling():
    bus = SimulatedBus(make_slaves(2, seed=11))
    master = TinyMaster(16.0)
    next_heartbeat_s = 0.0
    wakeups = 0
    now = 0.0
    while now < 120.0:
        due = bus.next_event_s()
        now = min(due, next_heartbeat_s)
        wakeups += 1
        master.hear(bus.transmit(now))
        if now >= next_heartbeat_s:
            bus.receive(master.heartbeats(), now)
            next_heartbeat_s += 1.0
    assert wakeups < 400  # ~120 heartbeat ticks + ~240 replies + a few link-readies
    for slave in bus.slaves:
        assert slave.state(now) == State.CHARGING
        assert slave.stats.max_limit_centiamps == 1600
        intervals = slave.stats.heartbeat_intervals_s()
        assert intervals and max(intervals) == pytest.approx(1.0)
        assert slave.stats.linkreadies_sent == 1  # heartbeats stopped them


def test_demo_scenario_is_seeded_and_cars_come_and_go():
    def simulate(seed: int) -> list[tuple[float, str]]:
        bus = SimulatedBus(make_slaves(2, seed=1))
        scenario = DemoScenario(bus, seed=seed, config=DemoConfig(mean_stay_s=600, mean_away_s=300))
        log = []
        while (due := scenario.next_event_s()) < 4 * 3600:
            log += [(round(due, 3), line) for line in scenario.step(due)]
        return log

    log = simulate(5)
    assert log == simulate(5) and log != simulate(6)
    assert any("left" in line for _, line in log)
    assert any("arrived" in line for _, line in log)
    assert 20 < len(log) < 100  # 2 connectors x 4 h / (~7.5 min per half cycle)


def test_demo_cars_are_new_cars_with_valid_or_no_vins():
    bus = SimulatedBus(make_slaves(1, seed=1, plugged=False))
    scenario = DemoScenario(bus, seed=random.Random(2).randrange(100))
    first_car = None
    for _ in range(20):
        scenario.step(scenario.next_event_s())
        car = bus.slaves[0].car
        if car is not None and car.plugged:
            assert car is not first_car
            first_car = car
            assert car.vin is None or len(car.vin) == 17
            assert car.config.battery_kwh is not None
