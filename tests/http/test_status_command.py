"""``twcmaster status``: against the API served on a real socket (as a separate process, as a
user runs it, and in-process for the cases around it), and against nothing: refused, silent,
not twcmaster, no token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.http.served import TOKEN, WIRING, green_moment_budget, moment, serve
from tests.mosquitto import free_port
from twcmaster.cli import main
from twcmaster.config.interfaces import HttpConfig
from twcmaster.outputs.console import green_lines
from twcmaster.status_command import StatusError, fetch_snapshot, url_from_config

REPO = Path(__file__).resolve().parents[2]


def twcmaster_status(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("TWCMASTER_TOKEN", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "twcmaster", "status", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env=environment,
    )


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch):
    monkeypatch.delenv("TWCMASTER_TOKEN", raising=False)


def test_status_says_what_the_console_says(tmp_path):
    with serve(tmp_path) as served:
        shown = twcmaster_status("--url", served.url)
        as_json = twcmaster_status("--url", served.url, "--json")
        snapshot = requests.get(served.url + "/api/v1/snapshot", timeout=5).json()
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"twcmaster at {served.url}, ")
    assert lines[0].endswith(": bus linked, 1 TWC(s)")
    assert lines[1] == "Policy: Track Green Energy: tracking the surplus"
    assert lines[2:5] == list(green_lines(green_moment_budget()))  # the console's, verbatim
    assert lines[5] == (
        "TWC 1234: 01 charging 16.50/17.00A, offered 17A (the whole budget); "
        "car 5YJ3E1EA7KF000001; 240/0/0V; 1234 kWh; replied 0.4s ago"
    )
    assert lines[6].startswith("Total: 16.50A drawn of 17A offered (budget 17.62A), 3960W, 1 car")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == snapshot


def test_alarms_charge_now_and_a_twc_switched_off(tmp_path, capsys):
    with serve(tmp_path) as served:
        store = served.api.remote.store
        served.api.snapshot = moment(store, alarms=("TWC 9999 answers with the master's ID",))
        served.run(_call(served.api.remote.charge_now, 24, 600, source="test"))
        assert main(["status", "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert "\nCharge Now: 24A until " in out
    assert out.endswith("ALARM: TWC 9999 answers with the master's ID\n")


async def _call(function, *args, **kwargs):
    return function(*args, **kwargs)  # on the server's loop, the settings store's thread


def test_nothing_answers(capsys):
    port = free_port()  # nobody listens there
    shown = twcmaster_status("--url", f"http://127.0.0.1:{port}")
    assert shown.returncode == 1 and shown.stdout == ""
    assert shown.stderr == (
        f"twcmaster status: no daemon answers at http://127.0.0.1:{port} "
        "(is twcmaster running with control.HTTP enabled?)\n"
    )


def test_a_silent_listener_times_out():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(StatusError, match=r"no answer from .* within 0.3s"):
            fetch_snapshot(url, timeout_s=0.3)


class _Canned(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``body``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<html>a router</html>", "not twcmaster's JSON (is this a twcmaster daemon?)"),
        (b'{"hello": 1}', "answered JSON that is not a twcmaster snapshot"),
        (b'{"format": 99, "slaves": [{}]}', "cannot read snapshot format 99 (KeyError"),
    ],
    ids=["html", "other-json", "future-format"],
)
def test_something_else_answers(capsys, body, said):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.body = body
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["status", "--url", url]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert said in capsys.readouterr().err


def test_the_token_from_the_option_the_environment_or_the_config(tmp_path, capsys):
    port = free_port()
    with serve(
        tmp_path, http=HttpConfig(listen_port=port, token=TOKEN, token_required_for_get=True)
    ):
        url = f"http://127.0.0.1:{port}"
        assert main(["status", "--url", url]) == 1
        assert "a token is required" in capsys.readouterr().err
        assert main(["status", "--url", url, "--token", "not-the-token-0123456"]) == 1
        assert "wrong token" in capsys.readouterr().err
        assert main(["status", "--url", url, "--token", TOKEN, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["slaves"][0]["twcid"] == "1234"
        by_env = twcmaster_status("--url", url, env={"TWCMASTER_TOKEN": TOKEN})
        assert by_env.returncode == 0, by_env.stderr
        config = tmp_path / "config.json"
        http = {"enabled": True, "listenIP": "0.0.0.0", "listenPort": port, "token": TOKEN}
        config.write_text(json.dumps({"config": WIRING, "control": {"HTTP": http}}))
        assert main(["status", "--config", str(config)]) == 0
        assert capsys.readouterr().out.startswith(f"twcmaster at {url}, ")


def test_a_config_without_the_api(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"config": WIRING}))
    assert main(["status", "--config", str(config)]) == 1
    assert "control.HTTP is off in" in capsys.readouterr().err


def test_the_url_of_a_wildcard_bind_is_loopback():
    assert url_from_config(HttpConfig("0.0.0.0", 8081, TOKEN)) == "http://127.0.0.1:8081"
    assert url_from_config(HttpConfig("::", 8080, TOKEN)) == "http://[::1]:8080"
    assert url_from_config(HttpConfig("127.0.0.2", 80)) == "http://127.0.0.2:80"
