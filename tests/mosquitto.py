"""A real mosquitto broker for tests, started as a child process on a free loopback port.

Use the class (``with Mosquitto(tmp_path / "broker") as broker: ...``), or the fixtures
``mosquitto`` / ``mosquitto_auth``, made available to a directory of tests by a conftest::

    from tests.mosquitto import mosquitto, mosquitto_auth  # noqa: F401  (pytest fixtures)

    def test_something(mosquitto):
        mosquitto.publish("home/pv/power_w", "3480")

A test that needs the broker is skipped, saying why, only when the ``mosquitto`` binary is not
on PATH (Debian: ``apt-get install mosquitto mosquitto-clients``; ``scripts/bootstrap.sh``
installs it); with ``CI=true`` in the environment a missing broker fails the test instead.

Each broker gets its own config in a temporary directory: ``listener <port> 127.0.0.1``,
no persistence, logs to a file the test can read (``broker.log()``). Run as root, mosquitto
would drop to the ``mosquitto`` user and could not read that directory, so the config says
``user root`` then. ``stop()`` and ``start()`` again keep the port, so clients can reconnect
to a restarted broker; ``kill()`` is a crash (SIGKILL: no goodbye to anyone). ``tls=(cert,
key)`` makes the listener TLS-only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.realparts import end, missing

HOST = "127.0.0.1"
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
PUBLISH_TIMEOUT_S = 5.0


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )


def require_mosquitto() -> str:
    """The broker binary, or skip the test with the reason (fail it under ``CI=true``: a CI
    image without the broker would otherwise pass without testing MQTT at all)."""
    path = mosquitto_path()
    if path is None:
        why = (
            "mosquitto is not installed (apt-get install mosquitto mosquitto-clients, "
            "or scripts/bootstrap.sh)"
        )
        missing(why)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Mosquitto:
    """One broker. ``users`` ({name: password}) makes it refuse anonymous clients."""

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.binary = require_mosquitto()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.users = dict(users or {})
        self.tls = tls
        self.process: subprocess.Popen | None = None
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self._write_config()

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> Mosquitto:
        if self.running:
            return self
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        end(process, STOP_TIMEOUT_S)

    def kill(self) -> None:
        """A crash: SIGKILL, the clients' connections cut without a word."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """Publish one message (QoS 1: returns once the broker has it)."""
        import paho.mqtt.client as mqtt

        if auth is None and self.users:
            auth = next(iter(self.users.items()))
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if auth:
            client.username_pw_set(*auth)
        client.connect(self.host, self.port, keepalive=10)
        client.loop_start()
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
            if not info.is_published():
                raise RuntimeError(f"mosquitto did not take {topic!r} within {PUBLISH_TIMEOUT_S} s")
        finally:
            client.disconnect()
            client.loop_stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.tls is not None:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot read our dir
        if self.users:
            password_file = self.directory / "passwords"
            password_file.write_text("")
            for name, password in self.users.items():
                subprocess.run(
                    [_passwd_binary(), "-b", str(password_file), name, password],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with status {self.process.returncode}:\n{self.log()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port}:\n{self.log()}")


def _passwd_binary() -> str:
    path = shutil.which("mosquitto_passwd")
    if path is None:
        missing("mosquitto_passwd is not installed (it comes with mosquitto)")
    return path


@pytest.fixture
def mosquitto(tmp_path: Path):
    """An anonymous broker on a free loopback port; killed at teardown."""
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def mosquitto_auth(tmp_path: Path):
    """A broker that wants user ``twc`` with password ``s3cret pass``."""
    with Mosquitto(tmp_path / "mosquitto-auth", users={"twc": "s3cret pass"}) as broker:
        yield broker
