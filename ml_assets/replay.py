"""Play a sequence of days through the real Dagster machinery, as production would see them.

For each day: deliver that day's landing files (from a directory of dated files), run what the
daemon would run for it — the `daily_ingest` schedule's run request for the new partition,
executed — then a tick of the sensors (`retrain_on_drift`, `alert_on_run_failure`), executing
any run they request (a `retrain`, with its gates and promotion) before the next day.

Every decision comes from the same schedule, sensor and job definitions that `dagster dev`
runs (`definitions.py`); this module only plays the daemon's part: it evaluates their ticks
with a simulated clock and executes what they ask for, deduplicating sensor run keys as the
daemon does. Runs land in the instance, so the whole story is browsable in the Dagster UI.

The days before `bootstrap_days` are history: delivered, ingested and featurized in one
backfill run, then one `retrain` run trains the first champion (as a team does when it first
deploys), before the daily loop starts.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets import console
from ml_assets.contract import Contract
from ml_assets.ingestion.validate import SUPPORTED_FORMATS
from ml_assets.links import report_url
from ml_assets.metadata import table
from ml_assets.metrics import roc_auc
from ml_assets.monitoring import lake as mlake
from ml_assets.monitoring.scoring import load_verified, score
from ml_assets.monitoring.sensors import AS_OF_TAG, TRIGGER_TAG, refused_at_the_gates
from ml_assets.orchestration import failed_checks
from ml_assets.registry.mlflow_registry import CHAMPION, Registry
from ml_assets.storage import LocalStore, ObjectStore, atomic_write_bytes

RUN_KEY_TAG, SENSOR_NAME_TAG = "dagster/run_key", "dagster/sensor_name"
REPLAY_TAG = "ml_assets/replay"
TIMELINE_CSV, TIMELINE_PNG = "reports/replay/timeline.csv", "reports/replay/timeline.png"


class ReplayError(RuntimeError):
    """The replay cannot go on (message says why and what to do)."""


@dataclass
class DayLine:
    """One day of the story, as printed and as written to the timeline CSV."""

    day: str
    run: str = ""  # success | FAILED
    rows: int = 0
    quarantined: int = 0
    drift_status: str = ""
    drift_rows: int = 0
    max_psi: float | None = None
    drifted: str = ""
    auc: float | None = None
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    auc_labels: int = 0
    auc_model: str = ""  # the version that scored the judged window
    day_auc: float | None = None
    frozen_day_auc: float | None = None  # the first champion, frozen, on the same labels
    declining: bool = False
    sensor: str = ""  # requested | skipped
    sensor_reason: str = ""
    retrain_run: str = ""
    retrain_outcome: str = ""  # promoted | rejected | failed
    failed_gates: str = ""
    golden_version: str = ""
    champion: str = ""
    alerts: int = 0
    seconds: float = 0.0

    def text(self) -> str:
        auc = ("AUC     -       " if self.auc is None else
               f"AUC {self.auc:.3f} [{self.auc_ci_low:.3f},{self.auc_ci_high:.3f}] n={self.auc_labels}")
        drift = f"{self.drift_status or '-':<10}" + (f" PSI {self.max_psi:.2f}" if self.max_psi is not None else " " * 9)
        scored_by = f" (v{self.auc_model})" if self.auc_model and self.auc_model != self.champion else ""
        parts = [self.day, f"{self.run:<7}", f"rows {self.rows:>6} q {self.quarantined:>4}", drift, auc + scored_by,
                 "DECLINE" if self.declining else "       ", f"champion v{self.champion or '-'}"]
        line = "  ".join(parts)
        if self.sensor == "requested":
            line += f"  -> retrain {self.retrain_outcome}" + (f" ({self.failed_gates})" if self.failed_gates else "")
        if self.alerts:
            line += f"  [{self.alerts} alert(s)]"
        return line


@dataclass
class Replay:
    """The state of a replay in progress (sensor cursors survive from one day to the next)."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    contract: Contract
    source: Path
    landing: Path
    lake: ObjectStore
    registry: Registry
    alerts_path: Path
    log_path: Path
    cursors: dict[str, str | None] = field(default_factory=dict)
    frozen_version: str | None = None
    lines: list[DayLine] = field(default_factory=list)

    # ---- delivering files -------------------------------------------------------------------------------
    def source_days(self) -> list[str]:
        return sorted({p.stem for p in (self.source / self.contract.records.dir).iterdir()
                       if p.suffix.lower() in SUPPORTED_FORMATS}) if (self.source / self.contract.records.dir).is_dir() \
            else []

    def deliver(self, day: str) -> None:
        """Copy the day's records and labels into the landing zone, as the upstream would."""
        for directory in (self.contract.records.dir, self.contract.labels.dir):
            for ext in SUPPORTED_FORMATS:
                src = self.source / directory / f"{day}{ext}"
                if src.exists():
                    atomic_write_bytes(self.landing / directory / src.name, src.read_bytes())
        manifest = self.source / "manifests" / f"{day}.json"
        if manifest.exists():
            atomic_write_bytes(self.landing / "manifests" / manifest.name, manifest.read_bytes())

    # ---- what the daemon does ---------------------------------------------------------------------------
    def execute(self, job_name: str, tags: dict[str, str], partition_key: str | None = None,
                asset_selection: list[str] | None = None) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(job_name) if asset_selection is None else \
            self.defs.resolve_implicit_global_asset_job_def().get_subset(
                asset_selection={dg.AssetKey(a) for a in asset_selection})
        return job.execute_in_process(instance=self.instance, partition_key=partition_key,
                                      tags={REPLAY_TAG: "true", **tags}, raise_on_error=False,
                                      run_config=console.run_config(self.log_path, steps=False))

    def schedule_tick(self, day: str) -> list[dg.RunRequest]:
        """The daily_ingest schedule's tick for the morning after `day`."""
        schedule = self.defs.resolve_schedule_def("daily_ingest_schedule")
        when = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(1, 30), tzinfo=dt.UTC)
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=self.instance, scheduled_execution_time=when))
        return list(data.run_requests or [])

    def sensor_tick(self, name: str) -> tuple[list[dg.RunRequest], str]:
        sensor = self.defs.resolve_sensor_def(name)
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(name), sensor_name=name,
                                     definitions=self.defs, resources=self.defs.resources) as context:
            data = sensor.evaluate_tick(context)
        self.cursors[name] = data.cursor if data.cursor is not None else self.cursors.get(name)
        reason = data.skip_message or ""
        requests = [r for r in (data.run_requests or []) if isinstance(r, dg.RunRequest)]
        fresh = []
        for r in requests:  # the daemon launches a run_key once per sensor
            if r.run_key and self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: r.run_key,
                                                                                 SENSOR_NAME_TAG: name}), limit=1):
                reason = f"run_key {r.run_key} already launched"
                continue
            fresh.append(r)
        return fresh, reason

    # ---- one day ----------------------------------------------------------------------------------------
    def play(self, day: str) -> DayLine:
        t0 = time.perf_counter()
        line = DayLine(day)
        alerts_before = _count_lines(self.alerts_path)
        self.deliver(day)
        results = []
        for request in self.schedule_tick(day):
            results.append(self.execute("daily_ingest", {**request.tags, AS_OF_TAG: day},
                                        partition_key=request.partition_key))
        line.run = "success" if results and all(r.success for r in results) else "FAILED"
        self.alert_tick()
        requests, reason = self.sensor_tick("retrain_on_drift")
        line.sensor, line.sensor_reason = ("requested" if requests else "skipped"), reason
        for request in requests:
            line.sensor_reason = request.tags.get(TRIGGER_TAG, "")
            result = self.execute("retrain", {**request.tags, RUN_KEY_TAG: request.run_key,
                                              SENSOR_NAME_TAG: "retrain_on_drift"})
            line.retrain_run = result.run_id
            line.retrain_outcome, line.failed_gates = retrain_outcome(self.instance, result)
            self.alert_tick()
        self.describe(line)
        line.alerts = _count_lines(self.alerts_path) - alerts_before
        line.seconds = round(time.perf_counter() - t0, 1)
        self.lines.append(line)
        return line

    def alert_tick(self) -> None:
        self.sensor_tick("alert_on_run_failure")

    def describe(self, line: DayLine) -> None:
        """Fill the day's line from what the runs recorded (lake files and the registry)."""
        status = self.lake.read_bytes(f"ingestion_status/raw_transactions/{line.day}.json") if self.lake.exists(
            f"ingestion_status/raw_transactions/{line.day}.json") else None
        if status:
            s = json.loads(status)
            line.rows, line.quarantined = int(s.get("valid", 0)), int(s.get("quarantined", 0))
        verdict = mlake.read_verdict(self.lake, line.day)
        if verdict:
            line.drift_status, line.drift_rows = verdict["status"], verdict["rows"]
            line.max_psi = verdict.get("max_psi")
            line.drifted = ", ".join(verdict.get("drifted_features") or [])
        key = mlake.PERFORMANCE.format(day=line.day)
        if self.lake.exists(key):
            p = self.lake.read_parquet(key).iloc[0]
            if bool(p.get("enough")) and not pd.isna(p.get("roc_auc")):
                line.auc, line.auc_ci_low, line.auc_ci_high = float(p["roc_auc"]), float(p["auc_ci_low"]), float(
                    p["auc_ci_high"])
                line.auc_labels = int(p["window_rows"])
                line.auc_model = str(p.get("model_version") or "")
            line.day_auc = None if pd.isna(p.get("day_roc_auc")) else float(p["day_roc_auc"])
            line.declining = bool(p.get("declining"))
            line.frozen_day_auc = self.frozen_auc(str(p["scored_day"]))
        champion = self.registry.alias(CHAMPION)
        line.champion = champion.version if champion else ""
        from ml_assets.datasets.lake import current_golden_version

        line.golden_version = current_golden_version(self.lake, self.contract)

    def frozen_auc(self, event_day: str) -> float | None:
        """The first champion's AUC on the same labelled day, had it never been replaced (the counterfactual
        the story is judged against). Not part of the pipeline: the replay's own yardstick."""
        labels_key = mlake.DELAYED_LABELS.format(day=event_day)
        features_key = f"transaction_features/{event_day}.parquet"
        if not self.frozen_version or not self.lake.exists(labels_key) or not self.lake.exists(features_key):
            return None
        labelled = self.lake.read_parquet(labels_key)
        if labelled["y"].nunique() < 2:
            return None
        features = self.lake.read_parquet(features_key)
        model, _ = load_verified(self.registry, self.frozen_version)
        scored = score(model, features, self.contract, self.frozen_version)
        joined = labelled.merge(scored, left_on="record_id", right_on=self.contract.record_id, suffixes=("", "_frozen"))
        return roc_auc(joined["y"].to_numpy(), joined["score_frozen"].to_numpy())


def retrain_outcome(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    """(promoted | rejected | failed, why): a challenger refused by a blocking gate check is `rejected`."""
    if not result.success:
        checks = failed_checks(instance, result.run_id)
        if refused_at_the_gates(instance, result.run_id):
            return "rejected", "; ".join(checks)[:300]
        return "failed", ("; ".join(checks) or _failure_text(result))[:300]
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            m = event.event_specific_data.materialization
            if m.asset_key.to_user_string() == "champion_model":
                meta = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
                return str(meta.get("outcome", "?")), str(meta.get("failed_gates", "")).replace("none", "")
    return "?", ""


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    out = []
    for e in result.all_events:
        if e.is_step_failure:
            err = e.event_specific_data.error
            while err is not None and err.cause is not None:
                err = err.cause
            out.append(f"{e.step_key}: {err.message.strip() if err else ''}")
    return "; ".join(out)


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def bootstrap(r: Replay, days: list[str], log: Callable[[str], None]) -> None:
    """History: deliver the first days, ingest and featurize them in one backfill run, train the first champion."""
    for day in days:
        r.deliver(day)
    result = r.execute("__ASSET_JOB", {"dagster/asset_partition_range_start": days[0],
                                       "dagster/asset_partition_range_end": days[-1], AS_OF_TAG: days[-1]},
                       asset_selection=["raw_transactions", "raw_labels", "transaction_features"])
    if not result.success:
        raise ReplayError(f"the history backfill {days[0]} .. {days[-1]} failed: {_failure_text(result)}")
    log(f"history {days[0]} .. {days[-1]}: ingested and featurized ({len(days)} days, run {result.run_id[:8]})")
    result = r.execute("retrain", {AS_OF_TAG: days[-1], TRIGGER_TAG: "first model (replay bootstrap)"})
    outcome, gates = retrain_outcome(r.instance, result)
    if outcome != "promoted":
        raise ReplayError(f"the first model was not promoted ({outcome}: {gates or _failure_text(result)}); "
                          f"see run {result.run_id} in the Dagster UI")
    champion = r.registry.alias(CHAMPION)
    r.frozen_version = champion.version
    log(f"first champion v{champion.version} trained on the history (run {result.run_id[:8]})")


def write_timeline(r: Replay) -> tuple[str, str]:
    """The timeline as CSV and as a PNG plot (AUC over time with drift / retrain / promotion markers)."""
    frame = pd.DataFrame([asdict(line) for line in r.lines])
    r.lake.write_bytes(TIMELINE_CSV, frame.to_csv(index=False).encode())
    r.lake.write_bytes(TIMELINE_PNG, plot_timeline(frame))
    events = frame[(frame["sensor"] == "requested") | (frame["run"] != "success") | (frame["alerts"] > 0)]
    # Linked from the asset a person looks at for performance, so the story is one click away in the UI.
    r.instance.report_runless_asset_event(dg.AssetObservation(asset_key="model_performance", metadata={
        "replay_days": f"{frame['day'].iloc[0]} .. {frame['day'].iloc[-1]} ({len(frame)})" if len(frame) else "none",
        "replay_retrains": int((frame["sensor"] == "requested").sum()),
        "replay_timeline_plot": dg.MetadataValue.url(report_url(TIMELINE_PNG)),
        "replay_timeline_csv": dg.MetadataValue.url(report_url(TIMELINE_CSV)),
        "replay_timeline": dg.MetadataValue.md(f"![delayed-label AUC over the replay]({report_url(TIMELINE_PNG)})"),
        "replay_events": table(events[["day", "run", "drift_status", "sensor", "sensor_reason", "retrain_outcome",
                                       "failed_gates", "champion", "alerts"]]),
    }))
    return r.lake.uri(TIMELINE_CSV), r.lake.uri(TIMELINE_PNG)


def plot_timeline(frame: pd.DataFrame) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = frame.copy()
    for col in ("auc", "auc_ci_low", "auc_ci_high", "frozen_day_auc", "day_auc", "max_psi"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    days = pd.to_datetime(frame["day"])
    fig, ax = plt.subplots(figsize=(11, 5.4), dpi=100)
    have = frame["auc"].notna()
    ax.fill_between(days[have], frame.loc[have, "auc_ci_low"], frame.loc[have, "auc_ci_high"], color="tab:blue",
                    alpha=0.15, label="champion AUC 95% CI (pooled window)")
    ax.plot(days[have], frame.loc[have, "auc"], color="tab:blue", lw=2, label="serving champion, delayed-label AUC")
    frozen = frame["frozen_day_auc"].notna()
    ax.plot(days[frozen], frame.loc[frozen, "frozen_day_auc"], color="tab:gray", ls="--", lw=1.5,
            label="first champion, frozen (same labels)")
    status_color = {"act": "tab:orange", "bug": "tab:red", "watch": "gold"}
    for status, color in status_color.items():
        hit = frame["drift_status"] == status
        if hit.any():
            ax.scatter(days[hit], np.full(hit.sum(), 0.02), marker="s", color=color, label=f"drift: {status}",
                       transform=ax.get_xaxis_transform())
    for _, row in frame[frame["sensor"] == "requested"].iterrows():
        promoted = row["retrain_outcome"] == "promoted"
        ax.axvline(pd.Timestamp(row["day"]), color="tab:green" if promoted else "tab:red", ls=":", lw=2)
        ax.text(pd.Timestamp(row["day"]), 0.97, f" retrain: {row['retrain_outcome']}", rotation=90, va="top",
                fontsize=8, transform=ax.get_xaxis_transform())
    decline = frame["declining"].astype(bool)
    if decline.any():
        ax.scatter(days[decline], np.full(decline.sum(), 0.06), marker="v", color="tab:purple",
                   label="decline confirmed", transform=ax.get_xaxis_transform())
    ax.set_ylabel("ROC AUC on delayed labels")
    ax.set_xlabel("day the labels arrived (they judge the scores of label delay days before)")
    ax.set_ylim(max(0.0, float(np.nanmin(frame[["auc", "frozen_day_auc"]].to_numpy(dtype=float), initial=1)) - 0.1),
                1.0)
    ax.set_title("ml_assets replay: delayed-label AUC, drift verdicts, retrains and promotions")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, ncol=3, frameon=False)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def make_replay(defs: dg.Definitions, instance: dg.DagsterInstance, contract: Contract, source: Path, landing: Path,
                lake_dir: Path, registry: Registry, alerts_path: Path, log_path: Path) -> Replay:
    if not (source / contract.records.dir).is_dir():
        raise ReplayError(f"no {contract.records.dir}/ under {source}: expected <YYYY-MM-DD>.csv (or .parquet) files "
                          f"per day there and in {contract.labels.dir}/")
    if source.resolve() == landing.resolve():
        raise ReplayError(f"the replay's source {source} is the landing zone itself; point --source at a directory "
                          f"of dated files outside {landing}")
    return Replay(defs, instance, contract, source, landing, LocalStore(lake_dir), registry, alerts_path, log_path)


HOME_STATE = ("landing", "lake", "feast", "mlflow", "work", "dagster_home", "alerts.jsonl")


def reset_home(home: Path, source: Path | None = None) -> None:
    """A replay tells a story from day one: start from an empty home (landing, lake, registry, instance).

    Refuses (before removing anything) when the files to replay lie inside what would be removed."""
    if source is not None:
        src = source.resolve()
        for name in HOME_STATE:
            target = (home / name).resolve()
            if src == target or target in src.parents:
                raise ReplayError(f"--source {source} lies inside {target}, which a replay empties to start from "
                                  f"day one: copy the dated files elsewhere (or point ML_ASSETS_HOME at a scratch "
                                  f"directory) and replay from there")
    for name in HOME_STATE:
        target = home / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
