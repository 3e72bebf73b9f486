"""The log as an output of the core: one structured line per event worth logging.

Levels: what the user must act on is an error (alarms, bugs caught), what degrades charging
a warning (a slave lost or capped, a car that will not obey), the rest info; frames are
logged at debug level only when asked (``frames``), as they come every second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twcmaster import events as ev
from twcmaster.outputs.base import Publication

ERROR_LOG_REPEAT_S = 60.0  # an internal error's traceback is logged at most this often per place


def _twcid(twcid: int) -> str:
    return f"{twcid:04X}"


class EventLog:
    def __init__(self, log: Any, *, frames: bool = False) -> None:
        self.log = log
        self.frames = frames  # the core reports frames only when asked (Core.frame_events)
        self._error_logged_s: dict[str, float] = {}

    def publish(self, publication: Publication) -> None:
        for event in publication.events:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(self, event, publication.now_s)

    # -- the bus

    def _linked(self, event: ev.SlaveLinked, now: float) -> None:
        self.log.info(
            "slave linked",
            twcid=_twcid(event.twcid),
            protocol=event.protocol,
            max_amps=event.max_amps,
        )

    def _capped(self, event: ev.SlaveCapped, now: float) -> None:
        self.log.warning(
            "slave's own maximum is below wiringMaxAmpsPerTWC: offers are capped at it",
            twcid=_twcid(event.twcid),
            slave_max_amps=event.slave_max_amps,
            wiring_max_amps_per_twc=event.wiring_max_amps_per_twc,
        )

    def _lost(self, event: ev.SlaveLost, now: float) -> None:
        self.log.warning("slave lost", twcid=_twcid(event.twcid), silent_s=round(event.silent_s, 1))

    def _energy(self, event: ev.EnergyReported, now: float) -> None:
        self.log.info(
            "energy report",
            twcid=_twcid(event.twcid),
            lifetime_kwh=event.lifetime_kwh,
            voltages=list(event.voltages),
        )

    def _vin(self, event: ev.VinReported, now: float) -> None:
        self.log.info("vehicle", twcid=_twcid(event.twcid), vin=event.vin or "none")

    # -- decisions and trouble

    def _car_command(self, event: ev.CarCommandWanted, now: float) -> None:
        command = event.command
        self.log.info(
            "car command",
            action=command.action.value,
            twcid=_twcid(command.twcid),
            vin=command.vin or "unknown",
            reason=command.reason,
        )

    def _car_notice(self, event: ev.CarNotice, now: float) -> None:
        self.log.warning(event.message, twcid=_twcid(event.twcid))

    def _bus_stop(self, event: ev.BusStopStep, now: float) -> None:
        step = event.step
        self.log.info(step.message, twcid=_twcid(step.twcid), action=step.action.value)

    def _resumed(self, event: ev.HeartbeatsResumed, now: float) -> None:
        twcid = _twcid(event.twcid)
        self.log.info("heartbeats resumed", twcid=twcid, offer_amps=event.offer_amps)

    def _relay_ack(self, event: ev.RelayAcknowledged, now: float) -> None:
        action = "start" if event.started else "stop"
        self.log.info("relay command acknowledged", twcid=_twcid(event.twcid), action=action)

    def _firmware(self, event: ev.FirmwareReported, now: float) -> None:
        version = ".".join(str(part) for part in event.version)
        self.log.info("firmware", twcid=_twcid(event.twcid), version=version)

    def _alarm(self, event: ev.AlarmRaised, now: float) -> None:
        self.log.error(event.message, alarm=event.kind)

    def _rule_failed(self, event: ev.PolicyRuleFailed, now: float) -> None:
        self.log.warning("policy rule cannot be evaluated", rule=event.rule, problem=event.problem)

    def _internal_error(self, event: ev.InternalError, now: float) -> None:
        """With its traceback at most once every ERROR_LOG_REPEAT_S per place (no flood)."""
        logged_s = self._error_logged_s.get(event.where)
        if logged_s is not None and now - logged_s < ERROR_LOG_REPEAT_S:
            return
        self._error_logged_s[event.where] = now
        self.log.error(
            "internal error, carrying on",
            where=event.where,
            error=repr(event.error)[:200],
            count=event.count,
            exc_info=event.error,
        )

    # -- frames (debug)

    def _received(self, event: ev.BytesReceived, now: float) -> None:
        if self.frames:
            self.log.debug("rx", bytes=event.data.hex(" "))

    def _sent(self, event: ev.FrameSent, now: float) -> None:
        if self.frames:
            self.log.debug("tx", frame=event.wire.hex(" "), message=event.name)

    def _rejected(self, event: ev.FrameRejected, now: float) -> None:
        if self.frames:
            self.log.debug("frame rejected", raw=event.raw.hex(" "), reason=event.reason)

    def _ignored(self, event: ev.FrameIgnored, now: float) -> None:
        if self.frames:
            self.log.debug("ignored", message=event.name, reason=event.reason)

    _handlers: dict[type, Callable[[EventLog, Any, float], None]] = {
        ev.SlaveLinked: _linked,
        ev.SlaveCapped: _capped,
        ev.SlaveLost: _lost,
        ev.EnergyReported: _energy,
        ev.VinReported: _vin,
        ev.CarCommandWanted: _car_command,
        ev.CarNotice: _car_notice,
        ev.BusStopStep: _bus_stop,
        ev.RelayAcknowledged: _relay_ack,
        ev.HeartbeatsResumed: _resumed,
        ev.FirmwareReported: _firmware,
        ev.AlarmRaised: _alarm,
        ev.PolicyRuleFailed: _rule_failed,
        ev.InternalError: _internal_error,
        ev.BytesReceived: _received,
        ev.FrameSent: _sent,
        ev.FrameRejected: _rejected,
        ev.FrameIgnored: _ignored,
    }
