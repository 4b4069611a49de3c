#!/usr/bin/env bash
# Set up .venv with the test extras, then lint and run the tests.
# PostgreSQL tests run when a server answers on 127.0.0.1:5432 (or KEYSYNC_TEST_POSTGRES_DSN is set).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch .venv/.installed-test
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
