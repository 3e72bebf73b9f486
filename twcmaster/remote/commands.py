"""The one way a change comes in from outside: MQTT control, the HTTP API, the web page.

Each edge parses its own wire format (MQTT text, JSON) into the plain values these methods
take, with the parsers below, so every edge validates the same way and names the same field.
A method checks everything first, then makes the whole change in one settings-store write
(persisted atomically), then asks the daemon to decide again at once. A bad value raises
``CommandRejected`` naming the field and changes nothing.

Runs on the daemon's event loop only (the settings store has no locks): an edge on another
thread (paho's network thread) hands its call over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from twcmaster.config import AppConfig
from twcmaster.config.limits import MAX_PRIORITY
from twcmaster.logs import get_logger
from twcmaster.numbers import finite_number
from twcmaster.policies import canonical_policy
from twcmaster.settings import (
    FORCEABLE_POLICIES,
    MAX_CHARGE_NOW_S,
    SettingsError,
    SettingsSaveError,
    SettingsStore,
)

__all__ = [
    "AUTO_POLICY",
    "CommandRejected",
    "RemoteControl",
    "parse_bool",
    "parse_number",
    "parse_twcid",
]

AUTO_POLICY = "Auto"  # the mode select's "no policy forced: the rules decide"
MAX_OFFSET_NAME_CHARS = 32  # TWCManager's web form limit


class CommandRejected(ValueError):
    """A command that was not applied. ``field``: the input field (or settings key) at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# --------------------------------------------------------------------------- value parsers


def parse_number(field: str, value: Any, low: float, high: float) -> float:
    """A finite number in [low, high] (``numbers.finite_number``'s rule: numeric text such as
    TWCManager's clients send is accepted; booleans, NaN and infinities are not)."""
    number = finite_number(value)
    if number is None:
        raise CommandRejected(field, f"expected a number, got {_show(value)}")
    if not low <= number <= high:
        raise CommandRejected(field, f"expected {low:g} to {high:g}, got {number:g}")
    return number


def parse_bool(field: str, value: Any) -> bool:
    """true/false, 1/0, "on"/"off", "true"/"false", "ON"/"OFF" (Home Assistant's switch)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "on", "yes", "allow"):
            return True
        if text in ("0", "false", "off", "no", "deny"):
            return False
    raise CommandRejected(field, f"expected true or false (on/off), got {_show(value)}")


def parse_twcid(field: str, value: Any) -> str:
    if isinstance(value, str) and len(value) == 4:
        try:
            int(value, 16)
            return value.upper()
        except ValueError:
            pass
    raise CommandRejected(field, f"expected a TWCID of 4 hex digits, got {_show(value)}")


def _non_scheduled_action(value: Any) -> int:
    number = parse_number("nonScheduledAction", value, 1, 3)
    if number != int(number):
        raise CommandRejected("nonScheduledAction", f"expected 1, 2 or 3, got {value!r}")
    return int(number)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- the commands


class RemoteControl:
    """Validated changes to the runtime settings. ``on_change``: called after every applied
    change (the daemon decides again at once). ``wallclock``: epoch seconds (Charge Now's end).
    """

    def __init__(
        self,
        store: SettingsStore,
        config: AppConfig,
        *,
        on_change: Callable[[], None] | None = None,
        wallclock: Callable[[], float] = time.time,
        log: Any = None,
    ) -> None:
        self.store = store
        self.config = config
        self.on_change = on_change
        self.wallclock = wallclock
        self.log = log or get_logger("twcmaster.control")

    @property
    def wiring_max_amps(self) -> float:
        return float(self.config.wiring.max_amps_all_twcs)

    # -- TWCManager's commands

    def charge_now(self, amps: Any, seconds: Any, *, source: str) -> str:
        """Charge Now at ``amps`` (the total for all TWCs) for ``seconds``."""
        amps_a = parse_number("amps", amps, 1, self.wiring_max_amps)
        seconds_s = parse_number("seconds", seconds, 1.0, MAX_CHARGE_NOW_S)
        what = f"Charge Now at {amps_a:g}A for {seconds_s:g}s"
        return self._apply(
            source, what, lambda: self.store.charge_now(amps_a, seconds_s, self.wallclock())
        )

    def charge_now_preset(self) -> tuple[float, float]:
        """(amps, seconds) a bare Charge Now starts: the preset, else the wiring limit for
        an hour."""
        return self.store.settings.charge_now_preset(self.wiring_max_amps)

    def charge_now_with_preset(self, *, source: str) -> str:
        amps, seconds = self.charge_now_preset()
        return self.charge_now(amps, seconds, source=source)

    def set_charge_now_preset(self, amps: Any = None, seconds: Any = None, *, source: str) -> str:
        amps_a = None if amps is None else parse_number("amps", amps, 1, self.wiring_max_amps)
        seconds_s = (
            None if seconds is None else parse_number("seconds", seconds, 1, MAX_CHARGE_NOW_S)
        )
        what = f"Charge Now preset {amps_a or '-'}A {seconds_s or '-'}s"
        return self._apply(
            source, what, lambda: self.store.set_charge_now_preset(amps_a, seconds_s)
        )

    def cancel_charge_now(self, *, source: str) -> str:
        what = "Charge Now cancelled"
        return self._apply(source, what, self.store.cancel_charge_now)

    def set_non_scheduled_amps(self, amps: Any, *, source: str) -> str:
        amps_a = parse_number("nonScheduledAmpsMax", amps, 0, self.wiring_max_amps)
        what = f"nonScheduledAmpsMax {amps_a:g}A"
        return self._apply(source, what, lambda: self.store.set_non_scheduled_amps(amps_a))

    def set_non_scheduled_action(self, action: Any, *, source: str) -> str:
        number = _non_scheduled_action(action)
        what = f"nonScheduledAction {number}"
        return self._apply(source, what, lambda: self.store.set_non_scheduled_action(number))

    def set_non_scheduled(self, action: Any = None, amps: Any = None, *, source: str) -> list[str]:
        """Non Scheduled Charging's action and fixed rate together (None: leave it): both
        are checked before either is applied, so a bad one changes nothing."""
        if action is not None:
            _non_scheduled_action(action)
        if amps is not None:
            parse_number("nonScheduledAmpsMax", amps, 0, self.wiring_max_amps)
        applied = []
        if action is not None:
            applied.append(self.set_non_scheduled_action(action, source=source))
        if amps is not None:
            applied.append(self.set_non_scheduled_amps(amps, source=source))
        return applied

    def set_schedule(
        self, amps: Any, start_minute: Any, end_minute: Any, days_bitmap: Any, *, source: str
    ) -> str:
        """TWCManager's one scheduled window (its setScheduledChargingSettings): minutes of
        the day; 0 amps or a -1 minute switches it off."""
        amps_a = parse_number("amps", amps, 0, self.wiring_max_amps)
        start = parse_number("startingMinute", start_minute, -1, 1440)
        end = parse_number("endingMinute", end_minute, -1, 1440)
        days = parse_number("days", days_bitmap, 0, 127)
        off = amps_a == 0 or start == -1 or end == -1 or days == 0
        start_h, end_h = (-1.0, -1.0) if off else (start / 60, end / 60)
        bitmap = int(days) if not off else 0x7F
        what = "scheduled charging off" if off else f"scheduled charging at {amps_a:g}A"
        return self._apply(
            source,
            what,
            lambda: self.store.set_twcmanager_schedule(
                0 if off else amps_a, start_h, end_h, bitmap
            ),
        )

    def add_consumption_offset(self, name: Any, value: Any, unit: Any, *, source: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise CommandRejected("offsetName", f"expected a name, got {_show(name)}")
        if len(name) >= MAX_OFFSET_NAME_CHARS:
            raise CommandRejected("offsetName", f"expected under {MAX_OFFSET_NAME_CHARS} chars")
        if unit not in ("A", "W"):
            raise CommandRejected("offsetUnit", f'expected "A" or "W", got {_show(unit)}')
        bound = self.wiring_max_amps * 10 if unit == "A" else 1_000_000.0
        number = parse_number("offsetValue", value, -bound, bound)
        what = f"consumption offset {name} {number:g}{unit}"
        return self._apply(
            source, what, lambda: self.store.set_consumption_offset(name, number, unit)
        )

    def delete_consumption_offset(self, name: Any, *, source: str) -> str:
        if not isinstance(name, str) or name not in self.offset_names():
            raise CommandRejected("offsetName", f"no such offset: {_show(name)}")
        what = f"consumption offset {name} deleted"
        return self._apply(source, what, lambda: self.store.delete_consumption_offset(name))

    def offset_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.store.settings.consumption_offsets)

    def set_home_location(self, lat: Any, lon: Any, *, source: str) -> str:
        lat_d = parse_number("lat", lat, -90, 90)
        lon_d = parse_number("lon", lon, -180, 180)
        what = f"home location {lat_d:g},{lon_d:g}"
        return self._apply(source, what, lambda: self.store.set_home_location(lat_d, lon_d))

    # -- twcmaster's

    def set_policy(self, policy: Any, *, source: str) -> str:
        """Force one of ``FORCEABLE_POLICIES`` (or an alias: ``policies.canonical_policy``, e.g.
        evcc's ``minpv``); ``AUTO_POLICY`` (or None): the rules decide."""
        if policy is None or policy == AUTO_POLICY:
            chosen = None
        elif canonical_policy(policy) is not None:
            chosen = canonical_policy(policy)
        else:
            choices = ", ".join((AUTO_POLICY, *FORCEABLE_POLICIES))
            raise CommandRejected("policy", f"expected one of {choices}; got {_show(policy)}")
        what = f"policy {chosen or AUTO_POLICY}"
        return self._apply(source, what, lambda: self.store.set_forced_policy(chosen))

    def set_twc_allowed(self, twcid: Any, allowed: Any, *, source: str) -> str:
        twc = parse_twcid("twcid", twcid)
        permit = parse_bool("allowed", allowed)
        what = f"TWC {twc} charging {'allowed' if permit else 'switched off'}"
        return self._apply(source, what, lambda: self.store.set_twc_allowed(twc, permit))

    def set_charge_priority(self, twcid: Any, priority: Any, *, source: str) -> str:
        """The TWC's charge priority (a whole number, higher first); null or "" goes back to
        config.json's chargePriority for it."""
        twc = parse_twcid("twcid", twcid)
        chosen: int | None = None
        if priority is not None and priority != "":
            number = parse_number("priority", priority, -MAX_PRIORITY, MAX_PRIORITY)
            if number != int(number):
                raise CommandRejected("priority", f"expected a whole number, got {_show(priority)}")
            chosen = int(number)
        what = f"TWC {twc} priority {chosen if chosen is not None else 'from config.json'}"
        return self._apply(source, what, lambda: self.store.set_charge_priority(twc, chosen))

    # -- applying

    def _apply(self, source: str, what: str, change: Callable[[], None]) -> str:
        """Make the change (the store validates again and writes once), then decide again.
        A save that fails leaves the change in force until restart: said, not undone."""
        try:
            change()
        except SettingsError as error:
            raise CommandRejected(error.key, error.message) from None
        except SettingsSaveError as error:
            self.log.error("control: applied but not saved", source=source, error=str(error))
            what += " (applied, but settings.json could not be saved)"
        else:
            self.log.info(f"control: {what}", source=source)
        if self.on_change is not None:
            self.on_change()
        return what


def rejected_text(error: CommandRejected) -> str:
    return f"{error.field}: {error.message}"


def fields(payload: Mapping[str, Any], *names: str) -> tuple[Any, ...]:
    """``payload[name]`` for each name; a missing one is rejected naming it."""
    missing = [name for name in names if name not in payload]
    if missing:
        raise CommandRejected(missing[0], "missing")
    return tuple(payload[name] for name in names)
