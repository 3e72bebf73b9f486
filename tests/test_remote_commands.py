"""The one validated path for changes from outside (``remote/commands.py``), the config of
the interfaces (``config/interfaces.py``) and what the core does with a change: decide again
at once, offer 0 A to a TWC switched off by hand."""

from __future__ import annotations

import dataclasses
import math

import pytest

from twcmaster.config import ConfigError, config_from_dict
from twcmaster.control.policy import POLICIES, POLICY_MIN_GREEN, build_policy
from twcmaster.core import DENIED_REASON
from twcmaster.events import BudgetDecided
from twcmaster.remote.commands import AUTO_POLICY, CommandRejected, RemoteControl
from twcmaster.settings import FORCEABLE_POLICIES, SettingsStore
from twcmaster.sim.sky import Profile, Sky
from twcmaster.simulate import DaySimulation, simulation_config

WIRING = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32}
NOW_EPOCH = 1_790_000_000.0


def app(**sections):
    return config_from_dict({"config": WIRING, **sections}, "/tmp").settings


@pytest.fixture
def remote(tmp_path):
    store = SettingsStore(tmp_path, wiring_max_amps_all_twcs=32)
    changes = []
    control = RemoteControl(
        store, app(), on_change=lambda: changes.append(1), wallclock=lambda: NOW_EPOCH
    )
    control.changes = changes
    return control


def file_bytes(control: RemoteControl) -> bytes | None:
    path = control.store.path
    return path.read_bytes() if path.exists() else None


def test_charge_now_is_saved_whole_and_the_daemon_asked_to_decide(remote):
    assert remote.charge_now("24", 3600, source="test") == "Charge Now at 24A for 3600s"
    settings = SettingsStore(remote.store.path).settings  # as read back from the file
    assert settings.charge_now_amps == 24 and settings.charge_now_end_epoch == NOW_EPOCH + 3600
    assert remote.changes == [1]
    remote.cancel_charge_now(source="test")
    assert not remote.store.settings.charge_now_active(NOW_EPOCH)


@pytest.mark.parametrize(
    ("amps", "seconds", "field"),
    [
        ("abc", 60, "amps"),
        (True, 60, "amps"),
        (math.nan, 60, "amps"),
        (33, 60, "amps"),  # above wiringMaxAmpsAllTWCs
        (0, 60, "amps"),
        (16, -5, "seconds"),
        (16, "1e9", "seconds"),
        (16, None, "seconds"),
    ],
)
def test_a_bad_value_is_rejected_naming_the_field_and_changes_nothing(remote, amps, seconds, field):
    remote.set_non_scheduled_amps(10, source="test")
    before = file_bytes(remote), remote.store.settings
    with pytest.raises(CommandRejected) as caught:
        remote.charge_now(amps, seconds, source="test")
    assert caught.value.field == field
    assert (file_bytes(remote), remote.store.settings) == before
    assert remote.changes == [1]  # only the first, good change


def test_every_other_command_validates(remote):
    bad = [
        lambda: remote.set_non_scheduled_action(4, source="t"),
        lambda: remote.set_non_scheduled_action(1.5, source="t"),
        lambda: remote.set_non_scheduled_amps(-1, source="t"),
        lambda: remote.set_policy("Charge Later", source="t"),
        lambda: remote.set_twc_allowed("XYZ1", False, source="t"),
        lambda: remote.set_twc_allowed("2118", "maybe", source="t"),
        lambda: remote.add_consumption_offset("", 1, "A", source="t"),
        lambda: remote.add_consumption_offset("oven", 1, "kW", source="t"),
        lambda: remote.delete_consumption_offset("nothing", source="t"),
        lambda: remote.set_home_location(91, 0, source="t"),
        lambda: remote.set_schedule(16, 1500, 360, 127, source="t"),
    ]
    for command in bad:
        with pytest.raises(CommandRejected):
            command()
    assert file_bytes(remote) is None and remote.changes == []


def test_policy_choice_and_twc_switch_are_persisted(remote):
    assert set(FORCEABLE_POLICIES) == {*POLICIES, POLICY_MIN_GREEN}
    remote.set_policy("Charge Now", source="t")
    remote.set_twc_allowed("a1b2", "off", source="t")
    remote.set_charge_now_preset(20, 1800, source="t")
    reread = SettingsStore(remote.store.path).settings
    assert reread.forced_policy == "Charge Now" and reread.denied_twcids == {"A1B2"}
    assert remote.charge_now_preset() == (20, 1800)
    remote.set_policy(AUTO_POLICY, source="t")
    remote.set_twc_allowed("A1B2", True, source="t")
    reread = SettingsStore(remote.store.path).settings
    assert reread.forced_policy is None and not reread.denied_twcids


def test_the_schedule_takes_twcmanager_minutes(remote):
    remote.set_schedule(16, 22 * 60, 6 * 60, 0b0011111, source="t")
    (window,) = remote.store.settings.schedule
    assert (window.amps, window.start_hour, window.end_hour, window.days_bitmap) == (
        16, 22.0, 6.0, 0b0011111,
    )  # fmt: skip
    remote.set_schedule(0, -1, -1, 127, source="t")
    assert remote.store.settings.schedule == ()


def test_a_forced_policy_from_the_settings_wins_over_the_rules(tmp_path):
    store = SettingsStore(tmp_path, wiring_max_amps_all_twcs=32)
    policy = build_policy(app(), store)
    from datetime import datetime

    noon = datetime(2026, 6, 1, 12, 0)
    assert policy.decide(0.0, noon, None, None).policy == "Track Green Energy"
    store.set_forced_policy("Non Scheduled Charging")
    budget = policy.decide(1.0, noon, None, None)
    assert budget.policy == "Non Scheduled Charging" and "by hand" in budget.reason


def _two_car_day(tmp_path):
    profile = Profile.from_rows([(0, 9000, 300)], end_s=600)
    config = simulation_config().settings
    # 16 A per TWC: the 37 A of surplus is more than one car can take, so both charge.
    wiring = dataclasses.replace(config.wiring, max_amps_per_twc=16)
    config = dataclasses.replace(config, wiring=wiring)
    store = SettingsStore(tmp_path, wiring_max_amps_all_twcs=config.wiring.max_amps_all_twcs)
    policy = build_policy(config, store, force_policy=None)
    store.set_sun_hours(0, 24)
    sim = DaySimulation(config, Sky(profile), slaves=2, policy=policy, end_s=600)
    return sim, store


def test_a_twc_switched_off_is_offered_nothing_and_the_other_keeps_charging(tmp_path):
    sim, store = _two_car_day(tmp_path)
    sim.run_until(200)
    first, second = sim.core.snapshot(200).slaves
    assert first.offer_amps > 0 and second.offer_amps > 0
    store.set_twc_allowed(first.twcid, False)
    sim.core.request_decision()
    sim.run_until(260)
    first, second = sim.core.snapshot(260).slaves
    assert (first.offer_amps, first.offer_reason, first.charging_allowed) == (
        0,
        DENIED_REASON,
        False,
    )
    assert second.offer_amps > 0 and second.charging_allowed


def test_a_requested_decision_comes_at_the_next_step():
    from twcmaster.core import Core

    core = Core(simulation_config().settings)
    core.start(0.0)
    assert not [e for e in core.service(0.0).events if isinstance(e, BudgetDecided)]
    core.request_decision()
    assert [e for e in core.service(0.01).events if isinstance(e, BudgetDecided)]
    assert not [e for e in core.service(0.02).events if isinstance(e, BudgetDecided)]


# ------------------------------------------------------------------ the interfaces' config


def test_interfaces_off_unless_enabled_and_twcmanager_defaults_when_on():
    assert (app().mqtt_status, app().mqtt_control, app().http) == (None, None, None)
    on = app(
        status={"MQTT": {"enabled": True, "brokerIP": "broker.lan", "brokerTLS": True,
                         "username": "u", "password": "hunter2-secret"}},
        control={"HTTP": {"enabled": True}, "MQTT": {"enabled": True, "brokerIP": "b"}},
    )  # fmt: skip
    assert on.mqtt_status.broker.port == 8883 and on.mqtt_status.ratelimit_s == 60
    assert on.mqtt_status.broker.topic_prefix == "TWC" and on.mqtt_status.ha_discovery
    assert "hunter2" not in repr(on.mqtt_status)
    assert on.mqtt_control.broker.port == 1883 and not on.mqtt_control.allow_stop
    assert (on.http.listen_ip, on.http.listen_port, on.http.token) == ("127.0.0.1", 8080, None)


@pytest.mark.parametrize(
    ("sections", "path"),
    [
        ({"status": {"MQTT": {"enabled": True}}}, "status.MQTT.brokerIP"),
        ({"control": {"MQTT": {"enabled": True, "brokerIP": "b", "brokerPort": 0}}},
         "control.MQTT.brokerPort"),
        ({"status": {"MQTT": {"enabled": True, "brokerIP": "b", "topicPrefix": "TWC/#"}}},
         "status.MQTT.topicPrefix"),
        ({"status": {"MQTT": {"enabled": True, "brokerIP": "b", "ratelimit": -1}}},
         "status.MQTT.ratelimit"),
        ({"control": {"HTTP": {"enabled": True, "listenIP": "0.0.0.0"}}}, "control.HTTP.token"),
        ({"control": {"HTTP": {"enabled": True, "token": "short"}}}, "control.HTTP.token"),
        ({"control": {"HTTP": {"enabled": True, "tokenRequiredForGet": True}}},
         "control.HTTP.tokenRequiredForGet"),
        ({"control": {"HTTP": {"enabled": True, "listenPort": "http"}}},
         "control.HTTP.listenPort"),
        ({"control": {"HTTP": {"enabled": True, "listenAddress": "::1"}}},
         "control.HTTP.listenAddress"),
    ],
)  # fmt: skip
def test_a_bad_interface_setting_is_an_error_naming_its_key(sections, path):
    with pytest.raises(ConfigError) as caught:
        app(**sections)
    assert path in str(caught.value)
    assert "short" not in str(caught.value)  # a token is never echoed


def test_a_token_allows_any_address():
    http = app(control={"HTTP": {"enabled": True, "listenIP": "0.0.0.0", "token": "x" * 32}}).http
    assert http.listen_ip == "0.0.0.0" and not http.loopback_only
    assert "x" * 32 not in repr(http)


@pytest.mark.parametrize("typed", ["Min + Green Energy", "min + green energy", "Min+PV", "minpv"])
def test_min_green_energy_is_chosen_by_its_name_or_evccs(remote, typed):
    assert remote.set_policy(typed, source="t") == "policy Min + Green Energy"
    assert SettingsStore(remote.store.path).settings.forced_policy == POLICY_MIN_GREEN
    with pytest.raises(CommandRejected, match="Min \\+ Green Energy"):
        remote.set_policy("min", source="t")
