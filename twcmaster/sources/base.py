"""Green-energy sources: one small module per device API, behind one interface.

A source turns its device's answer into a ``Reading`` (watts, normalised signs). Polled
sources implement ``fetch`` (blocking, run in a worker thread with a timeout, so a slow
inverter never blocks the bus); push sources (MQTT) implement ``start``/``stop`` and hand
readings to ``SourceRunner.push``. The runner keeps the latest reading of each source and
combines them; a reading older than its source's ``max_age_s`` counts as missing, so the
budget falls back to the safe value (fail safe, design.md principle 4).

Sign conventions (anchors §7): ``generation_w >= 0`` (PV output), ``consumption_w >= 0``
(house load; includes the chargers only when the config says ``subtractChargerLoad``),
``grid_w`` + import / - export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twcmaster.sources.http import HttpClient
    from twcmaster.sources.modbus import ModbusReader

DEFAULT_INTERVAL_S = 10.0  # TWCManager caches most sources for 10 s
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_AGE_S = 60.0  # older than this: treated as missing (fail safe)


class SourceError(Exception):
    """A source could not produce a reading: unreachable, HTTP error, bad payload.

    The message is for the user's log: it names the source and what went wrong.
    """


@dataclass(frozen=True)
class Reading:
    """One source's view of the site, in watts. None: this source does not measure it."""

    generation_w: float | None = None
    consumption_w: float | None = None
    grid_w: float | None = None  # + import / - export
    voltage_v: float | None = None
    # Values for the user's policy rules (``modules.X.Y``) some sources give besides, such as
    # the Powerwall's gridStatus: (name, value) pairs, read only when a rule asks.
    extras: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def at_grid_meter(cls, grid_w: float, voltage_v: float | None = None) -> Reading:
        """A meter at the grid connection (+ import / - export): what is fed in counts as the
        generation and what is drawn as the house's load, as TWCManager reads such meters."""
        return cls(max(0.0, -grid_w), max(0.0, grid_w), grid_w, voltage_v)


@dataclass(frozen=True)
class SourceTiming:
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_age_s: float = DEFAULT_MAX_AGE_S


class Source:
    """Base of every source. ``name`` is its TWCManager section name (``sources.<name>``)."""

    name: str = "source"
    push: bool = False  # True: readings arrive by themselves (MQTT); no fetch()
    #: TWCManager keys of this section that twcmaster accepts but does not act on: key ->
    #: what the user loses (the warning "ignored; you lose ..." when the key is set, never an
    #: error).
    unused_keys: Mapping[str, str] = {}
    default_interval_s: float = DEFAULT_INTERVAL_S  # when the section gives no ``interval``
    # What it reads through, if anything; a source sets the ones it uses, ``close`` ends them.
    http: HttpClient | None = None
    modbus: ModbusReader | None = None

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        self.config = config
        self.timing = timing
        self.extras_wanted: frozenset[str] = frozenset()

    def read_also(self, names: frozenset[str]) -> None:
        """The ``modules.X.Y`` values the user's policy rules read of this source (a source
        that gives some, e.g. the Powerwall's gridStatus, asks its device for them)."""
        self.extras_wanted = frozenset(names)

    @classmethod
    def interval_default(cls, config: Mapping[str, Any]) -> float:
        """The poll interval when the section gives none (a source whose keys choose
        between a cloud API and a local device may differ by mode)."""
        return cls.default_interval_s

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems of its config section as (key, message), for ``check-config``; the
        timing keys are checked for every source by the registry."""
        return []

    def fetch(self) -> Reading:
        """Blocking: ask the device once. Raise ``SourceError`` on any failure."""
        raise NotImplementedError

    def start(self, deliver) -> None:  # pragma: no cover - push sources only
        """Push sources: begin delivering ``Reading``s by calling ``deliver(reading)`` from
        any thread."""
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - push sources only
        pass

    def close(self) -> None:
        """Release what it holds (its HTTP session, its Modbus connection); called once when
        the daemon stops."""
        for held in (self.http, self.modbus):
            if held is not None:
                held.close()

    def describe(self) -> str:
        """Where it reads from, for logs (never a password or token)."""
        return self.name
