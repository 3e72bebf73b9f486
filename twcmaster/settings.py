"""Runtime settings: ``<settingsPath>/settings.json``, TWCManager-compatible, saved atomically.

``config.json`` is what the user writes once; ``settings.json`` is what the daemon changes while
it runs (charge-now, the schedule, the non-scheduled action, consumption offsets), so the two
stay apart, as in TWCManager. Users move from TWCManager with their file, so:

* the keys and their meaning are TWCManager's (``chargeNowAmps``, ``chargeNowTimeEnd`` in epoch
  seconds, ``scheduledAmpsMax``, ``scheduledAmpsStartHour`` / ``EndHour`` as float hours with
  -1 = off, ``scheduledAmpsDaysBitmap`` Mon=1 ... Sun=64, ``nonScheduledAction`` 1/2/3,
  ``hourResumeTrackGreenEnergy``, ``consumptionOffset``, ``sunrise`` / ``sunset`` ...);
* TWCManager's habit of writing numbers as strings ("16") is accepted;
* keys we do not know (tokens, history, vehicle groups ... TWCManager writes many) are kept
  and written back untouched.

twcmaster adds ``scheduledWindows``, a list of weekly windows. TWCManager knows one window; it
maps to the first entry: every save mirrors the first window into TWCManager's keys, and when
those keys no longer match the first window on load (TWCManager or a hand edit changed them),
they win and replace it.

Reading never fails: a missing file gives the defaults; a file that cannot be used (not JSON,
not an object, a key written twice, nested too deep, over ``SETTINGS_MAX_BYTES``, a FIFO or a
device rather than a regular file) is moved aside to ``settings.json.corrupt-<time>`` (never
overwritten silently) and gives the defaults; a bad value gives that key's default; each case
logs a warning naming the file or key. Setters validate strictly and raise ``SettingsError``
naming the key. Writes are atomic: a temp file in the same folder, fsync, rename, fsync of the
folder; temp files left by a save cut short (kill -9, power loss) are removed at start-up.

Nothing here reads a clock for decisions: ``charge_now`` takes ``now_epoch``. The store is fed
and read by the daemon's event loop only (no locks).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from twcmaster.config import (
    MAX_NESTING_DEPTH,
    DuplicateKeysError,
    FileRejectedError,
    describe_value,
    loads_without_duplicates,
    nesting_too_deep_at,
    read_regular_file,
)
from twcmaster.config.limits import MAX_PRIORITY
from twcmaster.logs import get_logger
from twcmaster.numbers import finite_number
from twcmaster.policies import FORCEABLE_POLICIES

__all__ = [
    "ALL_DAYS",
    "ConsumptionOffsetSetting",
    "RuntimeSettings",
    "ScheduleWindow",
    "SettingsError",
    "SettingsSaveError",
    "SettingsStore",
    "SETTINGS_FILE_NAME",
    "SETTINGS_MAX_BYTES",
]

SETTINGS_FILE_NAME = "settings.json"
# TWCManager's file is a few kB; its largest part, two days of 5-minute history, ~25 kB.
SETTINGS_MAX_BYTES = 256 * 1024
_TEMP_SUFFIX = ".tmp"
_TEMP_RANDOM = "[a-z0-9_]{8}"  # the random part tempfile.mkstemp puts in a name
ALL_DAYS = 0x7F  # Mon=1, Tue=2, Wed=4, Thu=8, Fri=16, Sat=32, Sun=64
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

NON_SCHEDULED_FIXED = 1  # charge at nonScheduledAmpsMax
NON_SCHEDULED_DO_NOT_CHARGE = 2
NON_SCHEDULED_TRACK_GREEN = 3

# The policies a user may force over the rules (policies.py): TWCManager's and Min + Green
# Energy. FORCEABLE_POLICIES is imported from here by the edges.
UNKNOWN_COORDINATE = 10000  # TWCManager's homeLat / homeLon before the location is known

MAX_CHARGE_NOW_S = 7 * 86400  # the longest Charge Now
DEFAULT_CHARGE_NOW_S = 3600.0  # a bare Charge Now without a preset: an hour
MAX_AMPS = 1000.0  # A; sanity bound for any amps value in the file
MAX_OFFSET_W = 1_000_000.0  # W; sanity bound for a consumption offset

# TWCManager's defaults for the keys twcmaster reads (TWCMaster.settings and loadSettings).
DEFAULTS: dict[str, Any] = {
    "chargeNowAmps": 0,
    "chargeNowTimeEnd": 0,
    "scheduledAmpsMax": 0,
    "scheduledAmpsStartHour": -1,
    "scheduledAmpsEndHour": -1,
    "scheduledAmpsDaysBitmap": ALL_DAYS,
    "nonScheduledAction": NON_SCHEDULED_FIXED,
    "hourResumeTrackGreenEnergy": -1,
    "sunrise": 6,
    "sunset": 20,
}


class SettingsError(ValueError):
    """A value cannot be stored. ``key`` is the settings.json key it was meant for."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class SettingsSaveError(OSError):
    """The change is applied in memory but could not be written to settings.json."""


# --------------------------------------------------------------------------- typed values


@dataclass(frozen=True)
class ScheduleWindow:
    """One weekly window of Scheduled Charging.

    ``start_hour`` / ``end_hour`` are float hours of local time (22.5 = 22:30). A window whose
    start is after its end crosses midnight and belongs to the day it starts on: Monday 22:00
    to 06:00 runs Monday 22:00 to Tuesday 06:00, and ``days_bitmap`` must name Monday.
    """

    amps: float
    start_hour: float
    end_hour: float
    days_bitmap: int = ALL_DAYS

    def __post_init__(self) -> None:
        _check_amps("amps", self.amps, minimum_exclusive=0.0)
        _check_hour("startHour", self.start_hour, upper=24.0, upper_inclusive=False)
        _check_hour("endHour", self.end_hour, upper=24.0, upper_inclusive=True)
        if self.start_hour == self.end_hour:
            raise SettingsError(
                "endHour", f"{self.end_hour:g} equals startHour: the window would be empty"
            )
        days = self.days_bitmap
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= ALL_DAYS:
            raise SettingsError(
                "daysBitmap", f"expected 1..127 (Mon=1, Tue=2 ... Sun=64), got {days!r}"
            )

    @property
    def crosses_midnight(self) -> bool:
        return self.start_hour > self.end_hour

    def contains(self, local_time: datetime) -> bool:
        """Whether ``local_time`` falls in this window (TWCManager's checkScheduledCharging)."""
        hour = _hour_of(local_time)
        today = local_time.weekday()  # Monday = 0, the bit 1 << 0
        if not self.crosses_midnight:
            return self.start_hour <= hour < self.end_hour and self._on(today)
        yesterday = (today - 1) % 7
        return (hour >= self.start_hour and self._on(today)) or (
            hour < self.end_hour and self._on(yesterday)
        )

    def _on(self, weekday: int) -> bool:
        return bool(self.days_bitmap & (1 << weekday))

    def describe(self) -> str:
        """ "Mon,Wed 22:00-06:00 at 16A"."""
        if self.days_bitmap == ALL_DAYS:
            days = "daily"
        else:
            days = ",".join(name for i, name in enumerate(DAY_NAMES) if self._on(i))
        return f"{days} {_clock(self.start_hour)}-{_clock(self.end_hour)} at {self.amps:g}A"

    def to_json(self) -> dict[str, Any]:
        return {
            "amps": _plain_number(self.amps),
            "startHour": _plain_number(self.start_hour),
            "endHour": _plain_number(self.end_hour),
            "daysBitmap": self.days_bitmap,
        }


@dataclass(frozen=True)
class ConsumptionOffsetSetting:
    """A named consumption offset (TWCManager's ``consumptionOffset``): a load the meter does
    not see (positive) or a source it does not see (negative), in amps or watts."""

    name: str
    value: float
    unit: str  # "A" or "W"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SettingsError("consumptionOffset", f"name: expected text, got {self.name!r}")
        key = f"consumptionOffset.{self.name}"
        if self.unit not in ("A", "W"):
            raise SettingsError(f"{key}.unit", f'expected "A" or "W", got {self.unit!r}')
        bound = MAX_AMPS if self.unit == "A" else MAX_OFFSET_W
        if not _is_number(self.value) or abs(self.value) > bound:
            raise SettingsError(
                f"{key}.value",
                f"expected a number from -{bound:g} to {bound:g}, got {self.value!r}",
            )


@dataclass(frozen=True)
class RuntimeSettings:
    """The typed view of settings.json that the policy reads (TWCManager defaults filled in)."""

    charge_now_amps: float = 0.0
    charge_now_end_epoch: float = 0.0
    schedule: tuple[ScheduleWindow, ...] = ()
    non_scheduled_action: int = NON_SCHEDULED_FIXED
    non_scheduled_amps_max: float | None = None  # None: absent from the file
    hour_resume_track_green_energy: float = -1.0
    sunrise_hour: float = 6.0
    sunset_hour: float = 20.0
    consumption_offsets: tuple[ConsumptionOffsetSetting, ...] = ()
    # twcmaster's: a policy chosen by hand (MQTT, HTTP) over the rules; None: the rules decide.
    forced_policy: str | None = None
    # twcmaster's: TWCs whose charging is switched off by hand (TWCID as 4 hex digits).
    denied_twcids: frozenset[str] = frozenset()
    # chargePriority set at run time (the web page, HTTP, MQTT): TWCID -> priority, higher
    # first; each entry wins over config.json's chargePriority for that TWC.
    charge_priority: tuple[tuple[str, int], ...] = ()
    # twcmaster's: what a bare "Charge Now" (Home Assistant's button) starts; None: the
    # wiring limit for an hour.
    charge_now_preset_amps: float | None = None
    charge_now_preset_s: float | None = None
    home_lat: float | None = None  # TWCManager's homeLat / homeLon; None: unknown (10000)
    home_lon: float | None = None

    def charge_now_preset(self, wiring_amps: float) -> tuple[float, float]:
        """(amps, seconds) a bare Charge Now starts (Home Assistant's button, an empty
        ``control/chargeNow``): the preset, else the wiring limit for an hour."""
        amps = min(self.charge_now_preset_amps or wiring_amps, wiring_amps)
        return amps, self.charge_now_preset_s or DEFAULT_CHARGE_NOW_S

    def fixed_rate(self, config_amps: float | None, wiring_amps: float) -> tuple[float, str]:
        """Non Scheduled Charging's fixed rate and where it comes from: settings.json's
        nonScheduledAmpsMax (what MQTT, HTTP or TWCManager set last), else config.json's,
        else 0 A: as in TWCManager, nothing charges outside the policies until it is set."""
        if self.non_scheduled_amps_max is not None:
            return min(self.non_scheduled_amps_max, wiring_amps), "nonScheduledAmpsMax"
        if config_amps is not None:
            return min(float(config_amps), wiring_amps), "nonScheduledAmpsMax (config)"
        return 0.0, "nonScheduledAmpsMax (not set)"

    def charge_now_active(self, now_epoch: float) -> bool:
        """TWCManager's rule: chargeNowAmps > 0 and now < chargeNowTimeEnd (> 0)."""
        return self.charge_now_amps > 0 and self.charge_now_end_epoch > max(now_epoch, 0.0)


# --------------------------------------------------------------------------------- store


class SettingsStore:
    """``<settingsPath>/settings.json``: load once, typed reads, validated atomic writes.

    ``path`` is the file (a folder is taken as ``<folder>/settings.json``). ``wallclock``
    (epoch seconds) only names a corrupt file kept aside. ``wiring_max_amps_all_twcs``
    (config.json's): amps above it are refused by the setters and, read from the file, used
    as the limit with a warning (the policy and the controller cap them too; this says so).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        log: Any = None,
        wallclock: Callable[[], float] = time.time,
        wiring_max_amps_all_twcs: float | None = None,
    ) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / SETTINGS_FILE_NAME
        self.path = path
        self._log = log if log is not None else get_logger("twcmaster.settings")
        self._wallclock = wallclock
        self._amps_limit = wiring_max_amps_all_twcs
        self._raw: dict[str, Any] = {}
        self._typed = RuntimeSettings()
        self._remove_stale_temp_files()
        self.reload()

    # -- reading ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """(Re)read the file; never raises for a missing, unreadable or corrupt file."""
        self._raw = self._read_file()
        self._typed = self._build(warn=True)

    @property
    def settings(self) -> RuntimeSettings:
        """The current typed settings (a frozen snapshot; cheap, no I/O)."""
        return self._typed

    def raw(self) -> dict[str, Any]:
        """A deep copy of everything the file holds, unknown keys included."""
        return copy.deepcopy(self._raw)

    def _read_file(self) -> dict[str, Any]:
        try:
            data = read_regular_file(self.path, SETTINGS_MAX_BYTES)
        except FileNotFoundError:
            self._log.warning(
                "settings file not found; starting with defaults (it is created on the first "
                "change)",
                path=str(self.path),
            )
            return {}
        except FileRejectedError as exc:
            self._set_aside(str(exc))
            return {}
        except OSError as exc:
            self._log.warning(
                "cannot read the settings file; starting with defaults",
                path=str(self.path),
                error=str(exc),
            )
            return {}
        try:
            parsed = _parse(data)
        except ValueError as exc:
            self._set_aside(str(exc))
            return {}
        if not isinstance(parsed, dict):
            self._set_aside(f"expected a JSON object {{...}}, found {type(parsed).__name__}")
            return {}
        return parsed

    def _remove_stale_temp_files(self) -> None:
        """Remove the temp files of saves cut short (kill -9, power loss) in our folder.

        Only names ``save`` makes (``.settings.json.<8 random>.tmp``) and only files. They are
        never read: the rename that would have made one the settings file did not happen.
        """
        ours = re.compile(re.escape(self._temp_prefix()) + _TEMP_RANDOM + re.escape(_TEMP_SUFFIX))
        removed = 0
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return  # no folder yet: nothing left behind either
        for entry in entries:
            if ours.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
        if removed:
            self._log.warning(
                "removed temp files of an interrupted save; the change being saved then was lost",
                folder=str(self.path.parent),
                removed=removed,
            )

    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _set_aside(self, problem: str) -> None:
        stamp = datetime.fromtimestamp(self._wallclock()).strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        counter = 1
        while target.exists():
            counter += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{counter}")
        try:
            os.replace(self.path, target)
        except OSError as exc:
            self._log.warning(
                "cannot use the settings file, nor move it aside; starting with defaults",
                path=str(self.path),
                problem=problem,
                error=str(exc),
            )
            return
        _fsync_dir(self.path.parent)
        self._log.warning(
            "cannot use the settings file; kept it aside and starting with defaults",
            path=str(self.path),
            kept_as=str(target),
            problem=problem,
        )

    def _build(self, warn: bool) -> RuntimeSettings:
        """The typed view of ``self._raw``; a bad value is logged (key named) and defaulted."""
        reader = _Reader(self._raw, self._log if warn else None, self._amps_limit)
        schedule = self._load_schedule(reader, warn)
        action = reader.whole("nonScheduledAction", NON_SCHEDULED_FIXED, lambda x: 1 <= x <= 3)
        non_scheduled_amps = None
        if self._raw.get("nonScheduledAmpsMax") is not None:
            non_scheduled_amps = reader.amps("nonScheduledAmpsMax", None)
        return RuntimeSettings(
            charge_now_amps=reader.amps("chargeNowAmps", 0.0),
            charge_now_end_epoch=reader.number("chargeNowTimeEnd", 0.0),
            schedule=schedule,
            non_scheduled_action=action,
            non_scheduled_amps_max=non_scheduled_amps,
            hour_resume_track_green_energy=reader.number(
                "hourResumeTrackGreenEnergy", -1.0, lambda x: -1 <= x <= 24
            ),
            sunrise_hour=reader.number("sunrise", 6.0, lambda x: 0 <= x <= 24),
            sunset_hour=reader.number("sunset", 20.0, lambda x: 0 <= x <= 24),
            consumption_offsets=reader.offsets(),
            forced_policy=reader.choice("forcedPolicy", FORCEABLE_POLICIES),
            denied_twcids=reader.denied_twcids(),
            charge_priority=reader.charge_priority(),
            charge_now_preset_amps=reader.amps("chargeNowPresetAmps", None),
            charge_now_preset_s=reader.number(
                "chargeNowPresetSeconds", None, lambda x: 0 < x <= MAX_CHARGE_NOW_S
            ),
            home_lat=reader.coordinate("homeLat", 90.0),
            home_lon=reader.coordinate("homeLon", 180.0),
        )

    def _load_schedule(self, reader: _Reader, warn: bool) -> tuple[ScheduleWindow, ...]:
        twc_window = _twcmanager_window(reader)
        listed = self._raw.get("scheduledWindows")
        if listed is None:
            return (twc_window,) if twc_window is not None else ()
        windows = reader.windows("scheduledWindows")
        first = windows[0] if windows else None
        if first == twc_window:
            return windows
        # TWCManager's keys were changed by something that does not know scheduledWindows
        # (TWCManager itself after a downgrade, a hand edit): the newer single window wins.
        if warn:
            self._log.info(
                "TWCManager's schedule keys differ from the first of scheduledWindows; "
                "using TWCManager's window in its place",
                path=str(self.path),
            )
        rest = windows[1:] if first is not None else windows
        return ((twc_window,) if twc_window is not None else ()) + rest

    # -- writing ---------------------------------------------------------------------------------

    def charge_now(self, amps: float, seconds: float, now_epoch: float) -> None:
        """Charge Now at ``amps`` (total budget) for ``seconds`` from ``now_epoch``."""
        _check_amps("chargeNowAmps", amps, minimum_exclusive=0.0)
        self._check_limit("chargeNowAmps", amps)
        if not _is_number(seconds) or not 0 < seconds <= MAX_CHARGE_NOW_S:
            raise SettingsError(
                "chargeNowTimeEnd", f"duration: expected 1 s to 7 days in seconds, got {seconds!r}"
            )
        if not _is_number(now_epoch) or now_epoch < 0:
            raise SettingsError(
                "chargeNowTimeEnd", f"now_epoch: expected epoch s, got {now_epoch!r}"
            )
        self._update(
            {"chargeNowAmps": _plain_number(amps), "chargeNowTimeEnd": now_epoch + seconds}
        )

    def cancel_charge_now(self) -> None:
        """End Charge Now (TWCManager's resetChargeNowAmps)."""
        self._update({"chargeNowAmps": 0, "chargeNowTimeEnd": 0})

    def set_schedule(self, windows: Iterable[ScheduleWindow]) -> None:
        """Replace every scheduled window; the first is mirrored into TWCManager's keys."""
        windows = tuple(windows)
        for index, window in enumerate(windows):
            if not isinstance(window, ScheduleWindow):
                raise SettingsError(
                    f"scheduledWindows[{index}]", f"expected a ScheduleWindow, got {window!r}"
                )
            self._check_limit(f"scheduledWindows[{index}].amps", window.amps)
        changes: dict[str, Any] = {"scheduledWindows": [w.to_json() for w in windows]}
        if windows:
            first = windows[0]
            changes |= {
                "scheduledAmpsMax": _plain_number(first.amps),
                "scheduledAmpsStartHour": _plain_number(first.start_hour),
                "scheduledAmpsEndHour": _plain_number(first.end_hour),
                "scheduledAmpsDaysBitmap": first.days_bitmap,
            }
        else:
            changes |= {"scheduledAmpsStartHour": -1, "scheduledAmpsEndHour": -1}
        self._update(changes)

    def set_twcmanager_schedule(
        self, amps: float, start_hour: float, end_hour: float, days_bitmap: int = ALL_DAYS
    ) -> None:
        """TWCManager's single window (its web UI / API): replaces the first window only.

        A start or end hour of -1, or 0 amps, switches that window off, as in TWCManager.
        """
        windows = list(self._typed.schedule)
        if amps == 0 or start_hour == -1 or end_hour == -1:
            new = None
            _check_amps("scheduledAmpsMax", amps, minimum_exclusive=None)
        else:
            try:
                new = ScheduleWindow(amps, start_hour, end_hour, days_bitmap)
            except SettingsError as exc:
                key = _TWC_SCHEDULE_KEYS.get(exc.key, exc.key)
                raise SettingsError(key, exc.message) from None
            self._check_limit("scheduledAmpsMax", amps)
        if new is None:
            windows = windows[1:]
        elif windows:
            windows[0] = new
        else:
            windows = [new]
        self.set_schedule(windows)

    def set_non_scheduled_action(self, action: int) -> None:
        """1 = charge at nonScheduledAmpsMax, 2 = do not charge, 3 = track green energy."""
        if isinstance(action, bool) or action not in (1, 2, 3):
            raise SettingsError(
                "nonScheduledAction",
                f"expected 1 (fixed amps), 2 (do not charge) or 3 (track green), got {action!r}",
            )
        self._update({"nonScheduledAction": action})

    def set_non_scheduled_amps(self, amps: float) -> None:
        _check_amps("nonScheduledAmpsMax", amps, minimum_exclusive=None)
        self._check_limit("nonScheduledAmpsMax", amps)
        self._update({"nonScheduledAmpsMax": _plain_number(amps)})

    def set_hour_resume_track_green_energy(self, hour: float) -> None:
        """Track green energy only from this hour on (-1: from sunrise)."""
        if hour != -1:
            _check_hour("hourResumeTrackGreenEnergy", hour, upper=24.0, upper_inclusive=True)
        self._update({"hourResumeTrackGreenEnergy": _plain_number(hour)})

    def set_sun_hours(self, sunrise_hour: float, sunset_hour: float) -> None:
        _check_hour("sunrise", sunrise_hour, upper=24.0, upper_inclusive=True)
        _check_hour("sunset", sunset_hour, upper=24.0, upper_inclusive=True)
        if sunrise_hour >= sunset_hour:
            raise SettingsError("sunset", f"{sunset_hour:g} is not after sunrise {sunrise_hour:g}")
        self._update({"sunrise": _plain_number(sunrise_hour), "sunset": _plain_number(sunset_hour)})

    def set_consumption_offset(self, name: str, value: float, unit: str) -> None:
        offset = ConsumptionOffsetSetting(name, value, unit)  # validates, naming the key
        offsets = copy.deepcopy(self._raw.get("consumptionOffset"))
        if not isinstance(offsets, dict):
            offsets = {}
        offsets[offset.name] = {"value": _plain_number(offset.value), "unit": offset.unit}
        self._update({"consumptionOffset": offsets})

    def delete_consumption_offset(self, name: str) -> None:
        offsets = copy.deepcopy(self._raw.get("consumptionOffset"))
        if not isinstance(offsets, dict) or name not in offsets:
            raise SettingsError(f"consumptionOffset.{name}", "no such offset")
        del offsets[name]
        self._update({"consumptionOffset": offsets})

    def set_forced_policy(self, policy: str | None) -> None:
        """Use ``policy`` whatever the rules say (one of ``FORCEABLE_POLICIES``); None: the
        rules decide again."""
        if policy is not None and policy not in FORCEABLE_POLICIES:
            raise SettingsError(
                "forcedPolicy",
                f"expected one of {', '.join(FORCEABLE_POLICIES)} or null, got {policy!r}",
            )
        self._update({"forcedPolicy": policy})

    def set_twc_allowed(self, twcid: str, allowed: bool) -> None:
        """Let the TWC ``twcid`` (4 hex digits) charge, or switch its charging off."""
        if not isinstance(twcid, str) or not re.fullmatch(r"[0-9A-Fa-f]{4}", twcid):
            raise SettingsError(
                "twcChargingDenied", f"expected a TWCID of 4 hex digits, got {twcid!r}"
            )
        if not isinstance(allowed, bool):
            raise SettingsError("twcChargingDenied", f"expected true or false, got {allowed!r}")
        denied = set(self._typed.denied_twcids)
        (denied.discard if allowed else denied.add)(twcid.upper())
        self._update({"twcChargingDenied": sorted(denied)})

    def set_charge_priority(self, twcid: str, priority: int | None) -> None:
        """The TWC's priority (higher charges first when the sun is short), or None to go
        back to config.json's chargePriority for it."""
        if not isinstance(twcid, str) or not re.fullmatch(r"[0-9A-Fa-f]{4}", twcid):
            raise SettingsError(
                "chargePriority", f"expected a TWCID of 4 hex digits, got {twcid!r}"
            )
        if priority is not None and (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or abs(priority) > MAX_PRIORITY
        ):
            raise SettingsError(
                "chargePriority",
                f"expected a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}, got {priority!r}",
            )
        table = dict(self._typed.charge_priority)
        if priority is None:
            table.pop(twcid.upper(), None)
        else:
            table[twcid.upper()] = priority
        self._update({"chargePriority": dict(sorted(table.items()))})

    def set_charge_now_preset(self, amps: float | None, seconds: float | None) -> None:
        """What a bare Charge Now starts (None: keep that part as it is)."""
        changes: dict[str, Any] = {}
        if amps is not None:
            _check_amps("chargeNowPresetAmps", amps, minimum_exclusive=0.0)
            self._check_limit("chargeNowPresetAmps", amps)
            changes["chargeNowPresetAmps"] = _plain_number(amps)
        if seconds is not None:
            if not _is_number(seconds) or not 0 < seconds <= MAX_CHARGE_NOW_S:
                raise SettingsError(
                    "chargeNowPresetSeconds", f"expected 1 s to 7 days, got {seconds!r}"
                )
            changes["chargeNowPresetSeconds"] = _plain_number(seconds)
        self._update(changes)

    def set_home_location(self, lat: float, lon: float) -> None:
        """TWCManager's homeLat / homeLon (degrees)."""
        for key, value, bound in (("homeLat", lat, 90.0), ("homeLon", lon, 180.0)):
            if not _is_number(value) or not -bound <= value <= bound:
                raise SettingsError(
                    key, f"expected degrees from -{bound:g} to {bound:g}, got {value!r}"
                )
        self._update({"homeLat": _plain_number(lat), "homeLon": _plain_number(lon)})

    def _check_limit(self, key: str, amps: float) -> None:
        if self._amps_limit is not None and amps > self._amps_limit:
            raise SettingsError(
                key,
                f"expected amps up to {self._amps_limit:g} (wiringMaxAmpsAllTWCs), got {amps!r}",
            )

    def _update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` in memory, then save; SettingsSaveError if the save fails."""
        self._raw.update(changes)
        self._typed = self._build(warn=False)
        self.save()

    def save(self) -> None:
        """Write the whole file atomically (temp file, fsync, rename, fsync the folder)."""
        text = json.dumps(self._raw, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        try:
            mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o600
            write_atomically(self.path, text, temp_prefix=self._temp_prefix(), mode=mode)
        except OSError as exc:
            self._log.error(
                "cannot save the settings file; the change holds until restart only",
                path=str(self.path),
                error=str(exc),
            )
            raise SettingsSaveError(f"cannot save {self.path}: {exc}") from exc


def write_atomically(path: Path, text: str, *, temp_prefix: str, mode: int = 0o600) -> None:
    """Old content or new, never a mix, even if the power fails: a temp file in the same
    folder (``temp_prefix`` + random + ``.tmp``), fsynced, renamed over ``path``, then the
    folder fsynced. Raises OSError; the temp file never stays behind."""
    temp_name = None
    try:
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix, suffix=_TEMP_SUFFIX)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
        temp_name = None
        _fsync_dir(path.parent)
    finally:
        if temp_name is not None:
            try:
                os.unlink(temp_name)
            except OSError:
                pass


# --------------------------------------------------------------------------------- helpers

_TWC_SCHEDULE_KEYS = {
    "amps": "scheduledAmpsMax",
    "startHour": "scheduledAmpsStartHour",
    "endHour": "scheduledAmpsEndHour",
    "daysBitmap": "scheduledAmpsDaysBitmap",
}


class _Reader:
    """Lenient typed reads from the raw dict: a bad value warns (naming the key) and defaults."""

    def __init__(self, raw: Mapping[str, Any], log: Any, amps_limit: float | None) -> None:
        self.raw = raw
        self.log = log
        self.amps_limit = amps_limit

    def warn(self, key: str, value: Any, expected: str, used: Any) -> None:
        if self.log is not None:
            self.log.warning(
                "bad value in settings.json; using the default",
                key=key,
                value=describe_value(value),
                expected=expected,
                using=used,
            )

    def number(
        self, key: str, default: Any, valid: Callable[[float], bool] = lambda x: True
    ) -> Any:
        value = self.raw.get(key)
        if value is None:
            return default
        number = finite_number(value)
        if number is None or not valid(number):
            self.warn(key, value, "a number in range", default)
            return default
        return number

    def amps(self, key: str, default: Any) -> Any:
        amps = self.number(key, default, _amps_ok)
        return amps if amps is None else self.limited(key, self.raw.get(key), amps)

    def limited(self, key: str, value: Any, amps: float) -> float:
        """Amps above the wiring limit are used as the limit; the file keeps what it says."""
        limit = self.amps_limit
        if limit is None or amps <= limit:
            return amps
        if self.log is not None:
            self.log.warning(
                "amps in settings.json above the wiring limit; using the limit",
                key=key,
                value=describe_value(value),
                expected=f"amps up to wiringMaxAmpsAllTWCs ({limit:g})",
                using=limit,
            )
        return float(limit)

    def window(self, key: str, value: Any, window: ScheduleWindow) -> ScheduleWindow:
        amps = self.limited(key, value, window.amps)
        return window if amps == window.amps else dataclasses.replace(window, amps=amps)

    def whole(self, key: str, default: int, valid: Callable[[float], bool]) -> int:
        number = self.number(key, None, valid)
        if number is None:
            return default
        if number != int(number):
            self.warn(key, self.raw.get(key), "a whole number", default)
            return default
        return int(number)

    def windows(self, key: str) -> tuple[ScheduleWindow, ...]:
        value = self.raw.get(key)
        if not isinstance(value, list):
            self.warn(key, value, "a list of windows", [])
            return ()
        windows = []
        for index, item in enumerate(value):
            path = f"{key}[{index}]"
            if not isinstance(item, Mapping):
                self.warn(path, item, "an object {amps, startHour, endHour, daysBitmap}", "none")
                continue
            try:
                days = finite_number(item.get("daysBitmap", ALL_DAYS))
                window = ScheduleWindow(
                    amps=finite_number(item.get("amps")),  # type: ignore[arg-type]
                    start_hour=finite_number(item.get("startHour")),  # type: ignore[arg-type]
                    end_hour=finite_number(item.get("endHour")),  # type: ignore[arg-type]
                    days_bitmap=int(days) if days is not None and days == int(days) else -1,
                )
            except SettingsError as exc:
                self.warn(f"{path}.{exc.key}", item, exc.message, "window skipped")
                continue
            windows.append(self.window(f"{path}.amps", item.get("amps"), window))
        return tuple(windows)

    def offsets(self) -> tuple[ConsumptionOffsetSetting, ...]:
        value = self.raw.get("consumptionOffset")
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.warn("consumptionOffset", value, "an object {name: {value, unit}}", {})
            return ()
        offsets = []
        for name, item in value.items():
            key = f"consumptionOffset.{name}"
            if not isinstance(item, Mapping):
                self.warn(key, item, "an object {value, unit}", "ignored")
                continue
            unit = str(item.get("unit", "A")).strip().upper()
            number = finite_number(item.get("value"))
            try:
                offsets.append(ConsumptionOffsetSetting(str(name), number, unit))  # type: ignore[arg-type]
            except SettingsError as exc:
                self.warn(exc.key, item, exc.message, "ignored")
        return tuple(offsets)

    def choice(self, key: str, choices: Sequence[str]) -> str | None:
        value = self.raw.get(key)
        if value is None or value in choices:
            return value
        self.warn(key, value, f"one of {', '.join(choices)} or null", None)
        return None

    def denied_twcids(self) -> frozenset[str]:
        value = self.raw.get("twcChargingDenied")
        if value is None:
            return frozenset()
        if not isinstance(value, list) or not all(
            isinstance(item, str) and re.fullmatch(r"[0-9A-Fa-f]{4}", item) for item in value
        ):
            self.warn("twcChargingDenied", value, "a list of TWCIDs (4 hex digits)", [])
            return frozenset()
        return frozenset(item.upper() for item in value)

    def charge_priority(self) -> tuple[tuple[str, int], ...]:
        value = self.raw.get("chargePriority")
        if value is None:
            return ()
        if not isinstance(value, dict) or not all(
            isinstance(key, str)
            and re.fullmatch(r"[0-9A-Fa-f]{4}", key)
            and isinstance(number, int)
            and not isinstance(number, bool)
            and abs(number) <= MAX_PRIORITY
            for key, number in value.items()
        ):
            bound = MAX_PRIORITY
            expected = f"an object of TWCID -> a whole number from -{bound} to {bound}"
            self.warn("chargePriority", value, expected, {})
            return ()
        return tuple(sorted((key.upper(), number) for key, number in value.items()))

    def coordinate(self, key: str, bound: float) -> float | None:
        value = self.raw.get(key)
        if value is None or value == UNKNOWN_COORDINATE:
            return None
        number = self.number(key, None, lambda x: -bound <= x <= bound)
        return None if number is None else float(number)


def _parse(data: bytes) -> Any:
    """settings.json's bytes -> JSON; ValueError saying why the file cannot be used."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if nesting_too_deep_at(text) is not None:
        raise ValueError(f"nested deeper than {MAX_NESTING_DEPTH} levels of {{...}} / [...]")
    try:
        return loads_without_duplicates(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except DuplicateKeysError as exc:
        keys = ", ".join(f"{path} (written {count} times)" for path, count, _ in exc.found)
        raise ValueError(f"duplicate key {keys}: which value was meant is unknown") from None


def _twcmanager_window(reader: _Reader) -> ScheduleWindow | None:
    """TWCManager's single window, or None when it is off (its checkScheduledCharging)."""
    amps = reader.number("scheduledAmpsMax", 0.0)
    start = reader.number("scheduledAmpsStartHour", -1.0)
    end = reader.number("scheduledAmpsEndHour", -1.0)
    days = reader.whole("scheduledAmpsDaysBitmap", ALL_DAYS, lambda x: 0 <= x <= ALL_DAYS)
    if amps <= 0 or start < 0 or end < 0 or days <= 0 or start == end:
        return None  # off, as TWCManager reads it (equal hours match no time at all)
    try:
        window = ScheduleWindow(amps, start, end, days)
    except SettingsError as exc:
        key = _TWC_SCHEDULE_KEYS.get(exc.key, exc.key)
        reader.warn(key, reader.raw.get(key), exc.message, "off")
        return None
    return reader.window("scheduledAmpsMax", reader.raw.get("scheduledAmpsMax"), window)


def _check_amps(key: str, value: Any, minimum_exclusive: float | None) -> None:
    if minimum_exclusive is None:
        ok = _is_number(value) and 0 <= value <= MAX_AMPS
        low = "0"
    else:
        ok = _is_number(value) and minimum_exclusive < value <= MAX_AMPS
        low = f"more than {minimum_exclusive:g}"
    if not ok:
        raise SettingsError(key, f"expected amps from {low} to {MAX_AMPS:g}, got {value!r}")


def _amps_ok(value: float) -> bool:
    return 0 <= value <= MAX_AMPS


def _check_hour(key: str, value: Any, upper: float, upper_inclusive: bool) -> None:
    ok = _is_number(value) and value >= 0 and (value <= upper if upper_inclusive else value < upper)
    if not ok:
        bound = f"{upper:g}" + ("" if upper_inclusive else " (exclusive)")
        raise SettingsError(key, f"expected float hours from 0 to {bound}, got {value!r}")


def _is_number(value: Any) -> bool:
    """Strict, for setters: a finite number, not text (``finite_number`` reads "16" too)."""
    return not isinstance(value, str) and finite_number(value) is not None


def _plain_number(value: float) -> int | float:
    """Whole numbers are written as ints (16, not 16.0), as TWCManager writes them."""
    number = float(value)
    return int(number) if number.is_integer() else number


def _hour_of(local_time: datetime) -> float:
    return local_time.hour + local_time.minute / 60 + local_time.second / 3600


def _clock(hour: float) -> str:
    minutes = round(hour * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def windows_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[ScheduleWindow, ...]:
    """Strict: ``scheduledWindows`` JSON (as the HTTP API might receive it) -> windows."""
    windows = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise SettingsError(f"scheduledWindows[{index}]", f"expected an object, got {item!r}")
        try:
            windows.append(
                ScheduleWindow(
                    amps=item.get("amps"),  # type: ignore[arg-type]
                    start_hour=item.get("startHour"),  # type: ignore[arg-type]
                    end_hour=item.get("endHour"),  # type: ignore[arg-type]
                    days_bitmap=item.get("daysBitmap", ALL_DAYS),  # type: ignore[arg-type]
                )
            )
        except SettingsError as exc:
            raise SettingsError(f"scheduledWindows[{index}].{exc.key}", exc.message) from None
    return tuple(windows)
