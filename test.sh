#!/usr/bin/env bash
# Set up .venv with the test extras, then lint and run the tests.
# PostgreSQL tests run when a server answers on 127.0.0.1:5432 (or KEYSYNC_TEST_POSTGRES_DSN is set).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
  python3 -m venv .venv
  # Installer output goes to a log, shown only if the install fails.
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[test]"; } >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "Installing KeySync into .venv failed (log above, also in .venv/install.log)." >&2
    exit 1
  fi
  touch .venv/.installed-test
fi
# Run the PostgreSQL tests too when a server answers on the local default port (trust or ~/.pgpass auth).
if [ -z "${KEYSYNC_TEST_POSTGRES_DSN:-}" ] && .venv/bin/python - <<'PY' 2>/dev/null
import psycopg
psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
PY
then
  export KEYSYNC_TEST_POSTGRES_DSN="postgresql://postgres@127.0.0.1:5432/postgres"
fi
if [ -n "${KEYSYNC_TEST_POSTGRES_DSN:-}" ]; then echo "PostgreSQL tests: on"; else echo "PostgreSQL tests: off (no server)"; fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# One worker per core (pytest-xdist), under a short temporary root of its own, removed afterwards: the paths the
# tests show in messages stay as short as pytest's default root makes them.
basetemp=$(mktemp -d "${TMPDIR:-/tmp}/ks.XXXXXX")
trap 'rm -rf "$basetemp"' EXIT
.venv/bin/pytest -n auto --basetemp "$basetemp/t" "$@"
