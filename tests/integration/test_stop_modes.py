"""chargeStopMode 2 and 3 on the real daemon: simulated TWCs on a pty, bytes through the kernel.

Real time, so the clocks are scaled down together: the slaves give up on their master after
2 s (not 10) and cut the charge after 4 s (not 30); the daemon pauses heartbeats for 8 s (not
60, still twice the cut) and sends at most one relay command per slave per 8 s (not 60). The
real constants run in virtual time in ``tests/control/test_busstop_core.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.rig import Rig
from twcmaster import events as ev
from twcmaster.control.busstop import BusStopper, BusStopSettings, ChargeStopMode
from twcmaster.control.policy import FixedBudget
from twcmaster.protocol import codec
from twcmaster.sim.car import SimulatedCar
from twcmaster.sim.slave import SimulatedSlave, SlaveOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

A, B = 0x1111, 0x2222  # B has the higher TWCID: the budget cuts it first
WIRING_ALL_A = 40
ONE_CAR_A = 10  # room for one 6 A minimum only
SCALED = SlaveOptions(master_lost_s=2.0, charge_fault_s=4.0)
PAUSE_S = 8.0
INTERVAL_S = 8.0


def twc(twcid: int, firmware=(4, 5, 3, 0)) -> SimulatedSlave:
    loop = asyncio.get_running_loop()
    return SimulatedSlave(
        twcid, 0x21, 2, car=SimulatedCar(seed=twcid), seed=twcid, firmware=firmware,
        powered_on_s=loop.time(), options=SCALED,
    )  # fmt: skip


class Watch:
    """What crossed the wire to the slaves, the core's events and the wiring, sampled."""

    def __init__(self, rig: Rig, mode: int, stops_per_session: int = 3) -> None:
        self.rig = rig
        self.frames: list[tuple[float, bytes]] = []
        self.events: list[object] = []
        self.max_limits_a = 0.0
        core = rig.daemon.core
        settings = BusStopSettings(ChargeStopMode(mode), PAUSE_S, INTERVAL_S, stops_per_session)
        core.bus_stopper = BusStopper(settings)
        receive, parser = rig.bus.receive, codec.FrameParser()

        def recording(data: bytes, now_s: float) -> None:
            for item in parser.feed(data, now_s):
                if isinstance(item, codec.Frame):
                    self.frames.append((now_s, codec.frame(item.body[:-1])))
            receive(data, now_s)

        rig.bus.receive = recording
        take = core.take_events

        def taking() -> tuple:
            taken = take()
            self.events.extend(taken)
            return taken

        core.take_events = taking

    def budget(self, amps: float) -> None:
        self.rig.daemon.core.policy = FixedBudget(amps, f"test {amps}A")
        self.rig.daemon.reconsider()

    async def until(self, condition, timeout_s: float, what: str) -> None:
        loop = self.rig.loop
        end = loop.time() + timeout_s
        while not condition():
            self._sample()
            if loop.time() > end:
                raise AssertionError(f"{what}: not within {timeout_s}s")
            await asyncio.sleep(0.05)
        self._sample()

    async def wait(self, seconds: float) -> None:
        end = self.rig.loop.time() + seconds
        await self.until(lambda: self.rig.loop.time() >= end, seconds + 1, "time")

    def _sample(self) -> None:
        slaves = self.rig.bus.slaves
        self.rig.bus.advance(self.rig.loop.time())
        self.max_limits_a = max(self.max_limits_a, sum(s.limit_amps for s in slaves))

    def to(self, twcid: int, code: bytes, after_s: float = 0.0) -> list[tuple[float, bytes]]:
        return [
            (t, f) for t, f in self.frames if f[1:3] == code and f[5:7] == twcid.to_bytes(2, "big")
            and t >= after_s
        ]  # fmt: skip

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def heartbeat_gaps(times: list[float]) -> float:
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def run(mode: int, slaves_fw: tuple, scenario) -> None:
    config = {"startStopDelay": 2, "chargeStopMode": mode}

    async def main() -> None:
        slaves = [twc(A), twc(B, slaves_fw)]
        rig = Rig(config)

        async def during(rig: Rig) -> None:
            await scenario(rig, slaves)

        await rig.run(slaves, 90, during)

    asyncio.run(main())


HEARTBEAT = b"\xfb\xe0"


def test_mode_2_pauses_one_slave_its_car_stops_the_other_keeps_heartbeats():
    async def scenario(rig: Rig, slaves: list[SimulatedSlave]) -> None:
        a, b = slaves
        watch = Watch(rig, 2, stops_per_session=1)
        await watch.until(lambda: a.actual_amps > 10 and b.actual_amps > 10, 30, "both charge")
        cut_s = rig.loop.time()
        watch.budget(ONE_CAR_A)
        await watch.until(lambda: watch.of(ev.BusStopStep), 5, "the pause")
        paused_s = rig.loop.time()
        await watch.until(lambda: b.actual_amps == 0, PAUSE_S, "B's car stopped")
        assert b.stats.linkreadies_sent >= 2  # it noticed it lost its master
        await watch.until(lambda: watch.to(B, HEARTBEAT, paused_s + 0.5), PAUSE_S + 3, "resume")
        resumed_at, first = watch.to(B, HEARTBEAT, paused_s + 0.5)[0]
        assert resumed_at - paused_s >= PAUSE_S - 0.5
        # 09 00 00 to 2222 from 7777, byte for byte (§3.3, §4.1, §6.6).
        body = bytes.fromhex("FB E0 77 77 22 22 09 00 00 00 00 00 00 00 00")
        assert first == codec.frame(body)
        a_beats = [t for t, _ in watch.to(A, HEARTBEAT, cut_s)]
        assert heartbeat_gaps(a_beats) < 1.5 and a.actual_amps > 0
        # The cap (1 here): the next stop is a 0 A offer, with a warning.
        watch.budget(WIRING_ALL_A)
        await watch.until(lambda: b.actual_amps > 5, 30, "B charges again")
        await watch.wait(3)
        watch.budget(ONE_CAR_A)
        await watch.until(lambda: b.limit_amps == 0, 10, "0 A to B")
        await watch.until(lambda: watch.of(ev.CarNotice), 5, "the warning")
        assert len(watch.of(ev.BusStopStep)) == 1
        assert any("0 A offer" in line for line in rig.lines)
        assert any("pausing its heartbeats" in line for line in rig.lines)
        assert any("heartbeats resumed after the pause, offering 0.00A" in x for x in rig.lines)
        assert watch.max_limits_a <= WIRING_ALL_A

    run(2, (4, 5, 3, 0), scenario)


STOP, START = b"\xfc\xb2", b"\xfc\xb1"


def test_mode_3_stop_and_start_commands_to_one_slave():
    async def scenario(rig: Rig, slaves: list[SimulatedSlave]) -> None:
        a, b = slaves
        watch = Watch(rig, 3)
        known = lambda: all(s.firmware for s in rig.daemon.core.master.slave_views())  # noqa: E731
        await watch.until(lambda: a.actual_amps > 10 and b.actual_amps > 10 and known(), 30, "go")
        cut_s = rig.loop.time()
        watch.budget(ONE_CAR_A)
        await watch.until(lambda: watch.to(B, STOP), 5, "FC B2")
        stop_at, stop = watch.to(B, STOP)[0]
        # T25's layout with B's ID: FC B2, master, slave, 9 zero bytes (§3.5, §7 T25).
        assert stop == codec.frame(bytes.fromhex("FC B2 77 77 22 22") + bytes(9))
        await watch.until(lambda: watch.of(ev.RelayAcknowledged), 3, "FD B2")
        await watch.until(lambda: b.actual_amps == 0, 10, "B's relay open")
        assert not watch.to(A, STOP) and a.actual_amps > 0
        watch.budget(WIRING_ALL_A)
        await watch.until(lambda: watch.to(B, START), INTERVAL_S + 5, "FC B1")
        start_at, start = watch.to(B, START)[0]
        assert start == codec.frame(bytes.fromhex("FC B1 77 77 22 22") + bytes(9))
        assert start_at - stop_at >= INTERVAL_S - 0.1
        await watch.until(lambda: b.actual_amps > 5, 30, "B charges again")
        assert heartbeat_gaps([t for t, _ in watch.to(A, HEARTBEAT, cut_s)]) < 1.5
        assert any("stop command (FC B2)" in line for line in rig.lines)
        assert watch.max_limits_a <= WIRING_ALL_A

    run(3, (4, 5, 3, 0), scenario)


def test_mode_3_older_firmware_falls_back_to_0a_and_says_so():
    async def scenario(rig: Rig, slaves: list[SimulatedSlave]) -> None:
        a, b = slaves
        watch = Watch(rig, 3)
        await watch.until(lambda: a.actual_amps > 10 and b.actual_amps > 10, 30, "both charge")
        watch.budget(ONE_CAR_A)
        await watch.until(lambda: b.limit_amps == 0, 5, "0 A to B")
        await watch.until(lambda: watch.of(ev.CarNotice), 5, "the explanation")
        await watch.wait(2)
        assert not watch.to(B, STOP) and not watch.to(B, START)
        assert sum("needs firmware 4.5.3" in line for line in rig.lines) == 1
        assert watch.max_limits_a <= WIRING_ALL_A

    run(3, (4, 0, 0, 0), scenario)
