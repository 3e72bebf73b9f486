"""One MQTT broker connection (paho-mqtt 2.x) that never holds up the bus.

``MqttLink`` wraps one paho client running its own network thread (``loop_start``):

* ``start()`` returns at once (``connect_async``): a broker that is down, slow or unknown is
  tried again in that thread with back-off (``RECONNECT_MIN_S`` doubling to
  ``RECONNECT_MAX_S``, TWCManager's 1-120 s), never waited for;
* TLS (``brokerTLS``; the system's CAs, or ``caFile``), username and password (registered
  with ``sources.secrets``, so no log line can show it; ``BrokerConfig``'s repr hides it);
* a last will (e.g. ``<prefix>/availability`` = ``offline``, retained), sent by the broker
  when the connection dies without a clean goodbye (``kill -9``, a cut cable);
* ``on_connect`` runs after every (re)connection, once the subscriptions are renewed: the
  owner republishes its retained state there (the broker may have restarted without it);
* ``publish()`` is thread-safe and cheap: it hands the message to paho's queue and returns.
  While disconnected it drops the message and says so (False): owners keep their state and
  republish it on reconnect, so nothing piles up during an outage. While connected but the
  queue grows (a broker or network that cannot keep up), the least important messages are
  refused first (``Priority``).

Callbacks (``on_connect``, ``on_message``) run on paho's thread. Owners that live on the
event loop hand them over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import collections
import enum
import os
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twcmaster.config.interfaces import BrokerConfig
from twcmaster.logs import get_logger
from twcmaster.sources.secrets import register

__all__ = ["MqttLink", "Priority", "Will"]

KEEPALIVE_S = 30  # TWCManager's; a dead broker is noticed within 1.5 x this
RECONNECT_MIN_S = 1  # paho's reconnect back-off: first wait ...
RECONNECT_MAX_S = 120  # ... doubling up to this (TWCManager's figures)
CONNECT_TIMEOUT_S = 5.0  # one TCP/TLS connection attempt
GOODBYE_WAIT_S = 1.0  # stop(): at most this for the broker to take the goodbye message
# stop(): at most this for paho's thread; one sleeping out a back-off (in steps of up to 1 s)
# finishes by itself afterwards.
THREAD_STOP_WAIT_S = 0.5


class Priority(enum.IntEnum):
    """How much a message matters when paho's queue is long (see ``PENDING_LIMITS``)."""

    BULK = 0  # the JSON snapshot: the next one, a second later, says it all again
    NUMBER = 1  # rate-limited measurements: the next value supersedes this one
    STATE = 2  # availability, states, settings, discovery: each one counts


# Messages handed to paho but not yet written to the socket. Normally a handful; a broker
# that stalls without closing the connection lets them grow until the keepalive gives up
# (45 s). Each priority is refused beyond its limit, the least important first. At ~100
# messages a second (several TWCs, every topic moving), 4000 is that whole 45 s.
PENDING_LIMITS = {Priority.BULK: 50, Priority.NUMBER: 1000, Priority.STATE: 4000}


@dataclass(frozen=True)
class Will:
    """The last will: what the broker publishes when we vanish without a goodbye."""

    topic: str
    payload: str
    retain: bool = True
    qos: int = 1


class MqttLink:
    """One paho client on its own thread. ``role`` names it in logs and the client id.
    ``subscriptions``: topic filters (QoS 0) renewed at every connection; their messages go
    to ``on_message(topic, payload, retained)``."""

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        role: str,
        will: Will | None = None,
        subscriptions: tuple[str, ...] = (),
        on_connect: Callable[[], None] | None = None,
        on_message: Callable[[str, bytes, bool], None] | None = None,
        log: Any = None,
    ) -> None:
        self.broker = broker
        self.role = role
        self.will = will
        self.subscriptions = subscriptions
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self.log = log if log is not None else get_logger(f"twcmaster.mqtt.{role}")
        if broker.password:
            register(broker.password, f"{broker.username or ''}:{broker.password}")
        self._client: Any = None
        self._connected = False
        self._stopping = False
        self._lock = threading.Lock()  # guards _pending (publish may come from two threads)
        self._pending: collections.deque[Any] = collections.deque()  # MQTTMessageInfo
        self.dropped = 0  # messages refused because the queue was long
        self.connections = 0  # successful connections so far (a test reads it)

    @property
    def connected(self) -> bool:
        return self._connected

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in paho's thread; returns at once. A setting paho rejects at once (a CA
        file that cannot be read) is logged, and the link stays down: the bus goes on."""
        if self._client is not None:
            return
        self._stopping = False
        try:
            client = self._make_client()
            client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
            client.loop_start()
        except (OSError, ValueError, ssl.SSLError) as error:
            self.log.error(
                "MQTT: cannot set up the connection", broker=repr(self.broker), error=str(error)
            )
            return
        self._client = client

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt  # on first use: checking a config loads no paho

        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            # Unique per process and start: two clients with one id throw each other off.
            client_id=f"twcmaster-{self.role}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,  # every broker speaks it; we need nothing of v5
            clean_session=True,
        )
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set(ca_certs=self.broker.ca_file)  # None: the system's CAs
        if self.will is not None:
            w = self.will
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def stop(self, goodbye: tuple[str, str] | None = None) -> None:
        """Publish ``goodbye`` (topic, payload; retained, QoS 1) if connected, disconnect
        cleanly (the broker then drops the will) and end paho's thread. Blocks for at most
        ``GOODBYE_WAIT_S + THREAD_STOP_WAIT_S``: call it off the event loop
        (``asyncio.to_thread``)."""
        client, self._client = self._client, None
        self._stopping = True
        if client is None:
            return
        if goodbye is not None and self._connected:
            try:
                info = client.publish(goodbye[0], goodbye[1], qos=1, retain=True)
                info.wait_for_publish(GOODBYE_WAIT_S)
            except (RuntimeError, ValueError) as error:  # lost meanwhile: the will says it
                self.log.debug("MQTT: goodbye not sent", error=str(error))
        client.disconnect()
        # A thread sleeping out a back-off or stuck in a connect finishes by itself.
        stopper = threading.Thread(target=client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(THREAD_STOP_WAIT_S)
        self._connected = False

    # -- publishing ----------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = True,
        qos: int = 0,
        priority: Priority = Priority.STATE,
    ) -> bool:
        """Queue one message; False when it was not (disconnected, or the queue is long for
        its ``priority``). Never blocks, never raises for a network problem."""
        client = self._client
        if client is None or not self._connected:
            return False
        with self._lock:
            if self._pending_count() >= PENDING_LIMITS[priority]:
                self.dropped += 1
                return False
            try:
                info = client.publish(topic, payload, qos=qos, retain=retain)
            except (ValueError, TypeError) as error:  # a bad topic: our bug, not the broker's
                self.log.error("MQTT: cannot publish", topic=topic[:120], error=str(error))
                return False
            if info.rc != 0:  # MQTT_ERR_NO_CONN: the connection just went
                return False
            self._pending.append(info)
        return True

    def _pending_count(self) -> int:
        """Messages still in paho's queue (written ones are taken off the front)."""
        pending = self._pending
        while pending and _written(pending[0]):
            pending.popleft()
        return len(pending)

    # -- paho callbacks (its network thread) -----------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        try:
            if reason_code.is_failure:
                self._connected = False
                self.log.warning(
                    "MQTT: the broker refused the connection",
                    broker=repr(self.broker),
                    reason=refusal_text(reason_code),
                )
                return
            with self._lock:
                self._pending.clear()  # paho dropped whatever was queued before
            self._connected = True
            self.connections += 1
            for topic_filter in self.subscriptions:
                client.subscribe(topic_filter, qos=0)
            self.log.info("MQTT: connected", role=self.role, broker=repr(self.broker))
            if self._on_connect_cb is not None:
                self._on_connect_cb()
        except Exception:  # a bug here must not kill paho's thread
            self.log.exception("MQTT: on_connect failed", role=self.role)

    def _on_connect_fail(self, _client, _userdata) -> None:
        self._connected = False
        self.log.debug("MQTT: cannot reach the broker; retrying", broker=repr(self.broker))

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            self.log.warning(
                "MQTT: connection lost; reconnecting with back-off",
                role=self.role,
                broker=repr(self.broker),
                reason=str(reason_code),
            )

    def _on_message(self, _client, _userdata, message) -> None:
        if self._on_message_cb is None or self._stopping:
            return
        try:
            topic = message.topic  # decodes UTF-8: a broker should have refused anything else
            self._on_message_cb(topic, message.payload, bool(message.retain))
        except Exception:  # a message must never kill paho's thread
            self.log.exception("MQTT: handling a message failed", role=self.role)


def _written(info: Any) -> bool:
    """Whether paho is done with a queued message (written, or dropped with its connection)."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):  # rc set: lost with the connection
        return True


def refusal_text(reason_code: Any) -> str:
    """A broker's refusal, with a hint when it is the credentials."""
    name = str(reason_code)
    lowered = name.lower()
    if "not authori" in lowered or "bad user" in lowered:
        return f"{name} (check username and password)"
    return name
