"""The Dagster instance of the project's commands: DAGSTER_HOME, its dagster.yaml, and the run launcher
that lets run monitoring see a dead local run worker.

- local:   DAGSTER_HOME = $ML_ASSETS_HOME/dagster_home, linked to the repo's dagster.yaml (SQLite).
- staging: the same place, linked to deploy/dagster.staging.yaml (PostgreSQL from DAGSTER_PG_*).
- prod:    the image sets DAGSTER_HOME (deploy/dagster.prod.yaml) or the Helm chart renders the
           instance; nothing is linked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import get_type_hints

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher

from ml_assets.settings import Settings, SettingsError

# The result type of the public DefaultRunLauncher's `check_run_worker_health` hook and its status enum, which
# Dagster 1.13 does not export (only a private launcher module has them). The run monitoring daemon compares the status
# with its own enum members, so the real types are needed: they are taken from the public hook's signature rather
# than imported from a private module, so a moved module does not break us and a changed hook fails here, at import.
CheckRunHealthResult = get_type_hints(DefaultRunLauncher.check_run_worker_health)["return"]
WorkerStatus = get_type_hints(CheckRunHealthResult)["status"]

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_TEMPLATES = {"local": REPO_ROOT / "dagster.yaml", "staging": REPO_ROOT / "deploy" / "dagster.staging.yaml"}


def ensure_dagster_home(settings: Settings) -> Path:
    """Set DAGSTER_HOME for this process (and what it starts) to the project's instance.

    An explicit DAGSTER_HOME wins. A dagster.yaml there that is one of our templates is re-linked
    to the environment's template; one the user wrote is left alone."""
    if settings.env == "prod":
        home = os.environ.get("DAGSTER_HOME")
        if not home:
            raise SettingsError("ML_ASSETS_ENV=prod needs DAGSTER_HOME (the image sets /opt/dagster/dagster_home; "
                                "the Helm chart mounts the instance there); it is not set")
        return Path(home)
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    template = INSTANCE_TEMPLATES[settings.env]
    if not template.exists():
        raise SettingsError(f"the instance template {template} is missing: ml_assets runs from a checkout of its "
                            "repository (scripts/setup.sh installs it editable)")
    target = home / "dagster.yaml"
    ours = {p.resolve() for p in INSTANCE_TEMPLATES.values()}
    if target.is_symlink() and target.resolve() != template.resolve() and target.resolve() in ours:
        target.unlink()
    if not target.exists() and not target.is_symlink():
        target.symlink_to(template)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None if there is no such process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher (runs in subprocesses of the code server), plus a health check for
    run monitoring: the run worker's pid is in the run's "Started process for run" event, and a
    worker that no longer exists (`kill -9`, OOM killer, a crashed host process) is reported FAILED,
    so the monitoring daemon marks the run failed instead of leaving it STARTED forever.

    Same-host only, as the default launcher itself is: the instance, the code server and the run
    workers of `dagster dev` / a single-machine staging deployment share one process table.
    """

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        started = self._worker_started(run)
        if started is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded yet")
        pid, at = started
        began = _process_start_time(pid)
        # A pid started after the worker announced itself is another process that reused the number.
        if began is None or began > at + 5:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} is alive")

    def _worker_started(self, run: DagsterRun) -> tuple[int, float] | None:
        records = self._instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT,
                                                     ascending=False, limit=50).records
        for record in records:
            entry = record.event_log_entry
            event = entry.dagster_event
            data = event.engine_event_data if event else None
            pid = data.metadata.get("pid") if data and data.metadata else None
            text = (event.message if event else None) or entry.user_message or ""
            if pid is not None and text.startswith(("Started process for run", "Started process for resuming")):
                return int(pid.value), entry.timestamp
        return None

