"""settings.json: TWCManager keys, scheduled windows, atomic writes, corrupt and missing files."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest

from twcmaster.settings import (
    ALL_DAYS,
    SETTINGS_MAX_BYTES,
    ConsumptionOffsetSetting,
    RuntimeSettings,
    ScheduleWindow,
    SettingsError,
    SettingsSaveError,
    SettingsStore,
    windows_from_json,
)

MON, TUE, WED, SUN = 1, 2, 4, 64
NOW_EPOCH = 1_717_400_000.0  # a fixed "now" (2024-06-03)


class Log:
    """Records what the store logs: [(level, event, fields)]."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        def record(event, **fields):
            self.records.append((level, event, fields))

        return record

    def levels(self) -> list[str]:
        return [level for level, _, _ in self.records]


def store_at(tmp_path, data=None, text=None, **kwargs):
    path = tmp_path / "settings.json"
    if data is not None:
        path.write_text(json.dumps(data))
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    log = Log()
    return SettingsStore(path, log=log, wallclock=lambda: NOW_EPOCH, **kwargs), log


def on_disk(tmp_path) -> dict:
    return json.loads((tmp_path / "settings.json").read_text())


# ------------------------------------------------------------------ loading


def test_a_missing_file_gives_the_defaults_with_a_warning(tmp_path):
    store, log = store_at(tmp_path)
    assert store.settings == RuntimeSettings()
    assert store.settings.sunrise_hour == 6 and store.settings.sunset_hour == 20
    assert store.settings.non_scheduled_action == 1
    assert log.levels() == ["warning"]
    assert "not found" in log.records[0][1]
    assert not (tmp_path / "settings.json").exists()  # nothing written until a change


def test_a_folder_means_settings_json_inside_it(tmp_path):
    (tmp_path / "settings.json").write_text('{"chargeNowAmps": 0}')
    assert SettingsStore(tmp_path, log=Log()).path == tmp_path / "settings.json"


@pytest.mark.parametrize(
    "text",
    ['{"chargeNowAmps": 16,', "[1, 2, 3]", b"\xff\xfe garbage", "", "null"],
    ids=["truncated", "not-an-object", "not-utf8", "empty", "null"],
)
def test_a_corrupt_file_is_kept_aside_and_the_defaults_are_used(tmp_path, text):
    store, log = store_at(tmp_path, text=text)
    assert store.settings == RuntimeSettings()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert len(kept) == 1
    stamp = datetime.fromtimestamp(NOW_EPOCH).strftime("%Y%m%d-%H%M%S")
    assert kept[0].name == f"settings.json.corrupt-{stamp}"
    original = text if isinstance(text, bytes) else text.encode()
    assert kept[0].read_bytes() == original
    assert log.levels() == ["warning"]
    assert log.records[0][2]["kept_as"] == str(kept[0])
    # The next change writes a fresh file; the corrupt one stays where it was put.
    store.cancel_charge_now()
    assert on_disk(tmp_path) == {"chargeNowAmps": 0, "chargeNowTimeEnd": 0}
    assert kept[0].read_bytes() == original


def test_two_corrupt_files_in_the_same_second_do_not_overwrite_each_other(tmp_path):
    store_at(tmp_path, text="{")
    store_at(tmp_path, text="{{")
    kept = sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert len(kept) == 2 and kept[1].endswith("-2")


def _fifo(path):
    os.mkfifo(path)


def _oversized(path):
    path.write_text('{"history": "' + "x" * SETTINGS_MAX_BYTES + '"}')


def _deep(path):
    path.write_text("[" * 100_000)


def _duplicate(path):
    path.write_text('{"chargeNowAmps": 16, "chargeNowTimeEnd": 1, "chargeNowAmps": 500}')


@pytest.mark.timeout(10)  # an open() blocked on the FIFO fails here instead of hanging
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_fifo, "not a regular file but a FIFO"),
        (_oversized, "larger than 256 KiB"),
        (_deep, "nested deeper than 64 levels"),
        (_duplicate, "duplicate key chargeNowAmps (written 2 times)"),
    ],
    ids=["fifo", "oversized", "deep", "duplicate-key"],
)
def test_an_unusable_file_is_kept_aside_whole_and_the_defaults_are_used(tmp_path, make, reason):
    path = tmp_path / "settings.json"
    make(path)
    before = os.lstat(path)
    store, log = store_at(tmp_path)
    assert store.settings == RuntimeSettings()
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.corrupt-")]
    after = os.lstat(kept)
    assert (after.st_ino, after.st_mode, after.st_size) == (
        before.st_ino,
        before.st_mode,
        before.st_size,
    )
    assert not path.exists()
    ((level, _, fields),) = log.records
    assert level == "warning"
    assert fields["path"] == str(path) and fields["kept_as"] == str(kept)
    assert reason in fields["problem"]
    store.cancel_charge_now()  # the next save writes a fresh file beside the one kept
    assert on_disk(tmp_path) == {"chargeNowAmps": 0, "chargeNowTimeEnd": 0}
    assert os.lstat(kept).st_ino == before.st_ino


def test_stale_temp_files_of_an_interrupted_save_are_removed_at_start(tmp_path):
    ours = [".settings.json.a1b2c3d4.tmp", ".settings.json.x_9y8z7w.tmp"]
    others = [
        ".settings.json.short.tmp",  # not mkstemp's 8 characters
        ".other.json.a1b2c3d4.tmp",
        "settings.json.a1b2c3d4.tmp",
        ".settings.json.A1B2C3D4.tmp",
        ".settings.json.a1b2c3d4.tmp.keep",
    ]
    for name in ours + others:
        (tmp_path / name).write_text("{")
    (tmp_path / ".settings.json.folder00.tmp").mkdir()  # not a file: left alone
    (tmp_path / ".settings.json.link0000.tmp").symlink_to(tmp_path / others[0])
    (tmp_path / "settings.json").write_text('{"chargeNowAmps": 0}')
    store, log = store_at(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        [*others, ".settings.json.folder00.tmp", ".settings.json.link0000.tmp", "settings.json"]
    )
    ((level, event, fields),) = log.records
    assert level == "warning" and "interrupted save" in event
    assert fields["removed"] == 2 and fields["folder"] == str(tmp_path)
    assert store_at(tmp_path)[1].records == []  # nothing more to remove: nothing logged


def test_twcmanager_values_written_as_strings_are_read_as_numbers(tmp_path):
    store, log = store_at(
        tmp_path,
        {
            "chargeNowAmps": "16",
            "chargeNowTimeEnd": str(NOW_EPOCH + 600),
            "nonScheduledAction": "3",
            "nonScheduledAmpsMax": "10",
            "hourResumeTrackGreenEnergy": "12.5",
            "sunrise": 7,
            "sunset": "19",
        },
    )
    s = store.settings
    assert s.charge_now_amps == 16.0
    assert s.charge_now_active(NOW_EPOCH)
    assert s.non_scheduled_action == 3
    assert s.non_scheduled_amps_max == 10.0
    assert s.hour_resume_track_green_energy == 12.5
    assert (s.sunrise_hour, s.sunset_hour) == (7.0, 19.0)
    assert log.records == []


def test_a_bad_value_warns_naming_the_key_and_uses_the_default(tmp_path):
    store, log = store_at(tmp_path, {"nonScheduledAction": 7, "sunrise": "dawn"})
    assert store.settings.non_scheduled_action == 1
    assert store.settings.sunrise_hour == 6.0
    assert sorted(fields["key"] for _, _, fields in log.records) == [
        "nonScheduledAction",
        "sunrise",
    ]


def test_charge_now_is_active_only_until_its_end(tmp_path):
    store, _ = store_at(tmp_path)
    store.charge_now(24, 3600, NOW_EPOCH)
    s = store.settings
    assert (s.charge_now_amps, s.charge_now_end_epoch) == (24.0, NOW_EPOCH + 3600)
    assert s.charge_now_active(NOW_EPOCH + 3599)
    assert not s.charge_now_active(NOW_EPOCH + 3600)
    assert on_disk(tmp_path) == {"chargeNowAmps": 24, "chargeNowTimeEnd": NOW_EPOCH + 3600}
    store.cancel_charge_now()
    assert not store.settings.charge_now_active(NOW_EPOCH)
    assert on_disk(tmp_path) == {"chargeNowAmps": 0, "chargeNowTimeEnd": 0}


def test_charge_now_needs_an_end_time_as_in_twcmanager(tmp_path):
    store, _ = store_at(tmp_path, {"chargeNowAmps": 16, "chargeNowTimeEnd": 0})
    assert not store.settings.charge_now_active(NOW_EPOCH)


# ------------------------------------------------------------- wiring limit


def test_a_500_amp_charge_now_is_capped_by_the_policy_never_offered(tmp_path):
    from twcmaster.control.policy import PolicyConfig, PolicyEngine

    store, _ = store_at(tmp_path, {"chargeNowAmps": 500, "chargeNowTimeEnd": NOW_EPOCH + 600})
    engine = PolicyEngine(PolicyConfig(wiring_max_amps_all_twcs=40), store)
    budget = engine.decide(0.0, datetime.fromtimestamp(NOW_EPOCH), None, None)
    assert budget.amps == 40
    assert "capped at wiringMaxAmpsAllTWCs 40A" in budget.reason


def test_amps_above_the_wiring_limit_are_clamped_at_load_with_a_warning(tmp_path):
    asked = {
        "chargeNowAmps": 500,
        "chargeNowTimeEnd": NOW_EPOCH + 600,
        "nonScheduledAmpsMax": "100",
        "scheduledAmpsMax": 200,
        "scheduledAmpsStartHour": 1,
        "scheduledAmpsEndHour": 5,
        "scheduledWindows": [
            {"amps": 200, "startHour": 1, "endHour": 5},
            {"amps": 41, "startHour": 6, "endHour": 7},
            {"amps": 40, "startHour": 8, "endHour": 9},
        ],
    }
    store, log = store_at(tmp_path, asked, wiring_max_amps_all_twcs=40)
    s = store.settings
    assert s.charge_now_amps == 40 and s.non_scheduled_amps_max == 40
    assert [w.amps for w in s.schedule] == [40, 40, 40]
    warned = {fields["key"]: fields for level, _, fields in log.records if level == "warning"}
    assert sorted(warned) == [
        "chargeNowAmps",
        "nonScheduledAmpsMax",
        "scheduledAmpsMax",
        "scheduledWindows[0].amps",
        "scheduledWindows[1].amps",
    ]
    assert warned["chargeNowAmps"]["value"] == "500" and warned["chargeNowAmps"]["using"] == 40
    assert "wiringMaxAmpsAllTWCs" in warned["chargeNowAmps"]["expected"]
    assert on_disk(tmp_path) == asked  # the file is the user's: only what is used is clamped


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda s: s.charge_now(41, 60, NOW_EPOCH), "chargeNowAmps"),
        (lambda s: s.set_non_scheduled_amps(40.5), "nonScheduledAmpsMax"),
        (lambda s: s.set_schedule([ScheduleWindow(8, 1, 2), ScheduleWindow(41, 3, 4)]),
         "scheduledWindows[1].amps"),
        (lambda s: s.set_twcmanager_schedule(41, 1, 2), "scheduledAmpsMax"),
    ],
)  # fmt: skip
def test_setters_refuse_amps_above_the_wiring_limit(tmp_path, call, key):
    store, _ = store_at(tmp_path, {"keep": 1}, wiring_max_amps_all_twcs=40)
    with pytest.raises(SettingsError) as caught:
        call(store)
    assert caught.value.key == key
    assert "to 40 (wiringMaxAmpsAllTWCs)" in caught.value.message
    assert on_disk(tmp_path) == {"keep": 1}
    store.charge_now(40, 60, NOW_EPOCH)  # the limit itself is fine
    assert store.settings.charge_now_amps == 40


# ------------------------------------------------------------------- schedules


def test_twcmanager_single_window_loads_as_the_only_window(tmp_path):
    store, _ = store_at(
        tmp_path,
        {
            "scheduledAmpsMax": 16,
            "scheduledAmpsStartHour": 22.5,
            "scheduledAmpsEndHour": 6,
            "scheduledAmpsDaysBitmap": MON | WED,
        },
    )
    assert store.settings.schedule == (ScheduleWindow(16, 22.5, 6, MON | WED),)


@pytest.mark.parametrize(
    "keys",
    [
        {"scheduledAmpsMax": 0, "scheduledAmpsStartHour": 1, "scheduledAmpsEndHour": 5},
        {"scheduledAmpsMax": 16, "scheduledAmpsStartHour": -1, "scheduledAmpsEndHour": 5},
        {"scheduledAmpsMax": 16, "scheduledAmpsStartHour": 1, "scheduledAmpsEndHour": -1},
        {"scheduledAmpsMax": 16, "scheduledAmpsStartHour": 1, "scheduledAmpsEndHour": 1},
        {"scheduledAmpsMax": 16, "scheduledAmpsStartHour": 1, "scheduledAmpsEndHour": 5,
         "scheduledAmpsDaysBitmap": 0},
    ],
)  # fmt: skip
def test_twcmanager_window_switched_off_means_no_window(tmp_path, keys):
    store, _ = store_at(tmp_path, keys)
    assert store.settings.schedule == ()


def test_several_windows_are_kept_and_the_first_mirrors_into_twcmanager_keys(tmp_path):
    store, _ = store_at(tmp_path, {"carApiBearerToken": "secret", "history": [1, 2, 3]})
    windows = (ScheduleWindow(16, 22, 6, MON | TUE), ScheduleWindow(10, 1, 4.25, SUN))
    store.set_schedule(windows)
    data = on_disk(tmp_path)
    assert data["scheduledWindows"] == [
        {"amps": 16, "startHour": 22, "endHour": 6, "daysBitmap": 3},
        {"amps": 10, "startHour": 1, "endHour": 4.25, "daysBitmap": 64},
    ]
    assert (
        data["scheduledAmpsMax"],
        data["scheduledAmpsStartHour"],
        data["scheduledAmpsEndHour"],
        data["scheduledAmpsDaysBitmap"],
    ) == (16, 22, 6, 3)
    assert data["carApiBearerToken"] == "secret" and data["history"] == [1, 2, 3]
    again = SettingsStore(tmp_path / "settings.json", log=Log())
    assert again.settings.schedule == windows
    store.set_schedule([])
    data = on_disk(tmp_path)
    assert data["scheduledWindows"] == []
    assert data["scheduledAmpsStartHour"] == -1 and data["scheduledAmpsEndHour"] == -1


def test_twcmanager_keys_changed_behind_our_back_replace_the_first_window(tmp_path):
    store, _ = store_at(tmp_path)
    store.set_schedule([ScheduleWindow(16, 22, 6), ScheduleWindow(10, 12, 14, SUN)])
    data = on_disk(tmp_path)
    data["scheduledAmpsMax"] = 20  # TWCManager's web UI (after a downgrade) edits its window
    (tmp_path / "settings.json").write_text(json.dumps(data))
    again, log = store_at(tmp_path)
    assert again.settings.schedule == (ScheduleWindow(20, 22, 6), ScheduleWindow(10, 12, 14, SUN))
    assert log.levels() == ["info"]
    data["scheduledAmpsStartHour"] = -1  # ... and switches it off
    (tmp_path / "settings.json").write_text(json.dumps(data))
    again, _ = store_at(tmp_path)
    assert again.settings.schedule == (ScheduleWindow(10, 12, 14, SUN),)


def test_set_twcmanager_schedule_replaces_only_the_first_window(tmp_path):
    store, _ = store_at(tmp_path)
    store.set_schedule([ScheduleWindow(16, 22, 6), ScheduleWindow(10, 12, 14, SUN)])
    store.set_twcmanager_schedule(32, 1, 5, ALL_DAYS)
    assert store.settings.schedule == (ScheduleWindow(32, 1, 5), ScheduleWindow(10, 12, 14, SUN))
    store.set_twcmanager_schedule(0, -1, -1)
    assert store.settings.schedule == (ScheduleWindow(10, 12, 14, SUN),)


def test_bad_windows_in_the_file_are_skipped_with_a_warning_naming_them(tmp_path):
    good = {"amps": 16, "startHour": 22, "endHour": 6, "daysBitmap": 127}
    store, log = store_at(
        tmp_path,
        {
            "scheduledWindows": [good, {"amps": 16, "startHour": 25, "endHour": 6}, "x"],
            "scheduledAmpsMax": 16,
            "scheduledAmpsStartHour": 22,
            "scheduledAmpsEndHour": 6,
        },
    )
    assert store.settings.schedule == (ScheduleWindow(16, 22, 6),)
    keys = [fields["key"] for level, _, fields in log.records if level == "warning"]
    assert keys == ["scheduledWindows[1].startHour", "scheduledWindows[2]"]


def test_window_across_midnight_belongs_to_the_day_it_starts():
    window = ScheduleWindow(16, 22, 6, MON)  # Monday 22:00 -> Tuesday 06:00
    monday = datetime(2024, 6, 3)  # a Monday
    assert monday.weekday() == 0
    at = lambda day, hour, minute=0: monday.replace(day=3 + day, hour=hour, minute=minute)  # noqa: E731
    assert not window.contains(at(0, 21, 59))
    assert window.contains(at(0, 22))
    assert window.contains(at(0, 23, 59))
    assert window.contains(at(1, 0))  # Tuesday morning: still Monday's window
    assert window.contains(at(1, 5, 59))
    assert not window.contains(at(1, 6))
    assert not window.contains(at(1, 22))  # Tuesday evening: Tuesday is not in the bitmap
    assert not window.contains(at(0, 3))  # Monday morning belongs to Sunday's window


def test_sunday_window_across_midnight_runs_into_monday():
    window = ScheduleWindow(16, 23, 2, SUN)
    sunday = datetime(2024, 6, 9, 23, 30)
    assert sunday.weekday() == 6
    assert window.contains(sunday)
    assert window.contains(datetime(2024, 6, 10, 1, 0))
    assert not window.contains(datetime(2024, 6, 11, 1, 0))  # Tuesday: Monday is not set
    assert not window.contains(datetime(2024, 6, 8, 23, 30))  # Saturday evening


def test_day_window_on_chosen_weekdays_only():
    window = ScheduleWindow(10, 9.5, 15.25, MON | WED)
    assert window.contains(datetime(2024, 6, 3, 9, 30))  # Monday 09:30
    assert window.contains(datetime(2024, 6, 5, 15, 14))  # Wednesday
    assert not window.contains(datetime(2024, 6, 5, 15, 15))
    assert not window.contains(datetime(2024, 6, 4, 12, 0))  # Tuesday
    assert window.describe() == "Mon,Wed 09:30-15:15 at 10A"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(amps=0, start_hour=1, end_hour=2), "amps"),
        (dict(amps=16, start_hour=24, end_hour=2), "startHour"),
        (dict(amps=16, start_hour=1, end_hour=25), "endHour"),
        (dict(amps=16, start_hour=3, end_hour=3), "endHour"),
        (dict(amps=16, start_hour=1, end_hour=2, days_bitmap=0), "daysBitmap"),
        (dict(amps=16, start_hour=1, end_hour=2, days_bitmap=128), "daysBitmap"),
        (dict(amps=float("nan"), start_hour=1, end_hour=2), "amps"),
        (dict(amps="16", start_hour=1, end_hour=2), "amps"),
    ],
)
def test_window_validation_names_the_key(kwargs, key):
    with pytest.raises(SettingsError) as caught:
        ScheduleWindow(**kwargs)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_windows_from_json_names_the_index_and_key():
    assert windows_from_json([{"amps": 8, "startHour": 1, "endHour": 2}]) == (
        ScheduleWindow(8, 1, 2),
    )
    with pytest.raises(SettingsError) as caught:
        windows_from_json([{"amps": 8, "startHour": 1, "endHour": 2}, {"amps": -1}])
    assert caught.value.key == "scheduledWindows[1].amps"


# --------------------------------------------------------------- other setters


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda s: s.charge_now(0, 60, NOW_EPOCH), "chargeNowAmps"),
        (lambda s: s.charge_now(16, 0, NOW_EPOCH), "chargeNowTimeEnd"),
        (lambda s: s.charge_now(16, 60, float("nan")), "chargeNowTimeEnd"),
        (lambda s: s.set_non_scheduled_action(4), "nonScheduledAction"),
        (lambda s: s.set_non_scheduled_action(True), "nonScheduledAction"),
        (lambda s: s.set_non_scheduled_amps(-1), "nonScheduledAmpsMax"),
        (lambda s: s.set_hour_resume_track_green_energy(30), "hourResumeTrackGreenEnergy"),
        (lambda s: s.set_sun_hours(20, 6), "sunset"),
        (lambda s: s.set_consumption_offset("pool", 5, "kW"), "consumptionOffset.pool.unit"),
        (lambda s: s.set_consumption_offset("pool", "x", "W"), "consumptionOffset.pool.value"),
        (lambda s: s.delete_consumption_offset("nope"), "consumptionOffset.nope"),
        (lambda s: s.set_twcmanager_schedule(16, 25, 2), "scheduledAmpsStartHour"),
    ],
)
def test_setters_validate_and_name_the_key_and_change_nothing(tmp_path, call, key):
    store, _ = store_at(tmp_path, {"keep": 1})
    with pytest.raises(SettingsError) as caught:
        call(store)
    assert caught.value.key == key
    assert on_disk(tmp_path) == {"keep": 1}


def test_non_scheduled_and_green_hours_setters(tmp_path):
    store, _ = store_at(tmp_path)
    store.set_non_scheduled_action(2)
    store.set_non_scheduled_amps(12)
    store.set_hour_resume_track_green_energy(11.5)
    store.set_sun_hours(5.5, 21)
    s = store.settings
    assert (s.non_scheduled_action, s.non_scheduled_amps_max) == (2, 12.0)
    assert s.hour_resume_track_green_energy == 11.5
    assert (s.sunrise_hour, s.sunset_hour) == (5.5, 21.0)
    assert on_disk(tmp_path) == {
        "nonScheduledAction": 2,
        "nonScheduledAmpsMax": 12,
        "hourResumeTrackGreenEnergy": 11.5,
        "sunrise": 5.5,
        "sunset": 21,
    }


def test_consumption_offsets_round_trip_in_twcmanager_shape(tmp_path):
    store, _ = store_at(tmp_path, {"consumptionOffset": {"old": {"value": "2", "unit": "a"}}})
    assert store.settings.consumption_offsets == (ConsumptionOffsetSetting("old", 2.0, "A"),)
    store.set_consumption_offset("pool", 750, "W")
    store.set_consumption_offset("solar shed", -1.5, "A")
    assert on_disk(tmp_path)["consumptionOffset"] == {
        "old": {"value": "2", "unit": "a"},
        "pool": {"value": 750, "unit": "W"},
        "solar shed": {"value": -1.5, "unit": "A"},
    }
    store.delete_consumption_offset("old")
    names = [o.name for o in store.settings.consumption_offsets]
    assert names == ["pool", "solar shed"]


# ------------------------------------------------------------------ writing


def test_unknown_keys_survive_every_write(tmp_path):
    twcmanager = {
        "carApiBearerToken": "tok",
        "VehicleGroups": {"Allow Charging": {"Members": []}},
        "history": [[1717400000, 2.5]],
        "webControlTheme": "Modern",
    }
    store, _ = store_at(tmp_path, twcmanager)
    store.charge_now(16, 60, NOW_EPOCH)
    store.set_schedule([ScheduleWindow(16, 22, 6)])
    data = on_disk(tmp_path)
    for key, value in twcmanager.items():
        assert data[key] == value
    assert store.raw()["carApiBearerToken"] == "tok"


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path, monkeypatch):
    store, _ = store_at(tmp_path, {"chargeNowAmps": 0})
    os.chmod(tmp_path / "settings.json", 0o640)
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os,
        "replace",
        lambda a, b: (calls.append(("replace", os.path.dirname(a))), real_replace(a, b))[1],
    )
    store.charge_now(16, 60, NOW_EPOCH)
    # fsync the temp file, rename it in the same folder, fsync the folder
    assert calls == ["fsync", ("replace", str(tmp_path)), "fsync"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
    assert (os.stat(tmp_path / "settings.json").st_mode & 0o777) == 0o640  # mode kept


def test_a_failed_write_leaves_the_old_file_whole_and_says_so(tmp_path, monkeypatch):
    store, log = store_at(tmp_path, {"chargeNowAmps": 0, "keep": True})

    def broken_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(SettingsSaveError):
        store.charge_now(16, 60, NOW_EPOCH)
    assert on_disk(tmp_path) == {"chargeNowAmps": 0, "keep": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
    assert store.settings.charge_now_amps == 16  # in force until restart
    assert log.levels()[-1] == "error"


def test_restart_reads_back_what_was_written(tmp_path):
    store, _ = store_at(tmp_path)
    store.charge_now(20, 1800, NOW_EPOCH)
    store.set_schedule([ScheduleWindow(16, 22, 6, MON), ScheduleWindow(8, 13, 14)])
    store.set_non_scheduled_action(3)
    store.set_consumption_offset("heat pump", 2, "A")
    again = SettingsStore(tmp_path / "settings.json", log=Log())
    assert again.settings == store.settings


def test_a_settings_value_shadowing_the_configs_is_said_at_start_up(tmp_path):
    from structlog.testing import capture_logs

    from twcmaster.config import config_from_dict
    from twcmaster.daemon import open_settings, warn_settings_shadowing
    from twcmaster.logs import get_logger

    config = config_from_dict(
        {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32,
                    "nonScheduledAmpsMax": 16}}, str(tmp_path),
    ).settings  # fmt: skip
    (tmp_path / "settings.json").write_text('{"nonScheduledAmpsMax": 0}')  # TWCManager wrote it
    store = open_settings(config, str(tmp_path))
    with capture_logs() as logs:
        warn_settings_shadowing(config, store, get_logger("t"))
    (entry,) = [e for e in logs if e["log_level"] == "warning"]
    assert (
        "settings.json's nonScheduledAmpsMax 0A wins over config.nonScheduledAmpsMax 16A"
        in (entry["event"])
    )
    (tmp_path / "settings.json").write_text('{"nonScheduledAmpsMax": 16}')
    with capture_logs() as logs:
        warn_settings_shadowing(config, open_settings(config, str(tmp_path)), get_logger("t"))
    assert logs == []


def test_twcmanagers_charge_stop_mode_in_settings_applies_unless_config_sets_it(tmp_path):
    from structlog.testing import capture_logs

    from twcmaster.config import config_from_dict
    from twcmaster.daemon import charge_stop_mode_from_settings, open_settings
    from twcmaster.logs import get_logger

    wiring = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32}
    (tmp_path / "settings.json").write_text('{"chargeStopMode": "2"}')  # as TWCManager writes it

    def mode(config_section):
        config = config_from_dict({"config": {**wiring, **config_section}}, str(tmp_path)).settings
        with capture_logs():
            chosen = charge_stop_mode_from_settings(
                config, open_settings(config, str(tmp_path)), get_logger("t")
            )
        tesla = chosen.tesla_api
        return chosen.charge_stop_mode, tesla.charge_stop_mode if tesla else None

    assert mode({}) == (2, None)
    assert mode({"chargeStopMode": 3}) == (3, None)  # config.json wins
    (tmp_path / "settings.json").write_text('{"chargeStopMode": "7"}')
    assert mode({}) == (1, None)  # not a mode: ignored (warned), the default stays


def test_charge_priority_set_at_run_time_round_trips_and_bad_values_say_why(tmp_path):
    path = tmp_path / "settings.json"
    store = SettingsStore(str(path))
    store.set_charge_priority("0a1b", 2)
    store.set_charge_priority("C3D4", -1)
    assert SettingsStore(str(path)).settings.charge_priority == (("0A1B", 2), ("C3D4", -1))
    store.set_charge_priority("0A1B", None)  # back to config.json's
    assert SettingsStore(str(path)).settings.charge_priority == (("C3D4", -1),)
    for twcid, priority in (("0A1", 1), ("0A1B", 1.5), ("0A1B", True), ("0A1B", 5000)):
        with pytest.raises(SettingsError) as caught:
            store.set_charge_priority(twcid, priority)
        assert caught.value.key == "chargePriority"
    path.write_text('{"chargePriority": {"0A1B": "high"}}')  # a hand edit gone wrong
    assert SettingsStore(str(path)).settings.charge_priority == ()
