"""``contrib/docker/twcmaster-ctl``, every verb through the same real engine as test_compose
(the image fixture, a pty bind-mounted as /dev/ttyUSB0 with a simulated TWC on it, an empty
temp dir as the config folder), always run from another directory than the repository."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.container.conftest import COMPOSE_FILE, REPO, extra_ca_certs
from tests.container.registry import Registry
from tests.container.test_compose import (
    CONTAINER,
    PROJECT,
    Compose,
    SimulatedTwcs,
    wait_for,
    write_override,
)

CTL = REPO / "contrib" / "docker" / "twcmaster-ctl"

# Secrets written into the config at several places; none may reach an exported archive.
CANARIES = {
    "control.HTTP.token": "CanaryTok3n-ctl-1",
    "sources.HASS.apiKey": "CanaryApiKey-ctl-2",
    "sources.URL.url (password in the URL)": "CanaryUrlPw-ctl-3",
    "logging.MySQL.password": "CanaryPassw0rd-ctl-4",
}


def ctl(*args: str, env: dict | None = None, cwd: Path, timeout: float = 300):
    return subprocess.run(
        [str(CTL), *args],
        env=env if env is not None else dict(os.environ),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_canaries(default: str) -> str:
    text = default.replace('"token": "",', f'"token": "{CANARIES["control.HTTP.token"]}",', 1)
    text = text.replace(
        '    "control": {',
        '    "sources": {\n'
        '        "HASS": {"enabled": false, "serverIP": "192.168.1.3", '
        f'"apiKey": "{CANARIES["sources.HASS.apiKey"]}"}},\n'
        '        "URL": {"enabled": false, '
        f'"url": "http://me:{CANARIES["sources.URL.url (password in the URL)"]}@192.168.1.4/x"}}\n'
        "    },\n"
        '    "control": {',
        1,
    )
    text = text.replace(
        '        "Console": {',
        '        "MySQL": {"enabled": false, '
        f'"password": "{CANARIES["logging.MySQL.password"]}"}},\n'
        '        "Console": {',
        1,
    )
    assert all(secret in text for secret in CANARIES.values())
    return text


def archive_texts(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:gz") as tar:
        return {
            Path(member.name).name: tar.extractfile(member).read().decode("utf-8", "replace")
            for member in tar.getmembers()
            if member.isfile()
        }


def assert_no_canary(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        for where, secret in CANARIES.items():
            assert secret not in text, f"the secret at {where} is in {name}"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["help"], 0, "exportlogs FILE"),
        (["--help"], 0, "Exit codes:"),
        ([], 2, "a verb is needed"),
        (["bogus"], 2, "unknown verb: bogus"),
        (["exportlogs"], 2, "exportlogs needs one argument"),
        (["status", "extra"], 2, "status takes no arguments"),
        (["logs", "-n", "many"], 2, "-n needs a number"),
    ],
)
def test_help_and_usage_exit_codes(tmp_path, args, code, says):
    done = ctl(*args, cwd=tmp_path, timeout=30)
    assert done.returncode == code, done.stdout + done.stderr
    assert says in done.stdout + done.stderr


@pytest.mark.container
@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("compose_version", ["v1", "v2"], indirect=True)
def test_every_verb(engine, image, compose_version, tmp_path):
    """Every verb; the ctl takes `docker compose` (v2) when it works, else `docker-compose`."""
    config_dir = tmp_path / "etc-twcmanager"
    config_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"  # the ctl's cwd: not the repository
    elsewhere.mkdir()
    timings: dict[str, float] = {}

    with SimulatedTwcs() as twcs:
        override = write_override(tmp_path, twcs.path, config_dir)
        # The same token in the container's environment (`twcmaster status` reads it there):
        # `docker inspect` shows it, so exportlogs must mask it.
        with override.open("a") as file:
            token = CANARIES["control.HTTP.token"]
            file.write(f'    environment:\n      TWCMASTER_TOKEN: "{token}"\n')
        command, compose_env = compose_version
        compose = Compose(engine, command, compose_env, override)
        compose("down", "--remove-orphans", check=False)
        env = dict(
            compose_env,
            TWCMASTER_COMPOSE_FILE=f"{COMPOSE_FILE}:{override}",
            TWCMASTER_CONFIG_DIR=str(config_dir),
            TWCMASTER_CONTAINER=CONTAINER,
            COMPOSE_PROJECT_NAME=PROJECT,
            EXTRA_CA_CERTS=extra_ca_certs(),  # as the image fixture built it: a cache hit
        )

        def run(*args: str, timeout: float = 300):
            started = time.monotonic()
            done = ctl(*args, env=env, cwd=elsewhere, timeout=timeout)
            timings[" ".join(args)] = time.monotonic() - started
            return done

        def state() -> str:
            done = engine.run(
                "docker", "inspect", "-f", "{{.State.Status}}", CONTAINER, check=False
            )
            return done.stdout.strip() if done.returncode == 0 else "absent"

        def container_id() -> str:
            return engine.run("docker", "inspect", "-f", "{{.Id}}", CONTAINER).stdout.strip()

        try:
            # Nothing yet: status says not running (4); clean has nothing to refuse.
            done = run("status")
            assert done.returncode == 4, done.stdout + done.stderr
            assert "not created" in done.stdout

            # setup: the commented default config from the image, the image (cached build).
            done = run("setup")
            assert done.returncode == 0, done.stdout + done.stderr
            config = config_dir / "config.json"
            assert "SET THE TWO WIRING LIMITS" in config.read_text()
            assert (REPO / "etc/twcmanager/config.json").read_text() == config.read_text()
            config.write_text(with_canaries(config.read_text()))

            # start: detached, says how to follow the logs; the daemon answers `status`.
            done = run("start")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "twcmaster-ctl logs" in done.stdout
            assert state() == "running"
            wait_for(twcs.heartbeats, 20, "a heartbeat to the simulated TWC")
            done = wait_for(lambda: (d := run("status")).returncode == 0 and d, 20, "status exit 0")
            assert f"container {CONTAINER}: running" in done.stdout, done.stdout
            assert "TWC" in done.stdout, done.stdout  # the daemon's own snapshot lines

            # clean refuses while running.
            done = run("clean")
            assert done.returncode == 3, done.stdout + done.stderr
            assert "stop it first" in done.stderr
            assert state() == "running"

            # logs: without following, and following (ended by us).
            done = run("logs", "--no-follow", "-n", "50")
            assert done.returncode == 0 and "SHB " in done.stdout, done.stdout + done.stderr
            follow = subprocess.Popen(
                [str(CTL), "logs"], env=env, cwd=elsewhere, stdout=subprocess.PIPE, text=True
            )
            try:
                assert follow.stdout is not None
                assert follow.stdout.readline()
                time.sleep(0.3)
                assert follow.poll() is None, "logs did not keep following"
            finally:
                follow.terminate()
                follow.wait(10)

            # exportlogs while running: the log, inspect, masked config, status; no secret.
            done = run("exportlogs", "out/running")
            assert done.returncode == 0, done.stdout + done.stderr
            archive = elsewhere / "out" / "running.tar.gz"
            assert str(archive) in done.stdout
            texts = archive_texts(archive)
            assert {"container.log", "inspect.json", "config-without-secrets.json"} <= set(texts)
            assert "SHB " in texts["container.log"]
            assert '"wiringMaxAmpsAllTWCs"' in texts["config-without-secrets.json"]
            assert '"token": "***"' in texts["config-without-secrets.json"]
            status = json.loads(texts["status.json"])  # the daemon's snapshot, TWC included
            assert [slave["twcid"] for slave in status["slaves"]], status
            assert_no_canary(texts)
            assert "TWCMASTER_TOKEN=***" in texts["inspect.json"]

            # restart: running again, the same container.
            before = container_id()
            done = run("restart")
            assert done.returncode == 0, done.stdout + done.stderr
            assert state() == "running" and container_id() == before

            # restart-clean: stop, clean, start: a new container (so a new, empty log).
            done = run("restart-clean")
            assert done.returncode == 0, done.stdout + done.stderr
            assert state() == "running" and container_id() != before
            # Its daemon up (it heartbeats; its signal handlers are in place before that), so
            # that the stop below reaches the daemon, not the entrypoint still checking the
            # config (which, as PID 1 without a handler, would not see the SIGTERM at all).
            beats = len(twcs.heartbeats())
            wait_for(lambda: len(twcs.heartbeats()) > beats, 20, "a heartbeat after restart-clean")

            # stop: status 4; exportlogs from a stopped container (one-shot container).
            done = run("stop")
            assert done.returncode == 0, done.stdout + done.stderr
            assert state() == "exited"
            done = run("status")
            assert done.returncode == 4, done.stdout + done.stderr
            assert "exited" in done.stdout
            done = run("exportlogs", str(tmp_path / "stopped.tgz"))
            assert done.returncode == 0, done.stdout + done.stderr
            texts = archive_texts(tmp_path / "stopped.tgz")
            assert "config.json: OK" in texts["container.log"]
            assert "twcmaster stopped" in texts["container.log"]
            assert '"token": "***"' in texts["config-without-secrets.json"]
            assert "status.json" not in texts
            assert_no_canary(texts)

            # clean: the stopped container (and its log) is gone; the config stays.
            done = run("clean")
            assert done.returncode == 0, done.stdout + done.stderr
            assert state() == "absent"
            assert CANARIES["control.HTTP.token"] in config.read_text()
            done = run("exportlogs", str(tmp_path / "none"))
            assert done.returncode == 1, done.stdout + done.stderr

        finally:
            compose("down", "--remove-orphans", check=False, timeout=60)
            shutil.chown(config_dir, os.getuid(), os.getgid())
    print("\n[container] twcmaster-ctl: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


# -- setup with a registry image: `compose pull` instead of `compose build` ---------------

PULL_LABEL = "org.twcmaster.test-pull"


def registry_compose_file(folder: Path, ref: str) -> Path:
    """The shipped compose file with the image ``ref`` and no ``build:`` section."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    service = data["services"]["twcmaster"]
    del service["build"]
    service["image"] = ref
    service["container_name"] = CONTAINER
    path = folder / "registry-compose.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pull_env(engine, tmp_path: Path, ref: str) -> dict[str, str]:
    config_dir = tmp_path / "etc-twcmanager"
    config_dir.mkdir()
    # No TWCMASTER_IMAGE: the ctl takes the image the compose file names.
    env = {k: v for k, v in engine.env.items() if k != "TWCMASTER_IMAGE"}
    return dict(
        env,
        TWCMASTER_COMPOSE_FILE=str(registry_compose_file(tmp_path, ref)),
        TWCMASTER_CONFIG_DIR=str(config_dir),
        TWCMASTER_CONTAINER=CONTAINER,
        COMPOSE_PROJECT_NAME=PROJECT,
    )


@pytest.fixture(scope="module")
def saved_image(engine, image, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "twcmaster.tar"
    engine.run("docker", "save", "-o", str(path), image, timeout=120)
    return path


@pytest.mark.container
@pytest.mark.integration
@pytest.mark.timeout(180)
def test_setup_pulls_a_registry_image(engine, saved_image, tmp_path):
    started = time.monotonic()
    # A label only this run has: a new image id, so the engine must fetch the config (and
    # cannot have the image already).
    nonce = uuid.uuid4().hex
    with Registry(tmp_path / "registry") as registry:
        registry.add_saved(saved_image, "twcmaster", "test", labels={PULL_LABEL: nonce})
        ref = registry.ref("twcmaster", "test")
        env = pull_env(engine, tmp_path, ref)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        try:
            assert not engine.has_image(ref)
            done = ctl("setup", env=env, cwd=elsewhere, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"pulling the image {ref}" in done.stdout, done.stdout
            assert "building" not in done.stdout, done.stdout
            label = engine.run(
                "docker",
                "image",
                "inspect",
                "-f",
                f'{{{{index .Config.Labels "{PULL_LABEL}"}}}}',
                ref,
            ).stdout.strip()
            assert label == nonce, "the image in the engine is not the one the registry served"
            asked = {(method, path) for method, path, status in registry.requests if status == 200}
            assert any("/manifests/" in path for _, path in asked), registry.requests
            assert ("GET", f"/v2/twcmaster/blobs/{registry.config_digest}") in asked
            # The default config came out of the pulled image: the compose file names it, no
            # TWCMASTER_IMAGE needed.
            config = Path(env["TWCMASTER_CONFIG_DIR"]) / "config.json"
            assert "SET THE TWO WIRING LIMITS" in config.read_text()
        finally:
            engine.run("docker", "image", "rm", ref, check=False)
    assert not engine.has_image(ref)
    print(f"\n[container] twcmaster-ctl setup, pulled: {time.monotonic() - started:.1f} s")


@pytest.mark.container
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_setup_says_when_the_pull_fails(engine, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on (once closed)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ref = f"127.0.0.1:{port}/twcmaster:test"
    env = pull_env(engine, tmp_path, ref)
    started = time.monotonic()
    done = ctl("setup", env=env, cwd=tmp_path, timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"pulling the image {ref}" in done.stdout, done.stdout
    assert "the image could not be pulled" in done.stderr, done.stderr
    assert not (Path(env["TWCMASTER_CONFIG_DIR"]) / "config.json").exists()
    assert not engine.has_image(ref)
    print(f"\n[container] setup, unreachable registry: {time.monotonic() - started:.1f} s")
