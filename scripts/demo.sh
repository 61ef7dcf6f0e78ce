#!/usr/bin/env bash
# One command: set up, simulate the demo data, materialize the whole asset graph on the
# embedded default (local files, SQLite, local MLflow, local Feast, CPU torchrun) and
# print a summary. Extra arguments go to `ml-assets demo` (see `ml-assets demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ml-assets demo "$@"
