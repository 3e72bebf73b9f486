"""TWCManager's HTTP API shapes (``/api/getStatus``, ``/api/getSlaveTWCs`` ...), built from
the one ``Snapshot`` so they show the same numbers as the console, MQTT and
``/api/v1/snapshot``.

Field names, meanings and units are TWCManager's (``lib/TWCManager/Control/HTTPControl.py``
and ``TWCMaster.getStatus``); where TWCManager had a bug its clients do not rely on, the
value is the fixed one:

* numbers are JSON numbers, rounded to 2 decimals, where TWCManager sent ``"%.2f"`` strings
  (``chargerLoadWatts``, ``maxAmpsToDivideAmongSlaves`` ...): its own pages read them with
  ``parseFloat`` / ``>`` / ``.html()``, which take either;
* ``chargerLoadAmps``, ``consumptionAmps`` and ``generationAmps`` are numbers, not the
  one-element arrays TWCManager's stray tuples made of them;
* the scheduled hours are float hours (22.5 for 22:30; TWCManager cut the start to 22).

Not carried (no twcmaster counterpart): ``chargeTime`` is always ``"--:--:--"`` (the snapshot
has no charging start yet), the per-vehicle ``lastAtHome`` / ``lastBatterySOC`` /
``lastChargeLimit`` / ``lastTimeToFullCharge`` are left out (as TWCManager does for a TWC
without a known vehicle), flex start is never on, ``currentServerTime`` is not sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twcmaster.config.policyrules import WEBHOOK_EVENTS, PolicyRules, group_lists, rule_json
from twcmaster.outputs.views import energy_figures
from twcmaster.policies import POLICIES, POLICY_MIN_GREEN, POLICY_NO_MATCH

if TYPE_CHECKING:  # an output reads the snapshot; it never imports the core's machinery
    from twcmaster.config import AppConfig
    from twcmaster.core import SlaveSnapshot, Snapshot
    from twcmaster.settings import RuntimeSettings, ScheduleWindow

__all__ = [
    "active_policy_action",
    "consumption_offsets_json",
    "policy_json",
    "slave_twcs_json",
    "status_json",
]

CHARGE_NOW, SCHEDULED, GREEN, NON_SCHEDULED = POLICIES
#: Budget names that are no policy: before the first decision, the policy failed, the
#: user's rules have not matched yet.
NO_POLICY = ("starting", "error", POLICY_NO_MATCH)

# getActivePolicyAction's answers (nonScheduledAction's numbers).
ACTION_FIXED_RATE = 1
ACTION_DO_NOT_CHARGE = 2
ACTION_TRACK_GREEN = 3

NO_CHARGE_TIME = "--:--:--"  # TWCManager's chargeTime of a TWC not charging
FLEX_BATTERY_KWH = 100  # TWCManager's scheduledAmpsBatterySize default (flex is never on here)
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _number(value: float, digits: int = 2) -> int | float:
    """Rounded; whole numbers as ints (16, not 16.0), as TWCManager writes its settings."""
    rounded = round(float(value), digits)
    return int(rounded) if rounded.is_integer() else rounded


# --------------------------------------------------------------------------- getStatus


def status_json(snapshot: Snapshot, config: AppConfig, *, now_epoch: float) -> dict[str, Any]:
    """``GET /api/getStatus``."""
    budget = snapshot.budget
    data: dict[str, Any] = {
        "carsCharging": sum(1 for s in snapshot.slaves if s.car_charging),
        "chargerLoadWatts": _number(sum(s.charger_load_w for s in snapshot.slaves)),
        "chargerLoadAmps": _number(snapshot.total_actual_amps),
        "currentPolicy": budget.policy,
        "maxAmpsToDivideAmongSlaves": _number(budget.amps),
        **_energy_json(snapshot, config),
        "isGreenPolicy": "Yes" if budget.policy == GREEN or budget.tracks_green else "No",
        **_schedule_json(snapshot.settings),
    }
    data |= _charge_now_json(snapshot.settings, now_epoch)
    return data


def _energy_json(snapshot: Snapshot, config: AppConfig) -> dict[str, int | float]:
    """Generation and consumption, watts and amps: the console's figures while tracking
    green (what the decision used, offsets included); else the site's reading converted
    with TWCManager's rule (watts / (volts x phases)); else 0."""
    figures = energy_figures(snapshot)
    if figures is None:
        return dict.fromkeys(
            ("consumptionAmps", "consumptionWatts", "generationAmps", "generationWatts"), 0
        )
    if figures.generation_a is not None and figures.consumption_a is not None:
        generation_a, consumption_a = figures.generation_a, figures.consumption_a
    else:
        site_volts = snapshot.site.voltage_v if snapshot.site is not None else None
        volts_x_phases = (site_volts or config.default_voltage_v) * config.number_of_phases
        generation_a = _number(figures.generation_w / volts_x_phases)
        consumption_a = _number(figures.consumption_w / volts_x_phases)
    return {
        "consumptionAmps": consumption_a,
        "consumptionWatts": _number(figures.consumption_w),
        "generationAmps": generation_a,
        "generationWatts": _number(figures.generation_w),
    }


def _first_window(settings: RuntimeSettings | None) -> ScheduleWindow | None:
    """TWCManager knows one scheduled window: the first of twcmaster's."""
    if settings is None or not settings.schedule:
        return None
    return settings.schedule[0]


def _schedule_json(settings: RuntimeSettings | None) -> dict[str, Any]:
    window = _first_window(settings)
    start_h = _number(window.start_hour, 4) if window else -1
    end_h = _number(window.end_hour, 4) if window else -1
    start_min = round(window.start_hour * 60) if window else -1
    end_min = round(window.end_hour * 60) if window else -1
    bitmap = window.days_bitmap if window else 0
    days = {day: bool(bitmap & (1 << i)) for i, day in enumerate(DAYS)}
    flex_days = {"flex" + day.capitalize(): on for day, on in days.items()}
    return {
        "scheduledChargingStartHour": start_h,
        "scheduledChargingFlexStart": start_h,  # flex start is never on: the start itself
        "scheduledChargingEndHour": end_h,
        "ScheduledCharging": {
            "enabled": window is not None,
            "amps": _number(window.amps) if window else 0,
            "startingMinute": start_min,
            "endingMinute": end_min,
            **days,
            "flexStartEnabled": 0,  # TWCManager's int flag
            "flexStartingMinute": start_min,
            "flexEndingMinute": end_min,
            **flex_days,
            "flexBatterySize": FLEX_BATTERY_KWH,
        },
    }


def _charge_now_json(settings: RuntimeSettings | None, now_epoch: float) -> dict[str, Any]:
    """Only while Charge Now runs (TWCManager sent ``chargeNowAmps`` even after it ended)."""
    if settings is None or not settings.charge_now_active(now_epoch):
        return {}
    return {
        "chargeNowAmps": _number(settings.charge_now_amps),
        "chargeNowTimeEnd": _number(settings.charge_now_end_epoch, 3),
    }


# --------------------------------------------------------------------------- getSlaveTWCs


def slave_twcs_json(snapshot: Snapshot) -> dict[str, Any]:
    """``GET /api/getSlaveTWCs``: one entry per TWC by its TWCID, plus ``total``."""
    data: dict[str, Any] = {s.twcid: _slave_json(s) for s in snapshot.slaves}
    data["total"] = _total_json(snapshot.slaves)
    return data


def _slave_json(slave: SlaveSnapshot) -> dict[str, Any]:
    volts = slave.voltages or (0, 0, 0)
    return {
        "TWCID": slave.twcid,
        "carsCharging": int(slave.car_charging),  # TWCManager's isCharging: 0 or 1
        "chargerLoadInW": round(slave.charger_load_w),
        "currentVIN": slave.vin or "",
        "lastAmpsOffered": _number(slave.offer_amps),
        "lastHeartbeat": _number(slave.seconds_since_reply),  # seconds since it last replied
        "lastVIN": slave.last_vin or "",
        "lifetimekWh": slave.lifetime_kwh or 0,
        "maxAmps": float(slave.max_amps),
        "reportedAmpsActual": float(round(slave.actual_amps, 2)),
        "state": slave.state,
        "version": slave.protocol,
        "voltsPhaseA": volts[0],
        "voltsPhaseB": volts[1],
        "voltsPhaseC": volts[2],
        "chargeTime": NO_CHARGE_TIME,
    }


def _total_json(slaves: tuple[SlaveSnapshot, ...]) -> dict[str, Any]:
    return {
        "carsCharging": sum(int(s.car_charging) for s in slaves),
        "lastAmpsOffered": _number(sum(s.offer_amps for s in slaves)),
        "lifetimekWh": sum(s.lifetime_kwh or 0 for s in slaves),
        # The bottleneck: the smallest TWC's maximum (TWCManager's rule), 0 without TWCs.
        "maxAmps": min((float(s.max_amps) for s in slaves), default=0),
        "reportedAmpsActual": _number(sum(s.actual_amps for s in slaves)),
        "TWCID": "total",
    }


# --------------------------------------------------------------------------- policy


def active_policy_action(snapshot: Snapshot) -> int | None:
    """``GET /api/getActivePolicyAction``: 1 charging at a fixed rate, 2 not charging,
    3 tracking green energy (Min + Green Energy too: it tracks the surplus above the floor);
    None before the first decision."""
    budget = snapshot.budget
    if budget.policy in NO_POLICY:
        return None
    if budget.policy in (GREEN, POLICY_MIN_GREEN) or budget.tracks_green:
        return ACTION_TRACK_GREEN
    return ACTION_FIXED_RATE if budget.amps > 0 else ACTION_DO_NOT_CHARGE


def policy_json(config: AppConfig) -> list[dict[str, Any]]:
    """``GET /api/getPolicy``: the rules in the order they are tried, in TWCManager's rule
    shape (``name``, ``match`` / ``condition`` / ``value``, and ``charge_amps`` or the green
    task): TWCManager's default table (``control/policy.py`` says how it applies) with the
    config's ``policy.extend`` rules, restrictions and webhooks in it, or its
    ``policy.override``. A policy forced by hand (``POST /api/setPolicy``) is in getStatus."""
    rules = config.policy_rules
    if rules.override:
        return [rule_json(rule) for rule in rules.override]
    charge_now, scheduled, green, non_scheduled, green_night = _builtin_policy_json(config)
    for entry in (charge_now, scheduled, green, non_scheduled):  # the first of each name
        _with_extensions(entry, rules)
    return [
        *map(rule_json, rules.emergency), charge_now, *map(rule_json, rules.before), scheduled,
        green, *map(rule_json, rules.after), non_scheduled, green_night,
    ]  # fmt: skip


def _with_extensions(entry: dict[str, Any], rules: PolicyRules) -> None:
    """A built-in rule with the config's restrictions appended and its webhooks."""
    restriction = rules.restriction(entry["name"])
    if restriction is not None:
        lists = group_lists(restriction)
        for key, more in zip(("match", "condition", "value"), lists, strict=True):
            entry[key] += more
    hooks = rules.builtin_webhooks(entry["name"])
    if hooks:
        entry["webhooks"] = {
            event: hooks.url(event) for event in WEBHOOK_EVENTS if hooks.url(event)
        }


def _builtin_policy_json(config: AppConfig) -> list[dict[str, Any]]:
    """TWCManager's default table, as twcmaster applies it."""
    green = {
        "background_task": "checkGreenEnergy",
        "allowed_flex": "config.greenEnergyFlexAmps",
    }
    if config.green_energy_latch_min > 0:
        green["latch_period"] = _number(config.green_energy_latch_min)
    return [
        _rule(
            CHARGE_NOW,
            [("settings.chargeNowAmps", "gt", 0), ("settings.chargeNowTimeEnd", "gt", "now")],
            charge_amps="settings.chargeNowAmps",
        ),
        _rule(
            SCHEDULED,
            [("checkScheduledCharging()", "eq", 1)],
            charge_amps="settings.scheduledAmpsMax",
        ),
        _rule(
            GREEN,
            [
                ("tm_hour", "gte", "settings.sunrise"),
                ("tm_hour", "lt", "settings.sunset"),
                ("settings.hourResumeTrackGreenEnergy", "lte", "tm_hour"),
                ("settings.nonScheduledAction", "ne", ACTION_DO_NOT_CHARGE),
            ],
            **green,
        ),
        _rule(
            NON_SCHEDULED,
            [("settings.nonScheduledAction", "lt", ACTION_TRACK_GREEN)],
            charge_amps="settings.nonScheduledAmpsMax",
        ),
        _rule(GREEN, [("settings.nonScheduledAction", "eq", ACTION_TRACK_GREEN)], **green),
    ]


def _rule(name: str, tests: list[tuple[str, str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": [match for match, _, _ in tests],
        "condition": [condition for _, condition, _ in tests],
        "value": [value for _, _, value in tests],
        **extra,
    }


def consumption_offsets_json(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """``GET /api/getConsumptionOffsets``: ``{name: {value, unit}}``."""
    settings = snapshot.settings
    if settings is None:
        return {}
    return {
        o.name: {"value": _number(o.value, 6), "unit": o.unit} for o in settings.consumption_offsets
    }
