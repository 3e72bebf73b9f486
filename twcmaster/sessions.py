"""Charge sessions per TWC, two ways, both pure bookkeeping the core feeds at each reply:

``ChargeSessions``: as TWCManager counts them (its console and logging modules announce
them): a session starts when the TWC reports at least ``SESSION_AMPS`` drawn, and ends once
the draw has stayed below that for ``END_AFTER_S`` (a car negotiating its start dips to 0 A
for a moment) or when the TWC is lost. The core emits what it returns.

``PlugInEnergy``: the energy each TWC has given its car since that car was plugged in (the
TWC leaving S0 "ready", or another VIN), through every stop and start of a day on the sun;
integrated from the draw at every heartbeat reply (the TWC's own lifetime counter counts
whole kWh); kept after the car leaves until the next one comes. The snapshot carries it
(``SlaveSnapshot.session_kwh``), so every output shows the same figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from twcmaster import events as ev
from twcmaster.protocol.messages import SlaveState  # S0 READY: no car plugged in (§4.2)

SESSION_AMPS = 1.0  # A drawn that make a charge session (TWCManager's threshold)
END_AFTER_S = 5.0  # s below it before the session counts as ended (TWCManager's debounce)
MAX_GAP_S = 120.0  # no reply for longer (the TWC lost, the daemon stopped): not integrated


@dataclass
class _Session:
    started_s: float
    start_kwh: int | None  # the TWC's lifetime counter at the start, when known
    vin: str = ""
    below_since_s: float | None = None


class ChargeSessions:
    def __init__(self) -> None:
        self._open: dict[int, _Session] = {}

    def heartbeat(
        self, twcid: int, actual_amps: float, now_s: float, lifetime_kwh: int | None
    ) -> list[ev.Event]:
        """A heartbeat reply's draw: a session starting or ending, if one does."""
        session = self._open.get(twcid)
        if actual_amps >= SESSION_AMPS:
            if session is None:
                self._open[twcid] = _Session(now_s, lifetime_kwh)
                return [ev.ChargeSessionStarted(twcid, lifetime_kwh)]
            session.below_since_s = None
            return []
        if session is None:
            return []
        if session.below_since_s is None:
            session.below_since_s = now_s
        if now_s - session.below_since_s < END_AFTER_S:
            return []
        return [self._close(twcid, now_s, lifetime_kwh)]

    def vin(self, twcid: int, vin: str) -> list[ev.Event]:
        """The car's VIN became known during its session."""
        session = self._open.get(twcid)
        if session is None or not vin or vin == session.vin:
            return []
        session.vin = vin
        return [ev.ChargeSessionUpdated(twcid, vin)]

    def lost(self, twcid: int, now_s: float, lifetime_kwh: int | None) -> list[ev.Event]:
        """The TWC went silent: its session, if any, ends now."""
        if twcid not in self._open:
            return []
        return [self._close(twcid, now_s, lifetime_kwh)]

    def _close(self, twcid: int, now_s: float, lifetime_kwh: int | None) -> ev.Event:
        session = self._open.pop(twcid)
        ended_s = session.below_since_s if session.below_since_s is not None else now_s
        delivered = None
        if session.start_kwh is not None and lifetime_kwh is not None:
            delivered = max(0, lifetime_kwh - session.start_kwh)
        return ev.ChargeSessionStopped(
            twcid, ended_s - session.started_s, delivered, session.vin, lifetime_kwh
        )


@dataclass
class _PlugIn:
    energy_wh: float = 0.0
    state: int = SlaveState.READY
    vin: str | None = None
    watts: float = 0.0  # the draw at the last reply, which holds until the next one
    at_s: float | None = None


class PlugInEnergy:
    def __init__(self) -> None:
        self._twcs: dict[int, _PlugIn] = {}

    def reply(self, twcid: int, state: int, watts: float, now_s: float) -> None:
        """A heartbeat reply: the draw since the last one counts, then this one holds."""
        twc = self._twcs.get(twcid)
        if twc is None:
            twc = self._twcs[twcid] = _PlugIn()
        if twc.state == SlaveState.READY and state != SlaveState.READY:  # a car plugged in
            twc.energy_wh = 0.0
        if twc.at_s is not None and 0.0 < now_s - twc.at_s <= MAX_GAP_S:
            twc.energy_wh += twc.watts * (now_s - twc.at_s) / 3600.0
        twc.state, twc.watts, twc.at_s = state, watts, now_s

    def vin(self, twcid: int, vin: str) -> None:
        """The car's VIN: another car than the last one starts a new session."""
        twc = self._twcs.get(twcid)
        if twc is None or not vin:
            return
        if twc.vin is not None and vin != twc.vin:
            twc.energy_wh = 0.0
        twc.vin = vin

    def kwh(self, twcid: int) -> float:
        twc = self._twcs.get(twcid)
        return 0.0 if twc is None else twc.energy_wh / 1000.0
