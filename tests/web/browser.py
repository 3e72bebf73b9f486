"""Real parts for the web page's tests: `twcmaster demo` as its own process on a loopback (or
this machine's own) port, and Debian's Chromium driven by Playwright.

Playwright from PyPI drives the system's ``/usr/bin/chromium`` (``executable_path``): no
browser is downloaded (``playwright install`` is never run). ``scripts/bootstrap.sh``
installs Debian's ``chromium``; when it or Playwright is missing the test skips saying
why, or fails under ``CI=true`` (``tests.realparts.missing``).

    with DemoProcess.start(tmp_path) as demo:       # 2 simulated TWCs, HTTP on a free port
        demo.console_offers()                       # {"44CB": (offer, limit, drawn) ...}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.mosquitto import free_port
from tests.realparts import end, missing

CHROMIUM = "/usr/bin/chromium"
# As root on a machine without network, Chromium hangs without these (sandbox, GPU, QUIC,
# first-run and background fetches).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 20.0
# The console's heartbeat line: "SHB 44CB: 03 00.25/10.00A 0000 0000  M: 09 00.00/10.00A ..."
# (slave: state, drawn / limit applied; master: command, (flag) / limit offered). The master
# block carries an offer only with a set-limit command (09, 05 on protocol 1); "00" is "no
# change" and its amps are 0.
SHB_LINE = re.compile(
    r"SHB (?P<twcid>[0-9A-F]{4}): [0-9A-F]{2} (?P<drawn>\d+\.\d\d)/(?P<limit>\d+\.\d\d)A"
    r".*  M: (?P<command>[0-9A-F]{2}) \d+\.\d\d/(?P<offer>\d+\.\d\d)A"
)
SET_LIMIT_COMMANDS = ("09", "05")
DEMO_WIRING = {
    "wiringMaxAmpsAllTWCs": 32,
    "wiringMaxAmpsPerTWC": 10,
    "minAmpsPerTWC": 6,
    "defaultVoltage": 230,
    "greenEnergyStartDelay": 0,
}


class DemoProcess:
    """`twcmaster demo --config <tmp>/config.json` (settingsPath: the same folder)."""

    def __init__(self, process: subprocess.Popen, folder: Path, url: str, token: str | None):
        self.process = process
        self.folder = folder
        self.url = url
        self.token = token

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        listen_ip: str = "127.0.0.1",
        token: str | None = None,
        slaves: int = 2,
    ) -> DemoProcess:
        port = free_port()
        http: dict[str, Any] = {"enabled": True, "listenPort": port}
        if listen_ip != "127.0.0.1" or token:
            http |= {"listenIP": listen_ip, "token": token}
        config = {
            "config": {**DEMO_WIRING, "settingsPath": str(folder)},
            "control": {"HTTP": http},
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        with open(folder / "demo.stdout", "wb") as out, open(folder / "demo.stderr", "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "twcmaster", "demo", "--config", str(folder / "config.json"),
                 "--slaves", str(slaves), "--seed", "1"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )  # fmt: skip
        host = f"[{listen_ip}]" if ":" in listen_ip else listen_ip
        demo = cls(process, folder, f"http://{host}:{port}", token)
        try:
            demo.wait_for_twcs(slaves)
        except BaseException:
            demo.stop()  # a demo that never linked must not outlive the test
            raise
        return demo

    def __enter__(self) -> DemoProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        end(self.process, 10)

    @property
    def stdout(self) -> str:
        return (self.folder / "demo.stdout").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.folder / "demo.stderr").read_text(errors="replace")

    def get(self, path: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.get(self.url + path, headers=headers, timeout=5)

    def snapshot(self) -> dict[str, Any]:
        return self.get("/api/v1/snapshot").json()

    def wait_for_twcs(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the demo exited: {self.stderr[-2000:]}")
            try:
                if len(self.snapshot()["slaves"]) >= count:
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the demo's {count} TWCs did not link: {self.stderr[-2000:]}")

    def console_lines(self) -> list[str]:
        return self.stdout.splitlines()

    def console_amps(self, after_line: int = 0) -> dict[str, dict[str, float]]:
        """What the console shows of each TWC (lines after ``after_line``): the newest
        heartbeat's drawn amps and the limit the TWC applies, and the newest offer the
        master sent it: {twcid: {"drawn", "limit", "offer"}} ("offer" absent: none sent)."""
        newest: dict[str, dict[str, float]] = {}
        for line in self.console_lines()[after_line:]:
            match = SHB_LINE.search(line)
            if match:
                amps = newest.setdefault(match["twcid"], {})
                amps |= {k: float(match[k]) for k in ("drawn", "limit")}
                if match["command"] in SET_LIMIT_COMMANDS:
                    amps["offer"] = float(match["offer"])
        return newest


def chromium_or_missing() -> str:
    """The system Chromium's path; skips (fails under CI=true) when it is not installed."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        missing("Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
    return str(path)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser) for the block."""
    path = chromium_or_missing()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def this_machines_address() -> str | None:
    """One of this machine's own non-loopback IPv4 addresses (None: it has none). A UDP
    socket 'connected' to a documentation address sends nothing; it only picks the route."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address
