"""Bus master unit tests, sans-I/O with a fake clock (no sleeping). Replies are hand-built
frames, so these tests pin the master to the protocol notes, not to our simulator."""

from __future__ import annotations

from itertools import pairwise

from twcmaster.protocol import codec
from twcmaster.protocol import master as bm
from twcmaster.protocol import messages as m
from twcmaster.protocol.gate import WiringLimits
from twcmaster.protocol.messages import Code
from twcmaster.protocol.vin import vin_check_digit_ok

ME = 0x7777
SLAVE_TX = m.SLAVE_TX_CODES


def slave_wire(message: m.Message) -> bytes:
    return m.encode_for_tx(message, trailer=0xFE, allowed_codes=SLAVE_TX)


def decode_wire(wire: bytes) -> m.Message:
    (frame,) = codec.FrameParser().feed(wire, 0.0)
    return m.decode(frame.body)


class Bus:
    """Drives a master with a fake clock; records what it sends."""

    def __init__(self, **settings) -> None:
        self.master = bm.BusMaster(bm.MasterSettings(**settings))
        self.now = 0.0
        self.sent: list[tuple[float, m.Message]] = []
        self.events: list[bm.Event] = []
        self.repliers: dict[int, object] = {}
        self.master.start(self.now)

    def feed(self, message: m.Message) -> list[bm.Event]:
        events = self.master.receive(slave_wire(message), self.now)
        self.events += events
        return events

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            wire, events = self.master.poll(self.now)
            self.events += events
            if wire is not None:
                message = decode_wire(wire)
                self.sent.append((self.now, message))
                reply = self._reply(message)
                if reply is not None:
                    self.now += len(wire) * codec.BYTE_TIME_S + 0.01
                    self.events += self.master.receive(slave_wire(reply), self.now)
                continue
            self.now = min(end, max(self.master.next_wakeup_s(self.now), self.now + 1e-4))

    def _reply(self, message: m.Message) -> m.Message | None:
        replier = self.repliers.get(message.receiver) if message.receiver is not None else None
        return replier(message) if replier else None

    def heartbeats_to(self, twcid: int) -> list[tuple[float, m.MasterHeartbeat]]:
        return [
            (t, msg)
            for t, msg in self.sent
            if isinstance(msg, m.MasterHeartbeat) and msg.receiver == twcid
        ]


def answering_slave(twcid: int, protocol: int = 2, state: int = 1, actual: int = 0):
    """A replier that echoes each offer as its allowed amps, like a slave accepting limits."""
    current = {"allowed": 0}

    def reply(message: m.Message) -> m.Message | None:
        if isinstance(message, m.MasterHeartbeat):
            if message.command in (0x05, 0x09):
                current["allowed"] = message.centiamps
            return m.SlaveHeartbeat.build(twcid, ME, state, current["allowed"], actual, protocol)
        return None

    return reply


def link(bus: Bus, twcid: int, protocol: int = 2, max_centiamps: int = 3200, **kw) -> None:
    bus.repliers[twcid] = answering_slave(twcid, protocol, **kw)
    bus.feed(m.SlaveLinkReady(twcid, 0x55, max_centiamps, protocol))


def test_startup_burst_is_five_lr1_then_five_lr2_100ms_apart():
    bus = Bus()
    bus.run(2.0)
    burst = [(t, msg) for t, msg in bus.sent if isinstance(msg, m.MasterLinkReady)]
    assert [msg.which for _, msg in burst] == [1] * 5 + [2] * 5
    assert all(msg.sender == ME and msg.sign == 0x77 for _, msg in burst)
    gaps = [b[0] - a[0] for a, b in pairwise(burst)]
    assert min(gaps) >= 0.1
    assert len(bus.sent) == 10  # nothing else without slaves


def test_new_slave_gets_heartbeat_at_once_and_protocol_from_length():
    bus = Bus()
    bus.run(1.5)
    link(bus, 0x1234, protocol=1, max_centiamps=8000)
    assert isinstance(bus.events[-1], bm.SlaveLinked) and bus.events[-1].protocol == 1
    start = bus.now
    bus.run(0.05)
    ((t, hb),) = bus.heartbeats_to(0x1234)
    assert t - start < 0.05
    assert len(hb.data) == 7  # P1: 7 data bytes (§8 Q2)
    assert hb.command == 0x05 and hb.centiamps == 0  # 0 A always as "05 00 00" (§6.6)


def test_offer_becomes_set_limit_then_no_change_once_reported():
    bus = Bus()
    link(bus, 0x1234, protocol=2)
    bus.run(1.5)
    bus.master.set_offer(0x1234, 16)
    bus.run(3.0)
    blocks = [hb.data for _, hb in bus.heartbeats_to(0x1234)]
    assert bytes.fromhex("09 06 40 00 00 00 00 00 00") in blocks  # 16.00 A, P2 uses 09
    assert blocks[-1] == bytes(9)  # slave reports 16 A: "no change"


def test_offer_is_capped_by_the_link_ready_max_and_the_ceiling():
    bus = Bus(limits=WiringLimits(max_amps_per_twc=20))
    link(bus, 0x1234, max_centiamps=1600)
    bus.master.set_offer(0x1234, 40)
    assert bus.master.slaves[0x1234].offer_amps == 16
    link(bus, 0x2345, max_centiamps=8000)
    bus.master.set_offer(0x2345, 40)
    assert bus.master.slaves[0x2345].offer_amps == 20


def test_each_of_three_slaves_gets_a_heartbeat_about_every_second():
    bus = Bus()
    bus.run(1.5)
    for twcid in (0x1111, 0x2222, 0x3333):
        link(bus, twcid)
    bus.run(60.0)
    for twcid in (0x1111, 0x2222, 0x3333):
        times = [t for t, _ in bus.heartbeats_to(twcid)]
        gaps = [b - a for a, b in pairwise(times)]
        assert len(times) >= 58
        assert max(gaps) <= 1.2, (twcid, max(gaps))


def test_silent_slave_is_dropped_after_the_timeout():
    bus = Bus(slave_timeout_s=26.0)
    bus.run(1.5)
    bus.feed(m.SlaveLinkReady(0x1234, 0x55, 3200, 2))  # links, then never answers
    bus.run(25.0)
    assert 0x1234 in bus.master.slaves
    bus.run(2.0)
    assert 0x1234 not in bus.master.slaves
    lost = [e for e in bus.events if isinstance(e, bm.SlaveLost)]
    assert lost and lost[0].twcid == 0x1234 and 26.0 < lost[0].silent_s < 27.0


def test_slave_with_the_masters_id_restarts_the_burst():
    bus = Bus()
    bus.run(2.0)
    events = bus.feed(m.SlaveLinkReady(ME, 0x55, 3200, 2))
    assert any(isinstance(e, bm.Alarm) and e.kind == "id_collision" for e in events)
    assert ME not in bus.master.slaves
    before = len(bus.sent)
    bus.run(2.0)
    again = [msg for _, msg in bus.sent[before:] if isinstance(msg, m.MasterLinkReady)]
    assert len(again) == 10


def test_foreign_master_raises_an_alarm_but_our_echo_does_not():
    bus = Bus()
    bus.run(0.01)  # first link-ready goes out
    _, first = bus.sent[0]
    echo = bus.master.receive(codec.frame(first.to_payload()), bus.now + 0.02)
    assert not [e for e in echo if isinstance(e, bm.Alarm)]
    foreign = m.MasterLinkReady(1, 0x4242, 0x11)
    events = bus.master.receive(codec.frame(foreign.to_payload()), bus.now + 0.03)
    alarms = [e for e in events if isinstance(e, bm.Alarm)]
    assert alarms and alarms[0].kind == "foreign_master" and alarms[0].twcid == 0x4242
    hb = m.MasterHeartbeat.build(0x4242, 0x1234, 0x05, 600, 2)
    events = bus.master.receive(codec.frame(hb.to_payload()), bus.now + 0.04)
    assert any(isinstance(e, bm.Alarm) and e.kind == "foreign_master" for e in events)


def test_heartbeat_from_unknown_slave_or_for_other_master_is_ignored():
    bus = Bus()
    events = bus.feed(m.SlaveHeartbeat.build(0x1234, ME, 1, 600, 550, 2))
    assert isinstance(events[0], bm.Ignored)
    link(bus, 0x1234)
    events = bus.feed(m.SlaveHeartbeat.build(0x1234, 0x0000, 1, 600, 550, 2))
    assert isinstance(events[0], bm.Ignored) and "not us" in events[0].reason


def test_fourth_slave_allowed_up_to_max_then_refused():
    bus = Bus(max_slaves=3)
    for twcid in (0x1111, 0x2222, 0x3333):
        link(bus, twcid)
    events = bus.feed(m.SlaveLinkReady(0x4444, 0x55, 3200, 2))
    assert any(isinstance(e, bm.Alarm) and e.kind == "too_many_slaves" for e in events)
    assert set(bus.master.slaves) == {0x1111, 0x2222, 0x3333}


def vin_replier(twcid: int, vin: str, actual: int = 1000):
    heartbeat = answering_slave(twcid, actual=actual)
    parts = (vin[:7], vin[7:14], vin[14:])

    def reply(message):
        if isinstance(message, m.AddressedRequest) and message.code in m.VIN_REQUEST_CODES:
            part = m.VIN_REQUEST_CODES.index(message.code) + 1
            return m.VinPart(part, twcid, parts[part - 1])
        if isinstance(message, m.AddressedRequest) and message.code == Code.REQUEST_ENERGY:
            return m.EnergyReport(twcid, 56, (230, 0, 0))
        return heartbeat(message)

    return reply


def test_vin_sequence_with_check_digit():
    bus = Bus()
    bus.run(1.5)
    bus.repliers[0x1234] = vin_replier(0x1234, "5YJ3E1EA8KF000001")
    bus.feed(m.SlaveLinkReady(0x1234, 0x55, 3200, 2))
    bus.run(10.0)
    vins = [e for e in bus.events if isinstance(e, bm.VinReported)]
    assert vins and vins[0].vin == "5YJ3E1EA8KF000001"
    assert bus.master.slaves[0x1234].vin == "5YJ3E1EA8KF000001"
    energy = [e for e in bus.events if isinstance(e, bm.EnergyReported)]
    assert energy and energy[0].voltages == (230, 0, 0)


def test_invalid_vin_is_asked_again_later_and_empty_vin_stops_asking():
    bus = Bus(vin_retry_s=60.0)
    bus.run(1.5)
    bus.repliers[0x1234] = vin_replier(0x1234, "5YJ3E1EA9KF000001")  # wrong check digit
    bus.feed(m.SlaveLinkReady(0x1234, 0x55, 3200, 2))
    bus.run(10.0)
    assert bus.master.slaves[0x1234].vin is None
    asked = lambda: sum(  # noqa: E731
        1 for _, msg in bus.sent if getattr(msg, "code", None) == Code.REQUEST_VIN1
    )
    assert asked() == 1
    bus.run(60.0)
    assert asked() == 2
    bus.repliers[0x1234] = vin_replier(0x1234, "")
    bus.run(61.0)
    assert [e.vin for e in bus.events if isinstance(e, bm.VinReported)] == [None]  # no VIN
    assert asked() == 3
    bus.run(120.0)
    assert asked() == 3


class VinCar:
    """A P2 slave whose car draws ``actual`` centiamps and answers the VIN parts listed in
    ``answers`` (the others go unanswered)."""

    def __init__(self, twcid: int, vin: str, answers=(1, 2, 3), actual: int = 1000) -> None:
        self.twcid, self.answers, self.actual = twcid, answers, actual
        self.parts = (vin[:7], vin[7:14], vin[14:])

    def __call__(self, message: m.Message) -> m.Message | None:
        if isinstance(message, m.MasterHeartbeat):
            return m.SlaveHeartbeat.build(self.twcid, ME, 1, 0, self.actual, 2)
        if isinstance(message, m.AddressedRequest) and message.code in m.VIN_REQUEST_CODES:
            part = m.VIN_REQUEST_CODES.index(message.code) + 1
            return (
                m.VinPart(part, self.twcid, self.parts[part - 1]) if part in self.answers else None
            )
        if isinstance(message, m.AddressedRequest) and message.code == Code.REQUEST_ENERGY:
            return m.EnergyReport(self.twcid, 56, (230, 0, 0))
        return None


def linked_car(car: VinCar, **settings) -> Bus:
    bus = Bus(**settings)
    bus.run(1.5)
    bus.repliers[car.twcid] = car
    bus.feed(m.SlaveLinkReady(car.twcid, 0x55, 3200, 2))
    return bus


def vin_requests(bus: Bus, part: int | None = None) -> list[float]:
    """When VIN requests (for ``part``, or any) went out."""
    codes = m.VIN_REQUEST_CODES if part is None else (m.VIN_REQUEST_CODES[part - 1],)
    return [t for t, msg in bus.sent if getattr(msg, "code", None) in codes]


def vins_reported(bus: Bus) -> list[str | None]:
    return [e.vin for e in bus.events if isinstance(e, bm.VinReported)]


def test_a_bad_check_digit_is_reported_as_ignored_with_the_vin():
    bus = linked_car(VinCar(0x1234, "5YJ3E1EA9KF000001"))
    bus.run(10.0)
    ignored = [e for e in bus.events if isinstance(e, bm.Ignored)]
    assert [e.reason for e in ignored] == [
        "VIN '5YJ3E1EA9KF000001' fails its check digit: will ask again"
    ]
    assert isinstance(ignored[0].message, m.VinPart) and ignored[0].message.part == 3
    assert vins_reported(bus) == []


def test_three_unanswered_requests_for_a_part_wait_the_retry_time():
    """§5.4: part 1 asked three times, then nothing until vin_retry_s later; the same for a
    later part, and the next sequence starts over at part 1."""
    bus = linked_car(VinCar(0x1234, "5YJ3E1EA8KF000001", answers=()), vin_retry_s=60.0)
    bus.run(100.0)
    first = vin_requests(bus)
    assert len(first) == 6 and vin_requests(bus, 1) == first
    assert first[2] - first[0] < 2.0  # three tries in a row, then a pause
    assert 60.0 < first[3] - first[2] < 62.0
    bus = linked_car(VinCar(0x1234, "5YJ3E1EA8KF000001", answers=(1,)), vin_retry_s=60.0)
    bus.run(70.0)
    parts = [
        m.VIN_REQUEST_CODES.index(msg.code) + 1
        for _, msg in bus.sent
        if msg.code in m.VIN_REQUEST_CODES
    ]
    assert parts[:4] == [1, 2, 2, 2] and parts[4:6] == [1, 2]
    assert 60.0 < vin_requests(bus, 1)[1] - vin_requests(bus, 2)[2] < 62.0
    assert vins_reported(bus) == []


def test_at_most_six_sequences_per_car_and_a_new_car_is_asked_again():
    car = VinCar(0x1234, "5YJ3E1EA9KF000001")  # wrong check digit: every sequence fails
    bus = linked_car(car, vin_retry_s=60.0)
    bus.run(500.0)
    starts = vin_requests(bus, 1)
    assert len(starts) == 6  # the first try and 5 retries (§5.4)
    assert all(60.0 < b - a < 62.0 for a, b in pairwise(starts))
    car.actual = 0  # the car leaves: forgotten after 5 s below 1 A
    bus.run(10.0)
    car.actual = 1000
    bus.run(5.0)
    assert len(vin_requests(bus, 1)) == 7


def test_the_vin_is_forgotten_after_5_s_below_1_a_and_asked_again():
    car = VinCar(0x1234, "5YJ3E1EA8KF000001")
    bus = linked_car(car)
    bus.run(10.0)
    assert vins_reported(bus) == ["5YJ3E1EA8KF000001"]
    car.actual = 99  # 0.99 A: not charging
    bus.run(4.5)  # the first heartbeat reply below 1 A starts the 5 s
    assert bus.master.slaves[0x1234].vin == "5YJ3E1EA8KF000001"
    assert bus.master.slave_views()[0].vin == "5YJ3E1EA8KF000001"
    bus.run(2.5)  # a heartbeat reply 5 s or more after that one
    assert bus.master.slaves[0x1234].vin is None
    assert bus.master.slave_views()[0].vin is None
    assert len(vin_requests(bus, 1)) == 1  # not asked while the draw stays low
    bus.run(30.0)
    assert len(vin_requests(bus, 1)) == 1
    car.actual = 100  # 1.00 A: charging again
    bus.run(5.0)
    assert len(vin_requests(bus, 1)) == 2
    assert vins_reported(bus) == ["5YJ3E1EA8KF000001"] * 2


def test_a_short_dip_below_1_a_keeps_the_vin():
    car = VinCar(0x1234, "5YJ3E1EA8KF000001")
    bus = linked_car(car)
    bus.run(10.0)
    car.actual = 0
    bus.run(4.0)
    car.actual = 1000
    bus.run(2.0)
    car.actual = 0
    bus.run(4.0)  # 8 s below 1 A in all, never 5 s in a row
    assert bus.master.slaves[0x1234].vin == "5YJ3E1EA8KF000001"
    assert len(vin_requests(bus, 1)) == 1


def test_stopping_ends_the_vin_sequence():
    bus = linked_car(VinCar(0x1234, "5YJ3E1EA8KF000001", answers=()))
    while not vin_requests(bus):
        bus.run(0.1)
    bus.master.stop(bus.now)
    stopped_s = bus.now
    bus.run(120.0)
    assert [t for t, _ in bus.sent if t >= stopped_s] == [
        t for t, _ in bus.heartbeats_to(0x1234) if t >= stopped_s
    ]
    assert all(hb.centiamps == 0 for t, hb in bus.heartbeats_to(0x1234) if t >= stopped_s)


def test_a_protocol_1_slave_is_never_asked_for_a_vin():
    bus = Bus()
    bus.run(1.5)
    link(bus, 0x1234, protocol=1, actual=1000)
    bus.run(200.0)
    assert vin_requests(bus) == [] and vins_reported(bus) == []


def test_vin_validation():
    assert vin_check_digit_ok("5YJ3E1EA8KF000001")
    assert vin_check_digit_ok("1M8GDM9AXKP042788")  # check digit X
    assert not vin_check_digit_ok("5YJ3E1EA8KF00000")
    assert not vin_check_digit_ok("5YJ3E1EO8KF000001")


def test_wakeups_are_not_a_busy_loop():
    bus = Bus()
    link(bus, 0x1234)
    polls = 0
    end = bus.now + 30.0
    while bus.now < end:
        wire, _ = bus.master.poll(bus.now)
        polls += 1
        if wire is not None:
            reply = bus.repliers[0x1234](decode_wire(wire))
            if reply is not None:
                bus.now += 0.03
                bus.master.receive(slave_wire(reply), bus.now)
            continue
        nxt = bus.master.next_wakeup_s(bus.now)
        assert nxt > bus.now
        bus.now = nxt
    assert polls < 30 * 6  # a few polls per heartbeat, not a spin


def test_noise_opening_with_c0_does_not_block_the_master():
    """A stray C0 + noise leaves the parser mid-frame; once it has been silent for a frame's
    byte time, the master talks again instead of waiting for the 2 s partial timeout."""
    bus = Bus()
    link(bus, 0x1234)
    bus.run(3.0)
    noisy_from = bus.now
    for _ in range(10):
        bus.master.receive(b"\xc0\x01\x02", bus.now)
        bus.run(0.4)
    times = [t for t, _ in bus.heartbeats_to(0x1234) if t >= noisy_from]
    assert len(times) >= 3
    assert max(b - a for a, b in pairwise(times)) <= 1.1


def test_non_ascii_vin_part_while_a_reply_is_awaited_keeps_the_heartbeats_going():
    """Issue 7, finding 1: such a frame used to raise out of ``receive`` and, in the daemon,
    stop the service loop for good."""
    bus = Bus()
    bus.run(1.5)
    link(bus, 0x1234, actual=1000)
    bus.run(3.0)
    assert bus.master.awaiting_reply is False
    wire, _ = bus.master.poll(bus.now)  # nothing due yet: advance to the next heartbeat
    while wire is None:
        bus.now = bus.master.next_wakeup_s(bus.now)
        wire, _ = bus.master.poll(bus.now)
    assert bus.master.awaiting_reply
    payload = bytes.fromhex("FDEE1234") + b"\x80" + bytes(14)
    events = bus.master.receive(codec.frame(payload), bus.now + 0.02)
    assert all(not isinstance(e, bm.VinReported) for e in events)
    before = len(bus.heartbeats_to(0x1234))
    bus.run(5.0)
    assert len(bus.heartbeats_to(0x1234)) - before >= 4


def two_slaves_heartbeating() -> Bus:
    """Slaves 1234 and 2345 linked and answering for 3 s."""
    bus = Bus()
    bus.run(1.5)
    link(bus, 0x1234)
    link(bus, 0x2345)
    bus.run(3.0)
    return bus


def test_a_device_repeating_the_masters_id_never_stops_the_heartbeats():
    """Issue 7, finding 2: a link-ready with our ID every second restarted the burst every
    second, and no heartbeat went out for as long as it lasted (17 s gaps)."""
    bus = two_slaves_heartbeating()
    start = bus.now
    for _ in range(15):
        bus.feed(m.SlaveLinkReady(ME, 0x55, 3200, 2))
        bus.run(1.0)
    bus.run(2.0)
    for twcid in (0x1234, 0x2345):
        times = [t for t, _ in bus.heartbeats_to(twcid) if t >= start - 1.0]
        gaps = [b - a for a, b in pairwise(times)]
        assert len(times) >= 17 and max(gaps) < 1.5, (hex(twcid), max(gaps))
    bursts = [t for t, msg in bus.sent if isinstance(msg, m.MasterLinkReady) and t >= start]
    assert 10 <= len(bursts) <= 20  # a burst at once, then at most one more in 15 s
    assert any(isinstance(e, bm.Alarm) and e.kind == "id_collision" for e in bus.events)


def test_link_ready_bursts_from_known_slaves_do_not_starve_one_of_them():
    """Slaves answer a master's link-ready burst with five link-readies of their own; each
    used to reset its heartbeat to "now", so the slave whose burst came first was served
    again and again and the other went 1.5 s without a heartbeat."""
    bus = two_slaves_heartbeating()
    start = bus.now
    for _ in range(15):  # both bursts arrive while the bus is busy
        bus.feed(m.SlaveLinkReady(0x1234, 0x55, 3200, 2))
        bus.feed(m.SlaveLinkReady(0x2345, 0x55, 3200, 2))
        bus.run(0.1)
    bus.run(2.0)
    for twcid in (0x1234, 0x2345):
        times = [t for t, _ in bus.heartbeats_to(twcid) if t >= start - 1.0]
        assert max(b - a for a, b in pairwise(times)) < 1.2, hex(twcid)


def test_slave_link_ready_with_data_in_its_padding_links():
    bus = Bus()
    events = bus.feed(m.SlaveLinkReady(0x032E, 0x55, 3200, 2, padding=bytes(6) + b"\x12\x34"))
    assert any(isinstance(e, bm.SlaveLinked) and e.twcid == 0x032E for e in events)
    assert 0x032E in bus.master.slaves


def test_another_masters_link_ready_alarms_whatever_its_padding():
    bus = Bus()
    foreign = m.MasterLinkReady(2, 0x4242, 0x66, b"\x80\x0c", padding=bytes(7) + b"\x01")
    events = bus.master.receive(codec.frame(foreign.to_payload()), 0.5)
    assert any(isinstance(e, bm.Alarm) and e.kind == "foreign_master" for e in events)


def test_a_heartbeat_addressed_to_another_master_is_ignored_with_an_alarm():
    bus = Bus()
    link(bus, 0x1234)
    events = bus.feed(m.SlaveHeartbeat.build(0x1234, 0x4242, 1, 600, 550, 2))
    alarms = [e for e in events if isinstance(e, bm.Alarm)]
    # The same alarm as another master's own frames: it names that master.
    assert [a.kind for a in alarms] == ["foreign_master"] and alarms[0].twcid == 0x4242
    assert "4242" in alarms[0].message and bus.master.foreign_master_seen_s == bus.now
    assert bus.master.slaves[0x1234].actual_centiamps == 0  # its data is not taken


def test_a_slave_that_comes_back_with_a_lower_maximum_is_capped_at_it():
    """A unit restarted with another maximum (its own setting changed): the gate must not
    go on offering the maximum it had."""
    bus = Bus()
    link(bus, 0x1234, max_centiamps=3200)
    bus.master.slaves[0x1234].offer_amps = 32
    events = bus.feed(m.SlaveLinkReady(0x1234, 0x55, 1600, 2))
    assert [(e.twcid, e.max_amps) for e in events if isinstance(e, bm.SlaveLinked)] == [
        (0x1234, 16.0)
    ]
    bus.run(2.0)
    offers = [msg.centiamps for _, msg in bus.heartbeats_to(0x1234) if msg.command == 0x09]
    assert offers and max(offers) == 1600
    assert not [e for e in bus.feed(m.SlaveLinkReady(0x1234, 0x55, 1600, 2)) if e]  # same: quiet


def test_after_a_late_reply_the_master_waits_for_its_trailer_byte():
    """A reply that comes after the reply window: the next frame waits at least three byte
    times after its closing C0, so it does not start on top of the trailer (§2.1, §5.2)."""
    bus = Bus()
    bus.run(1.5)  # the start-up burst is over
    link(bus, 0x1234)
    bus.repliers.pop(0x1234)  # it answers by hand, late
    link(bus, 0x2345)  # also due at once: the line's next frame is for it
    sent_s = bus.now + 0.05  # past the quiet time after the link-ready frames
    wire, _ = bus.master.poll(sent_s)
    assert wire is not None and decode_wire(wire).receiver == 0x1234
    late_s = sent_s + 0.15  # after the 0.1 s window, before the 0.25 s timeout
    reply = m.SlaveHeartbeat.build(0x1234, ME, 1, 0, 0, 2)
    bus.master.receive(slave_wire(reply)[:-1], late_s)  # up to the closing C0, no trailer yet
    assert bus.master.poll(late_s)[0] is None
    assert bus.master.poll(late_s + 0.001)[0] is None
    assert bus.master.poll(late_s + 3 * codec.BYTE_TIME_S)[0] is not None
