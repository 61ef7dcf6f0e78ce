"""What every benchmark here shares: a scratch home, the machine line, where results go."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def scratch_home(home: str | None) -> Path:
    """An empty ML_ASSETS_HOME (`home`, emptied, or a new temporary directory), with DAGSTER_HOME inside it,
    set in the environment before anything of the project is imported."""
    path = Path(home or tempfile.mkdtemp(prefix="ml_assets_bench_"))
    if path.exists():
        shutil.rmtree(path)
    os.environ["ML_ASSETS_HOME"] = str(path)
    os.environ["DAGSTER_HOME"] = str(path / "dagster_home")
    return path


def machine() -> str:
    """The machine a figure was measured on, and how busy it was (figures from a shared machine say so)."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load {os.getloadavg()[0]:.1f}")


def save(name: str, result: dict) -> Path:
    """Print `result` and write it to bench/results/<name>.json."""
    print(json.dumps(result, indent=2))
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out
