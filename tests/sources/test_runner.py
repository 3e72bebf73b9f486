"""SourceRunner on a real event loop, with sources reading real loopback servers.

Intervals are tens of milliseconds so that outages, back-off and recovery play out in well
under a second. Sources that hang or crash are small ``Source`` subclasses: a device that
never answers, and a module with a bug.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import threading
import time

import pytest
from structlog.testing import capture_logs

from tests.sources.conftest import Canned
from tests.sources.test_enphase import PRODUCTION
from tests.sources.test_fronius import POWER_FLOW
from twcmaster.sources.base import Reading, Source, SourceError, SourceTiming
from twcmaster.sources.enphase import PRODUCTION_PATH, EnphaseSource
from twcmaster.sources.fronius import POWER_FLOW_PATH, FroniusSource
from twcmaster.sources.runner import STOP_GRACE_S, SiteReading, SourceRunner

FAST = SourceTiming(interval_s=0.03, timeout_s=1.0, max_age_s=0.5)
WAIT_S = 3.0  # upper bound for a condition that should hold within a few polls


def fronius(server, timing=FAST) -> FroniusSource:
    server.route(POWER_FLOW_PATH, Canned.json(POWER_FLOW))  # voltage: 404, so unknown
    return FroniusSource({"serverIP": server.host, "serverPort": server.port}, timing)


def enphase(server, timing=FAST) -> EnphaseSource:
    server.route(PRODUCTION_PATH, Canned.json(PRODUCTION))
    return EnphaseSource({"serverIP": server.host, "serverPort": server.port}, timing)


async def until(predicate, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class HangingSource(Source):
    """A device that accepts the request and never answers, until released."""

    name = "Hanging"

    def __init__(self, timing: SourceTiming) -> None:
        super().__init__({}, timing)
        self.release = threading.Event()
        self.calls = 0

    def fetch(self) -> Reading:
        self.calls += 1
        self.release.wait(5.0)
        return Reading(generation_w=500.0)


class BuggySource(Source):
    """A source module with a bug: not a SourceError, and it must not escape."""

    name = "Buggy"

    def fetch(self) -> Reading:
        return {"P_PV": 1}["P_Load"]


class ThreadPushSource(Source):
    """Delivers readings from its own thread, like paho's network thread."""

    name = "Pushy"
    push = True

    def __init__(self, timing: SourceTiming) -> None:
        super().__init__({}, timing)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.deliver_threads: set[str] = set()
        self.fail = False

    def start(self, deliver) -> None:
        def run() -> None:
            while not self.stopping.wait(0.02):
                self.deliver_threads.add(threading.current_thread().name)
                if self.fail:
                    deliver(SourceError("Pushy: broker gone"))
                else:
                    deliver(Reading(consumption_w=800.0))

        self.thread = threading.Thread(target=run, name="push-thread", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(1.0)


def test_fresh_readings_combine(make_server):
    sources = [fronius(make_server()), enphase(make_server())]

    async def main() -> SiteReading:
        runner = SourceRunner(sources)
        runner.start()
        try:
            await until(lambda: len(runner.combined().sources) == 2)
            return runner.combined()
        finally:
            await runner.stop()

    site = asyncio.run(main())

    assert site.sources == ("Fronius", "Enphase")
    assert site.generation_w == pytest.approx(3480.0 + 3480.2)
    assert site.consumption_w == pytest.approx(1559.6 + 1559.6)
    assert site.grid_w == pytest.approx(-1920.4 - 1920.6)
    assert site.voltage_v == 241.1  # Fronius has none here (its inverter endpoint 404s)
    assert not site.stale
    assert site.reason == ""


def test_failing_source_goes_stale_logs_once_and_recovers(make_server):
    fronius_server, enphase_server = make_server(), make_server()
    timing = SourceTiming(interval_s=0.03, timeout_s=1.0, max_age_s=0.3)
    sources = [fronius(fronius_server, timing), enphase(enphase_server, timing)]

    async def main():
        runner = SourceRunner(sources, max_backoff_s=0.1)
        runner.start()
        try:
            await until(lambda: len(runner.combined().sources) == 2)
            fronius_server.route(POWER_FLOW_PATH, Canned.text("Datamanager is updating", 503))
            await until(lambda: runner.combined().stale)
            outage = runner.combined()
            await asyncio.sleep(0.3)  # more failures: still one warning
            fronius_server.route(POWER_FLOW_PATH, Canned.json(POWER_FLOW))
            await until(lambda: not runner.combined().stale)
            return outage, runner.combined(), runner.running
        finally:
            await runner.stop()

    with capture_logs() as logs:
        outage, recovered, running = asyncio.run(main())

    assert outage.stale
    assert outage.sources == ("Enphase",)  # the healthy source still counts
    assert outage.generation_w == 3480.2
    assert outage.reason.startswith("Fronius: no reading for ")
    assert "(maxAge 0.3 s): GET http://127.0.0.1:" in outage.reason
    assert "HTTP 503 Service Unavailable: Datamanager is updating" in outage.reason
    assert running
    assert recovered.sources == ("Fronius", "Enphase")
    failed = [e for e in logs if e["event"] == "energy source failed"]
    assert [e["source"] for e in failed] == ["Fronius"]
    recovered_events = [e for e in logs if e["event"] == "energy source recovered"]
    assert [e["source"] for e in recovered_events] == ["Fronius"]


def test_source_that_never_answered(refused_url):
    port = refused_url.rsplit(":", 1)[1]
    source = FroniusSource({"serverIP": "127.0.0.1", "serverPort": port}, FAST)

    async def main() -> SiteReading:
        runner = SourceRunner([source])
        runner.start()
        try:
            await until(lambda: runner.status()[0].failures >= 1)
            return runner.combined()
        finally:
            await runner.stop()

    site = asyncio.run(main())

    assert site.stale
    assert site.sources == ()
    assert (site.generation_w, site.consumption_w, site.grid_w) == (0.0, 0.0, None)
    assert site.reason.startswith("Fronius: no reading yet (started ")
    assert site.reason.endswith("cannot connect: connection refused")


def test_slow_source_delays_neither_others_nor_the_loop(make_server):
    slow_server, fast_server = make_server(), make_server()
    slow_server.route(PRODUCTION_PATH, Canned.json(PRODUCTION, delay_s=1.0))
    slow = EnphaseSource(
        {"serverIP": slow_server.host, "serverPort": slow_server.port},
        SourceTiming(interval_s=0.03, timeout_s=3.0, max_age_s=5.0),
    )
    fast = fronius(fast_server, SourceTiming(interval_s=0.02, timeout_s=1.0, max_age_s=5.0))

    async def main():
        runner = SourceRunner([slow, fast])
        runner.start()
        gaps = []
        last = time.monotonic()
        try:
            for _ in range(60):  # a 10 ms ticker for 0.6 s, while the slow fetch hangs
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
            return gaps, runner.combined()
        finally:
            slow_server.close()  # ends the hanging answer, so the worker thread ends now
            await runner.stop()

    gaps, site = asyncio.run(main())

    assert max(gaps) < 0.06, f"event loop stalled for {max(gaps) * 1000:.0f} ms"
    assert len(fast_server.requests_to(POWER_FLOW_PATH)) >= 8  # it kept its pace
    assert site.sources == ("Fronius",)
    assert site.reason.startswith("Enphase: no reading yet")


def test_hung_fetch_times_out_without_piling_up_threads():
    source = HangingSource(SourceTiming(interval_s=0.02, timeout_s=0.1, max_age_s=1.0))

    async def main():
        runner = SourceRunner([source], max_backoff_s=0.05)
        runner.start()
        try:
            await until(lambda: runner.status()[0].failures >= 3)
            hung = runner.combined()
            source.release.set()  # the device answers at last
            await until(lambda: not runner.combined().stale)
            return hung, runner.combined()
        finally:
            await runner.stop()

    hung, answered = asyncio.run(main())

    assert hung.stale
    assert hung.reason.endswith("s ago): no answer within 0.1 s")
    assert answered.generation_w == 500.0
    # Three timed-out rounds, yet one call: each round waited for the same call.
    assert source.calls <= 2


def test_a_buggy_source_never_raises_into_the_loop():
    source = BuggySource({}, SourceTiming(interval_s=0.02, timeout_s=0.5, max_age_s=1.0))

    async def main():
        runner = SourceRunner([source], max_backoff_s=0.04)
        runner.start()
        try:
            await until(lambda: runner.status()[0].failures >= 3)
            return runner.combined(), runner.running
        finally:
            await runner.stop()

    with capture_logs() as logs:
        site, running = asyncio.run(main())

    assert running
    assert site.stale
    assert site.reason.startswith("Buggy: no reading yet (started ")
    assert site.reason.endswith("s ago): KeyError: 'P_Load'")
    [failed] = [e for e in logs if e["event"] == "energy source failed"]
    assert isinstance(failed["exc_info"], KeyError)  # a bug keeps its traceback


def test_negative_generation_is_an_invalid_reading_never_its_magnitude(http_server):
    # -50 kW is a broken meter or a CT the wrong way round, not 50 kW of sun: the reading
    # is refused, so it goes stale and the budget falls to the safe value.
    document = copy.deepcopy(POWER_FLOW)
    document["Body"]["Data"]["Site"]["P_PV"] = -50_000.0
    http_server.route(POWER_FLOW_PATH, Canned.json(document))
    source = FroniusSource({"serverIP": http_server.host, "serverPort": http_server.port}, FAST)

    async def main():
        runner = SourceRunner([source], max_backoff_s=0.03)
        runner.start()
        try:
            await until(lambda: len(http_server.requests_to(POWER_FLOW_PATH)) >= 4)
            return runner.combined(), runner.status()[0]
        finally:
            await runner.stop()

    with capture_logs() as logs:
        site, status = asyncio.run(main())

    assert site.stale and site.sources == ()
    assert site.generation_w == 0.0
    assert "generation -50000 W is not plausible" in site.reason
    assert status.failures >= 3  # the 4th request may still be under way
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1, warnings  # once, not every poll
    assert warnings[0]["source"] == "Fronius"
    assert "-50000 W" in warnings[0]["error"]


def test_standby_draw_at_night_counts_as_no_generation():
    now = [100.0]
    runner = SourceRunner([_Idle("Inverter")], clock=lambda: now[0])

    runner.push("Inverter", Reading(generation_w=-8.5, consumption_w=300.0))

    site = runner.combined()
    assert not site.stale
    assert site.generation_w == 0.0 and site.consumption_w == 300.0


def test_a_site_whose_house_no_source_measures_says_so():
    """Generation alone (an inverter's own figure) is a usable reading for green tracking, but
    its house is not measured: the combined reading says so (the grid cap needs the house)."""
    now = [100.0]
    runner = SourceRunner([_Idle("Inverter"), _Idle("Meter")], clock=lambda: now[0])
    runner.push("Inverter", Reading(generation_w=3000.0))
    runner.push("Meter", Reading(grid_w=-2000.0))
    site = runner.combined()
    assert not site.stale and site.consumption_w == 0.0 and not site.house_measured
    runner.push("Meter", Reading(consumption_w=0.0, grid_w=-3000.0))  # a house at 0 W, measured
    assert runner.combined().house_measured


@pytest.mark.parametrize(
    "reading",
    [
        Reading(generation_w=-101.0),
        Reading(generation_w=2e6),
        Reading(generation_w=float("nan")),
        Reading(generation_w=float("inf")),
        Reading(generation_w=1000.0, consumption_w=5e6),
        Reading(generation_w=1000.0, consumption_w=float("nan")),
        Reading(generation_w=1000.0, grid_w=-3e6),
    ],
    ids=["negative", "2-MW", "nan", "inf", "5-MW-load", "nan-load", "3-MW-export"],
)
def test_an_implausible_reading_is_refused_and_the_last_good_one_ages_out(reading):
    now = [100.0]
    runner = SourceRunner([_Idle("A", max_age_s=30.0)], clock=lambda: now[0])
    runner.push("A", Reading(generation_w=2000.0, consumption_w=500.0))

    now[0] = 110.0
    runner.push("A", reading)

    [status] = runner.status()
    assert status.failures == 1 and "not plausible" in status.error
    assert runner.combined().generation_w == 2000.0  # the last good reading, until maxAge
    now[0] = 131.0
    assert runner.combined().stale


def test_implausible_readings_warn_at_most_once_a_minute():
    now = [0.0]
    runner = SourceRunner([_Idle("A")], clock=lambda: now[0])

    with capture_logs() as logs:
        for _ in range(10):  # good and bad in turn, every 5 s for 100 s
            runner.push("A", Reading(generation_w=500.0))
            now[0] += 5.0
            runner.push("A", Reading(generation_w=-9000.0))
            now[0] += 5.0

    warned = [e for e in logs if e["log_level"] == "warning"]
    assert len(warned) == 2, warned  # at 5 s and at 65 s
    assert all(e["source"] == "A" and "-9000 W" in e["error"] for e in warned)


def test_backoff_doubles_up_to_the_cap(http_server):
    http_server.route(POWER_FLOW_PATH, Canned.text("down", 503))
    source = FroniusSource(
        {"serverIP": http_server.host, "serverPort": http_server.port},
        SourceTiming(interval_s=0.06, timeout_s=1.0, max_age_s=1.0),
    )

    async def main():
        runner = SourceRunner([source], max_backoff_s=0.24)
        runner.start()
        try:
            await until(lambda: len(http_server.requests_to(POWER_FLOW_PATH)) >= 5)
        finally:
            await runner.stop()

    asyncio.run(main())

    times = [r.at_s for r in http_server.requests_to(POWER_FLOW_PATH)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    expected = [0.06, 0.12, 0.24, 0.24]  # interval, doubling, capped
    assert gaps[:4] == pytest.approx(expected, abs=0.05), gaps


def test_push_source_delivers_from_its_own_thread(http_server):
    push = ThreadPushSource(SourceTiming(interval_s=1.0, timeout_s=1.0, max_age_s=0.2))
    polled = fronius(http_server)

    async def main():
        runner = SourceRunner([polled, push])
        runner.start()
        try:
            await until(lambda: len(runner.combined().sources) == 2)
            both = runner.combined()
            push.fail = True
            await until(lambda: runner.combined().stale)
            return both, runner.combined()
        finally:
            await runner.stop()

    both, failing = asyncio.run(main())

    assert both.consumption_w == pytest.approx(1559.6 + 800.0)  # Pushy measures only load
    assert both.generation_w == 3480.0
    assert push.deliver_threads == {"push-thread"}
    assert failing.reason.startswith("Pushy: no reading for ")
    assert failing.reason.endswith("(maxAge 0.2 s): broker gone")
    assert push.stopping.is_set()  # stop() reached the push source


class _Idle(Source):
    def __init__(self, name: str, max_age_s: float = 60.0) -> None:
        super().__init__({}, SourceTiming(max_age_s=max_age_s))
        self.name = name


def test_combined_with_an_injected_clock():
    now = [1000.0]
    runner = SourceRunner([_Idle("A"), _Idle("B", max_age_s=30.0)], clock=lambda: now[0])

    assert runner.combined().reason == "A: no reading yet; B: no reading yet"

    runner.push("A", Reading(generation_w=3000.0, consumption_w=500.0, grid_w=-2500.0), 990.0)
    runner.push("B", Reading(consumption_w=200.0, voltage_v=230.0))  # at now: 1000
    site = runner.combined()
    assert site == SiteReading(
        generation_w=3000.0,
        consumption_w=700.0,
        grid_w=-2500.0,
        voltage_v=230.0,
        at_s=990.0,
        stale=False,
        reason="",
        sources=("A", "B"),
    )

    assert not runner.combined(1030.0).stale  # B is exactly maxAge old: still fresh
    assert runner.combined(1030.1).reason == "B: no reading for 30.1 s (maxAge 30 s)"
    late = runner.combined(1065.0)
    assert late.stale
    assert (
        late.reason == "A: no reading for 75 s (maxAge 60 s); B: no reading for 65 s (maxAge 30 s)"
    )
    assert late.sources == ()
    assert late.at_s == 1065.0


def test_no_sources_is_stale_and_duplicates_are_refused():
    site = SourceRunner([], clock=lambda: 5.0).combined()
    assert site.stale
    assert site.reason == "no energy source enabled"

    with pytest.raises(ValueError, match="same name: A"):
        SourceRunner([_Idle("A"), _Idle("A")])


def test_stop_closes_sessions_and_leaves_no_task(http_server):
    source = fronius(http_server)

    async def main():
        runner = SourceRunner([source])
        runner.start()
        await until(lambda: not runner.combined().stale)
        await runner.stop()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return runner.running, others

    running, others = asyncio.run(main())

    assert not running
    assert others == []


class StuckSource(Source):
    """A fetch (or a push source's stop) that hangs far longer than any test: a thread that
    cannot be cancelled. ``release`` lets it end at teardown."""

    def __init__(self, name: str, timing: SourceTiming, *, push: bool = False) -> None:
        super().__init__({}, timing)
        self.name = name
        self.push = push
        self.release = threading.Event()

    def fetch(self) -> Reading:
        self.release.wait(60.0)
        return Reading(generation_w=1.0)

    def start(self, deliver) -> None:
        pass

    def stop(self) -> None:
        self.release.wait(60.0)


def test_a_stuck_fetch_or_stop_never_holds_up_the_shutdown():
    """The field report: a hung fetch kept `twcmaster run` alive after SIGTERM, because
    asyncio.run waits for the default executor's threads. stop() gives up after its grace
    and asyncio.run returns at once."""
    timing = SourceTiming(interval_s=0.02, timeout_s=0.1, max_age_s=1.0)
    polled, pushed = StuckSource("Stuck", timing), StuckSource("StuckPush", timing, push=True)

    async def main() -> float:
        runner = SourceRunner([polled, pushed])
        runner.start()
        await until(lambda: runner.status()[0].failures >= 1)
        started = time.monotonic()
        await runner.stop()
        return time.monotonic() - started

    started = time.monotonic()
    try:
        stop_s = asyncio.run(main())
        total_s = time.monotonic() - started
        waited_for = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
    finally:
        polled.release.set()
        pushed.release.set()

    assert stop_s <= STOP_GRACE_S + 0.5
    assert total_s < STOP_GRACE_S + 1.5
    # Nothing of the runner's that the interpreter would wait for (executor threads are
    # named asyncio_N).
    assert [n for n in waited_for if n.startswith(("source", "asyncio"))] == []


class LateFailingSource(Source):
    """The first fetch overruns its timeout, then fails; the next ones answer."""

    name = "Late"

    def __init__(self, timing: SourceTiming) -> None:
        super().__init__({}, timing)
        self.calls = 0

    def fetch(self) -> Reading:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.15)
            raise SourceError("Late: the device gave up")
        return Reading(generation_w=100.0)


def test_an_abandoned_fetch_that_fails_later_is_never_reported_unretrieved():
    """A fetch that times out and then raises, while no round waits for it, used to be
    dropped unretrieved: "Task exception was never retrieved" and a traceback in the log."""
    source = LateFailingSource(SourceTiming(interval_s=0.3, timeout_s=0.1, max_age_s=5.0))
    reported: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        runner = SourceRunner([source])
        runner.start()
        try:
            await until(lambda: not runner.combined().stale)
            gc.collect()  # the abandoned future is garbage now: its __del__ would report
            await asyncio.sleep(0.01)
        finally:
            await runner.stop()

    asyncio.run(main())

    assert source.calls >= 2
    assert reported == []
