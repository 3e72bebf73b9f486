"""What a TWCManager user gets from their ``config.json`` here: for every TWCManager setting
that twcmaster ignores, what the user loses (the warning ``check-config`` and ``run`` print),
and for the settings it reads, where it behaves differently (``check-config
--twcmanager-diff``).

The facts about TWCManager come from its module sources and docs (the keys each module
reads); the statements about twcmaster are what this code base does, with the README
section that says more.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["IGNORED", "DiffLine", "ignored_message", "policy_is_customised", "twcmanager_diff"]

_POWER_FACTOR = (
    "TWCManager's power-factor correction of the kW it reported; twcmaster reports amps x the "
    "TWC's measured voltage"
)
_CHARGE_LIMIT = (
    "setting the car's charge limit (%) per policy; twcmaster leaves the car's own charge "
    "limit alone"
)
_PRICING = "price-based charging (no pricing module in twcmaster)"

# TWCManager settings that twcmaster accepts and does not act on: what the user loses.
# A module's entry covers every key in it. (Keys are full paths.)
IGNORED: dict[str, str] = {
    # -- config.*
    "config.realPowerFactorMinAmps": _POWER_FACTOR,
    "config.realPowerFactorMaxAmps": _POWER_FACTOR,
    "config.atHomeRadius": (
        "the home radius in feet around the car's remembered home; give twcmaster's geofence "
        "as vehicle.teslaAPI.homeLatitude, homeLongitude and homeRadiusM (metres)"
    ),
    "config.minChargeLevel": (
        "charging below this battery level whatever the policy; twcmaster does not read the "
        "battery level to override the policy (use Charge Now)"
    ),
    "config.respectVehicleSchedule": (
        "skipping cars whose own charge schedule is active; twcmaster never changes the "
        "car's schedule and starts a car only when its policy offers current"
    ),
    "config.chargeNowLimit": _CHARGE_LIMIT,
    "config.scheduledLimit": _CHARGE_LIMIT,
    "config.greenEnergyLimit": _CHARGE_LIMIT,
    "config.nonScheduledLimit": _CHARGE_LIMIT,
    "config.cloudUpdateInterval": (
        "the Powerwall 2 cloud polling interval; twcmaster's Powerwall2 source reads the "
        "gateway on the local network every sources.Powerwall2.interval seconds"
    ),
    "config.teslaApiRedirectUri": (
        "TWCManager's Tesla OAuth app settings; twcmaster takes vehicle.teslaAPI.clientID, "
        "authURL and baseURL (README: the Tesla API)"
    ),
    "config.teslaApiClientSecret": (
        "TWCManager's Tesla OAuth app settings; twcmaster refreshes with the public client "
        "(vehicle.teslaAPI.clientID) and needs no secret"
    ),
    "config.teslaApiRegion": (
        "the Fleet API region; give twcmaster the regional host as vehicle.teslaAPI.baseURL"
    ),
    "config.teslaApiScope": (
        "TWCManager's Tesla OAuth scopes; twcmaster uses the scopes of the refresh token it is "
        "given"
    ),
    "config.teslaControlPath": (
        "the tesla-control program TWCManager signed commands with; twcmaster signs them "
        "itself with vehicle.teslaAPI.privateKeyFile"
    ),
    "config.onlyChargeMultiCarsAtHome": (
        "TWCManager's check that every car is at home before charging several; twcmaster "
        "commands only the car plugged into that TWC (or inside the home geofence)"
    ),
    "config.maxImportPrice": _PRICING,
    "config.debugOutputToFile": (
        "TWCManager's debug output in a file; twcmaster logs to stderr (docker logs, "
        "journalctl), at config.logLevel"
    ),
    "config.debugFile": "the SolarEdge module's debug dump file",
    "config.moduleConfiguration": (
        "per-module tuning of TWCManager's Tesla BLE helper (retries, circuit breaker); "
        "twcmaster's BLE module takes vehicle.teslaBLE.commandTimeoutS and scanTimeoutS"
    ),
    # -- modules
    "interface.TCP": (
        "TWCManager's TCP interface; for a network RS-485 bridge set interface.RS485.port "
        "to socket://host:port or rfc2217://host:port"
    ),
    "interface.Dummy": (
        "TWCManager's dummy interface for its tests; run twcmaster demo or "
        "twcmaster slave-sim instead"
    ),
    "control.OCPP": "the OCPP server (TWCManager had it switched off in its module list)",
    "control.IPC": (
        "TWCManager's web UI channel; twcmaster's HTTP API (control.HTTP) serves its clients"
    ),
    "status.HASS": (
        "pushing states to Home Assistant's REST API; enable status.MQTT with "
        "homeassistantDiscovery: twcmaster's entities then appear in Home Assistant"
    ),
    "status.OTEL": "OpenTelemetry export",
    "logging.CSV": (
        "charge-session and green-energy records in CSV; twcmaster's MQTT telemetry carries "
        "the same figures"
    ),
    "logging.MySQL": (
        "charge-session and green-energy records in MySQL; twcmaster's MQTT telemetry "
        "carries the same figures"
    ),
    "logging.SQLite": (
        "charge-session and green-energy records in SQLite; twcmaster's MQTT telemetry "
        "carries the same figures"
    ),
    "logging.Sentry": "error reports to Sentry",
    "vehicle.teslaFleetTelemetryMQTT": (
        "car data from Tesla Fleet Telemetry over MQTT; twcmaster reads vehicle_data through "
        "the Fleet API, sparingly"
    ),
    "vehicle.HomeAssistant": "starting and stopping cars through Home Assistant's car entities",
    "vehicle.TeslaMate": (
        "taking the Tesla tokens from TeslaMate's database; give twcmaster "
        "vehicle.teslaAPI.refreshToken or tokenFile"
    ),
    "pricing.aWATTar": _PRICING,
    "pricing.Static": _PRICING,
    "pricing.PVPCes": _PRICING,
    "pricing.Amber": _PRICING,
    "controller.Gen3TWCs": (
        "Gen3 Wall Connectors (Wi-Fi); twcmaster is the master of a Gen2 RS-485 bus only"
    ),
    "sources.ScenarioEMS": (
        "TWCManager's replay of recorded readings for its tests; use twcmaster simulate --profile"
    ),
    # -- other sections and leaves
    "vehicle.commandPolicy": (
        "choosing between Bluetooth and the Fleet API per command; twcmaster uses "
        "vehicle.teslaBLE when it is enabled, else vehicle.teslaAPI"
    ),
    "pricing.policy": _PRICING,
    "logging.use_icons": "icons in log lines; twcmaster's log lines have none",
    "logging.Console.simple": "TWCManager's simple console layout; twcmaster prints its lines",
    "logging.FileLogger.mute": (
        "muting kinds of lines in the log file; twcmaster's file gets every line"
    ),
    "logging.Console.mute": (
        "muting kinds of console lines; twcmaster prints its console lines as TWCManager's "
        "default console did"
    ),
}

_GENERIC = "not used by twcmaster (ignored)"


def ignored_message(path: str) -> str:
    """The warning for an ignored TWCManager setting: what the user loses."""
    what = IGNORED.get(path)
    if what is None and path.startswith("sources."):
        what = "this green-energy input: twcmaster has no such source module yet"
    return f"ignored; you lose {what}" if what else _GENERIC


# ------------------------------------------------------------------ check-config --twcmanager-diff


@dataclass(frozen=True)
class DiffLine:
    path: str
    kind: str  # "different", "ignored" or "default differs"
    text: str

    def __str__(self) -> str:
        return f"  {self.path}: {self.text}"


# TWCManager settings twcmaster reads with other semantics (or another default): what differs.
DIFFERENT: dict[str, str] = {
    "config.startStopDelay": (
        "TWCManager held every start/stop decision this long; twcmaster holds a car that has "
        "just started at its floor this long, and rides dips by the grid energy they cost "
        "(greenEnergyHoldWh) instead (README: Riding a cloud)"
    ),
    "config.minAmpsPerTWC": (
        "same meaning; when above wiringMaxAmpsPerTWC the floor is lowered to the wiring "
        "(a warning), where TWCManager kept it and never charged"
    ),
    "config.greenEnergyLatch": (
        "minutes, as in TWCManager; twcmaster also holds dips by their grid energy cost"
    ),
    "config.wakeDelayMins": (
        "the wait before waking a car, unless vehicle.teslaAPI.wakeDelayS is set"
    ),
    "config.maxAmpsAllowedFromGrid": (
        "the whole site's grid draw (house included) is capped in every policy while the "
        "reading is fresh, and the chargers fall back to greenEnergySafeAmps when it is stale"
    ),
    "config.chargeStopMode": (
        "1 stops through the car API; 2 pauses that one TWC's heartbeats for 60 s; 3 sends "
        "the bus stop command only to firmware 4.5.3 or later, at most once a minute"
    ),
    "policy": (
        "applied as in TWCManager (override, extend, restrictions, webhooks, latch, flex, "
        "policyCheckInterval); modules.X.Y values other than an energy source's generatedW, "
        "consumedW, importW, exportW (and the Powerwall's gridStatus, batteryLevel, "
        "operatingMode, reservePercent) and charge_limit are not (README: Your own policy "
        "rules); without policyCheckInterval the policy is chosen at every decision"
    ),
    "control.HTTP": (
        "TWCManager's /api endpoints with the same names; answers are JSON numbers, errors "
        "name the field, and a token is required on anything but loopback"
    ),
    "control.MQTT": (
        "the same topics; every value is validated as the HTTP API does, and a rejected or "
        "retained command is logged with the field and the reason"
    ),
    "status.MQTT": (
        "the same topics, plus Home Assistant discovery; a change is published at once, "
        "the rate limit only merges bursts"
    ),
    "vehicle.teslaAPI": (
        "only the car plugged into that TWC (or inside the home geofence) is commanded, "
        "with a daily call budget; tokens are refreshed and saved before use"
    ),
    # Energy sources that read the same device differently (their module docstrings say more).
    "sources.DSMR": (
        "the P1 telegrams are read (CRC checked) and used; TWCManager's module opened the "
        "port and read nothing"
    ),
    "sources.DSMRreader": (
        "a silent topic makes the reading stale after maxAge (safe budget); TWCManager kept "
        "the last value forever"
    ),
    "sources.EmonCMS": (
        "with both feeds set, each value is taken in its place; TWCManager swapped "
        "consumption and generation"
    ),
    "sources.Enphase": (
        "with both serverIP and the cloud keys, the gateway is read (TWCManager used the "
        "cloud); the cloud is polled every 60 s"
    ),
    "sources.Growatt": (
        "the login is kept between polls, and the status asked once, by the device's serial "
        "number (TWCManager logged in every poll and also asked by its alias)"
    ),
    "sources.OpenWeatherMap": (
        "the One Call 3.0 API (2.5 is retired), every 120 s; above 31 °C the estimate is "
        "lowered by 1 % a degree (at most by half) where TWCManager halved it"
    ),
    "sources.Victron": (
        "a register that cannot be read fails the poll (safe budget) where TWCManager "
        "counted it as 0 W; the consumption is the positive house load"
    ),
}

# Where the two defaults differ when the key is not in the file.
DEFAULTS_DIFFER: dict[str, str] = {
    "config.greenEnergyHoldWh": (
        "twcmaster only: a dip below the floor is held while it costs at most 14 Wh "
        "(growing with the day's starts)"
    ),
    "config.chargePriority": "twcmaster only: which car charges first when the sun is short",
}


def twcmanager_diff(data: Mapping[str, Any]) -> list[DiffLine]:
    """For a TWCManager config: every setting in it that twcmaster ignores or reads
    differently, then the twcmaster-only behaviours its absence leaves on."""
    lines: list[DiffLine] = []
    for path in _present_paths(data):
        if path in DIFFERENT and _would_run(data, path):
            lines.append(DiffLine(path, "different", DIFFERENT[path]))
        elif path in IGNORED and _would_run(data, path):
            lines.append(DiffLine(path, "ignored", "ignored; you lose " + IGNORED[path]))
    for path, text in DEFAULTS_DIFFER.items():
        if path not in _present_paths(data):
            lines.append(DiffLine(path, "default differs", text))
    return lines


def _present_paths(data: Mapping[str, Any]) -> Iterator[str]:
    """Every key path in the file (sections and leaves), depth first."""

    def walk(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            if isinstance(value, Mapping):
                yield from walk(value, path)

    return walk(data, "")


#: TWCManager's policy check interval when none is given (s).
TWCMANAGER_POLICY_CHECK_S = 30


def policy_is_customised(policy: Any) -> bool:
    """Whether a ``policy`` section changes anything in TWCManager: rules in ``override`` or
    ``extend``, restrictions, webhooks, another check interval, or alwaysPollEMS. (The
    sample's section has only empty lists and the default interval.)"""
    if not isinstance(policy, Mapping):
        return False
    extend = policy.get("extend")
    extend = extend if isinstance(extend, Mapping) else {}
    engine = policy.get("engine")
    interval = engine.get("policyCheckInterval") if isinstance(engine, Mapping) else None
    return (
        bool(policy.get("override"))
        or any(bool(extend.get(key)) for key in extend)
        or bool(policy.get("alwaysPollEMS"))
        or interval not in (None, TWCMANAGER_POLICY_CHECK_S)
    )


def _would_run(data: Mapping[str, Any], path: str) -> bool:
    """A module section counts only when TWCManager would run it (``enabled`` true); a leaf
    or a plain section counts when it holds something."""
    node = _node_at(data, path)
    if path == "policy":
        return policy_is_customised(node)
    if isinstance(node, Mapping) and "enabled" in node:
        return bool(node.get("enabled"))
    return node not in (None, "", [], {}, False)


def _node_at(data: Mapping[str, Any], path: str) -> Any:
    """The value at ``path``; a key may itself hold dots (TWCManager's docs put its Gen3
    section at the top level as "controller.Gen3TWCs")."""
    node: Any = data
    parts = path.split(".")
    while parts:
        if not isinstance(node, Mapping):
            return None
        for size in range(len(parts), 0, -1):  # the longest key that is there
            key = ".".join(parts[:size])
            if key in node:
                node, parts = node[key], parts[size:]
                break
        else:
            return None
    return node
