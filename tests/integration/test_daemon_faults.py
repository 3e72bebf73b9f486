"""Issue 7: faults that used to silence, hang or stop the daemon, reproduced over a real pty
against simulated slaves. Each test failed before its fix."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.rig import Rig, heartbeat_gaps, slave
from twcmaster.control.policy import Budget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


class FailingPolicy:
    """A policy with a bug: it raises from the moment ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    def decide(self, now_s, wallclock, site, chargers) -> Budget:
        self.calls += 1
        if self.failing:
            raise RuntimeError("policy bug")
        return Budget(20.0, "Non Scheduled Charging", "test")


def test_exceptions_in_the_core_never_stop_the_heartbeats():
    """Finding 1 beyond the VIN frame: whatever the core raises, the service loop goes on,
    counts it in the snapshot, and fails safe (0 A when the policy cannot decide)."""
    policy = FailingPolicy()
    rig = Rig(policy=policy)

    async def during(rig: Rig) -> None:
        await asyncio.sleep(4.0)
        policy.failing = True
        core = rig.daemon.core
        real_poll = core.poll
        polls = {"n": 0}

        def poll_failing_every_third(now):  # fault injection into the service step itself
            polls["n"] += 1
            if polls["n"] % 3 == 0:
                raise RuntimeError("injected fault in poll")
            return real_poll(now)

        core.poll = poll_failing_every_third
        await asyncio.sleep(5.0)
        core.poll = real_poll
        await asyncio.sleep(2.0)

    async def scenario():
        await rig.run([slave(0x1234)], 11.0, during)

    asyncio.run(scenario())
    s = rig.bus.slaves[0]
    linked_s = rig.daemon.core.master.slaves[s.twcid].linked_s
    gaps = heartbeat_gaps(s, after_s=linked_s + 1.0)
    assert len(gaps) >= 8 and max(gaps) < 1.5, max(gaps)
    snapshot = rig.daemon.snapshot()
    assert snapshot.internal_errors >= 3, snapshot
    assert "policy" in snapshot.last_internal_error or "service" in snapshot.last_internal_error
    assert snapshot.budget.amps == 0 and snapshot.budget.policy == "error"
    # Down to the floor at once; the stop hold (startStopDelay) then takes it to 0 A.
    assert rig.daemon.core.master.slaves[s.twcid].offer_amps <= 6


def test_a_device_sending_link_ready_with_the_masters_id_does_not_silence_the_master():
    """Finding 2: 15 s of it used to give 17 s heartbeat gaps to every slave."""
    from twcmaster.protocol import messages as m

    rig = Rig()
    impostor = m.encode_for_tx(m.SlaveLinkReady(0x7777, 0x99, 3200, 2), None, m.SLAVE_TX_CODES)

    async def during(rig: Rig) -> None:
        await asyncio.sleep(4.0)
        for _ in range(15):
            rig.write_raw(impostor)
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.0)

    async def scenario():
        await rig.run([slave(0x1234), slave(0x2345, seed=2)], 20.0, during)

    asyncio.run(scenario())
    for s in rig.bus.slaves:
        linked_s = rig.daemon.core.master.slaves[s.twcid].linked_s
        gaps = heartbeat_gaps(s, after_s=linked_s + 1.0)
        assert len(gaps) >= 14 and max(gaps) < 1.5, (hex(s.twcid), max(gaps))
    assert any("master's ID" in a for a in rig.daemon.snapshot().alarms)


def test_heartbeats_resume_within_5_s_after_a_20_s_outage(tmp_path):
    """Finding 5: the reopen back-off grew to 16 s, so after a 20 s outage the slave heard
    its first heartbeat 12.8 s after the port came back."""
    rig = Rig(link_path=str(tmp_path / "ttyTWC"))
    resumed_after_s: list[float] = []

    async def during(rig: Rig) -> None:
        await asyncio.sleep(3.0)
        heard = rig.bus.slaves[0].stats.heartbeat_times_s
        await rig.unplug_adapter()
        await asyncio.sleep(20.0)
        before = len(heard)
        back_s = rig.loop.time()
        rig.replug_adapter()
        while len(heard) <= before and rig.loop.time() - back_s < 15.0:
            await asyncio.sleep(0.05)
        resumed_after_s.append(heard[before] - back_s if len(heard) > before else 99.0)

    async def scenario():
        await rig.run([slave(0x1234)], 40.0, during)

    asyncio.run(scenario())
    assert resumed_after_s[0] <= 5.0, resumed_after_s


def test_on_exit_every_slave_is_sent_0_a_before_the_port_closes():
    """Finding 10: the daemon exited without a word to the slaves; now each hears 0 A."""
    rig = Rig()

    async def during(rig: Rig) -> None:
        while not all(s.actual_amps > 4.0 for s in rig.bus.slaves):
            await asyncio.sleep(0.2)

    async def scenario():
        await rig.run([slave(0x1234), slave(0x2345, seed=2)], 20.0, during)

    asyncio.run(scenario())
    for s in rig.bus.slaves:
        assert s.limit_amps == 0.0, (hex(s.twcid), s.limit_amps)
    assert rig.daemon.core.stopped
