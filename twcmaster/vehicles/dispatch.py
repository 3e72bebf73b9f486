"""Carries the core's ``CarCommandWanted`` events to a car API (an output of the core).

A car API is anything with ``request(CarCommand)`` that starts or stops a car: the Tesla
module, or the simulator's ``SimulatedCarApi``. It must not block (a real one queues the
request and talks to the car elsewhere). A failing car API never stops the charging control:
the error is logged and the controller's fallback (0 A after the stop attempts) takes over.
"""

from __future__ import annotations

from typing import Any

from twcmaster.events import CarCommandWanted
from twcmaster.outputs.base import Publication


class CarCommands:
    def __init__(self, api: Any, log: Any) -> None:
        self.api = api
        self.log = log

    def publish(self, publication: Publication) -> None:
        for event in publication.events:
            if isinstance(event, CarCommandWanted):
                self._request(event)

    def _request(self, event: CarCommandWanted) -> None:
        try:
            self.api.request(event.command)
        except Exception as error:  # a failing car API never stops the charging control
            twcid = f"{event.command.twcid:04X}"
            self.log.error("car command failed", twcid=twcid, error=repr(error))
