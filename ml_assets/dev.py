"""`ml-assets dev`: the Dagster UI, the MLflow UI and the report server, started and stopped together.

The executables are the venv's own (next to the running interpreter), so an unactivated venv works;
the code location is loaded from the installed package, so any working directory works. The links
the assets record (links.py) are pointed at what is served here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ml_assets
from ml_assets.instance import ensure_dagster_home
from ml_assets.settings import Settings, SettingsError

VENV_BIN = Path(sys.executable).parent


def venv_executable(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        raise SettingsError(f"{name} is not installed next to {sys.executable} (expected {path}); run scripts/setup.sh")
    return str(path)


def dagster_dev_command(host: str, port: int, extra: list[str]) -> list[str]:
    package_root = Path(ml_assets.__file__).resolve().parent.parent
    return [venv_executable("dagster"), "dev", "-m", "ml_assets.definitions", "-d", str(package_root),
            "-h", host, "-p", str(port), *extra]


def mlflow_ui_command(settings: Settings, host: str, port: int) -> list[str]:
    return [venv_executable("mlflow"), "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
            "--host", host, "--port", str(port), "--workers", "1"]


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Each server in its own session: a Ctrl-C reaches only us, and we stop every group in order.
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_dev(settings: Settings, host: str, port: int, mlflow_port: int, reports_port: int,
            dagster_args: list[str] | None = None) -> int:
    from ml_assets.definitions import lake_store
    from ml_assets.serve import serve_in_thread

    home = ensure_dagster_home(settings)
    reports_base, stop_reports = serve_in_thread(lake_store(settings), host, reports_port)
    env = {**os.environ, "DAGSTER_HOME": str(home), "ML_ASSETS_REPORTS_URL": reports_base,
           "DAGSTER_WEBSERVER_URL": f"http://{host}:{port}",
           "ML_ASSETS_HOME": str(settings.home), "ML_ASSETS_ENV": settings.env}
    procs: dict[str, subprocess.Popen] = {}
    lines = [f"DAGSTER_HOME={home}", f"Dagster UI   http://{host}:{port}"]
    if settings.env == "local":
        env["ML_ASSETS_MLFLOW_UI_URL"] = f"http://{host}:{mlflow_port}"
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
        # MLflow's background job runner (GenAI jobs) serves nothing here: 7 idle processes less.
        procs["mlflow ui"] = _start(mlflow_ui_command(settings, host, mlflow_port),
                                    {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env})
        lines.append(f"MLflow UI    http://{host}:{mlflow_port}")
    else:
        lines.append(f"MLflow UI    {settings.tracking_uri} (the tracking server)")
    lines.append(f"reports      {reports_base}/reports/")
    procs["dagster dev"] = _start(dagster_dev_command(host, port, list(dagster_args or [])), env)
    print("\n".join(lines) + "\nCtrl-C stops them all.", flush=True)

    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    # Installed explicitly: started in the background, a shell leaves SIGINT ignored for us.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exited = None
    try:
        while not stopping and exited is None:
            exited = next((name for name, p in procs.items() if p.poll() is not None), None)
            time.sleep(0.3)
    finally:
        for proc in reversed(list(procs.values())):
            _stop(proc)
        stop_reports()
    if exited:
        print(f"{exited} exited with code {procs[exited].returncode}; stopped the others", file=sys.stderr)
        return procs[exited].returncode or 1
    return 0
