"""MQTT control (``control.MQTT``): commands published to ``<prefix>/control/...``.

TWCManager's topics, with its payloads:

==================================  ============================================================
``control/chargeNow``               ``amps,seconds`` (``24,3600``): Charge Now at that total
                                    for that long. twcmaster: an empty payload or ``PRESS``
                                    (Home Assistant's button) starts the preset
                                    (``chargeNowAmps`` / ``chargeNowDuration`` below)
``control/chargeNowEnd``            anything: end Charge Now
``control/nonScheduledAmpsMax``     amps, 0 to wiringMaxAmpsAllTWCs
``control/nonScheduledAction``      ``1`` fixed rate, ``2`` do not charge, ``3`` track green
``control/stop``                    anything: stop the daemon (0 A to every TWC first), only
                                    with ``control.MQTT.allowStop`` true; else logged, ignored
==================================  ============================================================

twcmaster's (the Home Assistant controls use them too):

==================================  ============================================================
``control/policy``                  a policy to force: ``Charge Now``, ``Scheduled Charging``,
                                    ``Track Green Energy``, ``Non Scheduled Charging``,
                                    ``Min + Green Energy`` (also evcc's ``Min+PV`` /
                                    ``minpv``); or ``Auto`` (the rules decide again). Any
                                    letter case.
``control/chargeNowAmps``           the preset's amps (1 to wiringMaxAmpsAllTWCs)
``control/chargeNowDuration``       the preset's duration in seconds (1 s to 7 days)
``control/<TWCID>/allowCharging``   ``on`` / ``off`` (also true/false, 1/0): let that TWC
                                    charge, or switch its charging off (offered 0 A)
==================================  ============================================================

The state of each setting is published by MQTT status under ``<prefix>/config/...`` and
``<prefix>/<TWCID>/chargingAllowed`` (``outputs/mqtttopics.py``).

Every payload goes through ``RemoteControl`` (the one validated path, shared with the HTTP
API): a bad one is logged with the field and the reason, and changes nothing; a good one is
saved to settings.json and the daemon decides again at once. Unknown topics under
``control/`` are logged and ignored.

**Retained messages are ignored.** TWCManager's users' automations publish commands
non-retained. A retained ``chargeNow`` would be replayed by the broker at every (re)connection
-- at each restart of twcmaster, after each broker outage -- and start charging again long
after anyone asked; that must not happen silently, so a retained command is logged (with how
to remove it: publish an empty retained message to that topic) and ignored.

paho's thread only receives: each message is handed to the event loop
(``loop.call_soon_threadsafe``), where ``RemoteControl`` runs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from twcmaster.config.interfaces import MqttControlConfig
from twcmaster.logs import get_logger
from twcmaster.mqttlink import MqttLink
from twcmaster.remote.commands import AUTO_POLICY, CommandRejected, RemoteControl
from twcmaster.settings import FORCEABLE_POLICIES
from twcmaster.sources.secrets import excerpt

__all__ = [
    "ALLOW_CHARGING",
    "CHARGE_PRIORITY",
    "CHARGE_NOW",
    "CHARGE_NOW_AMPS",
    "CHARGE_NOW_DURATION",
    "CHARGE_NOW_END",
    "MqttControl",
    "NON_SCHEDULED_ACTION",
    "NON_SCHEDULED_AMPS_MAX",
    "POLICY",
    "PRESS",
    "STOP",
    "control_topic",
]

# The keys under <prefix>/control/ (one home: homeassistant.py wires its controls to them).
CHARGE_NOW = "chargeNow"
CHARGE_NOW_END = "chargeNowEnd"
NON_SCHEDULED_AMPS_MAX = "nonScheduledAmpsMax"
NON_SCHEDULED_ACTION = "nonScheduledAction"
STOP = "stop"
POLICY = "policy"
CHARGE_NOW_AMPS = "chargeNowAmps"
CHARGE_NOW_DURATION = "chargeNowDuration"
ALLOW_CHARGING = "allowCharging"  # under control/<TWCID>/
CHARGE_PRIORITY = "chargePriority"  # under control/<TWCID>/: a whole number; empty: config's
PRESS = "PRESS"  # Home Assistant's button payload

SOURCE = "MQTT"  # how RemoteControl's log lines name us
MAX_PAYLOAD_BYTES = 256  # the longest command is a policy name; anything longer is not ours
SHOWN_CHARS = 60  # how much of a bad payload a log line shows
RETAINED_WHY = (
    "retained: a command is never replayed at (re)connection; "
    "clear it with an empty retained message to that topic"
)
_TWC_TOPIC = re.compile(r"([0-9A-Fa-f]{4})/(" + ALLOW_CHARGING + "|" + CHARGE_PRIORITY + ")")


def control_topic(prefix: str, key: str) -> str:
    return f"{prefix}/control/{key}"


class MqttControl:
    """The ``control.MQTT`` service: subscribes to ``<prefix>/control/#`` and applies each
    command through ``remote``. ``request_stop``: ends the daemon (``control/stop``)."""

    def __init__(
        self,
        config: MqttControlConfig,
        remote: RemoteControl,
        *,
        loop: asyncio.AbstractEventLoop,
        request_stop: Callable[[], None],
        log: Any = None,
    ) -> None:
        self.config = config
        self.remote = remote
        self.loop = loop
        self.request_stop = request_stop
        self.log = log if log is not None else get_logger("twcmaster.mqtt.control")
        self.prefix = config.broker.topic_prefix
        self._control_prefix = f"{self.prefix}/control/"
        self.link = MqttLink(
            config.broker,
            role="control",
            subscriptions=(f"{self.prefix}/control/#",),
            on_message=self._received,
            log=self.log,
        )
        self._handlers: dict[str, Callable[[str], Any]] = {
            CHARGE_NOW: self._charge_now,
            CHARGE_NOW_END: lambda _: remote.cancel_charge_now(source=SOURCE),
            NON_SCHEDULED_AMPS_MAX: lambda p: remote.set_non_scheduled_amps(p, source=SOURCE),
            NON_SCHEDULED_ACTION: lambda p: remote.set_non_scheduled_action(p, source=SOURCE),
            POLICY: self._policy,
            CHARGE_NOW_AMPS: lambda p: remote.set_charge_now_preset(amps=p, source=SOURCE),
            CHARGE_NOW_DURATION: lambda p: remote.set_charge_now_preset(seconds=p, source=SOURCE),
            STOP: self._stop,
        }
        self.applied = 0  # commands carried out (tests and the status read them)
        self.rejected = 0

    async def start(self) -> None:
        self.link.start()  # returns at once; paho connects (and reconnects) in its thread

    async def stop(self) -> None:
        await asyncio.to_thread(self.link.stop)

    # -- paho's thread -------------------------------------------------------------------

    def _received(self, topic: str, payload: bytes, retained: bool) -> None:
        """Hand the message to the loop; nothing else happens on paho's thread."""
        try:
            self.loop.call_soon_threadsafe(self.handle, topic, payload, retained)
        except RuntimeError:  # the loop has closed: we are shutting down
            pass

    # -- the event loop ------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Apply one command; whatever is wrong with it is logged, never raised."""
        key = topic.removeprefix(self._control_prefix)
        try:
            if retained:
                self._ignore(topic, RETAINED_WHY)
                return
            text = _payload_text(payload)
            handler = self._handler(key)
            if handler is None:
                self._ignore(topic, "no such control topic")
                return
            handler(text)
            self.applied += 1
        except CommandRejected as error:
            self.rejected += 1
            self.log.warning(
                "MQTT control: command ignored",
                topic=topic[:120],
                field=error.field,
                reason=error.message,
                payload=excerpt(payload, SHOWN_CHARS),
            )
        except Exception:  # a bug: logged with its trace; the daemon goes on
            self.rejected += 1
            self.log.exception("MQTT control: command failed", topic=topic[:120])

    def _handler(self, key: str) -> Callable[[str], Any] | None:
        handler = self._handlers.get(key)
        if handler is not None:
            return handler
        match = _TWC_TOPIC.fullmatch(key)
        if match is None:
            return None
        twcid, key = match.groups()
        if key == CHARGE_PRIORITY:
            return lambda text: self.remote.set_charge_priority(twcid, text, source=SOURCE)
        return lambda text: self.remote.set_twc_allowed(twcid, text, source=SOURCE)

    def _ignore(self, topic: str, why: str) -> None:
        self.rejected += 1
        self.log.warning("MQTT control: message ignored", topic=topic[:120], why=why)

    def _charge_now(self, text: str) -> None:
        if text == "" or text.upper() == PRESS:
            self.remote.charge_now_with_preset(source=SOURCE)
            return
        parts = text.split(",")
        if len(parts) != 2:
            raise CommandRejected(
                CHARGE_NOW,
                f"expected amps,seconds (e.g. 24,3600), or {PRESS} or nothing for the preset; "
                f"got {text[:SHOWN_CHARS]!r}",
            )
        self.remote.charge_now(parts[0], parts[1], source=SOURCE)

    def _policy(self, text: str) -> None:
        # Any letter case: "track green energy" from a hand-typed mosquitto_pub is meant well.
        names = {name.lower(): name for name in (AUTO_POLICY, *FORCEABLE_POLICIES)}
        self.remote.set_policy(names.get(text.strip().lower(), text), source=SOURCE)

    def _stop(self, _text: str) -> None:
        if not self.config.allow_stop:
            raise CommandRejected(STOP, "ignored: control.MQTT.allowStop is not true")
        self.log.warning("MQTT control: stop requested; stopping the daemon")
        self.request_stop()


def _payload_text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD_BYTES:
        why = f"{len(payload)} bytes; a command is at most {MAX_PAYLOAD_BYTES}"
        raise CommandRejected("payload", why)
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandRejected("payload", "not UTF-8 text") from None
