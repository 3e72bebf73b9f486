"""The core's events: the contract every output builds on (the console, the log, the car API
today; MQTT, HTTP and the web page next). Driven through ``Core.service`` only."""

from __future__ import annotations

from collections import defaultdict

from twcmaster import events as ev
from twcmaster.core import ALARM_SHOWN_S, Core
from twcmaster.outputs.base import Publication
from twcmaster.protocol import codec, messages
from twcmaster.sim.sky import Outage, Profile, Sky
from twcmaster.simulate import DaySimulation, simulation_config


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[float, ev.Event]] = []

    def publish(self, publication: Publication) -> None:
        self.seen += [(publication.now_s, event) for event in publication.events]

    def of(self, kind: type) -> list[tuple[float, ev.Event]]:
        return [(t, e) for t, e in self.seen if isinstance(e, kind)]


def recorded_day(**options) -> tuple[Recorder, object]:
    profile = Profile.from_rows([(0, 4500, 300)], end_s=900)
    sim = DaySimulation(
        simulation_config().settings, Sky(profile, outages=[Outage(400, 500)]), **options
    )
    recorder = Recorder()
    sim.outputs.add(recorder)
    return recorder, sim.run()


def test_a_day_reports_policy_staleness_and_every_offer_change():
    recorder, result = recorded_day(protocol=1)
    (first,) = recorder.of(ev.PolicyChanged)  # forced Track Green Energy all along
    assert first[1].previous == "" and first[1].policy == "Track Green Energy"
    (stale,) = recorder.of(ev.ReadingStale)
    (usable,) = recorder.of(ev.ReadingUsable)
    assert 400 <= stale[0] < 405 and "stale" in stale[1].problem
    assert 500 <= usable[0] < 505
    # Each OfferChanged starts where the last one to that TWC ended, and they are all counted.
    changes = recorder.of(ev.OfferChanged)
    last = defaultdict(int)
    for _, change in changes:
        assert change.previous_centiamps == last[change.twcid] != change.centiamps
        last[change.twcid] = change.centiamps
    assert len(changes) == result.offer_changes > 0
    assert recorder.of(ev.SlaveLinked) and recorder.of(ev.HeartbeatExchanged)
    budgets = recorder.of(ev.BudgetDecided)
    assert any(b.budget.stale for _, b in budgets) and budgets[-1][1].budget.amps > 0


def test_frame_events_only_when_asked():
    recorder, _ = recorded_day()
    frames = (ev.BytesReceived, ev.FrameSent, ev.FrameRejected, ev.FrameIgnored)
    assert not [e for _, e in recorder.seen if isinstance(e, frames)]
    config = simulation_config().settings
    core = Core(config, frame_events=True)
    core.start(0.0)
    step = core.service(0.0)
    assert [e.name for e in step.events if isinstance(e, ev.FrameSent)] == [
        "master link-ready"
    ] * len(step.frames)


def test_link_changes_and_alarms_are_raised_and_cleared():
    core = Core(simulation_config().settings)
    core.set_link(True)
    core.set_link(True)
    assert core.take_events() == (ev.LinkChanged(True),)
    foreign = codec.frame(messages.MasterLinkReady(1, 0x4242, 0x42).to_payload())
    raised = [e for e in core.service(1.0, foreign).events if isinstance(e, ev.AlarmRaised)]
    assert raised and "4242" in raised[0].message
    assert core.snapshot(2.0).alarms
    later = core.service(1.0 + ALARM_SHOWN_S).events
    cleared = [e for e in later if isinstance(e, ev.AlarmCleared)]
    assert [(e.kind, e.message) for e in cleared] == [(raised[0].kind, raised[0].message)]
    assert not core.snapshot(2.0 + ALARM_SHOWN_S).alarms


def test_a_priority_set_at_run_time_decides_which_car_takes_a_short_sun(tmp_path):
    """Two cars, sun for one: config.json puts the first TWC first; a priority set at run
    time (the web page, HTTP, MQTT) for the second puts it first instead, and the snapshot
    shows the priority in force."""
    from twcmaster.config import config_from_dict
    from twcmaster.control.policy import build_policy
    from twcmaster.settings import SettingsStore

    profile = Profile.from_rows([(0, 2300 + 300, 300)], end_s=600)  # 10 A of surplus
    base = simulation_config().settings
    probe = DaySimulation(base, Sky(profile), slaves=2, end_s=1)  # the same seed's TWCIDs
    first, second = (f"{s.twcid:04X}" for s in probe.bus.slaves)
    raw = {"config": {**base.raw["config"], "chargePriority": {first: 1}}}
    config = config_from_dict(raw, str(tmp_path)).settings

    def charging_first(second_priority: int | None) -> tuple[str, dict]:
        store = SettingsStore(str(tmp_path / f"settings-{second_priority}.json"))
        if second_priority is not None:
            store.set_charge_priority(second, second_priority)
        policy = build_policy(config, store, force_policy="Track Green Energy")
        sim = DaySimulation(config, Sky(profile), slaves=2, policy=policy)
        sim.run()
        snapshot = sim.core.snapshot(sim.now)
        drawing = [s.twcid for s in snapshot.slaves if s.actual_amps >= 1]
        return ",".join(drawing), {s.twcid: s.priority for s in snapshot.slaves}

    assert charging_first(None) == (first, {first: 1, second: 0})
    assert charging_first(5) == (second, {first: 1, second: 5})


def test_the_snapshot_carries_each_cars_energy_since_it_was_plugged_in():
    """The core integrates each TWC's draw at every reply (sessions.PlugInEnergy): after a
    quarter of an hour of sun, the snapshot's session energy is what the simulated car took."""
    profile = Profile.from_rows([(0, 4500, 300)], end_s=900)
    sim = DaySimulation(simulation_config().settings, Sky(profile))
    sim.run()
    (slave,) = sim.core.snapshot(sim.now).slaves
    (car,) = sim.cars
    assert car.energy_kwh > 0.5
    assert abs(slave.session_kwh - car.energy_kwh) <= 0.02 * car.energy_kwh
