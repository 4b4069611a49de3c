#!/usr/bin/env bash
# Set up .venv if needed, then generate mock data and reconcile it. Arguments go to `keysync run`,
# e.g. ./run.sh --scenario drift --keys 2000
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/keysync ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  # Installer output goes to a log, shown only if the install fails.
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e .; } >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "Installing KeySync into .venv failed (log above, also in .venv/install.log)." >&2
    exit 1
  fi
  touch .venv/.installed
fi
exec .venv/bin/keysync run --generate-data "$@"
