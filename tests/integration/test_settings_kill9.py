"""kill -9 at random moments while the real SettingsStore saves in a tight loop.

A helper process imports twcmaster once and, for every round, forks a saver: a process that
saves settings through ``SettingsStore`` as fast as it can (Charge Now, then the schedule,
each save one atomic write). The test sends it SIGKILL after a random delay, then checks the
folder as the next start-up finds it: settings.json is valid JSON holding one complete,
consistent state of one save or another (never a mix, never a truncated file), the keys the
saver does not know survive, and a fresh load removes the temp file a save cut short.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from twcmaster.settings import RuntimeSettings, SettingsStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUNDS = 200
MAX_DELAY_S = 0.03  # the saver lives this long at most before its SIGKILL
SEED = 7
NOW_EPOCH = 1_717_400_000.0
# TWCManager's two days of 5-minute history: makes a save a ~25 kB write, as in real life.
HISTORY = [
    [f"2024-06-0{1 + i // 288}T{i % 288 // 12:02d}:{i % 12 * 5:02d}:00", 2300.5] for i in range(576)
]

SAVER = r"""
import os, sys, traceback
from twcmaster.settings import ScheduleWindow, SettingsStore

path, now_epoch = sys.argv[1], float(sys.argv[2])


class Quiet:
    def __getattr__(self, level):
        return lambda *args, **fields: None


def save_forever(n):
    store = SettingsStore(path, log=Quiet())
    while True:
        n += 1
        amps = 6 + n % 27
        store.charge_now(amps, 60 * amps, now_epoch)  # chargeNowTimeEnd follows the amps
        start = n % 20
        store.set_schedule(  # two windows of the same amps, 1 h apart
            [ScheduleWindow(amps, start, start + 1), ScheduleWindow(amps, start + 2, start + 3)]
        )


for line in sys.stdin:
    command, number = line.split()
    if command == "go":
        pid = os.fork()
        if pid == 0:
            try:
                save_forever(int(number))
            except BaseException:
                traceback.print_exc()
            os._exit(3)  # only SIGKILL may end a saver
        print(pid, flush=True)
    elif command == "reap":
        print(os.waitpid(int(number), 0)[1], flush=True)
"""


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        return lambda event, **fields: self.records.append((level, event, fields))


def temp_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def check_consistent(raw: dict, settings: RuntimeSettings) -> None:
    """One save's complete state: each key group as one call of the saver wrote it."""
    assert raw["history"] == HISTORY  # the key the saver does not know survives every write
    if "chargeNowAmps" in raw:
        amps = raw["chargeNowAmps"]
        assert 6 <= amps <= 32 and raw["chargeNowTimeEnd"] == NOW_EPOCH + 60 * amps, raw
        assert settings.charge_now_amps == amps
    if "scheduledWindows" in raw:
        first, second = settings.schedule
        assert first.amps == second.amps == raw["scheduledAmpsMax"], raw
        assert second.start_hour == first.start_hour + 2 == raw["scheduledAmpsStartHour"] + 2
        assert [w.to_json() for w in settings.schedule] == raw["scheduledWindows"]


def test_settings_survive_kill_9_at_random_moments(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"history": HISTORY}))  # a TWCManager file being migrated
    helper = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(path), repr(NOW_EPOCH)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(SEED)
    cut_short = saved = 0
    started = time.monotonic()
    try:
        for round_number in range(ROUNDS):
            helper.stdin.write(f"go {round_number * 1000}\n")
            helper.stdin.flush()
            pid = int(helper.stdout.readline())
            time.sleep(rng.uniform(0, MAX_DELAY_S))
            os.kill(pid, signal.SIGKILL)
            helper.stdin.write(f"reap {pid}\n")
            helper.stdin.flush()
            status = int(helper.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status

            left = temp_files(tmp_path)
            assert len(left) <= 1, left  # one save at a time
            cut_short += len(left)
            raw = json.loads(path.read_text())  # whole and valid after every kill
            log = Log()
            store = SettingsStore(path, log=log)  # the next start-up
            assert temp_files(tmp_path) == []
            expected = [("warning", {"folder": str(tmp_path), "removed": 1})] if left else []
            assert [(level, fields) for level, _, fields in log.records] == expected
            assert store.raw() == raw
            check_consistent(raw, store.settings)
            saved += "chargeNowAmps" in raw
    finally:
        helper.stdin.close()
        helper.wait(timeout=10)
    elapsed_s = time.monotonic() - started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # nothing set aside
    # A test that never killed a save midway would prove nothing.
    assert cut_short > 0 and saved > 0
    print(
        f"\n{ROUNDS} kill -9 rounds in {elapsed_s:.1f} s: settings.json whole and consistent "
        f"after each; {cut_short} kills cut a save short (temp file removed at the next load)"
    )
