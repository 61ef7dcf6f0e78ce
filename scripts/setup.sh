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
# pip warns about every configured index location that does not exist; that is noise, not news.
quiet_pip() { .venv/bin/python -m pip "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; }
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing ml_assets and its pinned dependencies into .venv (a few minutes the first time)..."
  quiet_pip install --quiet --upgrade "pip>=24" "setuptools>=68"
  # compat: a plain path entry, so PYTHONPATH (e.g. a second git worktree) can take precedence
  quiet_pip install --quiet -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
  .venv/bin/python -c "import ml_assets, torch, dagster, feast, mlflow" || { echo "install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
.venv/bin/python - <<'PY'
from importlib.metadata import version
print("ml_assets environment ready: " + ", ".join(f"{p} {version(p)}" for p in ("dagster", "torch", "feast", "mlflow")))
PY
