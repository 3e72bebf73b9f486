"""Session fixtures of the container tests: a real Docker engine (found, or installed and
started here), the ``python:3.11-slim`` base (pulled, or a local stand-in), and the image built
from ``contrib/docker/Dockerfile``. Without root or apt-get the tests skip saying why; under
``CI=true`` that is a failure instead."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.container.engine import Engine, Unavailable
from tests.realparts import missing

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "contrib" / "docker" / "docker-compose.yml"
IMAGE = "twcmaster:local"


def extra_ca_certs() -> str:
    """The host's own extra CA certificates (a TLS-intercepting proxy's), handed to the build
    through the Dockerfile's EXTRA_CA_CERTS argument so pip can reach PyPI from inside it.
    Test-only: the images the tests build are never published."""
    folder = Path("/usr/local/share/ca-certificates")
    if not folder.is_dir():
        return ""
    return "".join(p.read_text() for p in sorted(folder.glob("*.crt")))


@pytest.fixture(scope="session")
def engine():
    started = time.monotonic()
    try:
        found = Engine.obtain()
    except Unavailable as exc:
        missing(f"no Docker engine: {exc}")
    try:
        base = found.ensure_base_image()
    except Unavailable as exc:
        found.stop()
        missing(f"no base image: {exc}")
    print(
        f"\n[container] engine ready in {time.monotonic() - started:.1f} s "
        f"(base {base}{''.join('; ' + note for note in found.notes)})"
    )
    yield found
    found.stop()


@pytest.fixture(scope="session")
def image(engine):
    started = time.monotonic()
    env = dict(engine.env, EXTRA_CA_CERTS=extra_ca_certs())
    built = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "build", "twcmaster"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(f"\n[container] image built in {time.monotonic() - started:.1f} s")
    return IMAGE


@pytest.fixture
def compose_version(request, engine):
    """``docker-compose`` (v1, Debian's), or with ``indirect`` parametrisation "v2": the
    ``docker compose`` plugin."""
    if getattr(request, "param", "v1") == "v1":
        return ["docker-compose"], engine.env
    try:
        return ["docker", "compose"], engine.compose_v2()
    except Unavailable as exc:
        missing(f"no Compose v2: {exc}")
