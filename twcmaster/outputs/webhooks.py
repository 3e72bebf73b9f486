"""Policy webhooks: TWCManager's ``policy.extend.webhooks`` and a rule's ``webhooks``.

A policy's URL is called on its events:

* ``enter`` when it becomes the policy, ``exit`` when it stops being the policy (the
  ``PolicyChanged`` event: exit of the old one, then enter of the new one);
* ``start`` when a car begins charging while it is the policy (a TWC's draw rises above 3 A),
  ``stop`` when a car stops (the draw falls below 2 A): TWCManager's thresholds, so a stop
  the policy change itself causes belongs to the new policy, as in TWCManager.

The request is a POST of the status (``/api/getStatus``'s JSON, TWCManager's body), or a
GET without a body with ``config.webhookMethod`` "GET". Calls are sent in order from one
worker thread, each with a timeout: the bus never waits for them. A failing call (refused,
timed out, an HTTP error) is logged and dropped, never retried, never fatal; calls beyond
``MAX_PENDING`` waiting for a slow server are dropped with a warning. The log shows a URL
without its query, where tokens usually are.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twcmaster import events as ev
from twcmaster.logs import get_logger

if TYPE_CHECKING:
    from twcmaster.config import AppConfig
    from twcmaster.config.policyrules import PolicyRules
    from twcmaster.core import Snapshot
    from twcmaster.outputs.base import Publication

START_AMPS = 3.0  # A; a TWC's draw rising above it: a car starts (TWCManager's TWCSlave)
STOP_AMPS = 2.0  # A; falling below it: the car stops
TIMEOUT_S = 10.0  # connect and read, each
MAX_PENDING = 8  # calls waiting for a slow server; more are dropped

Send = Callable[[str, str, Any, float], None]  # (method, url, json body or None, timeout_s)


def send_with_requests(method: str, url: str, body: Any, timeout_s: float) -> None:
    """One webhook call; raises for a network problem or an HTTP error status."""
    import requests  # the edge's blocking client, only in the worker thread

    response = requests.request(method, url, json=body, timeout=timeout_s)
    response.raise_for_status()


@dataclass(frozen=True)
class _Call:
    url: str
    policy: str
    event: str
    body: Any  # the status JSON, or None for a GET


class PolicyWebhooks:
    """An output (``outputs/base.py``) that calls the policies' webhooks."""

    def __init__(
        self,
        rules: PolicyRules,
        config: AppConfig,
        *,
        send: Send = send_with_requests,
        log: Any = None,
        wallclock: Callable[[], float] = time.time,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._rules = rules
        self._config = config
        self._send = send
        self._log = log if log is not None else get_logger("twcmaster.webhooks")
        self._wallclock = wallclock
        self._timeout_s = timeout_s
        self._method = rules.webhook_method
        self._charging: dict[str, bool] = {}  # TWCID -> its car draws (with hysteresis)
        # One daemon thread sends the calls in order (an automation sees exit before enter,
        # as with TWCManager's queue); a daemon thread, so a hung server never delays exit.
        self._calls: queue.Queue[_Call | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._pending = 0  # calls queued or under way
        self._lock = threading.Lock()
        self._closed = False

    def publish(self, publication: Publication) -> None:
        calls: list[tuple[str, str]] = []  # (policy, event)
        for event in publication.events:
            if isinstance(event, ev.PolicyChanged):
                calls += [(event.previous, "exit"), (event.policy, "enter")]
        if not calls and not any(isinstance(e, ev.HeartbeatExchanged) for e in publication.events):
            return  # a car's draw changes only with a heartbeat reply: no snapshot to build
        snapshot = publication.snapshot
        for started in self._car_changes(snapshot):
            calls.append((snapshot.budget.policy, "start" if started else "stop"))
        for policy, event in calls:
            url = self._rules.webhooks_for(policy).url(event)
            if url:
                self._call(url, policy, event, snapshot)

    def _car_changes(self, snapshot: Snapshot) -> list[bool]:
        """True for each car that started charging since the last step, False per stop."""
        changes = []
        for slave in snapshot.slaves:
            was = self._charging.get(slave.twcid, False)
            now = slave.actual_amps > START_AMPS if not was else slave.actual_amps >= STOP_AMPS
            if now != was:
                changes.append(now)
            self._charging[slave.twcid] = now
        return changes

    def _call(self, url: str, policy: str, event: str, snapshot: Snapshot) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pending >= MAX_PENDING:
                self._log.warning("webhook dropped: too many calls waiting", url=_shown(url),
                                  policy=policy, hook=event)  # fmt: skip
                return
            self._pending += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="webhooks", daemon=True)
                self._worker.start()
        body = None
        if self._method == "POST":
            from twcmaster.outputs.twcmanager_json import status_json

            body = status_json(snapshot, self._config, now_epoch=self._wallclock())
        self._calls.put(_Call(url, policy, event, body))

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                self._send(self._method, call.url, call.body, self._timeout_s)
            except Exception as error:  # a failing webhook is told, never fatal
                problem = _hidden(f"{type(error).__name__}: {error}", call.url)
                self._log.warning("webhook failed", url=_shown(call.url), policy=call.policy,
                                  hook=call.event, error=problem)  # fmt: skip
            else:
                self._log.info("webhook called", url=_shown(call.url), policy=call.policy,
                               hook=call.event)  # fmt: skip
            finally:
                with self._lock:
                    self._pending -= 1

    # A service of the daemon (outputs/base.py): nothing to start; at the stop, calls not
    # yet sent are dropped and the ones under way end with their timeout.

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.close()

    def close(self, wait: bool = False) -> None:
        """Take no more calls; ``wait``: until the queued ones are sent (each within its
        timeout), else they are dropped and the one under way is left to its timeout."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if not wait:
            while True:
                try:
                    self._calls.get_nowait()
                except queue.Empty:
                    break
        self._calls.put(None)
        if wait and worker is not None:
            worker.join()


def _shown(url: str) -> str:
    """The URL for the log, without its query (webhook URLs often carry a token there)."""
    return url.split("?", 1)[0]


def _hidden(text: str, url: str) -> str:
    """``text`` without the URL's query (an error message may quote it)."""
    query = url.split("?", 1)[1] if "?" in url else ""
    return text.replace(query, "...") if query else text
