"""MQTT status (``status.MQTT``): TWCManager's status topics, twcmaster's own, an availability
topic with a last will, the JSON snapshot and Home Assistant discovery.

``MqttStatus`` is an output (``publish`` after every step of the core) and a service
(``start`` / ``stop``: the broker connection, ``outputs/mqttlink.py``). The topics, payloads
and rate-limit rules are listed in ``outputs/mqtttopics.py``; the discovery messages in
``outputs/homeassistant.py``.

How it keeps the bus loop free: ``publish`` builds the payloads from the snapshot (cheap:
a few dozen short strings), compares them with what went out and hands the changed ones to
paho's queue; paho's own thread does the network. While the broker is away nothing is
queued: the latest value of every topic is kept here and all of it is republished, retained,
at the next connection (a broker restarted without persistence comes back with the whole
state). Held-back numbers go out at the latest ``ratelimit`` after they changed (a timer
looks every ``FLUSH_EVERY_S``).

Topics are retained, QoS 0 (TWCManager's), but availability (QoS 1, with the last will).

**TWCs gone for good.** A TWC not linked for ``GONE_AFTER_S`` (24 h) has its topics and its
Home Assistant entities removed (empty retained payloads). A day, because a TWC off for a
night (its breaker, a power cut, the RS-485 adapter unplugged) must keep its entities, their
names and areas; one that was replaced, or changed its TWCID, should not linger past the
next day. TWCs of an earlier run are learnt from their retained ``<prefix>/<TWCID>/
availability`` at connection: marked ``offline`` at once (the old run may have died with
them ``online``) and removed if they do not link within ``GONE_AFTER_S`` of this run.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twcmaster import events as ev
from twcmaster.config import AppConfig
from twcmaster.config.interfaces import MqttControlConfig, MqttStatusConfig
from twcmaster.logs import get_logger
from twcmaster.mqttlink import MqttLink, Priority, Will
from twcmaster.outputs.homeassistant import Discovery, controls_reachable
from twcmaster.outputs.mqtttopics import (
    AT_ONCE,
    AVAILABILITY,
    OFFLINE,
    ONLINE,
    SENTENCE,
    SLAVE_KEYS,
    SNAPSHOT_KEY,
    Value,
    status_values,
    wording,
)
from twcmaster.outputs.views import snapshot_json

if TYPE_CHECKING:
    from twcmaster.core import Snapshot
    from twcmaster.outputs.base import Publication

__all__ = ["GONE_AFTER_S", "MqttStatus"]

SNAPSHOT_EVERY_S = 1.0  # the JSON snapshot topic at most this often
FLUSH_EVERY_S = 1.0  # held-back values and gone TWCs are looked at this often, steps or not
GONE_AFTER_S = 24 * 3600.0  # a TWC not linked this long is removed (see the docstring)
HA_ONLINE = "online"  # Home Assistant's birth message on <discoveryPrefix>/status
# TWCs learnt from an earlier run's retained topics, at most: a bus has a handful, and
# anyone who can publish on the broker could otherwise make us announce thousands.
MAX_LEARNT_TWCS = 16
_TWCID = re.compile(r"[0-9A-F]{4}")
# Events that say nothing the topics show: the frame-level ones of a debug log.
_FRAME_EVENTS = (ev.BytesReceived, ev.FrameSent, ev.FrameRejected, ev.FrameIgnored)


@dataclass(frozen=True)
class _Sent:
    payload: str
    number: float | None
    at_s: float


@dataclass
class _Twc:
    last_seen_s: float
    linked: bool


class MqttStatus:
    """``config``: ``status.MQTT``; ``app``: the whole config (wiring, minAmpsPerTWC ...);
    ``control``: ``control.MQTT``, whose topics the Home Assistant controls command (left
    out when None or on another broker or prefix). ``clock``: monotonic seconds (rate limit,
    gone TWCs); ``wallclock``: epoch seconds (the snapshot's time)."""

    def __init__(
        self,
        config: MqttStatusConfig,
        app: AppConfig,
        *,
        control: MqttControlConfig | None = None,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.app = app
        self.log = log if log is not None else get_logger("twcmaster.mqtt.status")
        self.clock = clock
        self.wallclock = wallclock
        self.prefix = config.broker.topic_prefix
        self.ratelimit_s = config.ratelimit_s
        self.availability_topic = f"{self.prefix}/{AVAILABILITY}"
        self.discovery = (
            Discovery(config, app, controls=controls_reachable(config, control))
            if config.ha_discovery
            else None
        )
        subscriptions = [f"{self.prefix}/+/{AVAILABILITY}"]  # TWCs of an earlier run
        if self.discovery is not None:
            subscriptions.append(self.discovery.status_topic)
        self.link = MqttLink(
            config.broker,
            role="status",
            will=Will(self.availability_topic, OFFLINE),
            subscriptions=tuple(subscriptions),
            on_connect=lambda: self._call_soon(self._on_connected),
            on_message=lambda *message: self._call_soon(self._on_message, *message),
            log=self.log,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._current: dict[str, Value] = {}  # topic under the prefix -> its value now
        self._sent: dict[str, _Sent] = {}  # topic under the prefix -> what went out
        self._twcs: dict[str, _Twc] = {}
        self._to_clear: set[str] = set()  # full topics to empty (a TWC gone for good)
        self._snapshot_payload: str | None = None
        self._snapshot_sent_s = -math.inf

    # -- service ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background (returns at once) and start the flush timer."""
        self._loop = asyncio.get_running_loop()
        self.link.start()
        self._arm_flush()

    async def stop(self) -> None:
        """The last values, each TWC ``offline``, ``offline`` on the availability topic, then
        a clean disconnect (the broker drops the last will). Off the loop: the goodbye may
        wait up to a second for the broker, and paho sends what was queued before it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._say_goodbye()
        await asyncio.to_thread(self.link.stop, (self.availability_topic, OFFLINE))

    def _say_goodbye(self) -> None:
        """Retained values outlive us: held-back numbers go out now (not an older value left
        standing), and each TWC is marked offline, so a reader of its topics (not only Home
        Assistant, which follows the availability topics) knows they are no longer live."""
        self._mark_unlinked(set(), self._current)  # none is linked any more
        self._send_due(self.clock(), forced=self._current)

    # -- output ----------------------------------------------------------------------------

    def publish(self, publication: Publication) -> None:
        """After a step of the core: the topics that changed go out (rate rules permitting)."""
        if all(isinstance(event, _FRAME_EVENTS) for event in publication.events):
            return
        now = self.clock()
        snapshot = publication.snapshot
        values = status_values(snapshot, self.app)
        forced = self._draw_ended(snapshot, values)
        self._track_twcs(snapshot, values, now)
        self._current.update(values)
        self._send_due(now, forced)
        self._send_snapshot(snapshot, now)

    def _draw_ended(self, snapshot: Snapshot, values: dict[str, Value]) -> set[str]:
        """carsCharging 1 -> 0: that TWC's draw goes out at once (TWCManager's rule: after
        the car stops there is nothing left to move the number past a threshold)."""
        forced = set()
        for slave in snapshot.slaves:
            topic = f"{slave.twcid}/carsCharging"
            before = self._current.get(topic)
            if before is not None and before.payload == "1" and values[topic].payload == "0":
                forced |= {f"{slave.twcid}/ampsInUse", f"{slave.twcid}/chargerLoadInW"}
        return forced

    def _track_twcs(self, snapshot: Snapshot, values: dict[str, Value], now: float) -> None:
        """New TWCs get their discovery; TWCs no longer linked are marked offline."""
        linked = {slave.twcid for slave in snapshot.slaves}
        for twcid in linked:
            twc = self._twcs.get(twcid)
            if twc is None or not twc.linked:
                self._twcs[twcid] = _Twc(now, linked=True)
                self._to_clear.difference_update(self._twc_topics(twcid))
                self._publish_discovery(self._twc_discovery(twcid))
            self._twcs[twcid].last_seen_s = now
        self._mark_unlinked(linked, values)

    def _mark_unlinked(self, linked: set[str], values: dict[str, Value]) -> None:
        """TWCs we had as linked and ``linked`` does not name: ``offline`` into ``values``."""
        for twcid, twc in self._twcs.items():
            if twc.linked and twcid not in linked:
                twc.linked = False
                values[f"{twcid}/{AVAILABILITY}"] = Value(OFFLINE, None, AT_ONCE)

    # -- sending ---------------------------------------------------------------------------

    def _send_due(self, now: float, forced: Iterable[str] = ()) -> None:
        if not self.link.connected:
            return  # everything goes out at the next connection
        forced = set(forced)
        for topic, value in self._current.items():
            sent = self._sent.get(topic)
            if sent is not None and sent.payload == value.payload:
                continue
            if topic in forced or self._due(value, sent, now):
                self._send(topic, value, now)

    def _due(self, value: Value, sent: _Sent | None, now: float) -> bool:
        """Whether a changed value may go out now (``mqtttopics.py``'s rules)."""
        if sent is None or value.rule is AT_ONCE or self.ratelimit_s <= 0:
            return True
        if now - sent.at_s >= self.ratelimit_s:
            return True
        if value.rule is SENTENCE:
            return wording(value.payload) != wording(sent.payload)
        if value.number is None or sent.number is None or value.number == sent.number:
            return True  # not a number, or only its text changed ("0" with no TWC, "0.0")
        return value.rule.moved_enough(sent.number, value.number)

    def _send(self, topic: str, value: Value, now: float) -> None:
        priority = Priority.STATE if value.rule is AT_ONCE else Priority.NUMBER
        if self.link.publish(f"{self.prefix}/{topic}", value.payload, priority=priority):
            self._sent[topic] = _Sent(value.payload, value.number, now)

    def _send_snapshot(self, snapshot: Snapshot, now: float) -> None:
        if now - self._snapshot_sent_s < SNAPSHOT_EVERY_S or not self.link.connected:
            return
        document = snapshot_json(snapshot, time_epoch=self.wallclock())
        self._snapshot_payload = json.dumps(document, separators=(",", ":"))
        topic = f"{self.prefix}/{SNAPSHOT_KEY}"
        if self.link.publish(topic, self._snapshot_payload, priority=Priority.BULK):
            self._snapshot_sent_s = now

    # -- connection, timer and messages (event loop) ---------------------------------------

    def _call_soon(self, function: Callable[..., None], *args: Any) -> None:
        """From paho's thread to the event loop, where all of this object's state lives."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._guarded, function, *args)
        except RuntimeError:  # the loop has closed: we are shutting down
            pass

    def _guarded(self, function: Callable[..., None], *args: Any) -> None:
        try:
            function(*args)
        except Exception:  # a bug here is logged; the bus and the next message go on
            self.log.exception("MQTT status: handling a connection or message failed")

    def _on_connected(self) -> None:
        """(Re)connected: the broker may have lost everything. Send it all again."""
        now = self.clock()
        self.link.publish(self.availability_topic, ONLINE, qos=1)
        self._sent.clear()
        self._republish_discovery()
        self._send_due(now, forced=self._current)
        self._clear_gone()
        if self._snapshot_payload is not None:
            self.link.publish(
                f"{self.prefix}/{SNAPSHOT_KEY}", self._snapshot_payload, priority=Priority.BULK
            )

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if self.discovery is not None and topic == self.discovery.status_topic:
            # Home Assistant (re)started: announce everything again. Its retained birth
            # message at our subscription is not news: the connection just did that.
            if payload.strip() == HA_ONLINE.encode() and not retained:
                self.log.info("MQTT: Home Assistant is online; discovery published again")
                self._republish_discovery()  # our states are retained: it reads them
            return
        self._learn_twc(topic, payload)

    def _learn_twc(self, topic: str, payload: bytes) -> None:
        """A retained ``<prefix>/<TWCID>/availability``: a TWC of an earlier run (or our own
        message coming back, for a TWC we know: nothing to do)."""
        twcid = topic.removeprefix(self.prefix + "/").partition("/")[0]
        if not _TWCID.fullmatch(twcid) or twcid in self._twcs or not payload:
            return
        if sum(not twc.linked for twc in self._twcs.values()) >= MAX_LEARNT_TWCS:
            self.log.warning("MQTT: too many TWCs on the broker; not taken over", twcid=twcid)
            return
        self._twcs[twcid] = _Twc(self.clock(), linked=False)
        self._current[f"{twcid}/{AVAILABILITY}"] = Value(OFFLINE, None, AT_ONCE)
        self._publish_discovery(self._twc_discovery(twcid))
        self._send_due(self.clock())

    def _arm_flush(self) -> None:
        if self._loop is not None:
            self._timer = self._loop.call_later(FLUSH_EVERY_S, self._flush)

    def _flush(self) -> None:
        """Held-back values whose time has come; TWCs gone for good."""
        try:
            now = self.clock()
            self._send_due(now)
            self._forget_gone(now)
            self._clear_gone()
        except Exception:  # never let the timer die
            self.log.exception("MQTT status: flush failed")
        finally:
            self._arm_flush()

    # -- discovery and gone TWCs -----------------------------------------------------------

    def _republish_discovery(self) -> None:
        if self.discovery is None:
            return
        messages = self.discovery.site_configs()
        for twcid in self._twcs:
            messages += self.discovery.twc_configs(twcid)
        self._publish_discovery(messages)

    def _twc_discovery(self, twcid: str) -> list[tuple[str, str]]:
        return self.discovery.twc_configs(twcid) if self.discovery is not None else []

    def _publish_discovery(self, messages: list[tuple[str, str]]) -> None:
        for topic, payload in messages:
            self.link.publish(topic, payload)  # not connected: the connection sends them

    def _twc_topics(self, twcid: str) -> set[str]:
        """Every retained topic a TWC may have: its status topics and its discovery."""
        topics = {f"{self.prefix}/{twcid}/{key}" for key in SLAVE_KEYS}
        if self.discovery is not None:
            topics.update(self.discovery.twc_config_topics(twcid))
        return topics

    def _forget_gone(self, now: float) -> None:
        for twcid, twc in list(self._twcs.items()):
            if twc.linked or now - twc.last_seen_s < GONE_AFTER_S:
                continue
            self.log.info(
                "MQTT: TWC gone for good; its topics and entities are removed",
                twcid=twcid,
                unseen_h=round((now - twc.last_seen_s) / 3600, 1),
            )
            del self._twcs[twcid]
            for key in SLAVE_KEYS:
                self._current.pop(f"{twcid}/{key}", None)
                self._sent.pop(f"{twcid}/{key}", None)
            self._to_clear |= self._twc_topics(twcid)

    def _clear_gone(self) -> None:
        """Empty retained payloads (the broker then forgets the topic) for gone TWCs."""
        for topic in sorted(self._to_clear):
            if self.link.publish(topic, b""):
                self._to_clear.discard(topic)
