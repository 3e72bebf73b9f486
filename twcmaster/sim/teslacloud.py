"""The Tesla cloud as the Tesla module sees it, over the day simulator's cars, in virtual time:
``twcmaster simulate --tesla`` runs the real module (``TeslaCars``: targeting, wake delay,
rate limits, budgets) against it, so a simulated day shows what the module would spend.

It answers at once (virtual time: the module's jobs only wait in ``scheduler.sleep``).
Assumptions, not measurements: a car that has drawn nothing for ``asleep_after_idle_s`` is
asleep (vehicle_data answers 408) until woken; a wake takes ``wake_s``; a command acts on the
car ``command_delay_s`` later (``SimulatedCarApi`` carries it out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from twcmaster.control.carcommands import CarAction, CarCommand
from twcmaster.sim.carapi import CarApiSettings, SimulatedCarApi
from twcmaster.sim.slave import SimulatedSlave
from twcmaster.vehicles.tesla import api

HOME_LAT, HOME_LON = 47.0, 7.0  # where the simulated cars are (the module's home too)


@dataclass(frozen=True)
class CloudSettings:
    asleep_after_idle_s: float = 900.0
    wake_s: float = 30.0
    command_delay_s: float = 5.0


class SimulatedTeslaCloud:
    """``api.CarApi`` over the simulated slaves' cars (each with a VIN)."""

    def __init__(
        self,
        slaves: list[SimulatedSlave],
        clock: Callable[[], float],
        settings: CloudSettings | None = None,
    ) -> None:
        self.settings = settings or CloudSettings()
        self.clock = clock
        self._slaves = {s.car.vin: s for s in slaves if s.car is not None and s.car.vin}
        self.effects = SimulatedCarApi(
            slaves, CarApiSettings(command_delay_s=self.settings.command_delay_s, wake_s=0.0)
        )
        self.on_call: Callable[[str, str | None, bool], None] = lambda *a: None
        self._awake_until: dict[str, float] = {}
        self._online_at: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.commands: list[tuple[float, str, str]] = []  # (at_s, vin, action)

    # -- api.CarApi

    async def list_vehicles(self) -> list[api.VehicleInfo]:
        self._count("data", None)
        return [api.VehicleInfo(vin, f"car {i + 1}", self._state(vin))
                for i, vin in enumerate(self._slaves)]  # fmt: skip

    async def vehicle_state(self, vin: str) -> str:
        self._count("data", vin)
        return self._state(self._known(vin))

    async def charge_data(self, vin: str) -> api.ChargeData:
        self._count("data", vin)
        if self._state(self._known(vin)) != "online":
            raise api.Asleep("vehicle unavailable: vehicle is offline or asleep")
        car = self._slaves[vin].car
        assert car is not None
        limit = round(car.config.soc_limit * 100) if car.soc is not None else 100
        level = round(car.soc * 100) if car.soc is not None else 50
        return api.ChargeData(
            vin, "online", level, limit, self._charging_state(vin), False,
            int(self._slaves[vin].max_amps), HOME_LAT, HOME_LON,
        )  # fmt: skip

    async def wake_up(self, vin: str) -> str:
        self._count("wake", vin)
        now = self.clock()
        if self._state(self._known(vin)) != "online":
            self._online_at[vin] = min(self._online_at.get(vin, now + self.settings.wake_s),
                                       now + self.settings.wake_s)  # fmt: skip
        return self._state(vin)

    async def charge_start(self, vin: str) -> str:
        return self._command(vin, CarAction.START)

    async def charge_stop(self, vin: str) -> str:
        return self._command(vin, CarAction.STOP)

    async def set_charging_amps(self, vin: str, amps: int) -> str:
        self._count("command", vin)
        return ""

    async def close(self) -> None:
        pass

    # -- the simulated side

    def next_due_s(self) -> float | None:
        return self.effects.next_due_s()

    def apply_due(self, now_s: float) -> None:
        self.effects.apply_due(now_s)

    def _known(self, vin: str) -> str:
        if vin not in self._slaves:
            raise api.NotFound(f"no vehicle {vin} on this account")
        return vin

    def _count(self, kind: str, vin: str | None) -> None:
        self.calls[kind] += 1
        self.on_call(kind, vin, True)

    def _state(self, vin: str) -> str:
        """Online while charging or recently woken or active; else asleep."""
        now = self.clock()
        car = self._slaves[vin].car
        assert car is not None
        online_at = self._online_at.get(vin)
        if online_at is not None and now >= online_at:
            self._awake_until[vin] = now + self.settings.asleep_after_idle_s
            del self._online_at[vin]
        if car.idle_s(now) < self.settings.asleep_after_idle_s:
            return "online"
        return "online" if now < self._awake_until.get(vin, -1.0) else "asleep"

    def _charging_state(self, vin: str) -> str:
        car = self._slaves[vin].car
        assert car is not None
        if not car.plugged:
            return "Disconnected"
        if car.actual_amps >= 1.0:
            return "Charging"
        return "Complete" if car.full else "Stopped"

    def _command(self, vin: str, action: CarAction) -> str:
        self._count("command", vin)
        if self._state(self._known(vin)) != "online":
            raise api.Asleep("vehicle unavailable: vehicle is offline or asleep")
        now = self.clock()
        self.commands.append((now, vin, action.value))
        twcid = self._slaves[vin].twcid
        self.effects.request(CarCommand(twcid, vin, action, now, "Tesla cloud"))
        return ""
