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


def test_auto_format_is_json_off_a_tty_and_console_on_one() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    get_logger("t").warning("hello", key="value")
    assert json_lines(stream)[0]["level"] == "warning"

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
