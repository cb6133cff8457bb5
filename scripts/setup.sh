#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install descend into it.
#   scripts/setup.sh         the package and what it needs to run
#   scripts/setup.sh --dev   also the test and lint tools
# Safe to run again: an existing .venv is reused, and pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The CPU build of torch, pinned: any other request for torch pulls a multi-GB CUDA build.
"${pip[@]}" "torch==2.13.0"
if [ "${1:-}" = "--dev" ]; then
    "${pip[@]}" -e ".[dev,tune,data]"
    # the driver the search tests reach their PostgreSQL server through (SQLAlchemy's postgresql+psycopg)
    "${pip[@]}" "psycopg[binary]>=3.1"
else
    "${pip[@]}" -e ".[tune,data]"
fi
