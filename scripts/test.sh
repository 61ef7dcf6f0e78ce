#!/usr/bin/env bash
# One command: set up and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check ml_assets ml_assets_tests bench
exec .venv/bin/python -m pytest "$@"
