#!/usr/bin/env bash
# Runs the whole test suite (unit, properties, and integration tests with real ptys and
# processes) in ./.venv, setting it up first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
