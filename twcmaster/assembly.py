"""How the parts are put together, written once for every driver of the core (the daemon,
the demo, the day simulator, the benchmarks)."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twcmaster.config import AppConfig
from twcmaster.outputs.base import Output
from twcmaster.outputs.console import ConsoleOutput, ConsoleStatus
from twcmaster.outputs.eventlog import EventLog
from twcmaster.vehicles.dispatch import CarCommands

if TYPE_CHECKING:
    from twcmaster.daemon import Daemon
    from twcmaster.remote.commands import RemoteControl
    from twcmaster.settings import SettingsStore


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


def tesla_cars(config: AppConfig, *, clock: Any, wallclock: Any, log: Any) -> Any:
    """The Tesla module when ``vehicle.teslaAPI`` or ``vehicle.teslaBLE`` is on, else None.
    Give it to the daemon as ``cars``, then ``attach_car_module``."""
    if config.tesla_api is None and config.tesla_ble is None:
        return None
    from twcmaster.vehicles.tesla.build import build_tesla_cars

    return build_tesla_cars(config, clock=clock, wallclock=wallclock, log=log)


def attach_car_module(daemon: Daemon, cars: Any) -> None:
    """A car module with a life of its own (the Tesla one: it lists the account's cars at
    start) runs as a service and reads the daemon's snapshot."""
    if cars is not None and hasattr(cars, "start") and hasattr(cars, "view"):
        cars.snapshot = daemon.snapshot
        daemon.add_service(cars)


def attach_interfaces(
    daemon: Daemon, config: AppConfig, store: SettingsStore | None
) -> RemoteControl | None:
    """What the config enables of MQTT status (with Home Assistant discovery), MQTT control
    and the HTTP API, attached to ``daemon``; every change they make goes through one
    ``RemoteControl`` over ``store`` and makes the daemon decide again at once. Call it on
    the running event loop (MQTT control hands paho's thread over to it)."""
    import asyncio

    from twcmaster.remote.commands import RemoteControl

    def wallclock() -> float:  # the daemon's (the demo's runs on its sky)
        return daemon.wallclock().timestamp()

    remote = None
    if store is not None:
        remote = RemoteControl(store, config, on_change=daemon.reconsider, wallclock=wallclock)
    if config.mqtt_status is not None:
        from twcmaster.outputs.mqtt import MqttStatus

        status = MqttStatus(
            config.mqtt_status,
            config,
            control=config.mqtt_control,
            clock=daemon.clock,
            wallclock=wallclock,
        )
        daemon.add_output(status)
        daemon.add_service(status)
    if config.mqtt_control is not None and remote is not None:
        from twcmaster.remote.mqtt import MqttControl

        daemon.add_service(
            MqttControl(
                config.mqtt_control,
                remote,
                loop=asyncio.get_running_loop(),
                request_stop=_stop_like_sigterm,
            )
        )
    if config.http is not None:
        from twcmaster.outputs.http import HttpApi

        api = HttpApi(
            config.http,
            config,
            snapshot=daemon.snapshot,
            remote=remote,
            wallclock=wallclock,
            history_folder=None if store is None else store.path.parent,
        )
        daemon.add_service(api)
    return remote


def _stop_like_sigterm() -> None:
    """TWCManager's control/stop (when allowed): the same clean stop as ``docker stop``."""
    os.kill(os.getpid(), signal.SIGTERM)
