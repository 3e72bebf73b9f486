"""The container's entrypoint (``twcmaster-entrypoint``). The image has no shell, so this is
Python.

    (no arguments) or ``run``: first start with an empty /etc/twcmanager -> copy the commented
        default config there and say so; validate the config (``twcmaster check-config``: exit
        2 and its message, naming the key, when invalid); check the serial device; then exec
        ``twcmaster run``, so SIGTERM from ``docker stop`` reaches the daemon itself (it offers
        the TWCs 0 A and stops within about 2 s). If the master is gone, the TWCs stop charging
        on their own once its heartbeats stop.
    anything else: ``twcmaster ARGS...`` as the twcmaster user (e.g. ``check-config``).

Started as root (the default), it only creates /etc/twcmanager and hands that directory to the
twcmaster user when that user cannot write it (a fresh host directory made by Docker belongs to
root), then drops to twcmaster (group dialout) for everything else. Started as another user
(compose ``user:``), it does the same checks without changing any ownership.

Exit status: 0 stopped cleanly, 1 cannot start (volume or device permissions: a one-line reason
on stderr), 2 the config is invalid.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
from pathlib import Path
from typing import NoReturn

RUN_AS = "twcmaster"
EXIT_CANNOT_START = 1
EXIT_INVALID_CONFIG = 2


def say(message: str) -> None:
    print(f"twcmaster-entrypoint: {message}", flush=True)


def fail(message: str) -> NoReturn:
    print(f"twcmaster-entrypoint: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_CANNOT_START)


def _stop_before_start(_signum: int, _frame: object) -> None:
    # As PID 1 the process would otherwise ignore `docker stop`'s SIGTERM (the kernel applies
    # no default action to PID 1) and Docker would kill it 10 s later. No TWC has heard from
    # this master yet, so stopping here is clean.
    say("stopped before the daemon started")
    os._exit(0)


def drop_privileges(user: pwd.struct_passwd) -> None:
    """Become ``user`` for good, with its groups from /etc/group (dialout among them)."""
    os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)


def writable_by(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``user`` can write ``path`` (asked in a child that has dropped to it)."""
    pid = os.fork()
    if pid == 0:
        try:
            drop_privileges(user)
            os._exit(0 if os.access(path, os.W_OK | os.X_OK) else 1)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def prepare_config_dir(config_dir: Path, config: Path, user: pwd.struct_passwd) -> None:
    """As root: make the volume's folder exist and belong to ``user`` when it cannot write it."""
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        fail(f"cannot create {config_dir} (is the volume read-only?)")
    if writable_by(user, config_dir):
        return
    try:
        os.chown(config_dir, user.pw_uid, user.pw_gid)
        say(
            f"gave {config_dir} to user {user.pw_name} (uid {user.pw_uid}) so it can keep its "
            "settings there"
        )
    except OSError:
        if config.exists():
            say(
                f"warning: {config_dir} is not writable (read-only volume?): runtime settings "
                "will not be saved"
            )
        else:
            fail(
                f"{config_dir} is not writable (read-only volume?): cannot put the default "
                "config there"
            )


def first_start(config_dir: Path, config: Path) -> None:
    """Copy the commented default config into an empty volume (whole, or not at all)."""
    uid = os.getuid()
    if not os.access(config_dir, os.W_OK | os.X_OK):
        fail(
            f"{config_dir} is not writable by uid {uid}: cannot put the default config there "
            f"(chown it to uid {uid}, or run the container as root so it can)"
        )
    from twcmaster.config import default_config_path  # only on a first start

    partial = config.with_name(config.name + ".new")
    shutil.copyfile(default_config_path(), partial)
    partial.replace(config)
    say(f"first start: copied the commented default config to {config}")
    say(
        "set the wiring limits there (wiringMaxAmpsAllTWCs, wiringMaxAmpsPerTWC: 80 % of your "
        "breaker) before you charge a car; until then every offer stays at 6 A"
    )


def check_config(config: Path) -> str:
    """``twcmaster check-config``'s report, printed; the serial port it names. Exit 2 when
    the config is invalid."""
    from twcmaster.cli import check_config as report

    loaded = report(str(config))
    if loaded is None:
        print(
            f"twcmaster-entrypoint: the config is invalid: fix {config} and start again",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(EXIT_INVALID_CONFIG)
    sys.stdout.flush()
    return loaded.settings.rs485.port


def check_serial_device(port: str) -> None:
    if not port.startswith("/"):
        return  # a network bridge (socket://, rfc2217://): nothing to check here
    if not os.path.exists(port):
        say(
            f"warning: the serial device {port} is not in the container (pass it in under "
            "devices: in docker-compose.yml, or set interface.RS485.port); waiting for it"
        )
    elif not os.access(port, os.R_OK | os.W_OK):
        groups = " ".join(str(gid) for gid in os.getgroups())
        fail(
            f"permission denied on {port} for uid {os.getuid()} (groups: {groups}); the "
            f"device's group is {os.stat(port).st_gid}: add it with group_add: in "
            "docker-compose.yml"
        )


def main(argv: list[str] | None = None) -> NoReturn:
    signal.signal(signal.SIGTERM, _stop_before_start)
    signal.signal(signal.SIGINT, _stop_before_start)
    args = list(sys.argv[1:] if argv is None else argv) or ["run"]
    config_dir = Path(os.environ.get("TWCMASTER_CONFIG_DIR", "/etc/twcmanager"))
    config = config_dir / "config.json"

    if os.getuid() == 0:  # never anything else as root
        user = pwd.getpwnam(RUN_AS)
        if args[0] == "run":
            prepare_config_dir(config_dir, config, user)
        drop_privileges(user)

    if args[0] != "run":
        os.execvp("twcmaster", ["twcmaster", *args])

    if not config.exists():
        first_start(config_dir, config)
    if not os.access(config, os.R_OK):
        fail(f"cannot read {config} as uid {os.getuid()} (check its owner and mode)")
    check_serial_device(check_config(config))
    # exec resets the handlers above: from here on the daemon's own take SIGTERM.
    os.execvp("twcmaster", ["twcmaster", "run", "--config", str(config), *args[1:]])


if __name__ == "__main__":
    main()
