"""Readings pushed over MQTT (TWCManager's ``MQTT`` source), with paho-mqtt.

Config ``sources.MQTT``:

* TWCManager's keys: ``brokerIP``, ``brokerPort`` (1883), ``username``, ``password``,
  ``topicConsumption``, ``topicGeneration`` (either may be left out; MQTT wildcards work).
  A payload is a plain number of watts (``1559.6``).
* twcmaster's keys: ``consumptionPath`` / ``generationPath``: a JSON path
  (``twcmaster.sources.jsonpath``) into a JSON payload, e.g. ``$.power.import``; both may
  read the same topic. ``unit``: ``W`` (default), ``kW``, ``MW``, ``mW``, for bare numbers;
  a text value carrying its own unit (``"3.48 kW"``) says which it is.

A payload that yields no number (``unavailable``, a JSON document without the path, an empty
retained-message deletion) is logged (at most once a minute per topic, with a count of the
ones in between) and ignored: it never stops the source. A payload larger than
``MAX_PAYLOAD_BYTES`` is ignored unread; the log line shows a short excerpt of a payload,
never the whole of it, with the source's password (registered with
``twcmaster.sources.secrets``) masked.

paho runs its own network thread (``loop_start``) and reconnects by itself with back-off
(``RECONNECT_MIN_S`` doubling to ``RECONNECT_MAX_S``) — the event loop never waits on the
broker. Losing or failing to reach the broker is delivered to the runner as a
``SourceError``, so the status says why readings stopped.

**Delivery and age contract.** ``deliver(reading)`` carries no timestamp: the runner stamps
each ``Reading`` when it arrives and counts it stale ``maxAge`` later. So that this stamp is
honest for both values when they come from two topics, the source delivers one ``Reading``
holding the latest value of *every* configured field, and only once every configured field
has had a new value since the previous delivery (a complete round). With one topic (or both
fields on one topic) that is every message. With two, a reading goes out when the slower
topic speaks, carrying the latest value of the faster one; if either topic falls silent,
deliveries stop and the runner's reading goes stale ``maxAge`` after the last complete round,
however busy the other topic is. The stamp makes the older value look younger by at most one
publishing period of the slower topic, never by more than ``maxAge``: a value older than
``maxAge`` never completes a round, and no round spans a lost connection. (A retained
message counts as new when it arrives, on each (re)connect.)
Unlike TWCManager, which keeps the last value forever, a silent publisher therefore makes the
source stale and the budget falls back to the safe value.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.logs import get_logger
from twcmaster.mqttlink import refusal_text
from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.http import ShapeError
from twcmaster.sources.jsonpath import JsonPath, JsonPathError, compile_path
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_port,
    read_port,
    read_text,
)
from twcmaster.sources.secrets import excerpt, register
from twcmaster.sources.url import DEFAULT_UNIT, check_path, check_unit, plain_text, power_w

DEFAULT_PORT = 1883
KEEPALIVE_S = 30  # the broker and paho notice a dead connection within 1.5 x this
RECONNECT_MIN_S = 1  # paho's reconnect back-off: first wait ...
RECONNECT_MAX_S = 30  # ... doubling up to this
STOP_WAIT_S = 0.5  # stop() waits at most this long for paho's thread
BAD_PAYLOAD_LOG_EVERY_S = 60.0  # at most one "ignored payload" line per topic this often
MAX_PAYLOAD_BYTES = 64 << 10  # a reading is a number or a small JSON document; 64 KiB is lavish
MAX_PAYLOAD_TEXT = "64 KiB"
PAYLOAD_EXCERPT_CHARS = 60  # how much of an ignored payload its log line shows
TOPIC_EXCERPT_CHARS = 120  # a topic may be 64 KiB long
FIELDS = ("consumption", "generation")
TOPIC_KEYS = {"consumption": "topicConsumption", "generation": "topicGeneration"}


class _Throttle:
    """Lets one log line per key through every ``every_s``; counts the ones held back."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None: hold this one back. Else the number held back since the last one allowed."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class _Field:
    """One measured field: where it comes from and how to read it."""

    def __init__(self, name: str, topic: str, path: JsonPath | None, unit: str) -> None:
        self.name = name
        self.topic = topic
        self.path = path
        self.unit = unit

    def value_w(self, payload: bytes) -> float:
        """Watts from one payload. ShapeError (a ValueError) when it holds none."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ShapeError(
                f"the payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_TEXT} a "
                "reading may take"
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ShapeError("the payload is not UTF-8 text") from None
        if not text.strip():
            raise ShapeError("the payload is empty")
        if self.path is None:
            return power_w(plain_text(text), self.unit)
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ShapeError(f"not JSON ({exc}), but {self.name}Path is set") from None
        try:
            value = self.path.find(document)
        except JsonPathError as exc:
            raise ShapeError(str(exc)) from None
        try:
            return power_w(value, self.unit)
        except ShapeError as exc:
            raise ShapeError(f"{self.path}: {exc}") from None


class MqttSource(Source):
    name = "MQTT"
    push = True

    def __init__(
        self,
        config: Mapping[str, Any],
        timing: SourceTiming,
        *,
        log: Any = None,
    ) -> None:
        super().__init__(config, timing)
        self.host = str(config.get("brokerIP", "")).strip()
        self.port = read_port(config, "brokerPort", DEFAULT_PORT)
        self.username = read_text(config, "username")
        self.password = None if config.get("password") is None else str(config["password"])
        if self.password:  # a broker or a publisher may echo it: never in a log line
            register(self.password, f"{self.username or ''}:{self.password}")
        unit = read_text(config, "unit", DEFAULT_UNIT) or DEFAULT_UNIT
        self.fields: dict[str, _Field] = {}
        for field in FIELDS:
            topic = read_text(config, TOPIC_KEYS[field])
            if topic is None:
                continue
            path = read_text(config, f"{field}Path")
            self.fields[field] = _Field(field, topic, compile_path(path) if path else None, unit)
        self.topics = tuple(dict.fromkeys(f.topic for f in self.fields.values()))
        self._log = log if log is not None else get_logger(__name__, source=self.name)
        self._throttle = _Throttle(BAD_PAYLOAD_LOG_EVERY_S)
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._arrived_s: dict[str, float] = {}
        self._pending: set[str] = set()  # fields with a new value since the last delivery
        self._deliver: Callable[[Reading | BaseException], None] | None = None
        self._client: Any = None
        self._connected = False
        self._stopping = False
        self._matches: Callable[[str, str], bool] = _same_topic

    # -- configuration -----------------------------------------------------------------

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "brokerIP", "the MQTT broker's host name or IP address")
        problems += check_port(config, "brokerPort")
        for key in ("username", "password"):
            value = config.get(key)
            if value is not None and not isinstance(value, str | int):
                problems.append((key, f"expected a text, got {value!r}"))
        given = 0
        for field in FIELDS:
            key = TOPIC_KEYS[field]
            topic = config.get(key)
            if topic is None or (isinstance(topic, str) and not topic.strip()):
                if config.get(f"{field}Path") is not None:
                    problems.append((f"{field}Path", f"needs {key}: the topic it reads"))
                continue
            given += 1
            problem = _topic_problem(topic)
            if problem:
                problems.append((key, problem))
            problems += check_path(config, f"{field}Path")
        if not given:
            problems.append(
                ("", "give topicConsumption and/or topicGeneration (the topics to subscribe to)")
            )
        problems += check_unit(config)
        return problems

    def describe(self) -> str:
        parts = []
        for field in self.fields.values():
            where = f" at {field.path}" if field.path else ""
            parts.append(f"{field.name} {field.topic}{where}")
        return f"MQTT broker {self.host}:{self.port}: {', '.join(parts)}"

    # -- life cycle --------------------------------------------------------------------

    def start(self, deliver: Callable[[Reading | BaseException], None]) -> None:
        """Connect in paho's own thread; returns at once (the broker may be down: paho keeps
        trying)."""
        import paho.mqtt.client as mqtt  # on first use: checking a config loads no paho

        if self._client is not None:
            return
        self._deliver = deliver
        self._stopping = False
        self._matches = mqtt.topic_matches_sub
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"twcmaster-source-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.connect_timeout = self.timing.timeout_s
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self._client = client
        client.loop_start()

    def stop(self) -> None:
        """Disconnect and end paho's thread. Returns within ``STOP_WAIT_S``: a thread sleeping
        out a reconnect back-off (paho sleeps in 1 s steps) or stuck in a connect finishes by
        itself, and delivers nothing more."""
        client, self._client = self._client, None
        self._stopping = True
        if client is None:
            return
        client.disconnect()
        stopper = threading.Thread(target=client.loop_stop, name="mqtt-source-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_WAIT_S)

    # -- state, for status and tests --------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def latest(self) -> dict[str, tuple[float, float]]:
        """Each field's last value and when it arrived (``time.monotonic()`` seconds)."""
        with self._lock:
            return {f: (self._values[f], self._arrived_s[f]) for f in self._values}

    # -- paho callbacks (its network thread) -------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        try:
            if reason_code.is_failure:
                self._connected = False
                self._report(f"the broker refused the connection: {refusal_text(reason_code)}")
                return
            self._connected = True
            for topic in self.topics:
                client.subscribe(topic, qos=0)
            self._log.info(
                "connected to the MQTT broker", broker=self._broker(), topics=self.topics
            )
        except Exception:  # a bug here must not kill paho's thread
            self._log.exception("MQTT source: on_connect failed")

    def _on_connect_fail(self, _client, _userdata) -> None:
        self._connected = False
        self._report("cannot connect to the broker (retrying with back-off)", quiet=True)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        was_connected, self._connected = self._connected, False
        with self._lock:
            self._pending.clear()  # a round never spans an outage
        if self._stopping or not was_connected:
            return
        self._report(f"lost the connection to the broker ({reason_code}); reconnecting")

    def _on_message(self, _client, _userdata, message) -> None:
        try:
            self._handle(message.topic, message.payload)
        except Exception:  # never let a payload kill paho's thread
            self._log.exception(
                "MQTT source: handling a message failed",
                topic=excerpt(message.topic, TOPIC_EXCERPT_CHARS),
            )

    # -- readings ------------------------------------------------------------------------

    def _handle(self, topic: str, payload: bytes) -> None:
        arrived_s = time.monotonic()
        updated: dict[str, float] = {}
        for field in self.fields.values():
            if not self._matches(field.topic, topic):
                continue
            try:
                updated[field.name] = field.value_w(payload)
            except ShapeError as exc:
                self._ignored(topic, field.name, payload, str(exc))
        if not updated:
            return
        with self._lock:
            self._values.update(updated)
            self._arrived_s.update(dict.fromkeys(updated, arrived_s))
            self._pending.update(updated)
            # A value older than maxAge never completes a round (the other topic was silent
            # that long): it waits for a new one.
            self._pending -= {
                f for f in self._pending if arrived_s - self._arrived_s[f] > self.timing.max_age_s
            }
            if not self._pending >= self.fields.keys():
                return
            self._pending.clear()
            reading = Reading(**{f"{f}_w": self._values[f] for f in self.fields})
        self._send(reading)

    def _ignored(self, topic: str, field: str, payload: bytes, why: str) -> None:
        held = self._throttle.allow(f"{topic}\0{field}")
        if held is None:
            return
        self._log.warning(
            "MQTT payload ignored: no number in it",
            topic=excerpt(topic, TOPIC_EXCERPT_CHARS),
            field=field,
            payload=excerpt(payload, PAYLOAD_EXCERPT_CHARS),
            why=excerpt(why),
            **({"ignored_since_last_line": held} if held else {}),
        )

    def _report(self, what: str, *, quiet: bool = False) -> None:
        message = f"{self.name}: broker {self._broker()}: {what}"
        if quiet:
            self._log.debug("MQTT source", problem=message)
        else:
            self._log.warning("MQTT source", problem=message)
        self._send(SourceError(message))

    def _send(self, item: Reading | BaseException) -> None:
        deliver = self._deliver
        if deliver is None or self._stopping:
            return
        try:
            deliver(item)
        except RuntimeError:  # the runner's loop has closed: we are shutting down
            pass

    def _broker(self) -> str:
        return f"{self.host}:{self.port}"


def _same_topic(sub: str, topic: str) -> bool:
    return sub == topic


def _topic_problem(topic: Any) -> str | None:
    if not isinstance(topic, str):
        return f"expected a topic like home/pv/power_w, got {topic!r}"
    if "\0" in topic or len(topic.encode("utf-8")) > 65535:
        return f"{topic!r} is not a valid MQTT topic"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return f"{topic!r}: '#' must be a whole level, and the last one"
        if "+" in level and level != "+":
            return f"{topic!r}: '+' must be a whole level"
    return None
