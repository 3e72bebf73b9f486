"""The typed, frozen settings config.json becomes (``load.py`` builds them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twcmaster.config.defaults import DEFAULTS
from twcmaster.config.fields import section
from twcmaster.config.interfaces import HttpConfig, MqttControlConfig, MqttStatusConfig
from twcmaster.config.policyrules import PolicyRules
from twcmaster.config.problems import Problem
from twcmaster.config.vehicle import TeslaApiConfig, TeslaBleConfig

if TYPE_CHECKING:
    from twcmaster.sources.registry import SourceSpec


@dataclass(frozen=True)
class WiringConfig:
    """Hard limits of the installation; every offer is clamped to them."""

    max_amps_all_twcs: int
    max_amps_per_twc: int


@dataclass(frozen=True)
class RS485Config:
    enabled: bool
    port: str  # device path or pyserial URL (socket://host:port, rfc2217://host:port)
    baud: int
    slave_timeout_s: float
    master_twcid: int  # 2 bytes, e.g. 0x7777
    master_sign: int  # 1 byte
    trailer_byte: int | None  # sent after the closing C0; None = send none


@dataclass(frozen=True)
class AppConfig:
    wiring: WiringConfig
    min_amps_per_twc: int
    max_amps_per_twc: int
    non_scheduled_amps_max: int | None
    start_stop_delay_s: float
    default_voltage_v: float
    number_of_phases: int
    settings_path: str
    log_level: int
    display_milliseconds: bool
    spike_amps_proactively: bool
    spike_amps_reactively: bool
    spike_amps: int | None
    green_energy_flex_amps: float
    use_flex_amps_to_start_charge: bool
    rs485: RS485Config
    log_format: str  # "auto", "console" or "json"
    # The whole file as loaded, for sections later modules parse themselves.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)
    # The enabled energy sources, checked and typed by sources/registry.py's schema.
    sources: tuple[SourceSpec, ...] = ()
    # logging.FileLogger: the folder of the rotated "logfile" (None: no file).
    log_file_dir: str | None = None
    # Green-energy tracking (control/green.py, control/policy.py); defaults: defaults.py.
    subtract_charger_load: bool = DEFAULTS["subtractChargerLoad"]
    treat_generation_as_grid_delivery: bool = DEFAULTS["treatGenerationAsGridDelivery"]
    green_energy_amps_offset: float = DEFAULTS["greenEnergyAmpsOffset"]  # A; + = more consumption
    green_energy_latch_min: float = DEFAULTS["greenEnergyLatch"]  # minutes; 0 = off
    green_energy_safe_amps: float = DEFAULTS["greenEnergySafeAmps"]  # A while the reading is bad
    green_energy_start_margin_amps: float = DEFAULTS["greenEnergyStartMarginAmps"]
    green_energy_start_delay_s: float = DEFAULTS["greenEnergyStartDelay"]
    green_energy_min_on_time_s: float = DEFAULTS["greenEnergyMinOnTime"]
    green_energy_min_off_time_s: float = DEFAULTS["greenEnergyMinOffTime"]
    green_energy_smoothing_s: float = DEFAULTS["greenEnergySmoothingSeconds"]  # 0 = off
    green_energy_raise_delay_s: float = DEFAULTS["greenEnergyRaiseDelay"]
    green_energy_hold_wh: float = DEFAULTS["greenEnergyHoldWh"]
    green_energy_hold_growth: float = DEFAULTS["greenEnergyHoldGrowth"]
    green_energy_start_margin_per_start_amps: float = DEFAULTS["greenEnergyStartMarginPerStart"]
    green_energy_rotate_kwh: float = DEFAULTS["greenEnergyRotateKWh"]
    # Who goes first when the surplus carries fewer cars than want it: upper-case TWCID (4 hex
    # digits) or VIN -> priority, higher first (config chargePriority).
    charge_priority: tuple[tuple[str, int], ...] = ()
    # The site's grid import cap, house and chargers together (A; control/gridcap.py);
    # None: no cap.
    max_amps_allowed_from_grid: float | None = DEFAULTS["maxAmpsAllowedFromGrid"]
    # Outputs and remote control (config/interfaces.py); None: disabled.
    mqtt_status: MqttStatusConfig | None = None
    mqtt_control: MqttControlConfig | None = None
    http: HttpConfig | None = None
    # The Tesla car API (config/vehicle.py); None: disabled.
    tesla_api: TeslaApiConfig | None = None
    # The same commands over Bluetooth LE (config/vehicle.py); None: disabled.
    tesla_ble: TeslaBleConfig | None = None
    # How a protocol-2 car is stopped (TWCManager chargeStopMode): 1 its API (else a 0 A
    # offer), 2 pause its TWC's heartbeats, 3 the TWC's stop command (control/busstop.py).
    charge_stop_mode: int = 1
    # The policy section: the user's rules, restrictions, webhooks, check interval
    # (config/policyrules.py); the default changes nothing.
    policy_rules: PolicyRules = PolicyRules()

    def raw_section(self, *keys: str) -> Mapping[str, Any]:
        """``raw[k1][k2]...`` or an empty mapping when absent or not a section."""
        return section(self.raw, *keys)


@dataclass(frozen=True)
class LoadedConfig:
    settings: AppConfig
    warnings: tuple[Problem, ...]
    path: str | None
