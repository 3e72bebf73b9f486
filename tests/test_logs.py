"""Logging configuration: JSON and console renderings, integer levels."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import structlog

from twcmaster.logs import DEBUG2, INFO2, INFO9, configure_logging, get_logger, level_name


@pytest.fixture(autouse=True)
def restore_structlog():
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler).__name__ == "_StructlogHandler":
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_parse_and_carry_event_level_timestamp() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    get_logger("twcmaster.test").info("serial port open", port="/dev/ttyUSB0", baud=9600)
    (record,) = json_lines(stream)
    assert record["event"] == "serial port open"
    assert record["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", record["timestamp"])
    assert record["port"] == "/dev/ttyUSB0" and record["baud"] == 9600
    assert record["logger_name"] == "twcmaster.test"


def test_auto_format_is_readable_lines_everywhere_and_coloured_only_on_a_tty() -> None:
    stream = io.StringIO()  # docker logs, journald: not a terminal
    configure_logging(stream=stream)
    get_logger("t").warning("hello", key="value")
    text = stream.getvalue()
    assert re.match(r"\d\d:\d\d:\d\d \[warning *\] hello +\[t\] key=value\n$", text), text
    assert "\x1b[" not in text

    tty = TtyStream()
    configure_logging(stream=tty)
    get_logger("t").warning("hello", key="value")
    assert "hello" in tty.getvalue() and not tty.getvalue().startswith("{")


def test_console_format_has_key_value_pairs() -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream)
    get_logger("twcmaster.transport").warning("serial port lost", port="/dev/ttyUSB0")
    text = stream.getvalue()
    assert "serial port lost" in text
    assert "port=/dev/ttyUSB0" in text
    assert re.match(r"\d\d:\d\d:\d\d ", text)


def test_console_milliseconds() -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream, display_milliseconds=True)
    get_logger("t").info("tick")
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} ", stream.getvalue())


def test_level_filtering_at_info() -> None:
    stream = io.StringIO()
    configure_logging(level=logging.INFO, fmt="json", stream=stream)
    log = get_logger("t")
    log.debug("raw frame", frame=b"\xc0\xfd\xe2")
    log.log(INFO2, "below info")
    log.info("shown")
    log.error("shown too")
    assert [r["event"] for r in json_lines(stream)] == ["shown", "shown too"]


def test_raw_frames_at_debug_show_when_enabled_as_hex() -> None:
    stream = io.StringIO()
    configure_logging(level=logging.DEBUG, fmt="json", stream=stream)
    get_logger("t").debug("rx frame", frame=b"\xc0\xfd\xe2\x12\x34")
    (record,) = json_lines(stream)
    assert record["level"] == "debug"
    assert record["frame"] == "C0 FD E2 12 34"


def test_twcmanager_levels_filter_exactly() -> None:
    stream = io.StringIO()
    configure_logging(level=INFO9, fmt="json", stream=stream)  # 12
    log = get_logger("t")
    log.log(INFO2, "info2")  # 19: shown
    log.log(INFO9, "info9")  # 12: shown
    log.log(11, "eleven")  # below: dropped
    log.debug("debug")  # 10: dropped, though structlog's own filter stops at DEBUG
    log.log(DEBUG2, "debug2")  # 9: dropped
    records = json_lines(stream)
    assert [(r["event"], r["level"]) for r in records] == [("info2", "info2"), ("info9", "info9")]


def test_debug2_shows_everything_down_to_9() -> None:
    stream = io.StringIO()
    configure_logging(level=DEBUG2, fmt="json", stream=stream)
    log = get_logger("t")
    log.log(DEBUG2, "debug2")
    log.log(8, "eight")
    log.debug("debug")
    assert [r["event"] for r in json_lines(stream)] == ["debug2", "debug"]


def test_any_integer_level_is_accepted() -> None:
    stream = io.StringIO()
    configure_logging(level=25, fmt="json", stream=stream)
    log = get_logger("t")
    log.info("info")  # 20 < 25
    log.log(27, "custom")
    log.warning("warning")
    assert [(r["event"], r["level"]) for r in json_lines(stream)] == [
        ("custom", "level27"),
        ("warning", "warning"),
    ]


def test_standard_library_logging_is_routed_through_structlog() -> None:
    stream = io.StringIO()
    configure_logging(level=logging.INFO, fmt="json", stream=stream)
    logging.getLogger("paho.mqtt").warning("connection lost: %s", "timeout")
    logging.getLogger("paho.mqtt").debug("filtered")
    (record,) = json_lines(stream)
    assert record["event"] == "connection lost: timeout"
    assert record["logger_name"] == "paho.mqtt"


def test_exceptions_are_rendered_in_json() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        get_logger("t").exception("source failed")
    (record,) = json_lines(stream)
    assert record["level"] == "error"
    assert "ZeroDivisionError: boom" in record["exception"]


def test_level_names() -> None:
    assert [level_name(n) for n in (9, 12, 19, 20, 40)] == [
        "debug2",
        "info9",
        "info2",
        "info",
        "error",
    ]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure_logging(fmt="xml")


# ---------------------------------------------------------------- logging.FileLogger


def test_the_log_file_gets_log_and_console_lines_without_colours(tmp_path) -> None:
    from twcmaster.logs import LogFile, TeeToLogFile

    log_file = LogFile(str(tmp_path / "log"))
    err, out = TtyStream(), io.StringIO()
    configure_logging(fmt="console", stream=TeeToLogFile(err, log_file))
    get_logger("t").warning("serial port lost", port="/dev/ttyUSB0")
    console = TeeToLogFile(out, log_file)
    console.write("11:57:49: SHB 1234: 00 00.00/00.00A")
    console.write(" 0000 0000  M: 09 00.00/17.00A 0000 0000\n")
    log_file.close()
    lines = (tmp_path / "log" / "logfile").read_text().splitlines()
    assert "\x1b[" in err.getvalue()  # the terminal gets colours ...
    assert "\x1b[" not in lines[0] and "serial port lost" in lines[0]  # ... the file not
    assert lines[1] == "11:57:49: SHB 1234: 00 00.00/00.00A 0000 0000  M: 09 00.00/17.00A 0000 0000"
    assert out.getvalue().endswith("0000 0000\n")


def test_the_log_file_rotates_hourly_and_keeps_a_day(tmp_path) -> None:
    from twcmaster.logs import LogFile

    log_file = LogFile(str(tmp_path))
    handler = log_file._handler
    assert (handler.when, handler.interval, handler.backupCount) == ("H", 3600, 24)
    log_file.write_line("before")
    handler.doRollover()  # what the handler does itself at the top of the hour
    log_file.write_line("after")
    log_file.close()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names[0] == "logfile" and names[1].startswith("logfile.") and len(names) == 2
    assert (tmp_path / "logfile").read_text() == "after\n"


def test_an_unwritable_log_folder_is_a_warning_and_the_daemon_logs_on(tmp_path, capsys) -> None:
    from twcmaster.daemon import _open_log_file

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _open_log_file(str(blocker / "log")) is None
    assert "logging.FileLogger: cannot write" in capsys.readouterr().err


def test_the_demo_with_a_file_logger_writes_its_console_and_log_there(tmp_path) -> None:
    import subprocess
    import sys

    from twcmaster.demo import DEMO_CONFIG

    config = {**DEMO_CONFIG, "logging": {"FileLogger": {"enabled": True, "path": str(tmp_path)}}}
    config["control"] = {}  # no HTTP port to collide with a parallel test
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "twcmaster", "demo", "--config", str(path), "--seconds", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "logfile").read_text()
    assert "SHB " in text and "Slave power for TWCID" in text  # the console's lines
    assert "[info" in text  # and the log's, as readable lines
    shb = [line for line in done.stdout.splitlines() if "SHB " in line]
    assert shb and all(line in text for line in shb)
