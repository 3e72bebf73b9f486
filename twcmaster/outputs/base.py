"""How outputs plug in: each receives every step's events and reads the one ``Snapshot``.

The driver of the core (``daemon.Daemon``, ``simulate.DaySimulation``) calls
``Outputs.publish`` after each ``Core.service`` step that had events. An output never calls
back into the core and never reads its internals: what it shows comes from the events and
the snapshot, so the console, MQTT, HTTP and the web page cannot disagree. A failing output
is reported and skipped for that step; it never stops the bus or the other outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twcmaster.core import Snapshot
    from twcmaster.events import Event


class Publication:
    """One step as the outputs see it: its time, its events, and the snapshot after it
    (built on first use, once for all outputs)."""

    def __init__(
        self, now_s: float, events: tuple[Event, ...], snapshot: Callable[[], Snapshot]
    ) -> None:
        self.now_s = now_s
        self.events = events
        self._make_snapshot = snapshot

    @functools.cached_property
    def snapshot(self) -> Snapshot:
        return self._make_snapshot()


class Output(Protocol):
    def publish(self, publication: Publication) -> None: ...


class Service(Protocol):
    """A part with a lifetime of its own beside the bus (the MQTT client, the HTTP server):
    the daemon starts it once the bus runs and stops it after the slaves' 0 A goodbye.
    ``start`` must return promptly (a broker that does not answer is retried in the
    background, never waited for); neither may raise for a network problem."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Outputs:
    """The outputs of one daemon or simulation, called in order."""

    def __init__(
        self,
        outputs: Iterable[Output] = (),
        on_error: Callable[[str, BaseException, float], None] | None = None,
    ) -> None:
        self._outputs = list(outputs)
        self._on_error = on_error

    def add(self, output: Output) -> None:
        self._outputs.append(output)

    def publish(
        self, now_s: float, events: tuple[Event, ...], snapshot: Callable[[], Snapshot]
    ) -> None:
        if not events:
            return
        publication = Publication(now_s, events, snapshot)
        for output in self._outputs:
            try:
                output.publish(publication)
            except Exception as error:  # an output's bug never stops the bus or the others
                if self._on_error is None:
                    raise
                self._on_error(f"output {type(output).__name__}", error, now_s)
