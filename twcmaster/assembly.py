"""How the parts are put together, written once for every driver of the core (the daemon,
the demo, the day simulator, the benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twcmaster.config import AppConfig
from twcmaster.outputs.base import Output
from twcmaster.outputs.console import ConsoleOutput, ConsoleStatus
from twcmaster.outputs.eventlog import EventLog
from twcmaster.vehicles.dispatch import CarCommands


def core_outputs(
    config: AppConfig,
    log: Any,
    *,
    console: ConsoleStatus | None = None,
    cars: Any = None,
    more: Sequence[Output] = (),
) -> list[Output]:
    """The outputs every driver of the core attaches, in this order: the log, the console,
    the car API (anything with ``request(CarCommand)``), then any others (MQTT, HTTP ...)."""
    outputs: list[Output] = [EventLog(log, frames=config.log_level <= 10)]
    if console is not None:
        outputs.append(ConsoleOutput(console))
    if cars is not None:
        outputs.append(CarCommands(cars, log))
    return [*outputs, *more]
