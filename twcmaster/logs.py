"""Structured logging for the daemon (structlog).

Two renderings of the same events:

* ``console``: readable ``key=value`` lines after a local time stamp, for people (coloured
  only on a terminal);
* ``json``: one JSON object per line (``event``, ``level``, ``timestamp``, ``logger_name`` and
  the event's own keys), for log shippers, only when asked for.

``fmt="auto"`` (the default) is ``console`` everywhere: under Docker (``docker logs``) and
systemd (``journalctl``) too, a person reads these lines, as they read TWCManager's.

Levels are plain integers, so TWCManager's ``debugLevel`` numbers keep their meaning:
the standard Python levels plus TWCManager's INFO2..INFO9 (19..12) and DEBUG2 (9). Any
integer is accepted as the threshold, and ``log.log(level, ...)`` takes any integer too.
Raw bus frames are logged at DEBUG (10).

structlog's ``make_filtering_bound_logger`` only knows the standard levels, so the
threshold is applied in two steps: the bound logger filters at the nearest standard level
at or below the threshold (calls below it cost nothing), and a first processor drops the
rest of what lies below the exact threshold.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import datetime
from logging.handlers import TimedRotatingFileHandler
from typing import Any, TextIO

import structlog

# TWCManager's custom levels, between DEBUG (10) and INFO (20), plus one below DEBUG.
DEBUG2 = 9
INFO9, INFO8, INFO7, INFO6, INFO5, INFO4, INFO3, INFO2 = range(12, 20)

STANDARD_LEVELS = {
    logging.CRITICAL: "critical",
    logging.ERROR: "error",
    logging.WARNING: "warning",
    logging.INFO: "info",
    logging.DEBUG: "debug",
    logging.NOTSET: "notset",
}
LEVEL_NAMES = {
    **STANDARD_LEVELS,
    DEBUG2: "debug2",
    **{level: f"info{21 - level}" for level in range(INFO9, INFO2 + 1)},
}
# structlog method names (as seen by processors) -> level number.
_METHOD_LEVELS = {name: level for level, name in STANDARD_LEVELS.items()}
_METHOD_LEVELS |= {"warn": logging.WARNING, "exception": logging.ERROR, "msg": logging.INFO}

# Event-dict key carrying the exact level of a log.log(level, ...) call to the processors.
_LEVEL_KEY = "_level_no"

FORMATS = ("auto", "console", "json")


def level_name(level: int) -> str:
    """ "info", "info2", "debug2" ... or "level15" for numbers without a name."""
    return LEVEL_NAMES.get(level, f"level{level}")


def get_logger(name: str, **initial_values: Any) -> Any:
    """A lazy structlog logger whose events carry ``logger_name=name``.

    It follows later ``configure_logging`` calls, so module-level loggers are fine. (Its
    ``bind()`` returns a logger fixed to the configuration of that moment.)
    """
    return structlog.get_logger(logger_name=name, **initial_values)


def configure_logging(
    level: int = logging.INFO,
    fmt: str = "auto",
    stream: TextIO | None = None,
    display_milliseconds: bool = False,
) -> None:
    """Configure structlog (and route the standard library's logging through it).

    ``stream`` defaults to ``sys.stderr``, so stdout stays free for the status console.
    ``display_milliseconds`` adds milliseconds to the console time stamp; JSON time stamps
    are always ISO 8601 UTC with microseconds.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    stream = sys.stderr if stream is None else stream
    as_json = fmt == "json"
    processors = [
        _drop_below(level),
        structlog.contextvars.merge_contextvars,
        _add_level,
        _bytes_as_hex,
        *(_json_processors() if as_json else _console_processors(stream, display_milliseconds)),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=_filtering_logger_class(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Not cached: modules take loggers at import time, before this runs.
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(level)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _json_processors() -> list[Any]:
    return [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ]


def _console_processors(stream: TextIO, display_milliseconds: bool) -> list[Any]:
    return [
        _local_time_stamper(display_milliseconds),
        structlog.processors.StackInfoRenderer(),
        structlog.dev.ConsoleRenderer(colors=_is_tty(stream)),
    ]


def _local_time_stamper(display_milliseconds: bool) -> Any:
    """Local wall-clock time, "11:57:49" or "11:57:49.123", like TWCManager's console."""

    def stamp(_logger: Any, _method: str, event_dict: dict) -> dict:
        now = datetime.now()
        text = now.strftime("%H:%M:%S")
        if display_milliseconds:
            text += f".{now.microsecond // 1000:03d}"
        event_dict["timestamp"] = text
        return event_dict

    return stamp


def _event_level(method_name: str, event_dict: dict) -> int:
    return event_dict.get(_LEVEL_KEY, _METHOD_LEVELS.get(method_name, logging.INFO))


def _drop_below(min_level: int) -> Any:
    """Drop events below the exact threshold (the bound logger filters only coarsely)."""

    def drop(_logger: Any, method_name: str, event_dict: dict) -> dict:
        if _event_level(method_name, event_dict) < min_level:
            raise structlog.DropEvent
        return event_dict

    return drop


def _add_level(_logger: Any, method_name: str, event_dict: dict) -> dict:
    event_dict["level"] = level_name(_event_level(method_name, event_dict))
    event_dict.pop(_LEVEL_KEY, None)
    return event_dict


def _bytes_as_hex(_logger: Any, _method: str, event_dict: dict) -> dict:
    """Raw frames read as "C0 FD E2 ..." (TWCManager's hex style), not b'\\xc0...'."""
    for key, value in event_dict.items():
        if isinstance(value, bytes | bytearray | memoryview):
            event_dict[key] = bytes(value).hex(" ").upper()
    return event_dict


def _standard_floor(level: int) -> int:
    """The highest standard level at or below ``level``."""
    return max((std for std in STANDARD_LEVELS if std <= level), default=logging.NOTSET)


def _filtering_logger_class(min_level: int) -> type:
    """structlog's filtering logger, with a ``log()`` that accepts any integer level."""
    base = structlog.make_filtering_bound_logger(_standard_floor(min_level))

    def log(self: Any, level: int, event: str, *args: Any, **kw: Any) -> Any:
        if level < min_level:
            return None
        if args:
            event = event % args
        # The method name only picks the output method; WriteLogger has the same for all.
        method = STANDARD_LEVELS[max(_standard_floor(level), logging.DEBUG)]
        return self._proxy_to_logger(method, event, **{_LEVEL_KEY: level}, **kw)

    async def alog(self: Any, level: int, event: str, *args: Any, **kw: Any) -> Any:
        return log(self, level, event, *args, **kw)

    return type(
        f"TwcmasterLoggerAt{min_level}",
        (base,),
        {
            "log": log,
            "alog": alog,
            "is_enabled_for": lambda self, level: level >= min_level,
            "get_effective_level": lambda self: min_level,
        },
    )


class _StructlogHandler(logging.Handler):
    """Hands records of standard-library loggers (paho, urllib3, asyncio) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = get_logger(record.name)
            kw: dict[str, Any] = {}
            if record.exc_info:
                kw["exc_info"] = record.exc_info
            log.log(record.levelno, record.getMessage(), **kw)
        except Exception:
            self.handleError(record)


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(handler)
    root.addHandler(_StructlogHandler())
    root.setLevel(level)


__all__ = [
    "DEBUG2",
    "INFO2",
    "INFO3",
    "INFO4",
    "INFO5",
    "INFO6",
    "INFO7",
    "INFO8",
    "INFO9",
    "configure_logging",
    "get_logger",
    "level_name",
]


# ------------------------------------------------------------------ the optional log file

LOG_FILE_NAME = "logfile"  # TWCManager's name, in logging.FileLogger.path
LOG_FILE_ROTATE = "H"  # a new file every hour ...
LOG_FILE_KEEP = 24  # ... and a day of them kept, as TWCManager's FileLogger does
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LogFile:
    """``<folder>/logfile``, rotated by the standard library's TimedRotatingFileHandler (every
    hour, 24 kept), fed whole lines without colours. A failing write is reported on stderr by
    the handler and never raised: the bus goes on whatever the disk does."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, LOG_FILE_NAME)
        self._handler = TimedRotatingFileHandler(
            self.path, when=LOG_FILE_ROTATE, backupCount=LOG_FILE_KEEP, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write_line(self, text: str) -> None:
        record = logging.makeLogRecord({"msg": _ANSI_ESCAPE.sub("", text), "args": None})
        self._handler.handle(record)

    def close(self) -> None:
        self._handler.close()


class TeeToLogFile:
    """A text stream that writes through to ``stream`` and copies each complete line to a
    ``LogFile`` (the log on stderr and the console on stdout both go there)."""

    def __init__(self, stream: TextIO, log_file: LogFile) -> None:
        self._stream = stream
        self._log_file = log_file
        self._partial = ""

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._log_file.write_line(line)
        return written

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())
