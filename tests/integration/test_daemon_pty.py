"""The daemon as a user runs it, against simulated slaves over a real pty (pyserial on the
daemon's side), for protocol 1, protocol 2 and a mix; plus the failure cases of the bus."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.integration.rig import Rig, heartbeat_gaps, slave
from twcmaster.protocol import messages as m

pytestmark = pytest.mark.timeout(90)


def check_safe_and_quiet(rig: Rig, per_twc: int = 32, all_twcs: int = 40) -> None:
    """Nothing dangerous reached a slave, and no slave ever accepted more than the wiring."""
    for s in rig.bus.slaves:
        assert s.stats.max_limit_centiamps <= per_twc * 100
        assert not s.stats.blocked_codes and not s.stats.error_commands
        assert not s.stats.unknown_codes, s.stats.unknown_codes
    allowed = sum(s.allowed_centiamps for s in rig.daemon.core.master.slaves.values())
    assert allowed <= all_twcs * 100


@pytest.mark.parametrize(
    ("protocols", "seconds"),
    [((1,), 12.0), ((2, 2), 14.0), ((1, 2, 2), 24.0)],
    ids=["p1-one-slave", "p2-two-slaves", "mixed-three-slaves"],
)
def test_master_links_heartbeats_and_shares_amps(protocols, seconds):
    rig = Rig()

    async def scenario():
        slaves = [slave(0x1100 + i * 0x1111, p, seed=i) for i, p in enumerate(protocols)]
        await rig.run(slaves, seconds)

    asyncio.run(scenario())
    master = rig.daemon.core.master
    assert set(master.slaves) == {s.twcid for s in rig.bus.slaves}
    for s in rig.bus.slaves:
        linked = master.slaves[s.twcid]
        assert linked.protocol == s.protocol
        gaps = heartbeat_gaps(s, after_s=linked.linked_s + 1.0)
        assert len(gaps) >= seconds - 6
        assert max(gaps) < 1.5, (hex(s.twcid), max(gaps))
        # Every car charges: the budget (40 A) is shared by all of them within 32 A each.
        assert s.car.actual_amps > 4.0, (hex(s.twcid), s.car.actual_amps)
        assert len(linked.master_data) == (7 if s.protocol == 1 else 9)
    offers = [master.slaves[s.twcid].offer_amps for s in rig.bus.slaves]
    assert sum(offers) <= 40 and all(o >= 6 for o in offers)
    check_safe_and_quiet(rig)
    assert any(f"SHB {rig.bus.slaves[0].twcid:04X}: " in line for line in rig.lines)


def test_silent_slave_times_out_and_comes_back():
    rig = Rig(rs485={"slaveTimeout": 3})

    async def during(rig: Rig) -> None:
        await asyncio.sleep(4.0)
        gone = rig.bus.slaves.pop()  # unplugged from the bus: it answers nothing
        assert gone.twcid in rig.daemon.core.master.slaves
        await asyncio.sleep(4.5)
        assert gone.twcid not in rig.daemon.core.master.slaves
        rig.bus.slaves.append(gone)  # back: it announces itself within ~10 s
        for _ in range(150):
            await asyncio.sleep(0.1)
            if gone.twcid in rig.daemon.core.master.slaves:
                return
        raise AssertionError("slave did not link again")

    async def scenario():
        await rig.run([slave(0x1234), slave(0x2345, seed=2)], 30.0, during)

    asyncio.run(scenario())
    assert 0x1234 in rig.daemon.core.master.slaves


def test_slave_using_the_masters_id_is_moved_by_a_new_burst():
    rig = Rig()

    async def scenario():
        await rig.run([slave(0x7777)], 16.0)

    asyncio.run(scenario())
    (moved,) = rig.bus.slaves
    assert moved.twcid != 0x7777 and moved.stats.id_changes >= 1
    assert moved.twcid in rig.daemon.core.master.slaves


def test_second_master_on_the_bus_raises_an_alarm():
    rig = Rig()
    foreign = m.MasterLinkReady(1, 0x4242, 0x42)

    async def during(rig: Rig) -> None:
        await asyncio.sleep(3.0)
        rig.write_raw(m.encode_for_tx(foreign))
        await asyncio.sleep(1.0)

    async def scenario():
        await rig.run([slave(0x1234)], 4.0, during)

    asyncio.run(scenario())
    alarms = rig.daemon.snapshot().alarms
    assert any("another master (4242)" in a for a in alarms), alarms
    assert rig.daemon.core.master.foreign_master_seen_s is not None
    assert any("ALARM: another master (4242)" in line for line in rig.lines), rig.lines


def test_port_vanishing_and_returning(tmp_path):
    link = str(tmp_path / "ttyTWC")
    rig = Rig(link_path=link)

    async def during(rig: Rig) -> None:
        await asyncio.sleep(3.0)
        heard = rig.bus.slaves[0].stats.heartbeat_times_s
        assert rig.bus.slaves[0].twcid in rig.daemon.core.master.slaves
        await rig.unplug_adapter()
        await asyncio.sleep(2.0)
        assert not rig.daemon.transport.is_open  # the daemon is still up, waiting for it
        before = len(heard)
        rig.replug_adapter()
        for _ in range(100):
            await asyncio.sleep(0.1)
            if len(heard) >= before + 3:
                break
        assert rig.daemon.transport.is_open
        assert len(heard) >= before + 3, "heartbeats did not resume"

    async def scenario():
        await rig.run([slave(0x1234)], 15.0, during)

    asyncio.run(scenario())


def test_garbage_on_the_bus_is_skipped():
    rig = Rig()

    async def during(rig: Rig) -> None:
        for _ in range(20):
            await asyncio.sleep(0.37)
            rig.write_raw(os.urandom(7).replace(b"\xc0", b"\x00") + b"\xc0\x01\x02")

    async def scenario():
        await rig.run([slave(0x1234)], 8.0, during)

    asyncio.run(scenario())
    assert 0x1234 in rig.daemon.core.master.slaves
    assert rig.bus.slaves[0].car.actual_amps > 4.0


def test_protocol_2_car_is_stopped_and_started_through_its_api_without_a_power_cut():
    """Budget 16 A, then 0 A, then 16 A again, to a P2 car with a (simulated) car API: the
    daemon keeps it at 6 A and asks it to stop, offers 0 A only once it draws nothing, and
    asks it to start when the budget is back. The car is never cut under load (§6.7)."""
    from twcmaster.control.carcommands import CarAction, CarCommandSettings
    from twcmaster.control.policy import FixedBudget
    from twcmaster.sim.car import CarPhase
    from twcmaster.sim.carapi import CarApiSettings

    rig = Rig({"nonScheduledAmpsMax": 16, "startStopDelay": 0}, car_api=CarApiSettings(1.0))
    seen: list[tuple[str, int, float]] = []
    interruptions_before_exit: list[int] = []

    async def during(rig: Rig) -> None:
        core = rig.daemon.core

        def offer_amps(twcid: int) -> int:
            """The offer the snapshot shows for the slave (-1: not linked)."""
            for linked in rig.daemon.snapshot().slaves:
                if linked.twcid == f"{twcid:04X}":
                    return linked.offer_amps
            return -1

        core.car_commander.settings = CarCommandSettings(min_interval_s=5.0, start_after_s=3.0)
        s = rig.bus.slaves[0]

        async def until(condition, timeout_s: float) -> None:
            end = rig.loop.time() + timeout_s
            while not condition():
                assert rig.loop.time() < end, f"timed out: {seen[-3:]}"
                await asyncio.sleep(0.2)
                seen.append((s.car.phase.value, offer_amps(s.twcid), s.actual_amps))

        await until(lambda: s.actual_amps > 12, 20)
        core.policy = FixedBudget(0, "test: no budget")
        await until(lambda: s.car.phase is CarPhase.STOPPED, 15)
        await until(lambda: offer_amps(s.twcid) == 0, 15)
        core.policy = FixedBudget(16, "test: budget back")
        await until(lambda: s.actual_amps > 12, 25)
        interruptions_before_exit.append(s.car.interruptions)  # exit then sends 0 A

    async def scenario():
        await rig.run([slave(0x2222, 2)], 60.0, during)

    asyncio.run(scenario())
    actions = [c.action for c in rig.car_api.requests]
    assert actions == [CarAction.STOP, CarAction.START]
    s = rig.bus.slaves[0]
    assert interruptions_before_exit == [0]
    # While it was being stopped it kept 6 A (never 0 A under load).
    assert all(offer != 0 or amps < 1.0 for phase, offer, amps in seen if phase == "charging")
    assert any(
        f"Asking {s.car.vin} on TWC 2222" in line and "to stop charging" in line
        for line in rig.lines
    ), rig.lines[-20:]
    check_safe_and_quiet(rig)
