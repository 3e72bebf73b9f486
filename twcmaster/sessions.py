"""Charge sessions per TWC, counted as TWCManager counts them (its console and logging
modules announce them): a session starts when the TWC reports at least ``SESSION_AMPS``
drawn, and ends once the draw has stayed below that for ``END_AFTER_S`` (a car negotiating
its start dips to 0 A for a moment) or when the TWC is lost. Pure bookkeeping: the core feeds
it and emits what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from twcmaster import events as ev

SESSION_AMPS = 1.0  # A drawn that make a charge session (TWCManager's threshold)
END_AFTER_S = 5.0  # s below it before the session counts as ended (TWCManager's debounce)


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
