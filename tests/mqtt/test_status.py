"""MQTT status against a real mosquitto: every topic as TWCManager publishes it, retained; the
rate rules; availability and its last will; a broker down at start, restarted or frozen;
TLS and a password; TWCs gone for good."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from tests.mosquitto import Mosquitto
from tests.mqtt.conftest import (
    FIXED,
    Clock,
    RecordingLog,
    app_config,
    broker_config,
    eventually,
    publication,
    replace,
    retained,
    run,
    settle,
    slave,
    snapshot,
    status_config,
)
from twcmaster.control.policy import Budget
from twcmaster.mqttlink import PENDING_LIMITS, MqttLink, Priority
from twcmaster.outputs.mqtt import FLUSH_EVERY_S, GONE_AFTER_S, MqttStatus
from twcmaster.outputs.mqtttopics import status_values
from twcmaster.outputs.views import snapshot_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@contextlib.asynccontextmanager
async def started(status: MqttStatus, *, connected: bool = True):
    await status.start()
    try:
        if connected:
            await eventually(lambda: status.link.connected, what="connected")
            await settle(0.05)  # its republish runs on the loop right after
        yield status
    finally:
        await status.stop()


def expected(snap, prefix="TWC", **config) -> dict[str, str]:
    """The retained topics for ``snap``: every non-empty value (an empty retained payload
    deletes the topic, as TWCManager's empty VIN does)."""
    values = status_values(snap, app_config(**config))
    return {f"{prefix}/{t}": v.payload for t, v in values.items() if v.payload}


def test_every_topic_retained_with_twcmanagers_payloads(mosquitto, subscribers):
    sub = subscribers(mosquitto, "TWC/#")
    idle = slave("3C4D", vin=None, state=0, state_name="ready", actual_amps=0.0, car_charging=False)
    snap = snapshot(slave(), idle)
    wall_s = 1_717_400_000.0

    async def main():
        status = MqttStatus(
            status_config(mosquitto, ha_discovery=False), app_config(), wallclock=lambda: wall_s
        )
        async with started(status):
            status.publish(publication(snap))
            await eventually(lambda: sub.last("TWC/all/snapshot"))
            assert retained(mosquitto, "TWC/availability") == {"TWC/availability": "online"}

    run(main())
    held = retained(mosquitto, "TWC/#")
    snapshot_text = held.pop("TWC/all/snapshot")
    # Stopped: offline, the whole daemon and each TWC.
    gone = {"TWC/availability": "offline", "TWC/2118/availability": "offline"}
    assert held == expected(snap) | gone | {"TWC/3C4D/availability": "offline"}
    assert held["TWC/2118/ampsInUse"] == "15.94" and held["TWC/3C4D/ampsInUse"] == "0.0"
    assert held["TWC/all/totalAmpsInUse"] == "15.94"
    assert json.loads(snapshot_text) == snapshot_json(snap, time_epoch=wall_s)
    # TWCManager's empty VIN reaches live subscribers as an empty message.
    assert sub.last("TWC/3C4D/currentVehicleVIN") == ""


def test_rate_limit_numbers_by_threshold_discrete_at_once(mosquitto, subscribers):
    sub = subscribers(mosquitto, "TWC/#")
    clock = Clock()
    now = {"slave": slave()}  # each step changes the TWC as it is by then

    async def main():
        status = MqttStatus(
            status_config(mosquitto, ha_discovery=False, ratelimit_s=60), app_config(), clock=clock
        )

        async def step(budget=None, **kw):
            sub.clear()
            now["slave"] = replace(now["slave"], **kw)
            snap = snapshot(now["slave"], **({"budget": budget} if budget else {}))
            status.publish(publication(snap))
            await settle(0.2)
            return sub.latest()

        async with started(status):
            status.publish(publication(snapshot(now["slave"])))
            await eventually(lambda: sub.last("TWC/2118/chargerLoadInW") == "3793")
            # Under the thresholds (0.44 A, 93 W): held back.
            got = await step(actual_amps=15.5, charger_load_w=3700.0)
            assert not {"TWC/2118/ampsInUse", "TWC/2118/chargerLoadInW"} & set(got), got
            assert "TWC/all/totalAmpsInUse" not in got
            # Discrete values: at once, whatever the rate limit.
            got = await step(state=8, state_name="starting to charge", vin="5YJ3E1EA7KF000002")
            assert got["TWC/2118/state"] == "8"
            assert got["TWC/2118/currentVehicleVIN"] == "5YJ3E1EA7KF000002"
            assert "TWC/2118/ampsInUse" not in got
            # A move of 1 A or more: at once.
            got = await step(actual_amps=14.9)
            assert got["TWC/2118/ampsInUse"] == "14.9" and "TWC/2118/chargerLoadInW" not in got
            # A sentence whose figures alone change waits; new wording goes at once.
            fixed_31 = replace(FIXED, reason="fixed rate: nonScheduledAmpsMax 31A.")
            got = await step(budget=fixed_31)
            assert "TWC/all/budgetReason" not in got
            stopped = Budget(0.0, "Non Scheduled Charging", "nonScheduledAction 2: do not charge.")
            got = await step(budget=stopped)
            assert got["TWC/all/budgetReason"] == "nonScheduledAction 2: do not charge."
            assert got["TWC/all/maxAmpsForSlaves"] == "0"
            # The rate limit's time passes: the timer sends what was held, no step needed.
            sub.clear()
            clock.advance(61)
            await eventually(lambda: sub.last("TWC/2118/chargerLoadInW"), FLUSH_EVERY_S + 2)
            assert sub.last("TWC/2118/chargerLoadInW") == "3700"
            # The car stops: its draw goes out at once, however small the move.
            got = await step(actual_amps=14.3, car_charging=False)
            assert got["TWC/2118/carsCharging"] == "0" and got["TWC/2118/ampsInUse"] == "14.3"

    run(main())


def test_at_stop_held_back_numbers_go_out_and_each_twc_is_offline(mosquitto, subscribers):
    """Retained values outlive the daemon: the last ones are left, not older ones the rate
    limit held back, and each TWC's availability says they are no longer live."""
    clock = Clock()

    async def main():
        status = MqttStatus(
            status_config(mosquitto, ha_discovery=False, ratelimit_s=60), app_config(), clock=clock
        )
        async with started(status):
            status.publish(publication(snapshot(slave())))
            await eventually(lambda: retained(mosquitto, "TWC/2118/ampsInUse"))
            status.publish(publication(snapshot(slave(actual_amps=15.5))))  # held back
            await settle(0.2)
            assert retained(mosquitto, "TWC/2118/ampsInUse") == {"TWC/2118/ampsInUse": "15.94"}

    run(main())
    held = retained(mosquitto, "TWC/#")
    assert held["TWC/2118/ampsInUse"] == "15.5"
    assert held["TWC/2118/availability"] == "offline" and held["TWC/availability"] == "offline"


def test_a_new_text_for_the_same_number_goes_at_once(mosquitto, subscribers):
    sub = subscribers(mosquitto, "TWC/all/totalAmpsInUse")
    idle = slave(actual_amps=0.0, car_charging=False)

    async def main():
        status = MqttStatus(status_config(mosquitto, ha_discovery=False), app_config())
        async with started(status):
            status.publish(publication(snapshot()))  # no TWC yet: TWCManager's int 0
            status.publish(publication(snapshot(idle)))  # a TWC drawing nothing: 0.0
            await eventually(lambda: len(sub.on("TWC/all/totalAmpsInUse")) == 2)

    run(main())
    assert [m.text for m in sub.on("TWC/all/totalAmpsInUse")] == ["0", "0.0"]


def test_ratelimit_zero_sends_every_change(mosquitto, subscribers):
    sub = subscribers(mosquitto, "TWC/2118/ampsInUse")

    async def main():
        config = status_config(mosquitto, ha_discovery=False, ratelimit_s=0)
        status = MqttStatus(config, app_config())
        async with started(status):
            for amps in (15.94, 15.93, 15.92):
                status.publish(publication(snapshot(slave(actual_amps=amps))))
            await eventually(lambda: len(sub.on("TWC/2118/ampsInUse")) == 3)

    run(main())
    assert [m.text for m in sub.on("TWC/2118/ampsInUse")] == ["15.94", "15.93", "15.92"]


def test_broker_down_at_start_then_up(mosquitto, subscribers):
    mosquitto.stop()
    snap = snapshot(slave())

    async def main():
        status = MqttStatus(status_config(mosquitto, ha_discovery=False), app_config())
        began = time.monotonic()
        async with started(status, connected=False):
            assert time.monotonic() - began < 0.2  # start never waits for the broker
            began = time.monotonic()
            for _ in range(100):
                status.publish(publication(snap))
            assert time.monotonic() - began < 0.5  # nor does publishing while it is down
            mosquitto.start()
            # paho retries after 1, 2, 4 ... s: up within a few seconds.
            await eventually(lambda: status.link.connected, 8, "reconnected")
            await eventually(lambda: "TWC/2118/ampsInUse" in retained(mosquitto, "TWC/2118/#"))

    run(main())
    stopped = expected(snap) | {"TWC/2118/availability": "offline"}
    assert retained(mosquitto, "TWC/#").items() >= stopped.items()


def test_broker_restart_gets_the_whole_state_again(mosquitto, subscribers):
    snap = snapshot(slave())
    log = RecordingLog()

    async def main():
        status = MqttStatus(status_config(mosquitto, ha_discovery=False), app_config(), log=log)
        async with started(status):
            status.publish(publication(snap))
            await eventually(lambda: "TWC/2118/state" in retained(mosquitto, "TWC/2118/#"))
            mosquitto.kill()  # a crash: it loses every retained message (no persistence)
            await eventually(lambda: not status.link.connected, what="disconnected")
            mosquitto.start()
            await eventually(lambda: status.link.connected, 8, "reconnected")
            await eventually(lambda: retained(mosquitto, "TWC/#").items() >= expected(snap).items())
            assert retained(mosquitto, "TWC/availability") == {"TWC/availability": "online"}

    run(main())
    assert any("connection lost" in event for event, _ in log.events("warning"))


def test_tls_with_a_ca_file(tmp_path, tls_cert, subscribers):
    cert, key = tls_cert
    with Mosquitto(tmp_path / "tls-broker", tls=(cert, key)) as broker:

        async def main():
            config = status_config(broker, ha_discovery=False, tls=True, ca_file=str(cert))
            status = MqttStatus(config, app_config())
            async with started(status):
                status.publish(publication(snapshot(slave())))
                assert status.link.connected

        run(main())
        sub = subscribers(broker, "TWC/2118/state", tls_ca=str(cert))
        sub.wait_for(lambda s: s.last("TWC/2118/state") == "1")

        async def untrusted():  # the system's CAs do not know our self-signed certificate
            log = RecordingLog()
            config = status_config(broker, ha_discovery=False, tls=True)
            status = MqttStatus(config, app_config(), log=log)
            async with started(status, connected=False):
                await settle(0.5)
                assert not status.link.connected

        run(untrusted())

        async def unreadable_ca():  # a caFile that is not there: said once, the bus goes on
            log = RecordingLog()
            config = status_config(broker, ha_discovery=False, tls=True, ca_file="/nonexistent")
            status = MqttStatus(config, app_config(), log=log)
            async with started(status, connected=False):
                status.publish(publication(snapshot(slave())))
                assert not status.link.connected
            assert log.events("error")[0][0] == "MQTT: cannot set up the connection"

        run(unreadable_ca())


def test_username_and_password_and_no_password_in_the_log(mosquitto_auth, subscribers):
    log = RecordingLog()

    async def main():
        good = MqttStatus(status_config(mosquitto_auth, ha_discovery=False), app_config(), log=log)
        async with started(good):
            good.publish(publication(snapshot(slave())))
        wrong = status_config(mosquitto_auth, ha_discovery=False, password="not it")
        bad = MqttStatus(wrong, app_config(), log=log)
        async with started(bad, connected=False):
            await eventually(lambda: log.events("warning"), what="a refusal")
        assert not bad.link.connected

    run(main())
    assert "check username and password" in log.text()
    assert "s3cret" not in log.text() and "not it" not in log.text()
    assert "twc@" in log.text()  # the user name is shown


def offline(broker, twcid: str) -> bool:
    topic = f"TWC/{twcid}/availability"
    return retained(broker, topic) == {topic: "offline"}


def test_gone_twc_removed_after_a_day_and_an_earlier_runs_too(mosquitto):
    clock = Clock()
    # An earlier run left TWC ABCD behind, "online" (it was kill -9ed).
    mosquitto.publish("TWC/ABCD/availability", "online", retain=True)
    mosquitto.publish("TWC/ABCD/ampsInUse", "3.0", retain=True)
    old_config = "homeassistant/sensor/TWC_ABCD/ABCD_amps_in_use/config"
    mosquitto.publish(old_config, "{}", retain=True)

    async def main():
        status = MqttStatus(status_config(mosquitto), app_config(), clock=clock)
        async with started(status):
            await eventually(lambda: offline(mosquitto, "ABCD"))
            status.publish(publication(snapshot(slave(), slave("3C4D"))))
            await eventually(lambda: "TWC/3C4D/state" in retained(mosquitto, "TWC/3C4D/#"))
            status.publish(publication(snapshot(slave())))  # 3C4D is no longer linked
            await eventually(lambda: offline(mosquitto, "3C4D"))
            clock.advance(GONE_AFTER_S - 60)
            status.publish(publication(snapshot(slave())))  # 2118 keeps being seen
            await settle(FLUSH_EVERY_S + 0.5)
            assert "TWC/3C4D/state" in retained(mosquitto, "TWC/3C4D/#")  # not yet a day
            clock.advance(120)
            await eventually(lambda: not retained(mosquitto, "TWC/3C4D/#"), FLUSH_EVERY_S + 2)
            await eventually(lambda: not retained(mosquitto, "TWC/ABCD/#"))

    run(main())
    held = retained(mosquitto, "#")
    assert not [t for t in held if "3C4D" in t or "ABCD" in t]
    assert "TWC/2118/state" in held and "homeassistant/sensor/TWC_2118/2118_state/config" in held


def test_a_frozen_broker_fills_the_queue_and_the_least_important_goes_first(mosquitto):
    """SIGSTOP: the broker's socket stops reading, paho's queue grows (the network thread
    cannot write), and the link refuses snapshots before numbers before states."""
    link = MqttLink(broker_config(mosquitto), role="test")
    link.start()
    deadline = time.monotonic() + 5
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert link.connected
    os.kill(mosquitto.process.pid, signal.SIGSTOP)
    try:
        big = b"x" * 100_000  # 300 of them: more than the kernel's socket buffers hold
        accepted = sum(link.publish("t/big", big, priority=Priority.NUMBER) for _ in range(300))
        assert accepted == 300  # under the NUMBER limit
        assert link._pending_count() >= PENDING_LIMITS[Priority.BULK]
        assert not link.publish("t/snapshot", b"{}", priority=Priority.BULK)
        assert link.publish("t/state", b"1", priority=Priority.STATE)
        assert link.dropped == 1
    finally:
        os.kill(mosquitto.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while link._pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link._pending_count() == 0
    link.stop()
