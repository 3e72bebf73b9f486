"""chargeStopMode 2 and 3 through the core, in virtual time, against simulated TWCs: the real
constants (60 s pause, 60 s command interval, 3 stops a session), the bytes on the wire
checked against the protocol notes, not only against what the simulator accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from twcmaster import events as ev
from twcmaster.config import config_from_dict
from twcmaster.control.busstop import HEARTBEAT_PAUSE_S, MAX_STOPS_PER_SESSION
from twcmaster.control.policy import FixedBudget
from twcmaster.core import Core
from twcmaster.protocol import codec, messages
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.car import SimulatedCar
from twcmaster.sim.slave import SimulatedSlave

WIRING_ALL_A = 40
A, B = 0x1111, 0x2222  # A has priority (lowest TWCID): B is the car the budget cuts
MASTER = messages.TWCMANAGER_MASTER_ID
ONE_CAR_BUDGET_A = 10  # room for one 6 A minimum, not two
START_STOP_DELAY_S = 10.0


def config(mode: int, where: str = "config"):
    data = {
        "config": {
            "wiringMaxAmpsAllTWCs": WIRING_ALL_A,
            "wiringMaxAmpsPerTWC": 32,
            "minAmpsPerTWC": 6,
            "startStopDelay": START_STOP_DELAY_S,
        },
        "interface": {"RS485": {"port": "/dev/null"}},
    }
    if where == "config":
        data["config"]["chargeStopMode"] = mode
    else:
        data["vehicle"] = {"teslaAPI": {"enabled": False, "chargeStopMode": mode}}
    return config_from_dict(data, "/tmp").settings


def twc(twcid: int, firmware=(4, 5, 3, 0)) -> SimulatedSlave:
    return SimulatedSlave(
        twcid, 0x21, 2, car=SimulatedCar(seed=twcid), seed=twcid, firmware=firmware
    )


@dataclass
class Run:
    """A core and simulated TWCs on one virtual clock; every frame the core sent, decoded."""

    core: Core
    bus: SimulatedBus
    now: float = 0.0
    sent: list[tuple[float, bytes]] = field(default_factory=list)
    events: list[tuple[float, object]] = field(default_factory=list)
    max_limits_sum_a: float = 0.0
    max_draw_sum_a: float = 0.0

    def until(self, end_s: float) -> None:
        while self.now < end_s:
            step = self.core.service(self.now, self.bus.transmit(self.now))
            self.events += [(self.now, e) for e in step.events]
            for frame in step.frames:
                self.sent.append((self.now, frame))
                self.bus.receive(frame, self.now)
            self._watch_the_wiring()
            nxt = min(step.wake_s, self.bus.next_event_s() or math.inf, end_s)
            self.now = max(nxt, self.now + 0.001)

    def _watch_the_wiring(self) -> None:
        self.bus.advance(self.now)
        slaves = self.bus.slaves
        limits = sum(s.limit_amps for s in slaves if s.car is not None and s.car.plugged)
        self.max_limits_sum_a = max(self.max_limits_sum_a, limits)
        self.max_draw_sum_a = max(self.max_draw_sum_a, sum(s.actual_amps for s in slaves))

    def budget(self, amps: float) -> None:
        self.core.policy = FixedBudget(amps, f"test {amps}A")
        self.core.request_decision()

    def to(self, twcid: int, after_s: float = 0.0) -> list[tuple[float, messages.Message]]:
        """Frames addressed to ``twcid`` since ``after_s``."""
        out = []
        for at, wire in self.sent:
            message = messages.decode(codec.unescape(wire.strip(b"\xc0")))
            if at >= after_s and getattr(message, "receiver", None) == twcid:
                out.append((at, message))
        return out

    def of(self, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


def start(mode: int, slaves: list[SimulatedSlave], where: str = "config") -> Run:
    core = Core(config(mode, where))
    core.start(0.0)
    run = Run(core, SimulatedBus(slaves))
    run.budget(WIRING_ALL_A)
    run.until(60.0)
    assert all(s.actual_amps > 10 for s in slaves), "both cars charge at first"
    return run


def heartbeat_times(run: Run, twcid: int, after_s: float) -> list[float]:
    return [t for t, m in run.to(twcid, after_s) if isinstance(m, messages.MasterHeartbeat)]


# --- mode 2 ----------------------------------------------------------------------------------


def test_mode_2_pauses_only_that_slaves_heartbeats_and_its_car_stops():
    a, b = twc(A), twc(B)
    run = start(2, [a, b])
    cut_s = run.now
    run.budget(ONE_CAR_BUDGET_A)
    run.until(cut_s + HEARTBEAT_PAUSE_S + 10)

    (pause,) = run.of(ev.BusStopStep)
    paused_at = pause[0]
    assert pause[1].step.twcid == B and pause[1].step.until_s == paused_at + HEARTBEAT_PAUSE_S
    assert paused_at - cut_s < 2.0  # at once: no startStopDelay left
    # Not a single frame to B during the pause; A keeps its 1 s heartbeats.
    assert not run.to(B, paused_at + 0.01)[0][0] < paused_at + HEARTBEAT_PAUSE_S
    a_times = heartbeat_times(run, A, cut_s)
    assert max(y - x for x, y in zip(a_times, a_times[1:], strict=False)) < 1.2
    # B noticed (link-ready about 10 s in) and its car stopped (about 30 s in).
    assert b.stats.linkreadies_sent >= 1 and b.actual_amps == 0
    assert b.car.interruptions == 1 and a.actual_amps > 0
    # The first heartbeat after the pause says 0 A (09 00 00), byte for byte.
    first_at, first = run.to(B, paused_at + 1)[0]
    assert first_at >= paused_at + HEARTBEAT_PAUSE_S
    expected = "C0 FB E0 77 77 22 22 09 00 00 00 00 00 00 00 00"
    assert codec.frame(first.to_payload()).hex(" ").upper().startswith(expected)
    assert run.max_limits_sum_a <= WIRING_ALL_A and run.max_draw_sum_a <= WIRING_ALL_A
    assert B in {s.twcid for s in run.core.master.slave_views()}  # still linked
    (resumed,) = run.of(ev.HeartbeatsResumed)
    assert resumed[1] == ev.HeartbeatsResumed(B, 0.0) and resumed[0] == first_at


def test_mode_2_works_from_vehicle_tesla_api_without_the_module():
    run = start(2, [twc(A), twc(B)], where="vehicle")
    assert run.core.config.tesla_api is None and run.core.car_commander is None
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + 5)
    assert [e.step.twcid for _, e in run.of(ev.BusStopStep)] == [B]


def test_mode_2_the_paused_slaves_amps_count_until_it_reports_them_gone():
    """While B is paused, A may not be raised into B's last limit: the wiring is 40 A."""
    a, b = twc(A), twc(B)
    run = start(2, [a, b])
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + 5)
    b_limit = b.limit_amps
    run.budget(WIRING_ALL_A)  # A alone is served: it would like 32 A
    run.until(run.now + 20)
    assert a.limit_amps + b_limit <= WIRING_ALL_A
    assert run.max_limits_sum_a <= WIRING_ALL_A


def cycle(run: Run, low_s: float = 80.0) -> None:
    """The budget comes back (B starts again), then drops below two minimums."""
    run.budget(WIRING_ALL_A)
    run.until(run.now + START_STOP_DELAY_S + 20)
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + low_s)


def test_mode_2_at_most_three_pauses_a_session_then_a_0a_offer_with_a_warning():
    a, b = twc(A), twc(B)
    run = start(2, [a, b])
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + 80)
    for _ in range(MAX_STOPS_PER_SESSION):
        cycle(run)
    pauses = run.of(ev.BusStopStep)
    assert len(pauses) == MAX_STOPS_PER_SESSION
    (notice,) = [e for _, e in run.of(ev.CarNotice) if e.twcid == B]
    assert "0 A offer" in notice.message and "3 times" in notice.message
    assert b.actual_amps == 0  # stopped by the 0 A offer
    assert run.core.snapshot(run.now).slaves[1].offer_amps == 0
    assert run.max_limits_sum_a <= WIRING_ALL_A
    # A new plug-in is a new session: pausing is allowed again.
    b.unplug(run.now)
    run.until(run.now + 10)
    b.plug(run.now)
    cycle(run, low_s=10)
    assert len(run.of(ev.BusStopStep)) == MAX_STOPS_PER_SESSION + 1


# --- mode 3 ----------------------------------------------------------------------------------


def test_mode_3_stop_and_start_commands_on_the_wire():
    a, b = twc(A), twc(B)
    run = start(3, [a, b])
    assert b.firmware == (4, 5, 3, 0)
    assert [m.request for _, m in run.to(B) if isinstance(m, messages.AddressedRequest)].count(
        messages.Code.REQUEST_FIRMWARE
    ) == 1
    cut_s = run.now
    run.budget(ONE_CAR_BUDGET_A)
    run.until(cut_s + 30)
    stops = [(t, w) for t, w in run.sent if w[1:3] == b"\xfc\xb2"]
    assert len(stops) == 1
    assert stops[0][1] == bytes.fromhex(
        "C0 FC B2 77 77 22 22 00 00 00 00 00 00 00 00 00 "
        + f"{codec.checksum(stops[0][1][1:16]):02X} C0"
    )
    assert [e.started for _, e in run.of(ev.RelayAcknowledged)] == [False]
    assert not b.relay_closed and b.actual_amps == 0 and a.actual_amps > 0
    a_times = heartbeat_times(run, A, cut_s)
    assert max(y - x for x, y in zip(a_times, a_times[1:], strict=False)) < 1.2
    # The budget returns: FC B1 once a minute has passed since FC B2, and B charges again.
    run.budget(WIRING_ALL_A)
    run.until(stops[0][0] + 90)
    starts = [t for t, w in run.sent if w[1:3] == b"\xfc\xb1"]
    assert len(starts) == 1 and starts[0] - stops[0][0] >= 60
    assert b.relay_closed and b.actual_amps > 1
    assert run.max_limits_sum_a <= WIRING_ALL_A


def test_mode_3_older_firmware_gets_a_0a_offer_and_no_relay_command():
    a, b = twc(A), twc(B, firmware=(4, 0, 0, 0))  # does not answer FB EC (§3.4)
    run = start(3, [a, b])
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + 120)
    assert not [w for _, w in run.sent if w[1:3] in (b"\xfc\xb2", b"\xfc\xb1")]
    notices = [e.message for _, e in run.of(ev.CarNotice) if e.twcid == B]
    assert len(notices) == 1 and "unknown" in notices[0] and "0 A offer" in notices[0]
    assert b.actual_amps == 0  # the 0 A offer stopped it (the simulator's default P2 reaction)
    asks = [m for _, m in run.to(B) if isinstance(m, messages.AddressedRequest)]
    assert sum(m.request == messages.Code.REQUEST_FIRMWARE for m in asks) == 3  # then no more


def test_mode_3_caps_stop_commands_per_session():
    a, b = twc(A), twc(B)
    run = start(3, [a, b])
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + 80)
    for _ in range(MAX_STOPS_PER_SESSION):
        cycle(run)
    stops = [w for _, w in run.sent if w[1:3] == b"\xfc\xb2"]
    assert len(stops) == MAX_STOPS_PER_SESSION
    assert any("0 A offer" in e.message for _, e in run.of(ev.CarNotice))
    assert run.max_limits_sum_a <= WIRING_ALL_A


def test_mode_1_sends_neither_pauses_nor_relay_commands():
    run = start(1, [twc(A), twc(B)])
    run.budget(ONE_CAR_BUDGET_A)
    run.until(run.now + 100)
    assert not run.of(ev.BusStopStep)
    codes = {w[1:3] for _, w in run.sent}
    assert not codes & {b"\xfc\xb2", b"\xfc\xb1", b"\xfb\xec"}
