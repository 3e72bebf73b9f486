"""Where the car module's jobs run: on the daemon's asyncio loop, or in the day simulator's
virtual time. A job is a coroutine that awaits the car API and ``scheduler.sleep``; the same
code serves both, so what is simulated is what runs.

In virtual time the car API answers at once (it never suspends); only ``sleep`` yields, and
``VirtualScheduler.run_due(now)`` resumes each job when its time has come.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Coroutine, Generator
from typing import Any

Job = Coroutine[Any, Any, None]


class AsyncioScheduler:
    """Jobs as tasks on the running loop; ``close`` cancels what is left."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _SleepRequest:
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __await__(self) -> Generator[_SleepRequest, None, None]:
        yield self


class VirtualScheduler:
    """Jobs stepped by hand in virtual time (``clock`` is the simulation's)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._waiting: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def spawn(self, job: Job) -> None:
        self._resume(job)

    async def sleep(self, seconds: float) -> None:
        await _SleepRequest(max(0.0, seconds))

    def next_due_s(self) -> float | None:
        return self._waiting[0][0] if self._waiting else None

    def run_due(self, now_s: float) -> None:
        while self._waiting and self._waiting[0][0] <= now_s:
            _, _, job = heapq.heappop(self._waiting)
            self._resume(job)

    def _resume(self, job: Job) -> None:
        try:
            request = job.send(None)
        except StopIteration:
            return
        if not isinstance(request, _SleepRequest):
            job.close()
            raise RuntimeError("a job in virtual time waited on real I/O")
        heapq.heappush(self._waiting, (self.clock() + request.seconds, next(self._order), job))

    async def close(self) -> None:
        for _, _, job in self._waiting:
            job.close()
        self._waiting.clear()
