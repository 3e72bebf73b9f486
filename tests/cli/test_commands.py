"""The commands as a user runs them: real subprocesses, real ptys, no hardware."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemonproc import slave_sim

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


def twcmaster(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twcmaster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def run_master(config: Path, seconds: float, stop_signal: int = signal.SIGTERM) -> tuple[str, str]:
    """`twcmaster run` for a while, then SIGTERM as `docker stop` sends; (stdout, stderr)."""
    master = subprocess.Popen(
        [sys.executable, "-m", "twcmaster", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds)
    master.send_signal(stop_signal)
    out, err = master.communicate(timeout=10)
    assert master.returncode == 0, err
    assert "Traceback" not in err and "twcmaster stopped" in err
    return out, err


def test_check_config_accepts_the_shipped_default():
    result = twcmaster("check-config", "--config", str(REPO / "etc/twcmanager/config.json"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_names_every_bad_key(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(
        "# a comment\n"
        '{"config": {"wiringMaxAmpsAllTWCs": "forty", "wiringMaxAmpsPerTWC": 32,\n'
        '            "minAmpPerTWC": 6},\n'
        ' "interface": {"RS485": {"baud": "fast"}}}\n'
    )
    result = twcmaster("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "config.wiringMaxAmpsAllTWCs" in result.stderr
    assert "config.minAmpPerTWC" in result.stderr and "minAmpsPerTWC" in result.stderr
    assert "interface.RS485.baud" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_loads_the_tesla_key_and_certificate_files(tmp_path):
    """A missing key, a junk certificate and a missing BLE key: rc 2, each by key path (they
    used to pass check-config and fail only at run); no home: a warning."""
    junk = tmp_path / "proxy.crt"
    junk.write_text("not a certificate\n")
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({
        "config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6},
        "vehicle": {
            "teslaAPI": {"enabled": True, "privateKeyFile": str(tmp_path / "missing.pem"),
                         "proxyCert": str(junk)},
            "teslaBLE": {"enabled": True, "privateKeyFile": str(tmp_path / "ble.pem")},
        },
    }))  # fmt: skip
    result = twcmaster("check-config", "--config", str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    for key in ("vehicle.teslaAPI.privateKeyFile", "vehicle.teslaAPI.proxyCert",
                "vehicle.teslaBLE.privateKeyFile"):  # fmt: skip
        assert key in result.stderr, result.stderr
    assert "not a PEM certificate" in result.stderr and "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_says_where_the_default_is(tmp_path):
    result = twcmaster("run", "--config", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "config.json" in result.stderr and "shipped default" in result.stderr


def test_demo_runs_the_daemon_against_simulated_cars():
    result = twcmaster("demo", "--slaves", "2", "--seconds", "8", "--seed", "3", timeout=40)
    assert result.returncode == 0, result.stderr
    ids = re.findall(r"SHB ([0-9A-F]{4}): ", result.stdout)
    assert len(set(ids)) == 2, result.stdout
    assert "Demo stopped" in result.stdout
    assert "Traceback" not in result.stderr


def test_run_against_slave_sim_processes_over_a_pty(tmp_path):
    """Two processes as a user would start them: the simulator makes a pty, the master opens it
    through its config, and the console shows both simulated TWCs charging."""
    link = tmp_path / "ttyTWC"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "config": {
                    "wiringMaxAmpsAllTWCs": 32,
                    "wiringMaxAmpsPerTWC": 32,
                    "minAmpsPerTWC": 6,
                    "nonScheduledAmpsMax": 32,  # no energy source: charge at this rate
                },
                "interface": {"RS485": {"port": str(link)}},
            }
        )
    )
    with slave_sim(link, "--count", "2", "--protocol", "2", "--seed", "5"):
        out, _ = run_master(config, 12)
    lines = [line for line in out.splitlines() if "SHB " in line]
    ids = {re.search(r"SHB ([0-9A-F]{4}):", line).group(1) for line in lines}
    assert len(ids) == 2, out
    charging = [line for line in lines if re.search(r"SHB [0-9A-F]{4}: 01 ", line)]
    assert charging, out  # state 01: the simulated cars charge at the amps offered


def test_slave_sim_rejects_a_bad_count():
    result = twcmaster("slave-sim", "--pty", "--count", "9")
    assert result.returncode == 2


def test_run_charges_from_a_green_energy_source(tmp_path):
    """`twcmaster run` with a URL/JSON source on a loopback HTTP server standing in for the
    inverter: the console shows TWCManager's green-energy lines and the car is offered the
    surplus, not the wiring limit."""
    import http.server
    import threading

    body = json.dumps({"pv": {"power": 4956}, "house": {"power": 726}}).encode()

    class Inverter(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Inverter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    link = tmp_path / "ttyTWC"
    (tmp_path / "settings.json").write_text(json.dumps({"nonScheduledAction": 3}))
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "config": {
                    "wiringMaxAmpsAllTWCs": 32,
                    "wiringMaxAmpsPerTWC": 32,
                    "minAmpsPerTWC": 6,
                    "settingsPath": str(tmp_path),
                    "greenEnergyStartDelay": 0,
                },
                "interface": {"RS485": {"port": str(link)}},
                "sources": {
                    "URL": {
                        "enabled": True,
                        "url": f"http://127.0.0.1:{server.server_port}/",
                        "generationPath": "pv.power",
                        "consumptionPath": "house.power",
                        "interval": 1,
                    }
                },
            }
        )
    )
    try:
        with slave_sim(link, "--seed", "2"):
            out, _ = run_master(config, 14)
    finally:
        server.shutdown()
    assert "Green energy generates 4956W, Consumption 726W" in out, out
    assert "Track Green Energy" in out, out
    offers = [float(a) for a in re.findall(r"SHB [0-9A-F]{4}: 0[18] \d\d\.\d\d/(\d\d\.\d\d)A", out)]
    assert offers and 6 <= max(offers) <= 19, (offers, out)  # ~17.6 A of surplus at 240 V


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP", "SIGINT"])
def test_run_stops_cleanly_on_sighup_and_sigint_and_sends_0_a_first(tmp_path, stop_signal):
    """Issue 7, finding 10: SIGHUP killed the daemon without a clean stop, and no exit sent
    the slaves 0 A (their cars went on until the TWCs gave up on their master)."""
    link = tmp_path / "ttyTWC"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32},
                "interface": {"RS485": {"port": str(link)}},
                "logging": {"format": "json"},
            }
        )
    )
    with slave_sim(link, "--count", "2", "--seed", "4"):
        _, err = run_master(config, 8, stop_signal)
    goodbye = [json.loads(line) for line in err.splitlines() if "0 A before exit" in line]
    assert goodbye and goodbye[0]["done"] is True and len(goodbye[0]["twcids"]) == 2, err
