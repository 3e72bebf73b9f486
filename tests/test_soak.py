"""Issue 7: bounded forms of ``make soak`` (``twcmaster/soak.py``).

The virtual part runs 2 h of virtual time at five times the soak's default fault rate, so
every fault kind happens over a dozen times; the real-time part runs the daemon as its own
process on a pty for 12 s with noise. Both must keep every invariant, raise nothing and miss
no heartbeat.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from twcmaster import soak
from twcmaster.protocol import codec, messages

VIRTUAL = soak.VirtualOptions(hours=2.0, fault_rate_per_s=0.05, seed=1, start_s=10.5 * 3600)
WALL_BUDGET_S = 20.0


@pytest.fixture(scope="module")
def virtual_report() -> soak.VirtualReport:
    return soak.run_virtual(VIRTUAL)


def test_virtual_soak_injects_every_fault_kind_within_its_time_budget(virtual_report):
    assert set(virtual_report.faults) == set(soak.FAULT_KINDS)
    assert min(virtual_report.faults.values()) >= 10, virtual_report.faults
    assert virtual_report.wall_s < WALL_BUDGET_S
    # Three slaves heartbeated about once a second for most of the 2 h.
    assert virtual_report.heartbeats > 3 * 7200 * 0.8


def test_virtual_soak_misses_no_heartbeat_and_raises_nothing(virtual_report):
    report = virtual_report
    assert report.heartbeats_missed == 0, report.missed_examples
    assert report.exceptions_escaped == {}, report.exception_examples
    assert report.internal_errors == 0, report.last_internal_error


def test_virtual_soak_offers_stay_within_the_wiring_the_floor_and_each_slave(virtual_report):
    offers = {
        kind: n for kind, n in virtual_report.violations.items() if kind != soak.SUM_COMMITTED
    }
    assert offers == {}, virtual_report.violation_examples
    assert virtual_report.set_limits_checked > 1000


def test_virtual_soak_never_commits_beyond_the_all_twc_wiring(virtual_report):
    assert soak.SUM_COMMITTED not in virtual_report.violations, virtual_report.violation_examples


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_realtime_soak_with_noise_keeps_the_heartbeats_and_stops_cleanly():
    options = soak.RealtimeOptions(seconds=12.0, noise_rate_per_s=5.0, seed=3)
    report = asyncio.run(soak.run_realtime(options))
    assert sum(report.noise.values()) >= 20, report.noise
    assert len(report.slaves) == 3
    for twcid, stats in report.slaves.items():
        assert stats["count"] >= 5, (twcid, stats)
        assert stats["max_s"] < soak.HEARTBEAT_MISSED_S, (twcid, stats)
    assert report.heartbeats_missed == 0
    assert report.violations == {}, report.violation_examples
    assert report.internal_errors == 0, report.errors_logged
    assert not report.exited_early
    assert report.exit_code == 0
    assert report.failures() == []


# --- the checks themselves ---------------------------------------------------------------------


LIMITS = soak.Limits(all_twcs_amps=40, per_twc_amps=16, min_amps_per_twc=6)


def _heartbeat(receiver: int, amps: float, command: int = 0x09) -> messages.MasterHeartbeat:
    return messages.MasterHeartbeat.build(0x7777, receiver, command, round(amps * 100), 2)


def _reply(sender: int, allowed_amps: float) -> messages.SlaveHeartbeat:
    return messages.SlaveHeartbeat.build(sender, 0x7777, 1, round(allowed_amps * 100), 0, 2)


def test_monitor_flags_offers_beyond_a_limit_or_below_the_floor():
    monitor = soak.WireMonitor(LIMITS, {0x1111: 12.0})
    monitor.master_frame(_heartbeat(0x1111, 13), 0.0)  # above the slave's 12 A
    monitor.master_frame(_heartbeat(0x2222, 17), 0.1)  # above 16 A per TWC
    monitor.master_frame(_heartbeat(0x3333, 5), 0.2)  # between 0 and 6 A
    monitor.master_frame(_heartbeat(0x3333, 0), 0.3)  # 0 A is fine
    monitor.master_frame(_heartbeat(0x3333, 0, command=0x00), 0.4)  # no change: no offer
    assert monitor.violations == {
        "offer above the slave's maximum": 1,
        "offer above wiringMaxAmpsPerTWC": 1,
        "offer between 0 and the floor": 1,
    }
    assert monitor.set_limits == 4


def test_monitor_counts_a_lowered_limit_until_the_slave_acknowledges_it():
    monitor = soak.WireMonitor(LIMITS, {})
    for twcid, amps in ((0x1111, 16), (0x2222, 16)):
        monitor.master_frame(_heartbeat(twcid, amps), 0.0)
        monitor.slave_frame(_reply(twcid, amps), 0.05)
    monitor.master_frame(_heartbeat(0x3333, 8), 0.1)
    monitor.slave_frame(_reply(0x3333, 8), 0.15)
    monitor.master_frame(_heartbeat(0x1111, 8), 1.0)  # lowered, no reply yet
    monitor.master_frame(_heartbeat(0x3333, 16), 1.1)  # raised on an unacknowledged lower
    assert monitor.violations == {soak.SUM_COMMITTED: 1}
    monitor.slave_frame(_reply(0x1111, 8), 1.2)  # now 8 + 16 + 16 = 40
    monitor.master_frame(_heartbeat(0x3333, 16), 2.0)
    assert monitor.violations == {soak.SUM_COMMITTED: 1}


def test_monitor_forgets_a_slave_30_s_after_its_last_heartbeat():
    monitor = soak.WireMonitor(LIMITS, {})
    monitor.master_frame(_heartbeat(0x1111, 16), 0.0)
    monitor.master_frame(_heartbeat(0x2222, 16), 0.0)
    monitor.master_frame(_heartbeat(0x3333, 16), 29.0)  # 48 A may be applied
    monitor.master_frame(_heartbeat(0x3333, 16), 31.0)  # the other two have stopped
    assert monitor.violations == {soak.SUM_COMMITTED: 1}


def test_watch_counts_gaps_over_1_5_s_unless_a_fault_silenced_that_slave():
    watch = soak.HeartbeatWatch()
    for t in (0.0, 1.0, 2.0, 3.6, 4.6):  # one gap of 1.6 s
        watch.beat("a", t)
    watch.excuse("b", 10.0, 40.0)  # b vanished
    watch.excuse(None, 60.0, 65.0)  # the core did not run
    for t in (0.0, 9.5, 41.0, *range(42, 61), 66.0, 67.0, 68.0, 69.0):
        watch.beat("b", t)

    watch.finish(70.0)  # a: 4.6 s -> 70 s without a heartbeat, the core stalled 5 s of it
    assert watch.missed == 3  # a twice, b once (0 -> 9.5 s, before it vanished)
    assert watch.worst_gap_s == pytest.approx(65.4 - 5.0)


def test_corrupted_frames_keep_a_valid_checksum_and_reach_the_decoder():
    rng = random.Random(5)
    wire = messages.encode_for_tx(_reply(0x1234, 16), 0xFE, messages.SLAVE_TX_CODES)
    for make in (
        lambda: soak.corrupt_keeping_checksum(rng, wire),
        lambda: soak.checksum_valid_garbage(rng),
        lambda: soak.non_ascii_text_frame(rng, 0x1234),
        lambda: soak.master_id_linkready(rng, 0x7777, as_slave=True),
    ):
        frames = [
            item for item in codec.FrameParser().feed(make(), 0.0) if isinstance(item, codec.Frame)
        ]
        assert len(frames) == 1 and frames[0].checksum_ok
        messages.decode(frames[0].body)  # never raises
    text = soak.non_ascii_text_frame(rng, 0x1234)
    assert isinstance(messages.decode(codec.unescape(text[1:-2])), messages.Unknown)
