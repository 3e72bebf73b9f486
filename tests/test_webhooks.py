"""Policy webhooks against a real HTTP server on loopback: enter / exit on a policy change,
start / stop by TWCManager's thresholds, the status as the POST body, GET without one; a
failing or slow server is logged and never holds up the bus."""

from __future__ import annotations

import socket
import time

import pytest

from tests.sources.conftest import Canned, LoopbackHTTPServer
from twcmaster import events as ev
from twcmaster.config import config_from_dict
from twcmaster.control.policy import Budget
from twcmaster.core import SlaveSnapshot, Snapshot
from twcmaster.outputs.base import Publication
from twcmaster.outputs.webhooks import MAX_PENDING, PolicyWebhooks

WIRING = {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32}


@pytest.fixture
def server():
    server = LoopbackHTTPServer()
    yield server
    server.close()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def base_url(server: LoopbackHTTPServer) -> str:
    return f"http://127.0.0.1:{server.port}"


class Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **fields):
        self.lines.append(("info", event, fields))

    def warning(self, event, **fields):
        self.lines.append(("warning", event, fields))


def hooks_for(policy: dict, config: dict | None = None, **options) -> PolicyWebhooks:
    loaded = config_from_dict({"config": {**WIRING, **(config or {})}, "policy": policy}, "/tmp")
    settings = loaded.settings
    return PolicyWebhooks(settings.policy_rules, settings, wallclock=lambda: 1.7e9, **options)


def slave(twcid: str, actual_amps: float) -> SlaveSnapshot:
    return SlaveSnapshot(
        twcid=twcid, protocol=2, state=1 if actual_amps else 0, state_name="charging",
        allowed_amps=16, actual_amps=actual_amps, offer_amps=16, offer_reason="",
        max_amps=32, vin=None, lifetime_kwh=None, voltages=None, seconds_since_reply=0.5,
    )  # fmt: skip


def step(hooks: PolicyWebhooks, policy: str, *events, amps: tuple[float, ...] = ()) -> None:
    snapshot = Snapshot(
        budget=Budget(16.0, policy, "because"),
        slaves=tuple(slave(f"00{i:02X}", a) for i, a in enumerate(amps)),
        link_up=True,
        alarms=(),
    )
    if amps:  # the draws come with heartbeat replies
        events = (*events, ev.HeartbeatExchanged(0, b"", b""))
    hooks.publish(Publication(0.0, tuple(events), lambda: snapshot))


def test_a_policy_change_calls_exit_of_the_old_then_enter_of_the_new(server):
    server.route("/cn-exit", Canned.json({}), method="POST")
    server.route("/sched-enter", Canned.json({}), method="POST")
    url = base_url(server)
    hooks = hooks_for({"extend": {"webhooks": {
        "Charge Now": {"exit": f"{url}/cn-exit", "enter": f"{url}/cn-enter"},
        "Scheduled Charging": {"enter": f"{url}/sched-enter"},
    }}})  # fmt: skip
    step(hooks, "Scheduled Charging", ev.PolicyChanged("Charge Now", "Scheduled Charging", "x"))
    hooks.close(wait=True)
    assert [r.path for r in server.requests] == ["/cn-exit", "/sched-enter"]
    body = server.requests_to("/sched-enter")[0].json()
    assert body["currentPolicy"] == "Scheduled Charging"
    assert body["maxAmpsToDivideAmongSlaves"] == 16


def test_start_and_stop_follow_twcmanagers_thresholds_and_the_policy_in_force(server):
    server.route("/start", Canned.json({}), method="POST")
    server.route("/stop", Canned.json({}), method="POST")
    url = base_url(server)
    hooks = hooks_for({"extend": {"before": [{
        "name": "Cheap hours", "match": ["tm_hour"], "condition": ["lt"], "value": [6],
        "charge_amps": 16, "webhooks": {"start": f"{url}/start", "stop": f"{url}/stop"},
    }]}})  # fmt: skip
    for amps in [(0.0,), (2.5,), (5.0,), (2.5,), (2.0,), (1.5,), (0.0,)]:
        step(hooks, "Cheap hours", amps=amps)
    step(hooks, "Charge Now", amps=(8.0,))  # another policy: its own (no) webhooks
    hooks.close(wait=True)
    assert [r.path for r in server.requests] == ["/start", "/stop"]


def test_two_cars_starting_call_start_twice(server):
    url = base_url(server)
    hooks = hooks_for({"extend": {"webhooks": {"Track Green Energy": {"start": f"{url}/s"}}}})
    step(hooks, "Track Green Energy", amps=(0.0, 0.0))
    step(hooks, "Track Green Energy", amps=(6.0, 7.0))
    hooks.close(wait=True)
    assert len(server.requests_to("/s")) == 2


def test_webhook_method_get_sends_no_body(server):
    url = base_url(server)
    hooks = hooks_for({"extend": {"webhooks": {"Charge Now": {"enter": f"{url}/in?token=t"}}}},
                      {"webhookMethod": "GET"})  # fmt: skip
    step(hooks, "Charge Now", ev.PolicyChanged("", "Charge Now", "x"))
    hooks.close(wait=True)
    (request,) = server.requests
    assert (request.method, request.path, request.body) == ("GET", "/in", b"")


def test_a_failing_or_slow_webhook_is_logged_and_never_waited_for(server, refused_url):
    server.route("/slow", Canned.json({}, delay_s=2.0), method="POST")
    server.route("/broken", Canned(status=500), method="POST")
    url = base_url(server)
    log = Log()
    hooks = hooks_for({"extend": {"webhooks": {"Charge Now": {
        "enter": f"{url}/slow", "exit": f"{refused_url}/x?access_token=secret",
        "start": f"{url}/broken",
    }}}}, log=log, timeout_s=0.5)  # fmt: skip
    began = time.monotonic()
    step(hooks, "Charge Now", ev.PolicyChanged("Charge Now", "Charge Now", "x"), amps=(9.0,))
    assert time.monotonic() - began < 0.2  # the bus goes on at once
    hooks.close(wait=True)
    failed = {f["url"]: f["error"] for level, event, f in log.lines if event == "webhook failed"}
    assert set(failed) == {f"{url}/slow", f"{refused_url}/x", f"{url}/broken"}
    assert "Timeout" in failed[f"{url}/slow"] and "500" in failed[f"{url}/broken"]
    assert all("secret" not in str(line) for line in log.lines)  # the query is not logged


def test_calls_beyond_the_pending_limit_are_dropped(server):
    server.route("/slow", Canned.json({}, delay_s=1.0), method="POST")
    log = Log()
    hooks = hooks_for(
        {"extend": {"webhooks": {"Charge Now": {"enter": f"{base_url(server)}/slow"}}}},
        log=log, timeout_s=3,
    )  # fmt: skip
    for _ in range(MAX_PENDING + 3):
        step(hooks, "Charge Now", ev.PolicyChanged("", "Charge Now", "x"))
    dropped = [line for line in log.lines if line[1].startswith("webhook dropped")]
    assert len(dropped) == 3
    hooks.close(wait=False)


def test_override_rules_webhooks_are_found_by_name():
    hooks = hooks_for({"override": [{
        "name": "Always", "match": [], "condition": [], "value": [], "charge_amps": 6,
        "webhooks": {"enter": "http://127.0.0.1:9/in"},
    }]})  # fmt: skip
    rules = hooks._rules
    assert rules.webhooks_for("Always").enter == "http://127.0.0.1:9/in"
    assert not rules.webhooks_for("Charge Now")
    hooks.close()


def test_closing_drops_what_is_queued_and_never_waits_for_a_hung_server(server):
    server.route("/slow", Canned.json({}, delay_s=3.0), method="POST")
    slow = {"Charge Now": {"enter": f"{base_url(server)}/slow"}}
    hooks = hooks_for({"extend": {"webhooks": slow}}, timeout_s=5)
    for _ in range(3):
        step(hooks, "Charge Now", ev.PolicyChanged("", "Charge Now", "x"))
    began = time.monotonic()
    hooks.close()
    assert time.monotonic() - began < 0.2
    assert hooks._worker.daemon  # a hung call never holds up the daemon's exit
    step(hooks, "Charge Now", ev.PolicyChanged("", "Charge Now", "x"))  # closed: ignored
    time.sleep(3.5)
    assert len(server.requests_to("/slow")) <= 1  # at most the one under way: the rest dropped


def test_a_step_without_a_heartbeat_reply_or_a_policy_change_builds_no_snapshot(server):
    hooks = hooks_for({"extend": {"webhooks": {"Charge Now": {"start": base_url(server)}}}})

    def no_snapshot():
        raise AssertionError("the snapshot was built")

    hooks.publish(Publication(0.0, (ev.LinkChanged(True),), no_snapshot))
    hooks.close()
