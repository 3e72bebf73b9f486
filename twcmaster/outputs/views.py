"""The one ``Snapshot`` as plain JSON data, for every output that speaks JSON: the MQTT state
topic, ``GET /api/v1/snapshot``, ``twcmaster status --json`` (and the web page later).

One function builds it so the numbers cannot differ between them; the console's words for
the green budget (``green_lines``) are in it too, so a script sees what a person sees. Field
names are snake_case with units (``_a``, ``_w``, ``_v``, ``_kwh``, ``_s``); the TWCManager
shapes (``/api/getStatus``...) are built from the same snapshot elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twcmaster.outputs.console import green_lines

if TYPE_CHECKING:
    from twcmaster.carview import CarStatus
    from twcmaster.core import SlaveSnapshot, Snapshot

__all__ = ["SNAPSHOT_FORMAT", "EnergyFigures", "energy_figures", "snapshot_json", "slave_json"]

SNAPSHOT_FORMAT = 1  # bumped when a field changes meaning or goes away


@dataclass(frozen=True)
class EnergyFigures:
    """The site's energy as every output shows it (``energy_figures``)."""

    generation_w: float
    consumption_w: float  # with offsets and the chargers' load taken as the decision did
    surplus_w: float
    grid_w: float | None  # + import / - export, when the meter says
    # The console's amps (exact centiamps); None for a bare reading (no decision used it).
    generation_a: float | None = None
    consumption_a: float | None = None
    surplus_a: float | None = None
    stale: bool = False  # a bare reading that is too old to decide on


def energy_figures(snapshot: Snapshot) -> EnergyFigures | None:
    """The green decision's figures (the console's) while tracking green; else the energy
    sources' reading as it came; None while neither exists."""
    green, site = snapshot.budget.green, snapshot.site
    grid_w = site.grid_w if site is not None else None
    if green is not None:
        return EnergyFigures(
            green.generation_w,
            green.consumption_w,
            green.surplus_w,
            grid_w,
            green.generation_centiamps / 100,
            green.consumption_centiamps / 100,
            green.surplus_centiamps / 100,
        )
    if site is None:
        return None
    surplus_w = site.generation_w - site.consumption_w
    return EnergyFigures(site.generation_w, site.consumption_w, surplus_w, grid_w, stale=site.stale)


def slave_json(slave: SlaveSnapshot) -> dict[str, Any]:
    return {
        "twcid": slave.twcid,
        "protocol": slave.protocol,
        "state": slave.state,
        "state_name": slave.state_name,
        "car_charging": slave.car_charging,
        "charging_allowed": slave.charging_allowed,
        "priority": slave.priority,
        "actual_amps": round(slave.actual_amps, 2),
        "allowed_amps": round(slave.allowed_amps, 2),
        "offer_amps": slave.offer_amps,
        "desired_amps": round(slave.desired_amps, 2),
        "offer_reason": slave.offer_reason,
        "max_amps": round(slave.max_amps, 2),
        "charger_load_w": round(slave.charger_load_w),
        "session_kwh": slave.session_kwh,
        "vin": slave.vin,
        "last_vin": slave.last_vin,
        "lifetime_kwh": slave.lifetime_kwh,
        "voltages_v": list(slave.voltages) if slave.voltages is not None else None,
        "seconds_since_reply": slave.seconds_since_reply,
        "car_command": slave.car_command,
    }


def _green_json(snapshot: Snapshot) -> dict[str, Any] | None:
    green = snapshot.budget.green
    if green is None:
        return None
    return {
        "generation_w": round(green.generation_w),
        "consumption_w": round(green.consumption_w),
        "charger_load_w": round(green.charger_load_w),
        "surplus_w": round(green.surplus_w),
        "generation_a": green.generation_centiamps / 100,
        "consumption_a": green.consumption_centiamps / 100,
        "surplus_a": green.surplus_centiamps / 100,
        "budget_a": round(green.amps, 2),
        "voltage_v": round(green.voltage_v, 1),
        "voltage_source": green.voltage_source,
        "floor_a": green.floor_amps,
    }


def _grid_cap_json(cap: Any) -> dict[str, Any] | None:
    """How maxAmpsAllowedFromGrid bore on the budget (None: not configured)."""
    if cap is None:
        return None
    headroom = cap.headroom_amps
    return {
        "max_amps_from_grid": cap.max_amps,
        "headroom_a": None if headroom is None else round(headroom, 2),
        "capped": cap.capped,
        "problem": cap.problem,
    }


def _site_json(snapshot: Snapshot) -> dict[str, Any] | None:
    site = snapshot.site
    if site is None:
        return None
    return {
        "generation_w": round(site.generation_w),
        "consumption_w": round(site.consumption_w),
        "grid_w": round(site.grid_w) if site.grid_w is not None else None,
        "voltage_v": site.voltage_v,
        "stale": site.stale,
        "reason": site.reason,
        "sources": list(site.sources),
    }


def _settings_json(snapshot: Snapshot) -> dict[str, Any] | None:
    s = snapshot.settings
    if s is None:
        return None
    return {
        "charge_now_amps": s.charge_now_amps,
        "charge_now_end_epoch": s.charge_now_end_epoch,
        "forced_policy": s.forced_policy,
        "non_scheduled_action": s.non_scheduled_action,
        "non_scheduled_amps_max": s.non_scheduled_amps_max,
        "schedule": [w.to_json() for w in s.schedule],
        "consumption_offsets": {
            o.name: {"value": o.value, "unit": o.unit} for o in s.consumption_offsets
        },
        "denied_twcids": sorted(s.denied_twcids),
        "sunrise_hour": s.sunrise_hour,
        "sunset_hour": s.sunset_hour,
    }


def _car_json(car: CarStatus) -> dict[str, Any]:
    """Every field of the car's status, by its name."""
    out = {f.name: getattr(car, f.name) for f in dataclasses.fields(car)}
    out["calls_today"] = dict(car.calls_today)
    return out


def _cars_json(snapshot: Snapshot) -> dict[str, Any] | None:
    """The car module (None: none configured). Never a token: the view holds none."""
    view = snapshot.cars
    if view is None:
        return None
    return {
        "state": view.state,
        "message": view.message,
        "usable": view.usable,
        "calls_today": dict(view.calls_today),
        "cars": [_car_json(car) for car in view.cars],
    }


def snapshot_json(snapshot: Snapshot, *, time_epoch: float) -> dict[str, Any]:
    """The whole snapshot. ``time_epoch``: the wall-clock moment it shows."""
    budget = snapshot.budget
    slaves = snapshot.slaves
    return {
        "format": SNAPSHOT_FORMAT,
        "time_epoch": round(time_epoch, 3),
        "link_up": snapshot.link_up,
        "policy": budget.policy,
        "budget": {
            "amps": round(budget.amps, 2),
            "policy": budget.policy,
            "reason": budget.reason,
            "stale": budget.stale,
            "problem": budget.problem,
            "max_cars": budget.max_cars,
            "console_lines": list(green_lines(budget)),
            "grid_cap": _grid_cap_json(budget.grid_cap),
        },
        "green": _green_json(snapshot),
        "site": _site_json(snapshot),
        "totals": {
            "actual_amps": round(snapshot.total_actual_amps, 2),
            "offer_amps": snapshot.total_offer_amps,
            "charger_load_w": round(sum(s.charger_load_w for s in slaves)),
            "cars_charging": sum(1 for s in slaves if s.car_charging),
        },
        "slaves": [slave_json(s) for s in slaves],
        "settings": _settings_json(snapshot),
        "cars": _cars_json(snapshot),
        "alarms": list(snapshot.alarms),
        "internal_errors": snapshot.internal_errors,
    }
