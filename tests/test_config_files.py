"""config.json and settings.json as files: what a wrong path, a huge or hostile file gives.

Real FIFOs, symlinks to devices, oversized and deeply nested files, duplicate keys; the
commands run as subprocesses, as a user would run them. Every case must end with a clear
message naming the file, never a hang, unbounded memory or a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twcmaster.config import (
    CONFIG_MAX_BYTES,
    MAX_NESTING_DEPTH,
    ConfigError,
    load_config,
    parse_config_text,
)

pytestmark = pytest.mark.timeout(60)

WIRING = {"wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
DEEP = "[" * 100_000  # json.loads alone raises RecursionError on it


def twcmaster(
    *args: str, timeout: float = 30, memory_bytes: int | None = None
) -> subprocess.CompletedProcess:
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return subprocess.run(
        [sys.executable, "-m", "twcmaster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap_memory if memory_bytes else None,
    )


def message_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


# ------------------------------------------------------------------- nesting depth


@pytest.mark.parametrize(
    "text",
    [DEEP, '{"config": ' * 50_000, '{"policy": {"extend": {"before": ' + "[{}," * 5000],
    ids=["lists", "objects", "inside-a-section"],
)
def test_a_deeply_nested_config_is_an_error_naming_file_line_and_column(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text("# nested\n" + text)
    message = message_of(path)
    assert message.startswith(f"{path}, line 2, column ")
    assert f"nested deeper than {MAX_NESTING_DEPTH} levels" in message
    assert len(message) < 500  # the 100 kB line is shown clipped around the column


def test_nesting_up_to_the_limit_parses_and_brackets_in_strings_do_not_count():
    lists = MAX_NESTING_DEPTH - 3  # below three levels of objects
    rules = "[" * lists + "]" * lists
    data = parse_config_text('{"policy": {"extend": {"before": ' + rules + "}}}")
    assert data["policy"]["extend"]["before"] == json.loads(rules)
    with pytest.raises(ConfigError, match="nested deeper"):
        parse_config_text('{"policy": {"extend": {"before": [' + rules + "]}}}")
    brackets_in_strings = '{"config": {"settingsPath": "' + "[{" * 1000 + '"}}'
    assert parse_config_text(brackets_in_strings)["config"]["settingsPath"].startswith("[{")


def test_check_config_and_run_report_a_deeply_nested_config_with_exit_2(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(DEEP)
    for command in ("check-config", "run"):
        result = twcmaster(command, "--config", str(path))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
        assert str(path) in result.stderr and "nested deeper than" in result.stderr


# ------------------------------------------------------------------ duplicate keys


def test_a_duplicated_key_is_an_error_naming_its_path():
    text = (
        '{"config": {"wiringMaxAmpsAllTWCs": 20,\n'
        '            "wiringMaxAmpsPerTWC": 20,\n'
        '            "wiringMaxAmpsAllTWCs": 200}}'
    )
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, source="config.json")
    (problem,) = caught.value.problems
    assert problem.key_path == "config.wiringMaxAmpsAllTWCs"
    assert "written 2 times" in problem.message and "200" in problem.message
    assert str(caught.value).startswith("config.json: 1 problem in the configuration:")


def test_duplicates_at_every_level_are_each_reported_in_file_order():
    text = """{
      "config": {"logLevel": 20},
      "policy": {"extend": {"emergency": [{"name": "a", "value": [0], "name": "b"}]}},
      "config": {"logLevel": 20, "logLevel": 10, "logLevel": 30},
    }"""
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text)
    assert [(p.key_path, "written 3 times" in p.message) for p in caught.value.problems] == [
        ("config", False),
        ("config.logLevel", True),
        ("policy.extend.emergency[0].name", False),
    ]


def test_check_config_rejects_a_duplicated_wiring_limit(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        '{"config": {"wiringMaxAmpsAllTWCs": 20, "wiringMaxAmpsPerTWC": 20, "minAmpsPerTWC": 6,'
        ' "wiringMaxAmpsAllTWCs": 200}}'
    )
    result = twcmaster("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "config.wiringMaxAmpsAllTWCs: duplicate key" in result.stderr


# ------------------------------------------------------- what the path points to


@pytest.mark.timeout(10)  # an open() blocked on the FIFO fails here instead of hanging
def test_a_fifo_config_is_refused_without_blocking(tmp_path):
    path = tmp_path / "config.json"
    os.mkfifo(path)
    assert "not a regular file but a FIFO" in message_of(path)
    result = twcmaster("check-config", "--config", str(path), timeout=8)
    assert result.returncode == 2 and "FIFO" in result.stderr


def test_a_config_symlinked_to_a_device_is_refused_naming_the_target(tmp_path):
    path = tmp_path / "config.json"
    path.symlink_to("/dev/zero")
    # In a subprocess with its memory capped: reading /dev/zero to the end never ends.
    result = twcmaster("check-config", "--config", str(path), timeout=8, memory_bytes=1 << 30)
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr
    assert "not a regular file but a character device (/dev/zero)" in result.stderr


def test_a_folder_as_config_is_refused(tmp_path):
    assert "not a regular file but a folder" in message_of(tmp_path)


def test_a_config_symlinked_to_a_regular_file_is_read(tmp_path):
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"config": WIRING}))
    (tmp_path / "config.json").symlink_to(real)
    assert load_config(tmp_path / "config.json").settings.wiring.max_amps_all_twcs == 40


def test_a_config_up_to_the_size_cap_loads_and_one_byte_more_is_refused(tmp_path):
    path = tmp_path / "config.json"
    body = json.dumps({"config": WIRING})
    padding = CONFIG_MAX_BYTES - len(body)
    path.write_text(body + " " * padding)
    assert load_config(path).settings.wiring.max_amps_per_twc == 32
    path.write_text(body + " " * (padding + 1))
    message = message_of(path)
    assert str(path) in message and "larger than 1 MiB" in message


# ---------------------------------------------------------- settings.json at start


def test_run_starts_with_defaults_when_settings_json_is_a_fifo(tmp_path):
    """`twcmaster run` must not hang on a FIFO where settings.json should be: it keeps it
    aside, says so naming the file, and runs (here without a bus: the port does not exist)."""
    settings = tmp_path / "settings.json"
    os.mkfifo(settings)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "config": {**WIRING, "settingsPath": str(tmp_path)},
                "interface": {"RS485": {"port": str(tmp_path / "no-such-tty")}},
            }
        )
    )
    master = subprocess.Popen(
        [sys.executable, "-m", "twcmaster", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and settings.exists():
            time.sleep(0.05)
        time.sleep(0.5)  # let it reach the serial port
    finally:
        master.send_signal(signal.SIGTERM)
        out, err = master.communicate(timeout=10)
    assert master.returncode == 0, err
    assert "Traceback" not in err
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert len(kept) == 1 and kept[0].is_fifo()
    assert "not a regular file but a FIFO" in err and str(settings) in err
    assert "serial port lost" in err  # it got past the settings to the bus


def test_settings_json_symlinked_to_dev_zero_is_kept_aside_not_read(tmp_path):
    settings = tmp_path / "settings.json"
    settings.symlink_to("/dev/zero")
    script = (
        "import sys; from twcmaster.settings import SettingsStore; "
        "print(SettingsStore(sys.argv[1]).settings)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(settings)],
        capture_output=True,
        text=True,
        timeout=8,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)),
    )
    assert result.returncode == 0, result.stderr
    assert "RuntimeSettings(charge_now_amps=0.0," in result.stdout
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.corrupt-")]
    assert kept.is_symlink() and os.readlink(kept) == "/dev/zero"
    assert "not a regular file but a character device (/dev/zero)" in result.stdout + result.stderr
