#!/usr/bin/env bash
# Set up .venv if needed, then generate mock data and reconcile it. Arguments go to `keysync run`,
# e.g. ./run.sh --scenario drift --keys 2000
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/keysync ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
  touch .venv/.installed
fi
exec .venv/bin/keysync run --generate-data "$@"
