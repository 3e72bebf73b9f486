"""The Tesla module as ``vehicle.teslaAPI`` and ``vehicle.teslaBLE`` ask for it: the token
keeper, the client (Fleet API, relay or signing proxy; in-process signing with
``privateKeyFile``), the Bluetooth backend, and ``TeslaCars`` over them (BLE first when both
are configured: ``router.RoutedCarApi``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from twcmaster.config import AppConfig
from twcmaster.config.vehicle import FLEET_HOSTS
from twcmaster.vehicles.scheduling import AsyncioScheduler
from twcmaster.vehicles.tesla.ble import TeslaBle
from twcmaster.vehicles.tesla.cars import TeslaCars, TeslaCarsSettings
from twcmaster.vehicles.tesla.client import TeslaClient
from twcmaster.vehicles.tesla.keys import ClientSetupError, load_private_key
from twcmaster.vehicles.tesla.router import RoutedCarApi
from twcmaster.vehicles.tesla.tokens import TokenKeeper

DEFAULT_REGION = "NA"


def token_file(config: AppConfig) -> Path:
    """``tokenFile``; a relative one lives under ``settingsPath`` (beside settings.json)."""
    assert config.tesla_api is not None
    return Path(config.settings_path) / os.path.expanduser(config.tesla_api.token_file)


def _fleet_ready(config: AppConfig) -> bool:
    """A client ID and a refresh token (in the config, or the token file from earlier)."""
    tesla = config.tesla_api
    assert tesla is not None
    return bool(tesla.client_id) and (bool(tesla.refresh_token) or token_file(config).exists())


def build_tesla_cars(
    config: AppConfig,
    *,
    clock: Callable[[], float],
    wallclock: Callable[[], datetime],
    log: Any,
    scheduler: Any = None,
) -> TeslaCars:
    """Set ``.snapshot`` on the result once the daemon exists, and add it as a service."""
    tesla = config.tesla_api
    settings = TeslaCarsSettings.from_config(tesla) if tesla else TeslaCarsSettings()
    scheduler = scheduler or AsyncioScheduler()
    common = dict(clock=clock, wallclock=wallclock, scheduler=scheduler, log=log)
    try:
        ble = _ble(config, log)
    except ClientSetupError as error:
        return TeslaCars(None, settings, state=("error", str(error)), **common)
    if tesla is not None and ble is not None and not _fleet_ready(config):
        # No Fleet API app or token yet: BLE alone still serves the cars in range.
        log.warning(
            "vehicle.teslaAPI has no clientID or no refresh token yet: Tesla cars over BLE only"
        )
        tesla = None
    if tesla is None:
        assert ble is not None
        cars = TeslaCars(
            None, settings, state=("starting", "checking the Bluetooth adapter"), **common
        )
        ble.on_call = cars.count_call
        routed = RoutedCarApi(ble, None, log=log)
        cars.api, cars.prepare = routed, routed.start
        return cars
    if not tesla.client_id:
        message = "vehicle.teslaAPI.clientID is not set (the Fleet API app's client ID)"
        return TeslaCars(None, settings, state=("error", message), **common)
    keeper = TokenKeeper(
        token_file(config),
        auth_url=tesla.auth_url,
        client_id=tesla.client_id,
        initial_refresh_token=tesla.refresh_token,
        timeout_s=tesla.timeout_s,
    )
    cars = TeslaCars(None, settings, tokens=keeper, **common)
    try:
        client = TeslaClient(
            tesla.base_url or FLEET_HOSTS[DEFAULT_REGION],
            keeper.access_token,
            on_call=cars.count_call,
            proxy_cert=tesla.proxy_cert,
            private_key_file=tesla.private_key_file,
            timeout_s=tesla.timeout_s,
            on_token_rejected=keeper.note_rejected,
        )
    except ClientSetupError as error:
        return TeslaCars(None, settings, state=("error", str(error)), **common)
    routed = None
    if ble is not None:
        ble.on_call = cars.count_call
        routed = RoutedCarApi(ble, client, log=log)

    async def prepare() -> None:
        if routed is not None:
            await routed.start()  # "BLE off" at start-up, once
        await keeper.access_token()
        if tesla.base_url is None and keeper.region in FLEET_HOSTS:
            client.base_url = FLEET_HOSTS[keeper.region]  # before the client's first call

    cars.api, cars.prepare = routed or client, prepare
    cars.closing.append(keeper.close)
    return cars


def _ble(config: AppConfig, log: Any) -> TeslaBle | None:
    """The Bluetooth backend when ``vehicle.teslaBLE`` is on. Its key is read now, so a bad
    path shows at start-up."""
    ble = config.tesla_ble
    if ble is None:
        return None
    return TeslaBle(
        load_private_key(ble.private_key_file),
        ble.vins,
        adapter=ble.adapter,
        scan_timeout_s=ble.scan_timeout_s,
        command_timeout_s=ble.command_timeout_s,
        log=log,
    )
