"""Issue 7, "make it a property": the whole master (bus master + controller + policy, wired by
``Core``) against slaves that come, go, change ID and say anything, a site meter that lies,
settings that change, clocks that jump and a line full of noise.

A Hypothesis ``RuleBasedStateMachine`` drives ``rig.Rig``: the real ``Core`` in virtual time
against the real simulated TWCs with cars (``twcmaster.sim``) and scripted units. The rig's
observers check the safety rules at every event of the loop (see ``rig.py``): offers 0 or
within [floor, min(wiringMaxAmpsPerTWC, the slave's own max)], the gate (a raise only when
everyone's committed amps fit in wiringMaxAmpsAllTWCs), the limits the units apply within the
wiring, a heartbeat at most 1.5 s apart for every linked slave that answers, and no exception
escaping the core. The invariants below add the snapshot and the policy's fail-safe after
every rule.

Time only moves forward (a monotonic clock): by events (``advance``: poll at
``next_wakeup_s`` as the daemon does), by a stalled process (``stall``: the world goes on,
the master reads the backlog when it wakes) and by a frozen machine (``freeze``). The wall
clock (the policy's local time) may also jump back and forth.
"""

from __future__ import annotations

import atexit
import json
import math
import random
import shutil

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.robustness import garbage
from tests.robustness.profiles import TALLY, batches, given_settings
from tests.robustness.rig import MASTER_ID, Rig, RigConfig, ScriptedSlave, settings_dir
from twcmaster.control.policy import POLICIES
from twcmaster.protocol import messages
from twcmaster.settings import ScheduleWindow, SettingsError
from twcmaster.sim.car import SimulatedCar
from twcmaster.sim.slave import SimulatedSlave, random_sign
from twcmaster.sources.runner import SiteReading

#: Units on the line at once: real masters handle 3 (§5.4); one more is accepted (with an
#: alarm). With 5 or 6 answering units and link-ready bursts after a clock jump, a heartbeat
#: gap of ~1.51 s shows up now and then (reported to the lead, not asserted here).
MAX_UNITS = 4
#: Linked slaves (answering or not: IDs left behind by units that moved or vanished stay
#: linked until their timeout) at which no further unit is added: the master's own maximum.
MAX_LINKED = 6

FOLDER = settings_dir()  # the settings stores of every example (tmpfs when there is one)
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)

#: Every rule lets the bus run a little afterwards, so that what it changed plays out on the
#: wire (a rule alone changes nothing the observers could see).
then_run = st.one_of(
    st.sampled_from([0.0, 0.05, 0.3, 1.0, 1.0, 2.0, 5.0]), st.floats(0.0, 3.0, allow_nan=False)
)

watts = st.one_of(
    st.floats(0, 25_000, allow_nan=False),
    st.floats(-5_000, 0, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e12, -1e12, 0.0]),
)


@st.composite
def site_readings(draw):
    """What the energy sources' runner may hand the policy: nothing, stale, or anything."""
    kind = draw(st.sampled_from(["none", "stale", "values", "values", "values"]))
    if kind == "none":
        return lambda now: None
    generation, consumption = draw(watts), draw(watts)
    grid = draw(st.one_of(st.none(), watts))
    volts = draw(st.one_of(st.none(), st.sampled_from([230.0, 0.0, -230.0, math.nan, 1e9])))
    age = draw(st.sampled_from([0.0, 2.0, 30.0, 600.0, 1e6, -10.0]))
    stale = kind == "stale"
    reason = "Fronius: no reading for 300 s (maxAge 60 s)" if stale else ""
    return lambda now: SiteReading(
        generation, consumption, grid, volts, now - age, stale, reason, ("test",)
    )


@st.composite
def rig_configs(draw):
    min_amps = draw(st.integers(5, 20))
    wiring_all = draw(st.one_of(st.integers(min_amps, 100), st.integers(min_amps, 480)))
    per_twc = draw(st.integers(min_amps, min(wiring_all, 80)))  # a TWC delivers at most 80 A
    return RigConfig(
        wiring_all=wiring_all,
        wiring_per_twc=per_twc,
        min_amps=min_amps,
        start_stop_delay_s=draw(st.sampled_from([0.0, 5.0, 60.0])),
        slave_timeout_s=draw(st.sampled_from([26.0, 26.0, 8.0, 15.0])),
        safe_amps=draw(st.integers(0, wiring_all)),
        start_delay_s=draw(st.sampled_from([0.0, 3.0, 60.0])),
        min_on_time_s=draw(st.sampled_from([0.0, 20.0, 1800.0])),
        min_off_time_s=draw(st.sampled_from([0.0, 10.0, 60.0])),
        subtract_charger_load=draw(st.booleans()),
        phases=draw(st.sampled_from([1, 3])),
        non_scheduled_amps_max=draw(st.one_of(st.none(), st.integers(0, wiring_all))),
        spikes=draw(st.booleans()),
        green_sources=draw(st.booleans()),
        force_policy=draw(st.one_of(st.none(), st.sampled_from(POLICIES))),
        car_api=draw(st.sampled_from(["none", "working", "failing"])),
        start_hour=draw(st.sampled_from([3.0, 9.5, 12.0, 19.99, 23.5])),
    )


class MasterMachine(RuleBasedStateMachine):
    units = Bundle("units")

    def __init__(self) -> None:
        super().__init__()
        self.rig: Rig | None = None
        self.used_ids: set[int] = {MASTER_ID}
        TALLY["stateful examples"] += 1

    # -- set-up

    @initialize(
        target=units,
        cfg=rig_configs(),
        first=st.lists(
            st.tuples(st.sampled_from(["sim", "scripted"]), st.sampled_from([1, 2])),
            min_size=1,
            max_size=MAX_UNITS,
        ),
        dt=then_run,
    )
    def start(self, cfg, first, dt):
        self.rig = Rig(cfg, FOLDER)
        added = []
        for i, (kind, protocol) in enumerate(first):
            if kind == "sim":
                added.append(self._add_sim(protocol, 32.0, True, i))
            else:
                added.append(self._add_scripted(protocol, 3200, i))
        self._then(dt)
        return multiple(*added)

    def teardown(self) -> None:
        if self.rig is not None:
            self.rig.close()

    def _then(self, dt: float) -> None:
        if dt > 0:
            self.rig.run(dt)

    def _room(self) -> bool:
        rig = self.rig
        return len(rig.bus.slaves) < MAX_UNITS and len(rig.core.master.slaves) < MAX_LINKED

    def _new_id(self, seed: int) -> int:
        """An ID no unit has used in this run: a unit that takes the ID another one used a
        moment ago answers the master in its place, and no master can tell them apart."""
        taken = self.used_ids
        twcid = 0x1000 + seed % 0xE000
        while twcid in taken or {twcid >> 8, twcid & 0xFF} & {0xC0, 0xDB}:
            twcid = (twcid + 0x0101) % 0xFFFF or 1
        taken.add(twcid)
        return twcid

    def _add_sim(self, protocol, max_amps, plugged, seed):
        rig = self.rig
        car = SimulatedCar(seed=seed, plugged=plugged)
        slave = SimulatedSlave(
            self._new_id(seed),
            random_sign(random.Random(seed)),
            protocol,
            max_amps=max_amps,
            car=car,
            # Its own random stream: two units with one seed would move to the same "random"
            # ID after an ID collision (§5.5), and two units on one ID are beyond any master.
            seed=seed * 7919 + len(self.used_ids),
            powered_on_s=rig.now,
        )
        rig.bus.slaves.append(slave)
        return slave

    def _add_scripted(self, protocol, max_centiamps, seed=0):
        rig = self.rig
        unit = ScriptedSlave(self._new_id(seed + 7), 0x42, protocol, max_centiamps, rig.now)
        rig.bus.slaves.append(unit)
        return unit

    # -- units come and go

    @precondition(lambda self: self._room())
    @rule(
        target=units,
        protocol=st.sampled_from([1, 2]),
        max_amps=st.sampled_from([5.5, 6.0, 10.0, 16.0, 24.0, 32.0, 40.0, 48.0, 80.0, 655.35]),
        plugged=st.booleans(),
        seed=st.integers(0, 2**16),
        dt=then_run,
    )
    def add_simulated_twc(self, protocol, max_amps, plugged, seed, dt):
        slave = self._add_sim(protocol, max_amps, plugged, seed)
        self._then(dt)
        return slave

    @precondition(lambda self: self._room())
    @rule(
        target=units,
        protocol=st.sampled_from([1, 2]),
        max_centiamps=st.one_of(
            st.sampled_from([0, 500, 600, 1600, 3200, 4000, 8000, 0xFFFF]),
            st.integers(0, 0xFFFF),
        ),
        seed=st.integers(0, 2**16),
        dt=then_run,
    )
    def add_scripted_twc(self, protocol, max_centiamps, seed, dt):
        unit = self._add_scripted(protocol, max_centiamps, seed)
        self._then(dt)
        return unit

    @rule(unit=units, dt=then_run)
    def vanish(self, unit, dt):
        """The unit stops answering (cable cut): it keeps applying its limit until it gives up
        on its master (~30 s, §5.1)."""
        rig = self.rig
        if unit in rig.bus.slaves:
            rig.bus.slaves.remove(unit)
            rig.vanished.append(unit)
        self._then(dt)

    @rule(unit=units, dt=then_run)
    def reappear(self, unit, dt):
        rig = self.rig
        if unit in rig.vanished and len(rig.bus.slaves) < MAX_UNITS:
            rig.vanished.remove(unit)
            rig.bus.slaves.append(unit)
        self._then(dt)

    @rule(unit=consumes(units), dt=then_run)
    def remove_for_good(self, unit, dt):
        """Off the bus and powered off: it applies nothing any more."""
        rig = self.rig
        if unit in rig.bus.slaves:
            rig.bus.slaves.remove(unit)
        if unit in rig.vanished:
            rig.vanished.remove(unit)
        self._then(dt)

    @rule(unit=units, seed=st.integers(0, 2**16), dt=then_run)
    def change_id(self, unit, seed, dt):
        """The unit takes another free ID (and a new sign), as after a collision (§5.5)."""
        if len(self.rig.core.master.slaves) < MAX_LINKED:  # the old ID stays linked a while
            unit.twcid = self._new_id(seed)
            unit.sign = random_sign(random.Random(seed))
        self._then(dt)

    @rule(unit=units, dt=then_run)
    def take_the_masters_id(self, unit, dt):
        """A unit that uses the master's own ID (§5.4/§5.5: the master re-bursts and a real
        slave moves; a scripted unit keeps it and keeps announcing it)."""
        unit.twcid = MASTER_ID
        self._then(dt)

    @rule(count=st.integers(1, 12), dt=then_run)
    def linkready_with_the_masters_id(self, count, dt):
        """A device announcing the master's own ID every second (finding 2's scene)."""
        rig = self.rig
        rogue = garbage.slave_wire(messages.SlaveLinkReady(MASTER_ID, 0x66, 3200, 2))
        for i in range(count):
            rig.inject(rogue, spacing_s=float(i))
        self._then(dt)

    # -- what the units say

    @rule(
        unit=units,
        state=st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 9, 0x0A, 0x0F]), st.integers(0, 255)),
        report=st.one_of(st.none(), st.integers(0, 0xFFFF), st.sampled_from([0, 600, 3200])),
        draw=st.one_of(
            st.floats(0, 1.2).map(lambda f: ("fraction", f)),
            st.integers(0, 0xFFFF).map(lambda c: ("centiamps", c)),
        ),
        apply_limits=st.booleans(),
        answers=st.booleans(),
        dt=then_run,
    )
    def script(self, unit, state, report, draw, apply_limits, answers, dt):
        """A scripted unit's next replies: any state, an honest or made-up S1-S2, a draw
        within or outside what was offered; it may ignore limits or stop answering."""
        if isinstance(unit, ScriptedSlave):
            unit.state, unit.report = state, report
            if draw[0] == "fraction":
                unit.draw_fraction = draw[1]
            else:
                unit.draw_fraction, unit.draw_centiamps = None, draw[1]
            unit.apply_limits, unit.answers = apply_limits, answers
        self._then(dt)

    @rule(unit=units, plugged=st.booleans(), seed=st.integers(0, 2**16), dt=then_run)
    def plug(self, unit, plugged, seed, dt):
        if isinstance(unit, SimulatedSlave):
            if plugged:
                unit.plug(self.rig.now, SimulatedCar(seed=seed, plugged=False))
            else:
                unit.unplug(self.rig.now)
        self._then(dt)

    # -- the line

    @rule(
        noise=st.lists(garbage.pieces(), max_size=6),
        spacing=st.sampled_from([0.0, 0.001, 0.06, 2.5]),
        dt=then_run,
    )
    def line_noise(self, noise, spacing, dt):
        rig = self.rig
        for i, (_, data) in enumerate(noise):
            rig.inject(data, spacing_s=i * spacing)
        TALLY["frames fed"] += len(noise)
        self._then(dt)

    # -- the site and the settings

    @rule(site=site_readings(), dt=then_run)
    def site_reading(self, site, dt):
        self.rig.site = site(self.rig.now)
        self._then(dt)

    def _setting(self, change, *args) -> None:
        """A settings change as the HTTP API or MQTT would make it; values the store refuses
        (amps above the wiring, hours out of range) raise SettingsError, which is fine."""
        try:
            change(*args)
        except SettingsError:
            TALLY["settings changes refused"] += 1

    @rule(amps=st.floats(0.5, 1000), seconds=st.floats(1, 7 * 86400), dt=then_run)
    def charge_now(self, amps, seconds, dt):
        rig = self.rig
        self._setting(rig.store.charge_now, amps, seconds, rig.wallclock().timestamp())
        self._then(dt)

    @rule(dt=then_run)
    def cancel_charge_now(self, dt):
        self._setting(self.rig.store.cancel_charge_now)
        self._then(dt)

    @rule(action=st.sampled_from([1, 2, 3]), dt=then_run)
    def non_scheduled_action(self, action, dt):
        self._setting(self.rig.store.set_non_scheduled_action, action)
        self._then(dt)

    @rule(amps=st.one_of(st.integers(0, 100).map(float), st.floats(0, 1000)), dt=then_run)
    def non_scheduled_amps(self, amps, dt):
        self._setting(self.rig.store.set_non_scheduled_amps, amps)
        self._then(dt)

    @rule(
        windows=st.lists(
            st.tuples(
                st.floats(0.5, 1000), st.integers(0, 23), st.integers(1, 24), st.integers(1, 127)
            ).filter(lambda w: w[1] != w[2]),
            max_size=3,
        ),
        dt=then_run,
    )
    def schedule(self, windows, dt):
        try:
            chosen = [ScheduleWindow(a, float(s), float(e), d) for a, s, e, d in windows]
        except SettingsError:
            return
        self._setting(self.rig.store.set_schedule, chosen)
        self._then(dt)

    @rule(
        raw=st.dictionaries(
            st.sampled_from(
                [
                    "chargeNowAmps",
                    "chargeNowTimeEnd",
                    "nonScheduledAction",
                    "nonScheduledAmpsMax",
                    "scheduledAmpsMax",
                    "scheduledAmpsStartHour",
                    "scheduledAmpsEndHour",
                    "scheduledAmpsDaysBitmap",
                    "sunrise",
                    "sunset",
                    "hourResumeTrackGreenEnergy",
                ]
            ),
            st.one_of(
                st.integers(-10, 10**6),
                st.floats(allow_nan=False, allow_infinity=False),
                st.sampled_from(["", "12", "NaN", None, True, [], {}]),
            ),
            max_size=5,
        ),
        dt=then_run,
    )
    def settings_file_edited_by_hand(self, raw, dt):
        """settings.json rewritten by someone else (TWCManager, an editor), then reloaded."""
        rig = self.rig
        with open(rig.settings_file, "w", encoding="utf-8") as out:
            json.dump(raw, out)
        rig.store.reload()
        self._then(dt)

    @rule(policy=st.one_of(st.none(), st.sampled_from(POLICIES)), dt=then_run)
    def force_policy(self, policy, dt):
        self.rig.policy.engine.force_policy(policy)
        self._then(dt)

    # -- time

    @rule(seconds=st.sampled_from([5.0, 10.0, 30.0, 60.0]))
    def advance(self, seconds):
        self.rig.run(seconds)

    @rule(seconds=st.sampled_from([0.5, 1.6, 5.0, 12.0, 40.0, 300.0]), dt=then_run)
    def stall(self, seconds, dt):
        """The master process does not run for a while (GC, swap, a slow disk); the units
        go on and what they send waits in the OS buffer."""
        self.rig.run(seconds, stalled=True)
        self._then(dt)

    @rule(seconds=st.sampled_from([0.5, 3.0, 40.0, 3600.0, 86400.0 * 3]), dt=then_run)
    def freeze(self, seconds, dt):
        """The whole machine pauses (a VM suspended): the monotonic clock jumps forward."""
        self.rig.freeze(seconds)
        self.rig.run(dt)

    @rule(hours=st.sampled_from([-25.0, -1.0, 1.0, 0.25, 12.0, 24 * 200.0]), dt=then_run)
    def wall_clock_jump(self, hours, dt):
        """NTP or a DST change moves the wall clock (the policy's local time), either way."""
        self.rig.wall_offset_s += hours * 3600
        self._then(dt)

    # -- after every rule

    @invariant()
    def snapshot_and_fail_safe(self):
        if self.rig is None:
            return
        TALLY["stateful steps"] += 1
        self.rig.check_snapshot()
        self.rig.check_fail_safe()


@pytest.mark.parametrize("batch", batches("stateful"))
def test_master_machine(batch):
    run_state_machine_as_test(MasterMachine, settings=given_settings("stateful"))
