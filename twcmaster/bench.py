"""``make bench``: the daemon as a separate process against simulated slaves over a pty.

For each slave count, ``twcmaster run`` runs as its own process (so its CPU time and peak
RSS are its alone, read with ``os.wait4``) with its port on a pty whose other side this process
serves with the simulator, which records when each heartbeat arrives. Prints one table.

    python -m twcmaster.bench [--seconds 60] [--slaves 1,2,3] [--protocol 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from twcmaster.logs import configure_logging
from twcmaster.sim.runner import serve_simulated_twcs

#: Heartbeats in the first seconds are excluded: the link-ready burst and the first exchange
#: are start-up, not the steady cadence the targets are about.
SETTLE_S = 3.0
#: The steady CPU figure starts once imports, link-up, the first queries and the cars' ramps
#: are over.
CPU_SETTLE_S = 10.0


@dataclass(frozen=True)
class Result:
    slaves: int
    seconds: float
    cpu_s: float  # the whole run, start-up included
    steady_cpu_s_per_min: float  # after start-up
    peak_rss_mb: float
    intervals: dict[str, list[float]]  # per slave ID

    def row(self) -> list[str]:
        cells = [
            str(self.slaves),
            f"{self.cpu_s:.3f}",
            f"{self.steady_cpu_s_per_min:.3f}",
            f"{self.peak_rss_mb:.1f}",
        ]
        stats = []
        for twcid, gaps in sorted(self.intervals.items()):
            if not gaps:
                stats.append(f"{twcid}: no heartbeats")
                continue
            gaps = sorted(gaps)
            p99 = gaps[min(len(gaps) - 1, int(round(0.99 * (len(gaps) - 1))))]
            stats.append(
                f"{twcid}: n={len(gaps)} median {statistics.median(gaps):.3f}s "
                f"p99 {p99:.3f}s max {gaps[-1]:.3f}s"
            )
        return cells + ["; ".join(stats)]


# The machine's cost of waking up (``wake_cost``): a tiny piece of work timed right after a
# sleep, against the same work in a busy loop.
WAKE_SAMPLES = 20
WAKE_SLEEP_S = 0.25  # about how long the daemon sleeps between steps with 3 slaves


def _tiny_work() -> int:
    return sum(range(100))  # a few microseconds of interpreter work


def wake_cost(samples: int = WAKE_SAMPLES, sleep_s: float = WAKE_SLEEP_S) -> tuple[float, float]:
    """CPU microseconds of ``_tiny_work`` in a busy loop and right after ``sleep_s`` of sleep.

    A daemon that sleeps between heartbeats pays the second figure at each wake-up. On bare
    metal the two are close. On some virtual machines, waking costs hundreds of microseconds:
    on this project's 2-vCPU Firecracker VM, under a microsecond of work took 0.4-0.6 ms.
    Most of the CPU figure is then the machine's, not the daemon's, so compare figures only
    on one machine.
    """
    clock = time.process_time
    start = clock()
    for _ in range(1000):
        _tiny_work()
    busy_us = (clock() - start) * 1e3  # (s / 1000 runs) in microseconds
    woken_s = 0.0
    for _ in range(samples):
        time.sleep(sleep_s)
        start = clock()
        _tiny_work()
        woken_s += clock() - start
    return busy_us, woken_s / samples * 1e6


def _profiler() -> list[str]:
    """``BENCH_PROFILE=FILE`` runs the daemon under cProfile, writing FILE at exit."""
    path = os.environ.get("BENCH_PROFILE")
    return ["-m", "cProfile", "-o", path] if path else []


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_kib(pid: int) -> int:
    """The process's own peak resident set (VmHWM), read while it runs: ``ru_maxrss`` from
    ``wait4`` would also count the interpreter that exec'd it."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _config_file(port: str, directory: str, interfaces: dict[str, Any]) -> str:
    path = os.path.join(directory, "config.json")
    config = {
        "config": {
            "wiringMaxAmpsAllTWCs": 40, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6,
            "settingsPath": directory,
        },
        "interface": {"RS485": {"port": port}},
        "logging": {"format": "json"},
        **interfaces,
    }  # fmt: skip
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


def _interfaces(mqtt: str | None, http_port: int | None) -> dict[str, Any]:
    """The config sections that turn on MQTT status + control (``--mqtt HOST:PORT``: a
    broker the bench does not start) and the HTTP API (``--http PORT``), to measure them."""
    sections: dict[str, Any] = {}
    if mqtt:
        host, _, port = mqtt.rpartition(":")
        broker = {"enabled": True, "brokerIP": host, "brokerPort": int(port)}
        sections["status"] = {"MQTT": broker}
        sections["control"] = {"MQTT": dict(broker)}
    if http_port:
        sections.setdefault("control", {})["HTTP"] = {"enabled": True, "listenPort": http_port}
    return sections


async def _measure(count: int, seconds: float, protocol: int, interfaces: dict[str, Any]) -> Result:
    loop = asyncio.get_running_loop()
    sim = serve_simulated_twcs(count, protocol=protocol, seed=count, now_s=loop.time())
    bus, tty_path = sim.bus, sim.path
    keep = os.environ.get("BENCH_KEEP")  # a folder to keep the daemon's output in
    with tempfile.TemporaryDirectory() as directory:
        directory = keep or directory
        config = _config_file(tty_path, directory, interfaces)
        with open(os.path.join(directory, "out.log"), "w") as out:
            child = subprocess.Popen(
                [sys.executable, *_profiler(), "-m", "twcmaster", "run", "--config", config],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            started = loop.time()
            try:
                # Steady state: CPU from the end of start-up (imports, link-up) to the end.
                await asyncio.sleep(CPU_SETTLE_S)
                cpu_at_settle_s = _cpu_s(child.pid)
                await asyncio.sleep(seconds - CPU_SETTLE_S)
                cpu_at_end_s = _cpu_s(child.pid)
                peak_rss_kib = _peak_rss_kib(child.pid)
                child.send_signal(signal.SIGTERM)
                _, status, usage = await asyncio.to_thread(os.wait4, child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
            finally:
                if child.returncode is None:  # interrupted: the daemon must not outlive us
                    child.kill()
                    child.wait()
    await sim.close()
    intervals = {}
    for slave in bus.slaves:
        times = [t for t in slave.stats.heartbeat_times_s if t >= started + SETTLE_S]
        intervals[f"{slave.twcid:04X}"] = [b - a for a, b in pairwise(times)]
    return Result(
        slaves=count,
        seconds=seconds,
        cpu_s=usage.ru_utime + usage.ru_stime,
        steady_cpu_s_per_min=(cpu_at_end_s - cpu_at_settle_s) * 60.0 / (seconds - CPU_SETTLE_S),
        peak_rss_mb=peak_rss_kib / 1024,
        intervals=intervals,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twcmaster.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--slaves", default="1,2,3", help="comma-separated slave counts")
    parser.add_argument("--protocol", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--mqtt", metavar="HOST:PORT", help="MQTT status and control to this broker"
    )
    parser.add_argument("--http", metavar="PORT", type=int, help="the HTTP API on this port")
    args = parser.parse_args(argv)
    interfaces = _interfaces(args.mqtt, args.http)
    configure_logging(30, "console", stream=sys.stderr)
    counts = [int(c) for c in args.slaves.split(",")]
    print(
        f"twcmaster bench: daemon process vs simulated protocol-{args.protocol} slaves over a "
        f"pty, {args.seconds:g} s each"
        + (f"; with {' and '.join(sorted(interfaces))} sections on" if interfaces else "")
    )
    header = [
        "slaves",
        "CPU s (whole run)",
        "CPU s/min (steady)",
        "peak RSS MB",
        "heartbeat interval per slave",
    ]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for count in counts:
        result = asyncio.run(_measure(count, args.seconds, args.protocol, interfaces))
        print(" | ".join(result.row()), flush=True)
    busy_us, woken_us = wake_cost()
    print(
        f"This machine's wake-up cost: {busy_us:.1f} us of work in a busy loop takes "
        f"{woken_us:.0f} us of CPU right after a {WAKE_SLEEP_S:g} s sleep (the daemon wakes a "
        "few times a second; see wake_cost)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
