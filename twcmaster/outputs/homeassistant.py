"""Home Assistant MQTT discovery: the retained config messages that make twcmaster's topics
appear as devices and entities in Home Assistant (``homeassistantDiscovery``, on by default).

* One device per TWC (``<deviceNamePrefix> <TWCID>``, via the site device) and one for the
  site (``<deviceNamePrefix> site``: the totals, the green figures, the policy).
* One config message per entity, retained, at
  ``<discoveryPrefix>/<component>/<node>/<object>/config`` with node ``<topicPrefix>_<id>``
  and object ``<id>_<key>``, ``<id>`` a TWCID, ``all`` or ``config``.
* **Continuity for TWCManager users**: the sensors TWCManager announced keep its config
  topics, unique ids (``twcmanager_<deviceNamePrefix>_<id>_<key>``) and device identifiers,
  so Home Assistant updates those entities in place (names, areas, history kept) instead of
  keeping TWCManager's retained configs as duplicates next to ours. twcmaster's own entities
  have unique ids ``twcmaster_<deviceNamePrefix>_<id>_<key>``.
* Sensors carry ``device_class``, ``state_class`` and units; every entity has the
  availability topic(s) (``<prefix>/availability``, and for a TWC's entities also
  ``<prefix>/<TWCID>/availability``: unavailable while the TWC is not linked), an ``origin``
  block and a device block.
* Controls, only when MQTT control listens on the same broker and prefix (else Home
  Assistant would command topics nobody reads): ``select`` Policy (Auto + the four
  policies) and Non-scheduled action, ``number`` Charge Now amps / duration (the preset)
  and Non-scheduled amps, ``button`` Charge Now (the preset) and Cancel Charge Now,
  ``switch`` per TWC Charging allowed. Each is wired to its ``<prefix>/control/...`` topic
  (``remote/mqtt.py``) and shows the state MQTT status publishes under ``<prefix>/config/``.

``outputs/mqtt.py`` publishes these at every connection, when Home Assistant announces
``online`` on ``<discoveryPrefix>/status``, when a TWC first appears; and removes a TWC's
(empty retained payloads) once it is gone for good.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from twcmaster import __version__
from twcmaster.config import AppConfig
from twcmaster.config.interfaces import MqttControlConfig, MqttStatusConfig
from twcmaster.outputs.mqtttopics import AVAILABILITY, OFF, OFFLINE, ON, ONLINE
from twcmaster.protocol.messages import SLAVE_STATE_NAMES
from twcmaster.remote import mqtt as control
from twcmaster.remote.commands import AUTO_POLICY
from twcmaster.settings import FORCEABLE_POLICIES, MAX_CHARGE_NOW_S

__all__ = ["Discovery", "Entity", "controls_reachable"]

SITE = "all"  # TWCManager's id for the site's topics (and its HA device)
CONFIG = "config"  # TWCManager's id for config values (min_amps_per_twc)
HA_STATE_MAX_CHARS = 255  # Home Assistant refuses a longer sensor state


def _jinja(expression: str) -> str:
    return "{{ " + expression + " }}"


TEXT_TEMPLATE = _jinja(f"value[:{HA_STATE_MAX_CHARS}]")
ACTIONS = {"1": "Fixed rate", "2": "Do not charge", "3": "Track green energy"}
STATE_NAMES = sorted({*SLAVE_STATE_NAMES.values(), "unknown"})

AMPS_SENSOR = {
    "device_class": "current",
    "state_class": "measurement",
    "unit_of_measurement": "A",
    "suggested_display_precision": 1,
}
WATTS_SENSOR = {
    "device_class": "power",
    "state_class": "measurement",
    "unit_of_measurement": "W",
    "suggested_display_precision": 0,
}
VOLTS_SENSOR = {"device_class": "voltage", "state_class": "measurement", "unit_of_measurement": "V"}
DIAGNOSTIC = {"entity_category": "diagnostic"}
TEXT_SENSOR = {"value_template": TEXT_TEMPLATE}


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity. ``key``: its state topic under ``<prefix>/<id>/`` (None: a
    button); ``object_key``: its object id and unique-id suffix; ``twcmanager``: TWCManager
    announced it (its unique-id form is kept); ``command``: the control key it commands."""

    component: str
    key: str | None
    object_key: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    twcmanager: bool = False
    command: str | None = None


def _sensor(key, object_key, name, fields=None, twcmanager=True) -> Entity:
    return Entity("sensor", key, object_key, name, dict(fields or {}), twcmanager)


TWC_SENSORS = (
    _sensor("ampsInUse", "amps_in_use", "Amps in use", AMPS_SENSOR),
    _sensor("ampsMax", "amps_max", "Amps max (reported)", AMPS_SENSOR),
    _sensor("state", "state", "State code", DIAGNOSTIC),
    _sensor("ampsOffered", "amps_offered", "Amps offered", AMPS_SENSOR),
    _sensor("ampsDesired", "amps_desired", "Amps desired", {**AMPS_SENSOR, **DIAGNOSTIC}),
    _sensor("carsCharging", "cars_charging", "Cars charging", {"state_class": "measurement"}),
    _sensor("currentVehicleVIN", "current_vehicle_vin", "Current vehicle VIN"),
    _sensor("lastVehicleVIN", "last_vehicle_vin", "Last vehicle VIN"),
    _sensor(
        "lifetimekWh",
        "lifetime_kwh",
        "Lifetime energy",
        {"device_class": "energy", "state_class": "total_increasing", "unit_of_measurement": "kWh"},
    ),
    _sensor("voltagePhaseA", "voltage_phase_a", "Voltage phase A", VOLTS_SENSOR),
    _sensor("voltagePhaseB", "voltage_phase_b", "Voltage phase B", VOLTS_SENSOR),
    _sensor("voltagePhaseC", "voltage_phase_c", "Voltage phase C", VOLTS_SENSOR),
    _sensor("chargerLoadInW", "charger_load_w", "Charger load", WATTS_SENSOR),
    _sensor(
        "stateName",
        "state_name",
        "State",
        {"device_class": "enum", "options": STATE_NAMES},
        twcmanager=False,
    ),
    Entity(
        "binary_sensor",
        "carsCharging",
        "charging",
        "Charging",
        {"device_class": "battery_charging", "payload_on": "1", "payload_off": "0"},
    ),
)
SITE_SENSORS = (
    _sensor("totalAmpsInUse", "total_amps_in_use", "Total amps in use", AMPS_SENSOR),
    _sensor("maxAmpsForSlaves", "max_amps_for_slaves", "Amps available", AMPS_SENSOR),
    _sensor("currentPolicy", "current_policy", "Current policy"),
    _sensor("budgetReason", "budget_reason", "Budget reason", TEXT_SENSOR, twcmanager=False),
    _sensor("greenEnergyText", "green_energy_text", "Green energy", TEXT_SENSOR, twcmanager=False),
    _sensor("generationW", "generation_w", "Generation", WATTS_SENSOR, twcmanager=False),
    _sensor("consumptionW", "consumption_w", "Consumption", WATTS_SENSOR, twcmanager=False),
    _sensor("surplusW", "surplus_w", "Surplus", WATTS_SENSOR, twcmanager=False),
    _sensor("gridW", "grid_w", "Grid import", WATTS_SENSOR, twcmanager=False),
    _sensor("surplusAmps", "surplus_amps", "Surplus amps", AMPS_SENSOR, twcmanager=False),
    _sensor("chargerLoadInW", "charger_load_w", "Chargers' load", WATTS_SENSOR, twcmanager=False),
    Entity(
        "binary_sensor",
        "readingStale",
        "reading_stale",
        "Energy reading unusable",
        {"device_class": "problem", "payload_on": "1", "payload_off": "0"},
    ),
    Entity(
        "binary_sensor",
        "busLinked",
        "bus_linked",
        "RS-485 link",
        {"device_class": "connectivity", "payload_on": "1", "payload_off": "0", **DIAGNOSTIC},
    ),
)
CONFIG_SENSORS = (
    _sensor("minAmpsPerTWC", "min_amps_per_twc", "Min amps per TWC", {**AMPS_SENSOR, **DIAGNOSTIC}),
)


def _site_controls(wiring_max_amps: int) -> tuple[Entity, ...]:
    amps = {
        "min": 1,
        "max": wiring_max_amps,
        "step": 1,
        "unit_of_measurement": "A",
        "device_class": "current",
        "entity_category": "config",
    }
    duration = {
        "min": 60,
        "max": MAX_CHARGE_NOW_S,
        "step": 60,
        "mode": "box",
        "unit_of_measurement": "s",
        "device_class": "duration",
        "entity_category": "config",
    }
    actions = {
        "options": list(ACTIONS.values()),
        "value_template": _jinja(f"{json.dumps(ACTIONS)}.get(value, 'Fixed rate')"),
        "command_template": _jinja(f"{json.dumps(_inverse(ACTIONS))}[value]"),
        "entity_category": "config",
    }
    policies = {"options": [AUTO_POLICY, *FORCEABLE_POLICIES]}
    press = {"payload_press": control.PRESS}
    return (
        Entity("select", "policy", "policy", "Policy", policies, command=control.POLICY),
        Entity(
            "select",
            "nonScheduledAction",
            "non_scheduled_action",
            "Non-scheduled action",
            actions,
            command=control.NON_SCHEDULED_ACTION,
        ),
        Entity(
            "number",
            "chargeNowAmps",
            "charge_now_amps",
            "Charge Now amps",
            amps,
            command=control.CHARGE_NOW_AMPS,
        ),
        Entity(
            "number",
            "chargeNowDuration",
            "charge_now_duration",
            "Charge Now duration",
            duration,
            command=control.CHARGE_NOW_DURATION,
        ),
        Entity(
            "number",
            "nonScheduledAmpsMax",
            "non_scheduled_amps_max",
            "Non-scheduled amps",
            {**amps, "min": 0},
            command=control.NON_SCHEDULED_AMPS_MAX,
        ),
        Entity("button", None, "charge_now", "Charge Now", press, command=control.CHARGE_NOW),
        Entity(
            "button",
            None,
            "charge_now_end",
            "Cancel Charge Now",
            press,
            command=control.CHARGE_NOW_END,
        ),
    )


def _inverse(mapping: dict[str, str]) -> dict[str, int]:
    return {label: int(code) for code, label in mapping.items()}


TWC_SWITCH = Entity(
    "switch",
    "chargingAllowed",
    "allow_charging",
    "Charging allowed",
    {"payload_on": ON, "payload_off": OFF, "state_on": ON, "state_off": OFF},
    command=control.ALLOW_CHARGING,
)


def controls_reachable(status: MqttStatusConfig, control_config: MqttControlConfig | None) -> bool:
    """Whether MQTT control reads the topics our controls would command: same broker, same
    prefix."""
    if control_config is None:
        return False
    a, b = status.broker, control_config.broker
    return (a.host, a.port, a.topic_prefix) == (b.host, b.port, b.topic_prefix)


def _safe_id(text: str) -> str:
    """Home Assistant's node and object ids: letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class Discovery:
    """The discovery messages for one status config. ``controls``: include the controls."""

    def __init__(self, config: MqttStatusConfig, app: AppConfig, *, controls: bool) -> None:
        self.config = config
        self.app = app
        self.controls = controls
        self.prefix = config.broker.topic_prefix
        self.discovery_prefix = config.discovery_prefix.strip("/")
        self.status_topic = f"{self.discovery_prefix}/status"  # Home Assistant's birth/will
        self._id_prefix = config.device_name_prefix.replace(" ", "_")
        self._node_prefix = _safe_id(self.prefix)
        self._origin = {"name": "twcmaster", "sw_version": __version__}
        self._site_identifiers = [self._identifier(SITE), self._identifier(CONFIG)]

    # -- the messages -------------------------------------------------------------------

    def site_configs(self) -> list[tuple[str, str]]:
        """(config topic, JSON payload) of the site device's entities."""
        messages = [self._message(e, SITE, self._site_device()) for e in SITE_SENSORS]
        messages += [self._message(e, CONFIG, self._site_device()) for e in CONFIG_SENSORS]
        if self.controls:
            for entity in _site_controls(self.app.wiring.max_amps_all_twcs):
                state_id = CONFIG if entity.key is not None else SITE
                messages.append(self._message(entity, SITE, self._site_device(), state_id))
        return messages

    def twc_configs(self, twcid: str) -> list[tuple[str, str]]:
        """(config topic, JSON payload) of one TWC's entities."""
        entities = list(TWC_SENSORS) + ([TWC_SWITCH] if self.controls else [])
        return [self._message(e, twcid, self._twc_device(twcid)) for e in entities]

    def twc_config_topics(self, twcid: str) -> list[str]:
        """Every config topic a TWC may have (to remove it: an empty retained payload each)."""
        return [self._config_topic(e, twcid) for e in (*TWC_SENSORS, TWC_SWITCH)]

    # -- building them ------------------------------------------------------------------

    def _message(
        self, entity: Entity, ident: str, device: dict[str, Any], state_id: str | None = None
    ) -> tuple[str, str]:
        payload: dict[str, Any] = {
            "name": entity.name,
            "unique_id": self._unique_id(entity, ident),
            "availability": self._availability(ident),
            "availability_mode": "all",
            "device": device,
            "origin": self._origin,
        }
        if entity.key is not None:
            payload["state_topic"] = f"{self.prefix}/{state_id or ident}/{entity.key}"
        if entity.command is not None:
            key = entity.command if ident in (SITE, CONFIG) else f"{ident}/{entity.command}"
            payload["command_topic"] = control.control_topic(self.prefix, key)
        payload.update(entity.fields)
        if entity.object_key in ("voltage_phase_b", "voltage_phase_c"):
            # Most TWCs are single phase: their B and C read 0 V. Shown when the config
            # says three phases; a user can enable them by hand otherwise.
            payload["enabled_by_default"] = self.app.number_of_phases == 3
        return self._config_topic(entity, ident), json.dumps(payload, separators=(",", ":"))

    def _config_topic(self, entity: Entity, ident: str) -> str:
        node = f"{self._node_prefix}_{ident}"
        object_id = f"{ident}_{entity.object_key}"
        return f"{self.discovery_prefix}/{entity.component}/{node}/{object_id}/config"

    def _unique_id(self, entity: Entity, ident: str) -> str:
        owner = "twcmanager" if entity.twcmanager else "twcmaster"
        return f"{owner}_{self._id_prefix}_{ident}_{entity.object_key}"

    def _identifier(self, ident: str) -> str:
        return f"twcmanager_{self._id_prefix}_{ident}"  # TWCManager's device identifiers

    def _availability(self, ident: str) -> list[dict[str, str]]:
        topics = [f"{self.prefix}/{AVAILABILITY}"]
        if ident not in (SITE, CONFIG):
            topics.append(f"{self.prefix}/{ident}/{AVAILABILITY}")
        return [
            {"topic": t, "payload_available": ONLINE, "payload_not_available": OFFLINE}
            for t in topics
        ]

    def _site_device(self) -> dict[str, Any]:
        return {
            "identifiers": self._site_identifiers,
            "name": f"{self.config.device_name_prefix} site",
            "manufacturer": "twcmaster",
            "model": "Wall Connector load sharing",
            "sw_version": __version__,
        }

    def _twc_device(self, twcid: str) -> dict[str, Any]:
        return {
            "identifiers": [self._identifier(twcid)],
            "name": f"{self.config.device_name_prefix} {twcid}",
            "manufacturer": "Tesla",
            "model": "Wall Connector Gen 2",
            "via_device": self._identifier(SITE),
        }
