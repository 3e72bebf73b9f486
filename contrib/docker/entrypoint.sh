#!/bin/sh
# twcmaster's container entrypoint.
#
#   (no arguments) or "run": first start with an empty /etc/twcmanager -> copy the commented
#       default config there and say so; validate the config (`twcmaster check-config`: exit 2
#       and its message, naming the key, when invalid); check the serial device; then exec
#       `twcmaster run`, so SIGTERM from `docker stop` reaches the daemon itself (it offers the
#       TWCs 0 A and stops within about 2 s). If the master is gone, the TWCs stop charging on
#       their own once its heartbeats stop.
#   anything else: `twcmaster ARGS...` as the twcmaster user (e.g. `check-config`, `status`).
#
# Started as root (the default), it only creates /etc/twcmanager and hands that directory to the
# twcmaster user when that user cannot write it (a fresh host directory made by Docker belongs
# to root), then drops to twcmaster (group dialout) for everything else. Started as another
# user (compose `user:`), it does the same checks without changing any ownership.
#
# Exit status: 0 stopped cleanly, 1 cannot start (volume or device permissions: a one-line
# reason on stderr), 2 the config is invalid.
set -eu

CONFIG_DIR=${TWCMASTER_CONFIG_DIR:-/etc/twcmanager}
CONFIG="$CONFIG_DIR/config.json"
RUN_AS=twcmaster

say() { printf 'twcmaster-entrypoint: %s\n' "$*"; }
fail() { printf 'twcmaster-entrypoint: %s\n' "$*" >&2; exit 1; }

# As the container's PID 1 this shell would ignore `docker stop`'s SIGTERM while it checks the
# config (the kernel applies no default action to PID 1), and Docker would kill it 10 s later.
# No TWC has heard from this master yet, so stopping here is clean.
trap 'say "stopped before the daemon started"; exit 0' TERM INT

if [ "$#" -eq 0 ]; then
    set -- run
fi

as_twcmaster() { setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- "$@"; }

if [ "$(id -u)" = 0 ] && [ "$1" = run ]; then
    mkdir -p "$CONFIG_DIR" 2>/dev/null \
        || fail "cannot create $CONFIG_DIR (is the volume read-only?)"
    if ! as_twcmaster test -w "$CONFIG_DIR"; then
        if chown "$RUN_AS:$RUN_AS" "$CONFIG_DIR" 2>/dev/null; then
            say "gave $CONFIG_DIR to user $RUN_AS (uid $(id -u "$RUN_AS")) so it can keep its settings there"
        elif [ -e "$CONFIG" ]; then
            say "warning: $CONFIG_DIR is not writable (read-only volume?): runtime settings will not be saved"
        else
            fail "$CONFIG_DIR is not writable (read-only volume?): cannot put the default config there"
        fi
    fi
fi
if [ "$(id -u)" = 0 ]; then # never anything else as root
    exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- "$0" "$@"
fi

if [ "$1" != run ]; then
    exec twcmaster "$@"
fi
shift # extra arguments after "run" go to `twcmaster run`

if [ ! -e "$CONFIG" ]; then
    [ -w "$CONFIG_DIR" ] \
        || fail "$CONFIG_DIR is not writable by uid $(id -u): cannot put the default config there (chown it to uid $(id -u), or run the container as root so it can)"
    python3 -c 'import shutil, sys; from twcmaster.config import default_config_path; shutil.copyfile(default_config_path(), sys.argv[1])' "$CONFIG.new"
    mv "$CONFIG.new" "$CONFIG"
    say "first start: copied the commented default config to $CONFIG"
    say "set the wiring limits there (wiringMaxAmpsAllTWCs, wiringMaxAmpsPerTWC: 80 % of your breaker) before you charge a car; until then every offer stays at 6 A"
fi
[ -r "$CONFIG" ] || fail "cannot read $CONFIG as uid $(id -u) (check its owner and mode)"

if ! report=$(twcmaster check-config --config "$CONFIG" 2>&1); then
    printf '%s\n' "$report" >&2
    printf 'twcmaster-entrypoint: the config is invalid: fix %s and start again\n' "$CONFIG" >&2
    exit 2
fi
printf '%s\n' "$report"

port=$(printf '%s\n' "$report" | sed -n 's/^  Serial port: //p' | head -n 1)
case "$port" in
/*)
    if [ ! -e "$port" ]; then
        say "warning: the serial device $port is not in the container (pass it in under devices: in docker-compose.yml, or set interface.RS485.port); waiting for it"
    elif [ ! -r "$port" ] || [ ! -w "$port" ]; then
        fail "permission denied on $port for uid $(id -u) (groups: $(id -G)); the device's group is $(stat -c %g "$port"): add it with group_add: in docker-compose.yml"
    fi
    ;;
esac

exec twcmaster run --config "$CONFIG" "$@"
