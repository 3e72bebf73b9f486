"""``status.MQTT``, ``control.MQTT`` and ``control.HTTP`` -> the typed settings of the outputs
that show the daemon and the inputs that steer it.

TWCManager's keys keep their meaning (``brokerIP``, ``brokerPort`` 1883 or 8883 with
``brokerTLS``, ``topicPrefix`` "TWC", ``ratelimit`` 60 s, ``homeassistantDiscovery``,
``discoveryPrefix``, ``deviceNamePrefix``; ``listenPort`` 8080). twcmaster adds:

* ``status.MQTT.homeassistantDiscovery`` defaults to true (TWCManager: false): a user who
  turns MQTT status on almost always wants the entities in Home Assistant;
* ``status.MQTT.caFile``, ``control.MQTT.caFile``: a CA bundle for the broker's certificate;
* ``control.MQTT.allowStop``: TWCManager's ``control/stop`` ends the daemon; off unless set;
* ``control.HTTP.listenIP`` (default 127.0.0.1), ``token`` and ``tokenRequiredForGet``: a
  bind to anything but loopback without a token is an error (TWCManager's API has none).

A disabled (or absent) section reads as None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twcmaster.config.fields import ABSENT, Section, section
from twcmaster.config.problems import Report

__all__ = [
    "BrokerConfig",
    "HttpConfig",
    "MqttControlConfig",
    "MqttStatusConfig",
    "is_loopback",
    "parse_http",
    "parse_mqtt_control",
    "parse_mqtt_status",
]

MQTT_PORT = 1883
MQTT_TLS_PORT = 8883
HTTP_PORT = 8080
HTTP_LISTEN_IP = "127.0.0.1"
TOPIC_PREFIX = "TWC"
STATUS_RATELIMIT_S = 60.0  # TWCManager's per-topic rate limit
MIN_TOKEN_CHARS = 16  # a bearer token shorter than this is guessable


@dataclass(frozen=True)
class BrokerConfig:
    """One MQTT broker connection (status and control may share it)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    topic_prefix: str = TOPIC_PREFIX

    def __repr__(self) -> str:  # never the password
        user = f"{self.username}@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"BrokerConfig({scheme}://{user}{self.host}:{self.port}/{self.topic_prefix})"


@dataclass(frozen=True)
class MqttStatusConfig:
    broker: BrokerConfig
    ratelimit_s: float = STATUS_RATELIMIT_S  # numbers: at most once per this per topic; 0 = off
    ha_discovery: bool = True
    discovery_prefix: str = "homeassistant"
    device_name_prefix: str = "TWC"


@dataclass(frozen=True)
class MqttControlConfig:
    broker: BrokerConfig
    allow_stop: bool = False  # <prefix>/control/stop ends the daemon only when true


@dataclass(frozen=True)
class HttpConfig:
    listen_ip: str = HTTP_LISTEN_IP
    listen_port: int = HTTP_PORT
    token: str | None = None
    token_required_for_get: bool = False

    def __repr__(self) -> str:  # never the token
        token = "set" if self.token else "none"
        return f"HttpConfig({self.listen_ip}:{self.listen_port}, token {token})"

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.listen_ip)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _enabled(part: Section) -> bool:
    return bool(part.values) and part.boolean("enabled", False) is True


def _broker(part: Section) -> BrokerConfig | None:
    host = None
    if part.raw("brokerIP") is ABSENT:
        part.report.error(part.key_path("brokerIP"), "missing; expected the broker's host name")
    else:
        host = part.text("brokerIP", "")
    tls = part.boolean("brokerTLS", False)
    port = part.whole(
        "brokerPort",
        MQTT_TLS_PORT if tls else MQTT_PORT,
        "a TCP port from 1 to 65535",
        lambda x: 1 <= x <= 65535,
        from_string=True,
    )
    prefix = part.text("topicPrefix", TOPIC_PREFIX)
    if prefix is not None and (prefix.strip("/") != prefix or "#" in prefix or "+" in prefix):
        part.bad("topicPrefix", prefix, 'a topic prefix without wildcards or edge "/", like "TWC"')
        prefix = None
    username = part.optional_text("username")
    password = part.optional_text("password", secret=True)
    ca_file = part.optional_text("caFile")
    if host is None or tls is None or port is None or prefix is None:
        return None
    return BrokerConfig(host, port, tls, username, password, ca_file, prefix)


def parse_mqtt_status(data: Mapping[str, Any], report: Report) -> MqttStatusConfig | None:
    part = Section(section(data, "status", "MQTT"), "status.MQTT", report)
    if not _enabled(part):
        return None
    broker = _broker(part)
    ratelimit = part.number(
        "ratelimit", STATUS_RATELIMIT_S, "seconds from 0 (off) to 3600", lambda x: 0 <= x <= 3600
    )
    discovery = part.boolean("homeassistantDiscovery", True)
    discovery_prefix = part.text("discoveryPrefix", "homeassistant")
    device_prefix = part.text("deviceNamePrefix", "TWC")
    values = (broker, ratelimit, discovery, discovery_prefix, device_prefix)
    if any(value is None for value in values):
        return None
    return MqttStatusConfig(*values)  # type: ignore[arg-type]


def parse_mqtt_control(data: Mapping[str, Any], report: Report) -> MqttControlConfig | None:
    part = Section(section(data, "control", "MQTT"), "control.MQTT", report)
    if not _enabled(part):
        return None
    broker = _broker(part)
    allow_stop = part.boolean("allowStop", False)
    if broker is None or allow_stop is None:
        return None
    return MqttControlConfig(broker, allow_stop)


def parse_http(data: Mapping[str, Any], report: Report) -> HttpConfig | None:
    part = Section(section(data, "control", "HTTP"), "control.HTTP", report)
    if not _enabled(part):
        return None
    listen_ip = part.text("listenIP", HTTP_LISTEN_IP)
    port = part.whole(
        "listenPort", HTTP_PORT, "a TCP port from 1 to 65535", lambda x: 1 <= x <= 65535,
        from_string=True,
    )  # fmt: skip
    token = part.optional_text("token", secret=True)
    if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
        part.bad("token", "(hidden)", f"at least {MIN_TOKEN_CHARS} characters (a long random one)")
        return None
    for_get = part.boolean("tokenRequiredForGet", False)
    if listen_ip is not None and not is_loopback(listen_ip) and token is None:
        report.error(
            part.key_path("token"),
            f"required when listenIP is {listen_ip} (not loopback): anyone on the network "
            "could change the charging; set a long random token, or listenIP 127.0.0.1",
        )
        return None
    if for_get and token is None:
        part.bad("tokenRequiredForGet", True, "false without a token (set control.HTTP.token)")
        return None
    if listen_ip is None or port is None or for_get is None:
        return None
    return HttpConfig(listen_ip, port, token, for_get)
