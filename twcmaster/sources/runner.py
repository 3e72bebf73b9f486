"""Runs the energy sources on the event loop and combines their readings.

``SourceRunner`` owns one asyncio task per polled source. Each round calls the source's
blocking ``fetch`` in a worker thread and waits at most the source's ``timeout_s`` for it,
so a slow or hung inverter never holds up the bus or another source. A fetch that overruns
is left to finish in its thread (a thread cannot be cancelled); the next round waits for
that same call instead of starting a second one, so a hung device never piles up threads.

The worker threads are daemon threads, bridged to the loop by a future (``_in_thread``), not
``asyncio.to_thread``: ``asyncio.run`` and the interpreter wait for the default executor's
threads at exit, so one hung fetch kept the daemon alive after SIGTERM. ``stop()`` waits at
most ``STOP_GRACE_S`` in all for the work under way, then abandons it.

A reading that cannot be true is refused like a failed poll (``_implausible``): generation
below ``-STANDBY_TOLERANCE_W`` (a CT the wrong way round; a few watts negative is an
inverter's standby draw and counts as 0 W), any power beyond ``MAX_PLAUSIBLE_W``, NaN or
infinity. The source's last good reading then ages out and the budget falls to the safe
value; taking the magnitude of a negative reading could raise it to the wiring limit.

After a success the next poll comes ``interval_s`` later; after a failure the delay starts
at ``interval_s`` and doubles up to ``MAX_BACKOFF_S``. An outage is logged once (warning)
when it starts and once (info) when it ends; the failures in between go to debug. Nothing a
source does raises into the caller.

Push sources (``Source.push``, e.g. MQTT) get ``start(deliver)``; ``deliver(reading)`` may be
called from any thread and hands over to the loop with ``call_soon_threadsafe``. A push
source may also deliver a ``SourceError`` to report why readings stopped.

``combined(now_s)`` is what the policy consumes: a ``SiteReading`` summing generation and
consumption over the sources with a fresh reading (TWCManager sums its modules), and
``stale=True`` with a ``reason`` when any source has no reading younger than its
``max_age_s``: the policy then falls back to the safe budget (fail safe, never open).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from twcmaster.control.green import SiteReading  # what combined() returns; re-exported
from twcmaster.logs import get_logger
from twcmaster.sources.base import Reading, Source, SourceError
from twcmaster.sources.secrets import excerpt

MAX_BACKOFF_S = 300.0  # failures are retried at most this far apart
STOP_GRACE_S = 2.0  # stop() waits at most this long in all for work under way, then leaves it
STANDBY_TOLERANCE_W = 100.0  # generation down to -100 W is an inverter's night draw: 0 W
# Above this a single source's reading is broken, not sunny. Stricter than the policy's
# control/green.py MAX_PLAUSIBLE_W (100 MW), its last check on the summed site: a home with
# a few chargers never sees a megawatt on one meter.
MAX_PLAUSIBLE_W = 1e6
MAX_PLAUSIBLE_TEXT = "1 MW"
IMPLAUSIBLE_WARN_EVERY_S = 60.0  # an implausible reading is a warning at most this often
ERROR_CHARS = 400  # the longest error text of a source that reaches the log and the status


@dataclass(frozen=True)
class SourceStatus:
    """One source's state, for the status outputs."""

    name: str
    description: str
    reading: Reading | None
    at_s: float | None  # when the last reading arrived
    fresh: bool
    error: str | None  # the last failure, None after a success
    failures: int  # consecutive failures


class _State:
    """What the runner knows about one source (touched only on the loop's thread)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.reading: Reading | None = None
        self.at_s: float | None = None
        self.error: str | None = None
        self.failures = 0
        self.outage_since_s: float | None = None
        self.in_flight: asyncio.Future | None = None
        self.implausible_warned_s: float | None = None  # when the last such warning went out


class SourceRunner:
    """Polls the sources, collects pushed readings, and combines them."""

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        clock: Callable[[], float] | None = None,
        log: Any = None,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        names = [source.name for source in sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"two sources with the same name: {', '.join(duplicates)}")
        self._states = {source.name: _State(source) for source in sources}
        self._clock = clock
        self._log = log if log is not None else get_logger(__name__)
        self._max_backoff_s = max_backoff_s
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at_s: float | None = None

    # -- life cycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start polling (call from within the running loop)."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = self._loop.time
        self._started_at_s = self._clock()
        for state in self._states.values():
            self._log.info(
                "energy source",
                source=state.source.name,
                reads=state.source.describe(),
                interval_s=state.source.timing.interval_s,
                max_age_s=state.source.timing.max_age_s,
            )
            body = self._run_push(state) if state.source.push else self._poll(state)
            self._tasks.append(asyncio.create_task(body, name=f"source:{state.source.name}"))

    async def stop(self) -> None:
        """Stop every task and push source; close the sources' sessions. Never raises, and
        returns within about ``STOP_GRACE_S``: work still hanging then is left to its
        (daemon) thread."""
        deadline_s = asyncio.get_running_loop().time() + STOP_GRACE_S
        tasks, self._tasks = self._tasks, []
        pending = set(tasks)
        while pending:  # cancel until done: a task must not outlive stop()
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_GRACE_S)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                self._log.error(
                    "energy source task failed", task=task.get_name(), exc_info=task.exception()
                )
        in_flight = {s.in_flight for s in self._states.values() if s.in_flight is not None}
        for future in in_flight:  # whenever it ends, nobody will read its outcome
            future.add_done_callback(_discard_result)
        if in_flight:  # a fetch under way most likely ends within moments: let it
            await asyncio.wait(in_flight, timeout=STOP_GRACE_S / 2)  # the rest is for stop()
        endings = {
            _in_thread(self._end_source, state, name=f"source-stop:{name}"): name
            for name, state in self._states.items()
        }
        done, hanging = await asyncio.wait(endings, timeout=_left_s(deadline_s))
        for ending in hanging:
            ending.add_done_callback(_discard_result)
            self._log.warning(
                "energy source did not stop cleanly",
                source=endings[ending],
                error=f"no return within {STOP_GRACE_S:g} s",
            )
        for ending in done:
            if ending.exception() is not None:  # _end_source catches; a bug must not escape
                self._log.error("stopping energy source failed", exc_info=ending.exception())
        for state in self._states.values():
            state.in_flight = None

    def _end_source(self, state: _State) -> None:
        """In a worker thread: a push source's ``stop``, then ``close``; never raises."""
        source = state.source
        if source.push:
            try:
                source.stop()
            except Exception as exc:
                self._log.warning(
                    "energy source did not stop cleanly",
                    source=source.name,
                    error=_describe_error(exc),
                )
        try:
            source.close()
        except Exception:
            self._log.exception("closing energy source failed", source=source.name)

    # -- readings ------------------------------------------------------------------

    def push(self, name: str, reading: Reading, at_s: float | None = None) -> None:
        """A reading for source ``name`` (on the loop's thread). ``at_s``: when it was
        measured (default: now)."""
        state = self._states.get(name)
        if state is None:
            self._log.warning("reading from an unknown energy source ignored", source=name)
            return
        self._accept(state, reading, self._now() if at_s is None else at_s)

    def combined(self, now_s: float | None = None) -> SiteReading:
        """All fresh readings combined, as of ``now_s`` (default: the clock)."""
        now_s = self._now() if now_s is None else now_s
        if not self._states:
            return SiteReading(0.0, 0.0, None, None, now_s, True, "no energy source enabled", ())
        generation_w = consumption_w = 0.0
        grid_w: float | None = None
        voltage_v: float | None = None
        oldest_s: float | None = None
        house_measured = False
        used: list[str] = []
        problems: list[str] = []
        for name, state in self._states.items():
            if not self._fresh(state, now_s):
                problems.append(self._stale_reason(state, now_s))
                continue
            reading = state.reading
            assert reading is not None and state.at_s is not None
            if reading.generation_w is not None:
                generation_w += reading.generation_w
            if reading.consumption_w is not None:
                consumption_w += reading.consumption_w
                house_measured = True
            if reading.grid_w is not None:
                grid_w = (grid_w or 0.0) + reading.grid_w
            if voltage_v is None and reading.voltage_v:
                voltage_v = reading.voltage_v
            oldest_s = state.at_s if oldest_s is None else min(oldest_s, state.at_s)
            used.append(name)
        return SiteReading(
            generation_w=generation_w,
            consumption_w=consumption_w,
            grid_w=grid_w,
            voltage_v=voltage_v,
            at_s=now_s if oldest_s is None else oldest_s,
            stale=bool(problems),
            reason="; ".join(problems),
            sources=tuple(used),
            house_measured=house_measured,
        )

    def status(self, now_s: float | None = None) -> tuple[SourceStatus, ...]:
        now_s = self._now() if now_s is None else now_s
        return tuple(
            SourceStatus(
                name=name,
                description=state.source.describe(),
                reading=state.reading,
                at_s=state.at_s,
                fresh=self._fresh(state, now_s),
                error=state.error,
                failures=state.failures,
            )
            for name, state in self._states.items()
        )

    # -- polling -------------------------------------------------------------------

    async def _poll(self, state: _State) -> None:
        source = state.source
        while True:
            started_s = self._now()
            ok = await self._poll_once(state)
            delay_s = source.timing.interval_s if ok else self._backoff(state)
            await asyncio.sleep(max(0.0, delay_s - (self._now() - started_s)))

    async def _poll_once(self, state: _State) -> bool:
        """One fetch, waited for at most ``timeout_s``; True when a reading came in."""
        source = state.source
        timeout_s = source.timing.timeout_s
        if state.in_flight is None or state.in_flight.done():
            state.in_flight = _in_thread(source.fetch, name=f"source:{source.name}")
        # asyncio.wait, not wait_for: it leaves the fetch running on timeout, and it never
        # swallows a cancellation that races the fetch's completion (wait_for does on Python
        # 3.11, which left stop() waiting for a task that went on polling).
        done, _ = await asyncio.wait({state.in_flight}, timeout=timeout_s)
        if not done:
            # Abandoned for this round: if it fails while no round waits for it, its error
            # must not surface as "Future exception was never retrieved".
            state.in_flight.add_done_callback(_discard_result)
            self._failed(state, f"{source.name}: no answer within {timeout_s:g} s")
            return False
        try:
            reading = state.in_flight.result()
        except Exception as exc:  # SourceError, or a bug in the source: never raise
            self._failed(state, _describe_error(exc, source.name), exc)
            return False
        if not isinstance(reading, Reading):
            self._failed(
                state, f"{source.name}: fetch() returned {type(reading).__name__}, not a Reading"
            )
            return False
        return self._accept(state, reading, self._now())

    def _backoff(self, state: _State) -> float:
        interval_s = state.source.timing.interval_s
        doubled = interval_s * 2 ** min(state.failures - 1, 30)
        return max(interval_s, min(doubled, self._max_backoff_s))

    async def _run_push(self, state: _State) -> None:
        """Start a push source (in a thread: it may resolve names or connect), retrying with
        back-off until it starts."""
        loop = asyncio.get_running_loop()
        name = state.source.name

        def deliver(item: Reading | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(self._delivered, name, item)
            except RuntimeError:  # the loop has closed: the daemon is shutting down
                pass

        while True:
            try:
                await _in_thread(state.source.start, deliver, name=f"source-start:{name}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(state, _describe_error(exc, name), exc)
                await asyncio.sleep(self._backoff(state))

    def _delivered(self, name: str, item: Reading | BaseException) -> None:
        state = self._states[name]
        if isinstance(item, BaseException):
            self._failed(state, _describe_error(item, name))
        elif isinstance(item, Reading):
            self._accept(state, item, self._now())
        else:
            self._failed(state, f"{name}: delivered {type(item).__name__}, not a Reading")

    # -- bookkeeping ---------------------------------------------------------------

    def _accept(self, state: _State, reading: Reading, at_s: float) -> bool:
        """Take a reading; False (a failed poll) when it cannot be true."""
        name = state.source.name
        problem = _implausible(reading)
        if problem is not None:
            self._implausible(state, f"{name}: {problem}")
            return False
        if reading.generation_w is not None and reading.generation_w < 0:
            reading = replace(reading, generation_w=0.0)  # standby draw: no generation
        if state.outage_since_s is not None:
            self._log.info(
                "energy source recovered",
                source=name,
                outage_s=round(at_s - state.outage_since_s, 1),
                failures=state.failures,
            )
        state.reading, state.at_s = reading, at_s
        state.error, state.failures, state.outage_since_s = None, 0, None
        return True

    def _implausible(self, state: _State, message: str) -> None:
        """A failed poll; its warning at most every ``IMPLAUSIBLE_WARN_EVERY_S``, so a source
        flipping between good and impossible readings does not flood the log."""
        now_s = self._now()
        last_s = state.implausible_warned_s
        warn = last_s is None or now_s - last_s >= IMPLAUSIBLE_WARN_EVERY_S
        if warn and state.outage_since_s is None:
            state.implausible_warned_s = now_s
        self._failed(state, message, warn=warn)

    def _failed(
        self,
        state: _State,
        message: str,
        exc: BaseException | None = None,
        *,
        warn: bool = True,
    ) -> None:
        state.failures += 1
        state.error = message
        if state.outage_since_s is None and warn:
            state.outage_since_s = self._now()
            # A SourceError says it all; anything else is a bug in the source: keep the trace.
            trace = {} if exc is None or isinstance(exc, SourceError) else {"exc_info": exc}
            self._log.warning(
                "energy source failed",
                source=state.source.name,
                error=message,
                retry_in_s=self._backoff(state),
                **trace,
            )
        else:
            self._log.debug(
                "energy source still failing",
                source=state.source.name,
                error=message,
                failures=state.failures,
            )

    def _fresh(self, state: _State, now_s: float) -> bool:
        return state.at_s is not None and now_s - state.at_s <= state.source.timing.max_age_s

    def _stale_reason(self, state: _State, now_s: float) -> str:
        name = state.source.name
        max_age_s = state.source.timing.max_age_s
        if state.at_s is None:
            since = ""
            if self._started_at_s is not None:
                since = f" (started {_seconds(now_s - self._started_at_s)} s ago)"
            text = f"{name}: no reading yet{since}"
        else:
            text = (
                f"{name}: no reading for {_seconds(now_s - state.at_s)} s (maxAge {max_age_s:g} s)"
            )
        if state.error:
            text += f": {_strip_name(state.error, name)}"
        return text

    def _now(self) -> float:
        if self._clock is None:
            try:
                self._clock = asyncio.get_running_loop().time
            except RuntimeError:
                raise RuntimeError("SourceRunner needs a clock or a running loop") from None
        return self._clock()


def _in_thread(function: Callable[..., Any], *args: Any, name: str) -> asyncio.Future:
    """``function(*args)`` in a new daemon thread; a future on the running loop gets its
    result. Unlike ``asyncio.to_thread``, nothing waits for the thread at exit."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody waits any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result, error = None, None
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the loop, never lost in the thread
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop has closed: the daemon is gone
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _left_s(deadline_s: float) -> float:
    return max(0.0, deadline_s - asyncio.get_running_loop().time())


def _implausible(reading: Reading) -> str | None:
    """Why ``reading`` cannot be true, or None."""
    powers = {
        "generation": reading.generation_w,
        "consumption": reading.consumption_w,
        "grid": reading.grid_w,
    }
    for field, value_w in powers.items():
        if value_w is None:
            continue
        if not math.isfinite(value_w):
            return f"{field} {value_w} W is not plausible"
        if abs(value_w) > MAX_PLAUSIBLE_W:
            return f"{field} {value_w:g} W is not plausible (more than {MAX_PLAUSIBLE_TEXT})"
    generation_w = reading.generation_w
    if generation_w is not None and generation_w < -STANDBY_TOLERANCE_W:
        return (
            f"generation {generation_w:g} W is not plausible (negative: a CT clamp the "
            "wrong way round?)"
        )
    return None


def _discard_result(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _describe_error(exc: BaseException, name: str = "") -> str:
    """One short line; a bug's exception text may hold anything a device sent."""
    if isinstance(exc, SourceError):
        return excerpt(str(exc), ERROR_CHARS)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return excerpt(f"{name}: {text}" if name else text, ERROR_CHARS)


def _strip_name(message: str, name: str) -> str:
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _seconds(value: float) -> str:
    """75 -> "75", 30.14 -> "30.1"."""
    return f"{round(value, 1):g}"
