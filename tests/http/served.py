"""The HTTP API served for real on a free loopback port, from its own event loop in a thread,
so a test talks to it with ``requests`` (or a subprocess) over real sockets.

``moment``: a real ``Snapshot`` of one known moment (a TWC charging on green energy), built
from the core's own dataclasses and the real green computation, for the tests that check
shapes, validation and security; ``tests/http/test_live.py`` runs the real daemon instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.control.sites import make_site
from twcmaster.config import AppConfig, config_from_dict
from twcmaster.config.interfaces import HttpConfig
from twcmaster.control.green import ChargerView, GreenSettings, green_budget
from twcmaster.control.policy import Budget
from twcmaster.core import SlaveSnapshot, Snapshot
from twcmaster.outputs.http import HttpApi
from twcmaster.remote.commands import RemoteControl
from twcmaster.settings import SettingsStore

WIRING = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}
NOW_EPOCH = 1_790_000_000.0  # the wall clock the API is given
TOKEN = "a-long-random-token-0123456789"


def app_config(**sections: Any) -> AppConfig:
    return config_from_dict({"config": WIRING, **sections}, "/tmp").settings


def green_moment_budget() -> Budget:
    """TWCManager's documented example: 4956 W generated, 726 W used, 240 V."""
    green = green_budget(
        make_site(4956, 726),
        ChargerView(0, 0, 0),
        GreenSettings(wiring_max_amps_all_twcs=32, min_amps_per_twc=6, default_voltage_v=240),
    )
    return Budget(green.amps, "Track Green Energy", "tracking the surplus", green=green)


def charging_slave(**changes: Any) -> SlaveSnapshot:
    values: dict[str, Any] = {
        "twcid": "1234",
        "protocol": 2,
        "state": 1,
        "state_name": "charging",
        "allowed_amps": 17.0,
        "actual_amps": 16.5,
        "offer_amps": 17,
        "offer_reason": "the whole budget",
        "max_amps": 32.0,
        "vin": "5YJ3E1EA7KF000001",
        "lifetime_kwh": 1234,
        "voltages": (240, 0, 0),
        "seconds_since_reply": 0.4,
        "desired_amps": 17.62,
        "last_vin": "5YJ3E1EA7KF000001",
        "charger_load_w": 3960.0,
        "car_charging": True,
    }
    return SlaveSnapshot(**(values | changes))


def moment(store: SettingsStore | None = None, **changes: Any) -> Callable[[], Snapshot]:
    """A snapshot function: the moment, with the store's settings as they are when read."""

    def snapshot() -> Snapshot:
        values: dict[str, Any] = {
            "budget": green_moment_budget(),
            "slaves": (charging_slave(),),
            "link_up": True,
            "alarms": (),
            "site": make_site(4956, 726),
            "settings": store.settings if store is not None else None,
        }
        return Snapshot(**(values | changes))

    return snapshot


class Served:
    """``HttpApi`` started on its own loop in a thread; ``url`` once entered."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> Served:
        self._thread.start()
        self.run(self.api.start())
        port = self.api.bound_port
        self.url = f"http://127.0.0.1:{port}" if port is not None else ""
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.api.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the server's loop (the settings store's only thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)


def serve(
    tmp_path: Path | None = None,
    *,
    http: HttpConfig | None = None,
    app: AppConfig | None = None,
    remote: bool = True,
    snapshot: Callable[[], Snapshot] | None = None,
    log: Any = None,
) -> Served:
    """The API over a real settings store in ``tmp_path`` (``remote=False``: none)."""
    app = app or app_config()
    control = None
    if remote and tmp_path is not None:
        store = SettingsStore(tmp_path, wiring_max_amps_all_twcs=32)
        control = RemoteControl(store, app, wallclock=lambda: NOW_EPOCH)
    api = HttpApi(
        http or HttpConfig(listen_port=0),
        app,
        snapshot=snapshot or moment(control.store if control else None),
        remote=control,
        log=log,
        wallclock=lambda: NOW_EPOCH,
    )
    return Served(api)
