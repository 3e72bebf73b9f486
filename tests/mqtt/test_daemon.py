"""The daemon as a user runs it, with MQTT status and control, against simulated TWCs over a
real pty and a real mosquitto: a control message changes the amps the TWCs are offered; a
bad one is ignored with the daemon alive; the broker crashes and comes back while the bus
keeps its 1 s heartbeats, and gets the whole state again; ``kill -9`` leaves the last will."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.rig import heartbeat_gaps, slave
from tests.mqtt.conftest import control_config, eventually, retained, status_config
from twcmaster.config import config_from_dict
from twcmaster.control.policy import build_policy
from twcmaster.daemon import Daemon
from twcmaster.outputs.mqtt import MqttStatus
from twcmaster.remote.commands import RemoteControl
from twcmaster.remote.mqtt import MqttControl
from twcmaster.settings import SettingsStore
from twcmaster.sim.bus import SimulatedBus
from twcmaster.sim.runner import PtyBus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
# No spike workaround (§6.4): offers go straight to their value, so the test can say when.
NO_SPIKES = {"spikeAmpsProactively": False, "spikeAmpsReactively": False}
LINK_WAIT_S = 20.0  # the slaves announce themselves, then link: a few seconds
MAX_HEARTBEAT_GAP_S = 1.5  # the protocol's 1 s, with room for a loaded test machine


class Running:
    """The daemon with MQTT status and control on ``broker``, two simulated TWCs."""

    def __init__(self, broker, tmp_path: Path) -> None:
        self.broker = broker
        self.tmp_path = tmp_path
        self.stops = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.bus = SimulatedBus([slave(0x2118, seed=1), slave(0x3C4D, seed=2)])
        self.sim = PtyBus(self.bus)
        self.sim.start()
        config = config_from_dict(
            {"config": WIRING | NO_SPIKES, "interface": {"RS485": {"port": self.sim.path}}}, "/tmp"
        ).settings
        self.settings_path = self.tmp_path / "settings.json"
        store = SettingsStore(self.settings_path, wiring_max_amps_all_twcs=40)
        store.set_non_scheduled_amps(12)
        policy = build_policy(config, store, green_sources_configured=False)
        self.daemon = Daemon(config, policy=policy, clock=loop.time)
        remote = RemoteControl(store, config, on_change=self.daemon.reconsider)
        control_cfg = control_config(self.broker)
        self.status = MqttStatus(
            status_config(self.broker), config, control=control_cfg, clock=loop.time
        )
        self.control = MqttControl(
            control_cfg, remote, loop=loop, request_stop=self._stop_requested
        )
        self.daemon.add_output(self.status)
        self.daemon.add_service(self.status)
        self.daemon.add_service(self.control)
        self.task = asyncio.create_task(self.daemon.run())

    def _stop_requested(self) -> None:
        self.stops += 1

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.sim.close()

    def offered(self, amps: float) -> bool:
        """Every simulated TWC accepted ``amps`` as its limit."""
        return all(s.limit_amps == amps for s in self.bus.slaves)

    def linked(self) -> bool:
        """Both TWCs took their first offer, and MQTT shows one for each."""
        offered = all(s.limit_amps > 0 for s in self.bus.slaves)
        return offered and len(retained(self.broker, "TWC/+/ampsOffered")) == 2

    def topics(self, amps: int) -> bool:
        held = retained(self.broker, "TWC/+/ampsOffered")
        return held == {f"TWC/{t}/ampsOffered": str(amps) for t in ("2118", "3C4D")}

    async def command(self, key: str, payload: str) -> None:
        await asyncio.to_thread(self.broker.publish, f"TWC/control/{key}", payload)


def test_control_changes_the_offer_and_the_bus_keeps_beating_through_a_broker_crash(
    mosquitto, tmp_path
):
    running = Running(mosquitto, tmp_path)

    async def scenario():
        loop = asyncio.get_running_loop()
        await running.start()
        try:
            # Both TWCs linked and offered their share of nonScheduledAmpsMax 12 (the
            # first car the lion's share until the second asks).
            await eventually(lambda: running.linked(), LINK_WAIT_S, "both TWCs linked")
            await eventually(lambda: running.control.link.connected, 5, "control connected")
            await asyncio.sleep(0.2)  # its subscription is in place (a command before is lost)
            linked_s = loop.time()
            assert not running.offered(20)

            # TWCManager's Charge Now: 40 A in all, 20 A each, on the wire and on MQTT.
            await running.command("chargeNow", "40,600")
            await eventually(lambda: running.offered(20), 5, "the TWCs accepted 20 A")
            await eventually(lambda: running.topics(20), 3, "ampsOffered 20")

            # Bad payloads: logged, nothing changes, the daemon goes on.
            saved = running.settings_path.read_bytes()
            for key, payload in (("chargeNow", "lots"), ("nonScheduledAction", "9")):
                await running.command(key, payload)
            await eventually(lambda: running.control.rejected == 2, 3, "both rejected")
            assert running.settings_path.read_bytes() == saved
            assert not running.task.done() and running.offered(20)

            # The broker crashes and comes back empty (no persistence).
            mosquitto.kill()
            killed_s = loop.time()
            await eventually(lambda: not running.status.link.connected, 3, "disconnected")
            await asyncio.sleep(2.0)  # the bus alone
            mosquitto.start()
            restarted_s = loop.time()
            await eventually(lambda: running.status.link.connected, 8, "status back")
            await eventually(lambda: running.control.link.connected, 8, "control back")
            await eventually(lambda: running.topics(20), 3, "the state republished")
            held = retained(mosquitto, "TWC/#")
            assert held["TWC/availability"] == "online"
            assert held["TWC/all/currentPolicy"] == "Charge Now"
            assert "homeassistant/switch/TWC_2118/2118_allow_charging/config" in retained(
                mosquitto, "homeassistant/#"
            )

            # Control subscribed again, and status shows the change it made.
            await running.command("chargeNowAmps", "30")
            await eventually(
                lambda: (
                    retained(mosquitto, "TWC/config/chargeNowAmps")
                    == {"TWC/config/chargeNowAmps": "30"}
                ),
                3,
                "the new preset shown",
            )

            # Never more than a heartbeat's gap on the bus, broker or no broker.
            for s in running.bus.slaves:
                gaps = heartbeat_gaps(s, after_s=linked_s)
                assert max(gaps) < MAX_HEARTBEAT_GAP_S, (hex(s.twcid), gaps)
                during = [t for t in s.stats.heartbeat_times_s if killed_s < t < restarted_s]
                assert len(during) >= 2, "the bus beat on while the broker was down"
        finally:
            await running.close()

    asyncio.run(scenario())
    assert retained(mosquitto, "TWC/availability") == {"TWC/availability": "offline"}
    assert running.stops == 0


DAEMON_SCRIPT = """
    import asyncio, sys
    from twcmaster.config import config_from_dict
    from twcmaster.config.interfaces import BrokerConfig, MqttStatusConfig
    from twcmaster.daemon import Daemon
    from twcmaster.outputs.mqtt import MqttStatus
    from twcmaster.sim.runner import serve_simulated_twcs

    async def main(port):
        loop = asyncio.get_running_loop()
        sim = serve_simulated_twcs(1, now_s=loop.time())
        wiring = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
        raw = {"config": wiring, "interface": {"RS485": {"port": sim.path}}}
        config = config_from_dict(raw, "/tmp").settings
        broker = BrokerConfig("127.0.0.1", port, False)
        status = MqttStatus(MqttStatusConfig(broker, ha_discovery=False), config)
        await Daemon(config, outputs=[status], services=[status], clock=loop.time).run()

    asyncio.run(main(int(sys.argv[1])))
"""


def test_last_will_after_kill_9(mosquitto, subscribers, tmp_path):
    sub = subscribers(mosquitto, "TWC/#")
    script = tmp_path / "daemon.py"
    script.write_text(textwrap.dedent(DAEMON_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(mosquitto.port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sub.wait_for(lambda s: s.last("TWC/availability") == "online", 15)
        sub.wait_for(lambda s: s.last("TWC/all/busLinked") == "1", 10)  # the bus runs
        assert process.poll() is None
    finally:
        process.kill()  # SIGKILL: no goodbye, the socket just closes
        process.wait(5)
    sub.wait_for(lambda s: s.last("TWC/availability") == "offline", 5)
    assert retained(mosquitto, "TWC/availability") == {"TWC/availability": "offline"}
