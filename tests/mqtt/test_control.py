"""MQTT control against a real mosquitto: TWCManager's commands and ours reach the settings
store through RemoteControl; bad payloads, retained commands and ``stop`` without
``allowStop`` change nothing and are logged with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.mqtt.conftest import (
    RecordingLog,
    app_config,
    control_config,
    eventually,
    run,
    settle,
)
from twcmaster.remote.commands import RemoteControl
from twcmaster.remote.mqtt import MqttControl
from twcmaster.settings import SettingsStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

NOW_EPOCH = 1_717_400_000.0


class Rig:
    """A settings store in tmp_path, RemoteControl over it, MqttControl on the broker."""

    def __init__(self, broker, tmp_path, **control) -> None:
        self.broker = broker
        self.path = tmp_path / "settings.json"
        self.store = SettingsStore(self.path, wiring_max_amps_all_twcs=40)
        self.changes = 0
        self.stops = 0
        self.log = RecordingLog()
        self.remote = RemoteControl(
            self.store, app_config(), on_change=self._changed, wallclock=lambda: NOW_EPOCH
        )
        self.config = control_config(broker, **control)

    def _changed(self) -> None:
        self.changes += 1

    def _stop(self) -> None:
        self.stops += 1

    @contextlib.asynccontextmanager
    async def running(self):
        self.control = MqttControl(
            self.config,
            self.remote,
            loop=asyncio.get_running_loop(),
            request_stop=self._stop,
            log=self.log,
        )
        await self.control.start()
        try:
            await eventually(lambda: self.control.link.connected, what="connected")
            await settle(0.1)  # the subscription is in place
            yield self
        finally:
            await self.control.stop()

    async def send(self, key: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Publish ``<prefix>/control/<key>`` and wait until the control has dealt with it."""
        handled = self.control.applied + self.control.rejected
        await asyncio.to_thread(self.broker.publish, f"TWC/control/{key}", payload, retain=retain)
        await eventually(lambda: self.control.applied + self.control.rejected > handled, 3, key)

    @property
    def settings(self):
        return self.store.settings


def test_twcmanagers_commands(mosquitto, tmp_path):
    rig = Rig(mosquitto, tmp_path)

    async def main():
        async with rig.running():
            await rig.send("chargeNow", "24,3600")
            assert rig.settings.charge_now_amps == 24
            assert rig.settings.charge_now_end_epoch == NOW_EPOCH + 3600
            await rig.send("chargeNowEnd", "")
            assert rig.settings.charge_now_amps == 0 and rig.settings.charge_now_end_epoch == 0
            await rig.send("nonScheduledAmpsMax", "12")
            assert rig.settings.non_scheduled_amps_max == 12
            await rig.send("nonScheduledAction", "3")
            assert rig.settings.non_scheduled_action == 3

    run(main())
    assert rig.changes == 4  # the daemon was asked to decide again after each
    assert SettingsStore(rig.path).settings.non_scheduled_action == 3  # saved


def test_twcmasters_commands(mosquitto, tmp_path):
    rig = Rig(mosquitto, tmp_path)

    async def main():
        async with rig.running():
            await rig.send("chargeNow", "")  # no preset yet: the wiring limit for an hour
            assert rig.settings.charge_now_amps == 40
            assert rig.settings.charge_now_end_epoch == NOW_EPOCH + 3600
            await rig.send("chargeNowAmps", "20")
            await rig.send("chargeNowDuration", "600")
            assert rig.settings.charge_now_preset_amps == 20
            assert rig.settings.charge_now_preset_s == 600
            await rig.send("chargeNow", "PRESS")  # Home Assistant's button
            assert rig.settings.charge_now_amps == 20
            assert rig.settings.charge_now_end_epoch == NOW_EPOCH + 600
            await rig.send("policy", "track green energy")
            assert rig.settings.forced_policy == "Track Green Energy"
            await rig.send("policy", "minpv")  # evcc's name for Min + Green Energy
            assert rig.settings.forced_policy == "Min + Green Energy"
            await rig.send("policy", "Auto")
            assert rig.settings.forced_policy is None
            await rig.send("2118/allowCharging", "off")
            await rig.send("3c4d/allowCharging", "OFF")
            assert rig.settings.denied_twcids == {"2118", "3C4D"}
            await rig.send("2118/allowCharging", "on")
            assert rig.settings.denied_twcids == {"3C4D"}
            await rig.send("2118/chargePriority", "3")
            await rig.send("3c4d/chargePriority", "-1")
            assert rig.settings.charge_priority == (("2118", 3), ("3C4D", -1))
            await rig.send("2118/chargePriority", "")  # back to config.json's
            assert rig.settings.charge_priority == (("3C4D", -1),)

    run(main())
    assert rig.control.applied == 13 and rig.control.rejected == 0


BAD = [
    ("chargeNow", "24", "chargeNow", "expected amps,seconds"),
    ("chargeNow", "lots,3600", "amps", "expected a number"),
    ("chargeNow", "99,3600", "amps", "expected 1 to 40"),
    ("chargeNow", "24,-5", "seconds", "expected 1 to"),
    ("chargeNow", "24,3600,1", "chargeNow", "expected amps,seconds"),
    ("nonScheduledAmpsMax", "x", "nonScheduledAmpsMax", "expected a number"),
    ("nonScheduledAmpsMax", "41", "nonScheduledAmpsMax", "expected 0 to 40"),
    ("nonScheduledAction", "4", "nonScheduledAction", "expected 1 to 3"),
    ("nonScheduledAction", "1.5", "nonScheduledAction", "expected 1, 2 or 3"),
    ("policy", "Fast", "policy", "expected one of Auto, Charge Now"),
    ("chargeNowAmps", "0", "amps", "expected 1 to 40"),
    ("chargeNowDuration", "nan", "seconds", "expected a number"),
    ("2118/allowCharging", "maybe", "allowed", "expected true or false"),
    ("2118/chargePriority", "high", "priority", "expected a number"),
    ("2118/chargePriority", "1.5", "priority", "expected a whole number"),
    ("2118/chargePriority", "5000", "priority", "expected -1000 to 1000"),
    ("chargeNow", b"\xff\xfe", "payload", "not UTF-8"),
    ("chargeNow", "9" * 300, "payload", "at most 256"),
    ("stop", "", "stop", "allowStop is not true"),
]


def test_bad_payloads_are_logged_with_the_reason_and_change_nothing(mosquitto, tmp_path):
    rig = Rig(mosquitto, tmp_path)

    async def main():
        async with rig.running():
            await rig.send("nonScheduledAction", "2")  # a settings file to compare with
            before = rig.path.read_bytes()
            for key, payload, _, _ in BAD:
                await rig.send(key, payload)
            await rig.send("ZZZZ/allowCharging", "on")  # not a TWCID: no such topic
            await rig.send("chargeNowLater", "1")
            assert rig.path.read_bytes() == before

    run(main())
    assert rig.changes == 1 and rig.stops == 0
    warnings = rig.log.events("warning")
    rejected = [kw for event, kw in warnings if event == "MQTT control: command ignored"]
    assert len(rejected) == len(BAD)
    for (key, _, field, reason), said in zip(BAD, rejected, strict=True):
        assert said["topic"] == f"TWC/control/{key}"
        assert said["field"] == field, (key, said)
        assert reason in said["reason"], (key, said)
    unknown = [kw["topic"] for event, kw in warnings if event == "MQTT control: message ignored"]
    assert unknown == ["TWC/control/ZZZZ/allowCharging", "TWC/control/chargeNowLater"]


def test_retained_commands_are_never_replayed(mosquitto, tmp_path):
    # Left on the broker by someone's automation: they must not start charging at each
    # (re)connection.
    mosquitto.publish("TWC/control/chargeNow", "32,7200", retain=True)
    mosquitto.publish("TWC/control/policy", "Charge Now", retain=True)
    rig = Rig(mosquitto, tmp_path)

    async def main():
        async with rig.running():
            await eventually(lambda: rig.control.rejected == 2, what="both seen")
            # A live command still works, retained flag or not (live delivery clears it).
            await rig.send("chargeNow", "16,60", retain=True)

    run(main())
    assert rig.settings.charge_now_amps == 16 and rig.settings.forced_policy is None
    warnings = rig.log.events("warning")
    ignored = [kw for event, kw in warnings if event == "MQTT control: message ignored"]
    assert len(ignored) == 2 and all("retained" in kw["why"] for kw in ignored)


def test_stop_only_when_allowed(mosquitto, tmp_path):
    rig = Rig(mosquitto, tmp_path, allow_stop=True)

    async def main():
        async with rig.running():
            await rig.send("stop", "")

    run(main())
    assert rig.stops == 1


def test_status_topics_on_the_same_prefix_are_not_commands(mosquitto, tmp_path):
    rig = Rig(mosquitto, tmp_path)

    async def main():
        async with rig.running():
            for topic in ("TWC/config/nonScheduledAction", "TWC/all/currentPolicy"):
                await asyncio.to_thread(mosquitto.publish, topic, "3")
            await rig.send("", "3")  # TWC/control/ itself: no command, said so

    run(main())
    assert rig.control.applied == 0 and rig.control.rejected == 1
    assert rig.changes == 0


def test_start_returns_at_once_with_no_broker(mosquitto, tmp_path):
    mosquitto.stop()
    rig = Rig(mosquitto, tmp_path)

    async def main():
        control = MqttControl(
            rig.config, rig.remote, loop=asyncio.get_running_loop(), request_stop=rig._stop
        )
        began = time.monotonic()
        await control.start()
        assert time.monotonic() - began < 0.2
        await settle(0.2)
        assert not control.link.connected
        await control.stop()

    run(main())
