"""The ``logging`` section: the log's format and TWCManager's ``logging.FileLogger``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.config.defaults import DEFAULTS
from twcmaster.config.fields import ABSENT, Section, section
from twcmaster.config.problems import Report

_LOG_FORMATS = ("auto", "console", "json")
DEFAULT_LOG_FOLDER = "/etc/twcmanager/log"  # TWCManager's logging.FileLogger.path


def parse_log_format(data: Mapping[str, Any], report: Report) -> str | None:
    log = Section(section(data, "logging"), "logging", report)
    value = log.raw("format")
    if value is ABSENT:
        return DEFAULTS["logging.format"]
    if isinstance(value, str) and value in _LOG_FORMATS:
        return value
    log.bad("format", value, " or ".join(f'"{name}"' for name in _LOG_FORMATS))
    return None


def parse_log_file(data: Mapping[str, Any], report: Report) -> str | None:
    """``logging.FileLogger`` (TWCManager's keys): when enabled, the folder (``path``,
    TWCManager's default /etc/twcmanager/log) that receives ``logfile``."""
    log = Section(section(data, "logging", "FileLogger"), "logging.FileLogger", report)
    if not log.boolean("enabled", False):
        return None
    folder = log.text("path", DEFAULT_LOG_FOLDER)
    if folder is not None and not folder.startswith("/"):
        log.bad("path", folder, "an absolute folder path like /etc/twcmanager/log")
        return None
    return folder
