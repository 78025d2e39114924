#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite: the fast tests, then the slow
# end-to-end ones. This is exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q -m "not slow"
.venv/bin/python -m pytest -q -m slow
