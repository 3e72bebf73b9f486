"""What config.json's keys mean when they are absent (or ``null``): the one table of defaults.

Keyed by the key as written in the file: the ``config`` section's keys by their name
(``DEFAULTS["greenEnergyStartDelay"]``), the other sections' by their dotted path
(``DEFAULTS["interface.RS485.port"]``). The loader (``load.py``, ``rs485.py``), the model's
field defaults and ``control/policy.py`` all read it. Why the green-energy values are what
they are is told in ``control/policy.py``'s docstring.

Not here: the wiring limits (required, no default) and ``settingsPath`` (the folder of
config.json itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from twcmaster.protocol.codec import BAUD

__all__ = ["DEFAULTS"]

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # --- config: charging
        "minAmpsPerTWC": 12,  # A, the floor of an offer
        "maxAmpsPerTWC": 32,  # A
        "nonScheduledAmpsMax": None,  # A; None: settings.json's, else 0 (as TWCManager)
        "spikeAmpsProactively": True,
        "spikeAmpsReactively": True,
        "spikeAmps": None,  # A; None: the controller's built-in value
        "defaultVoltage": 240.0,  # V
        "numberOfPhases": 1,
        # --- config: green-energy tracking (control/green.py, control/policy.py)
        "startStopDelay": 60.0,  # s, TWCManager's
        "greenEnergyFlexAmps": 0.0,  # A of grid allowed: none
        "useFlexAmpsToStartCharge": False,
        "subtractChargerLoad": False,
        "treatGenerationAsGridDelivery": False,
        "greenEnergyAmpsOffset": 0.0,  # A; + means more consumption
        "greenEnergyLatch": 0.0,  # minutes; 0 = off
        "greenEnergySafeAmps": 0.0,  # A while the energy reading is stale or missing
        "greenEnergyStartMarginAmps": 0.0,  # A
        "greenEnergyStartDelay": 60.0,  # s
        "greenEnergyMinOnTime": 0.0,  # s; the hold budget below decides instead
        "greenEnergyMinOffTime": 60.0,  # s
        "greenEnergySmoothingSeconds": 0.0,  # s; 0 = off
        "greenEnergyRaiseDelay": 20.0,  # s
        "greenEnergyHoldWh": 14.0,  # Wh of grid a hold through a dip may cost, first start
        "greenEnergyHoldGrowth": 1.3,  # x per start made today: starts get dearer
        "greenEnergyStartMarginPerStart": 0.75,  # A more to start, per start made today
        "greenEnergyRotateKWh": 8.0,  # kWh ahead today before a charging car gives its place
        "chargePriority": None,  # {TWCID or VIN: priority}; higher first; None: all equal
        # --- config: the site's grid import cap (control/gridcap.py)
        "maxAmpsAllowedFromGrid": None,  # A, house + chargers; None: no cap
        # --- config: logging
        "logLevel": 20,  # INFO
        "displayMilliseconds": False,
        "logging.format": "auto",
        # --- interface.RS485 (also for the legacy config.rs485adapter and config.baud)
        "interface.RS485.enabled": True,
        "interface.RS485.port": "/dev/ttyUSB0",
        "interface.RS485.baud": BAUD,
        "interface.RS485.slaveTimeout": 26.0,  # s a slave may stay silent
        "interface.RS485.masterTWCID": "7777",
        "interface.RS485.masterSign": "77",
        "interface.RS485.trailerByte": None,  # None: send no trailer byte
    }
)
