#!/usr/bin/env bash
# Creates ./.venv with twcmaster and its test tools, and installs the system tools the tests
# and the simulator use (socat; mosquitto, the broker the MQTT tests start; chromium, the
# browser the web page's tests drive) when they are missing. Safe to run again: it only does
# what is missing. Usage: scripts/bootstrap.sh
# Not Docker: the container tests (tests/container) install docker.io and start dockerd
# themselves, only when they run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
# (Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# The web page's tests drive Debian's Chromium with Playwright (never a downloaded browser);
# the demo needs no browser of its own (TWCMASTER_NO_BROWSER=1, as `make demo` sets).
if [ "${TWCMASTER_NO_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null \
      || echo "bootstrap: could not install ${need_apt[*]}; tests that need them will say so" >&2
  else
    echo "bootstrap: please install ${need_apt[*]} (tests that need them will say so)" >&2
  fi
fi

stamp=.venv/.twcmaster-installed
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall when the package metadata changed since the last install.
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
