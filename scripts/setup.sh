#!/usr/bin/env bash
# Create .venv and install ml_assets with every pin from constraints.txt.
# Re-running is cheap: the install is skipped while pyproject.toml and constraints.txt
# are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.ml_assets-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=68"
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import torch, dagster, feast, mlflow; print(f'ml_assets environment ready: dagster {dagster.__version__}, torch {torch.__version__}, feast {feast.__version__}, mlflow {mlflow.__version__}')"
