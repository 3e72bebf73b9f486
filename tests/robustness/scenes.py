"""The issue 7 findings of the bus master as small deterministic scenes (fake clock, hand-made
slaves), for ``test_findings.py``: each scene is what a random property found, cut down to
the few steps that matter."""

from __future__ import annotations

from itertools import pairwise

from twcmaster.config import config_from_dict
from twcmaster.core import master_settings
from twcmaster.protocol import codec, messages
from twcmaster.protocol import master as bm
from twcmaster.protocol.messages import Code

MASTER_ID = 0x7777
SLAVE_ID = 0x1234
TEXT_CODES = (Code.VIN1, Code.VIN2, Code.VIN3, Code.SERIAL)


def non_ascii_vin_body(code: Code = Code.VIN1) -> bytes:
    """A 20-byte VIN part (or serial) from slave 1234 whose first character is 0x80."""
    payload = code.to_bytes(2, "big") + SLAVE_ID.to_bytes(2, "big") + b"\x80" + bytes(14)
    return payload + bytes([codec.checksum(payload)])


def heartbeat_gaps_with_own_id_linkready(seconds: float = 12.0) -> list[float]:
    """Finding 2's scene: one answering slave, and a device that announces the master's own
    ID every second. Returns the gaps between the heartbeats the slave got."""
    master = bm.BusMaster()
    now = 0.0
    master.start(now)
    slave_tx = messages.SLAVE_TX_CODES
    link = messages.SlaveLinkReady(SLAVE_ID, 0x55, 3200, 2)
    master.receive(messages.encode_for_tx(link, 0xFE, slave_tx), now)
    rogue_link = messages.SlaveLinkReady(MASTER_ID, 0x66, 3200, 2)
    rogue = messages.encode_for_tx(rogue_link, 0xFE, slave_tx)
    next_rogue = 0.5
    times: list[float] = []
    while now < seconds:
        if now >= next_rogue:
            master.receive(rogue, now)
            next_rogue += 1.0
        wire, _ = master.poll(now)
        if wire is not None:
            (frame,) = codec.FrameParser().feed(wire, now)
            sent = messages.decode(frame.body)
            if isinstance(sent, messages.MasterHeartbeat) and sent.receiver == SLAVE_ID:
                times.append(now)
                now += len(wire) * codec.BYTE_TIME_S + 0.02
                reply = messages.SlaveHeartbeat.build(SLAVE_ID, MASTER_ID, 0, 0, 25, 2)
                master.receive(messages.encode_for_tx(reply, 0xFE, slave_tx), now)
            continue
        now = min(max(master.next_wakeup_s(now), now + 1e-4), next_rogue)
    ends = [0.0, *times, seconds]
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


# --- the unacknowledged raise ---------------------------------------------------------------

A, B = 0x1001, 0x1002


class Line:
    """A bus master and two honest slaves that apply every limit they hear (§4.1), on a fake
    clock. A slave can be cut off: it then hears nothing more and keeps its last limit."""

    def __init__(self, wiring_all: int, wiring_per_twc: int, min_amps: int = 6) -> None:
        config = config_from_dict(
            {
                "config": {
                    "wiringMaxAmpsAllTWCs": wiring_all,
                    "wiringMaxAmpsPerTWC": wiring_per_twc,
                    "minAmpsPerTWC": min_amps,
                }
            },
            "/tmp",
        ).settings
        self.wiring_all = wiring_all
        self.master = bm.BusMaster(master_settings(config))
        self.now = 0.0
        self.applied = {A: 0, B: 0}  # centiamps each slave applies
        self.cut: set[int] = set()  # slaves that hear nothing any more
        self.drop_next_reply: set[int] = set()
        self.worst_sum = 0
        self.master.start(self.now)
        for twcid in (A, B):
            self._from_slave(messages.SlaveLinkReady(twcid, 0x55, 3200, 2))

    def _from_slave(self, message: messages.Message) -> None:
        wire = messages.encode_for_tx(message, 0xFE, messages.SLAVE_TX_CODES)
        self.master.receive(wire, self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            wire, _ = self.master.poll(self.now)
            if wire is None:
                self.now = min(end, max(self.master.next_wakeup_s(self.now), self.now + 1e-3))
                continue
            (frame,) = codec.FrameParser().feed(wire, self.now)
            sent = messages.decode(frame.body)
            self.now += len(wire) * codec.BYTE_TIME_S
            if not isinstance(sent, messages.MasterHeartbeat) or sent.receiver in self.cut:
                continue
            twcid = sent.receiver
            if sent.command in (0x05, 0x09):
                self.applied[twcid] = sent.centiamps
            self.worst_sum = max(self.worst_sum, sum(self.applied.values()))
            self.now += 0.02
            if twcid in self.drop_next_reply:
                self.drop_next_reply.discard(twcid)
                self.cut.add(twcid)  # ... and the cable is cut right after
                continue
            reply = messages.SlaveHeartbeat.build(twcid, MASTER_ID, 1, self.applied[twcid], 500, 2)
            self._from_slave(reply)


def unacknowledged_raise_scene() -> Line:
    """Slave A is raised to 32 A and its cable is cut right after it heard it; the controller
    then lowers A back to 16 A (its last acknowledged value) and raises B to 32 A, on a 48 A
    circuit. Returns the line (``worst_sum``: the most the slaves applied together)."""
    line = Line(wiring_all=48, wiring_per_twc=32)
    line.master.set_offer(A, 16)
    line.master.set_offer(B, 16)
    line.run(3.0)
    line.master.set_offer(A, 32)
    line.drop_next_reply.add(A)
    line.run(1.5)
    line.master.set_offer(A, 16)  # the controller re-shares: A back down ...
    line.run(1.5)
    line.master.set_offer(B, 32)  # ... and B up
    line.run(3.0)
    return line


# --- the overloaded round -------------------------------------------------------------------


def overloaded_round_gaps() -> list[float]:
    """Three linked slaves that stopped answering (a 0.25 s reply timeout each, every round),
    one that answers, and a fifth that links at 10.37 s and answers: a round takes ~1.01 s.
    Returns the gaps between the heartbeats the two answering slaves got (after 5 s)."""
    master = bm.BusMaster()
    now = 0.0
    master.start(now)

    def hear(message: messages.Message) -> None:
        master.receive(messages.encode_for_tx(message, 0xFE, messages.SLAVE_TX_CODES), now)

    answering = [0x1000]
    for twcid in (0x1000, 0x2000, 0x2001, 0x2002):
        hear(messages.SlaveLinkReady(twcid, 0x55, 3200, 2))
    times: dict[int, list[float]] = {0x1000: [], 0x3000: []}
    while now < 25.0:  # before the silent ones time out (26 s)
        if now >= 10.37 and 0x3000 not in answering:
            answering.append(0x3000)
            hear(messages.SlaveLinkReady(0x3000, 0x55, 3200, 2))
        wire, _ = master.poll(now)
        if wire is None:
            now = max(master.next_wakeup_s(now), now + 1e-3)
            continue
        (frame,) = codec.FrameParser().feed(wire, now)
        sent = messages.decode(frame.body)
        if isinstance(sent, messages.MasterHeartbeat) and sent.receiver in answering:
            times[sent.receiver].append(now)
            now += (len(wire) + 19) * codec.BYTE_TIME_S + 0.02
            hear(messages.SlaveHeartbeat.build(sent.receiver, MASTER_ID, 0, 0, 25, 2))
    return [b - a for v in times.values() for a, b in pairwise([t for t in v if t >= 5.0])]


# --- the alarm table --------------------------------------------------------------------------


def alarm_table_growth_bytes(distinct_ids: int = 3000) -> int:
    """A noisy line that, once a second, carries a valid-checksum link-ready of
    "another master" with a different sender ID each time (§3.1, foreign master alarm), for
    ``distinct_ids`` seconds.
    Returns how much the core's traced memory grew between the first and the last tenth."""
    import tracemalloc

    from twcmaster.core import Core

    config = config_from_dict(
        {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32}}, "/tmp"
    ).settings
    core = Core(config)
    core.start(0.0)
    tracemalloc.start()
    try:
        baseline = 0
        for i in range(distinct_ids):
            now = float(i)
            sender = 0x1000 + i
            foreign = messages.MasterLinkReady(1, sender, 0x77)
            core.service(now, codec.frame(foreign.to_payload()))
            core.snapshot(now)
            if i == distinct_ids // 10:
                baseline = tracemalloc.get_traced_memory()[0]
        return tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()


# --- a babbling line --------------------------------------------------------------------------


def babbling_line_heartbeats(
    period_s: float = 0.04, c0_every: int = 40, seconds: float = 10.0
) -> list[float]:
    """One answering slave; from t=10 s a faulty unit babbles a byte every ``period_s``, a C0
    every ``c0_every`` bytes and zeros between. Returns when the slave got its heartbeats
    during the babble. (A real frame at 9600 baud brings a byte every ~1 ms and is over in
    ~50 ms; this "frame" never ends.)"""
    start = 10.0
    master = bm.BusMaster()
    now = 0.0
    master.start(now)

    def hear(message: messages.Message, at: float) -> None:
        master.receive(messages.encode_for_tx(message, 0xFE, messages.SLAVE_TX_CODES), at)

    hear(messages.SlaveLinkReady(SLAVE_ID, 0x55, 3200, 2), now)
    times: list[float] = []
    next_byte, count = start, 0
    while now < start + seconds:
        if now >= next_byte:
            master.receive(b"\xc0" if count % c0_every == 0 else b"\x00", next_byte)
            count += 1
            next_byte += period_s
        wire, _ = master.poll(now)
        if wire is not None:
            (frame,) = codec.FrameParser().feed(wire, now)
            sent = messages.decode(frame.body)
            if isinstance(sent, messages.MasterHeartbeat):
                if now >= start:
                    times.append(now)
                now += len(wire) * codec.BYTE_TIME_S + 0.02
                hear(messages.SlaveHeartbeat.build(SLAVE_ID, MASTER_ID, 0, 0, 25, 2), now)
            continue
        now = min(max(master.next_wakeup_s(now), now + 1e-4), next_byte)
    return times
