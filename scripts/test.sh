#!/usr/bin/env bash
# Runs the whole test suite (unit, properties, and integration tests with real ptys and
# processes) in ./.venv, setting it up first. Extra arguments go to pytest.
#
# The tests run in TWCMASTER_TEST_WORKERS (default 3) pytest-xdist workers: most of the
# suite's wall time is real-time tests waiting on a daemon, a pty or a broker, so three
# workers on two cores overlap the waits. Tests that share one real resource carry an
# xdist_group mark (all container tests share one dockerd) and run in one worker, in order
# (--dist loadgroup). TWCMASTER_TEST_WORKERS=0 runs everything in this one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider \
  -n "${TWCMASTER_TEST_WORKERS:-3}" --dist loadgroup "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
