"""What happened to an onboarded dataset: runs and step times, check outcomes, per-day drift
verdicts, delayed-label performance, the registry, and what `retrain_on_drift` decides now.

    export ML_ASSETS_HOME=DIR DAGSTER_HOME=DIR/dagster_home ML_ASSETS_CONTRACT=DIR/<dataset>.yaml
    .venv/bin/python bench/real_data/inspect_home.py [--days 10] [--json out.json]

Reads the instance, the lake and the registry the runs wrote; evaluates the sensor from the
same definitions `dagster dev` loads (no run is launched). A reporting aid for
bench/real_data/README.md, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _short(text: str, n: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def runs(instance) -> list[dict]:
    import dagster as dg

    out = []
    for run in reversed(instance.get_runs()):
        starts, steps, failures = {}, {}, {}
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            if ev.event_type == dg.DagsterEventType.STEP_START:
                starts[ev.step_key] = entry.timestamp
            elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                steps[ev.step_key] = round(entry.timestamp - starts.get(ev.step_key, entry.timestamp), 1)
                if ev.event_type == dg.DagsterEventType.STEP_FAILURE:
                    failures[ev.step_key] = _short(ev.event_specific_data.error.message, 600)
        stats = instance.get_run_stats(run.run_id)
        wall = (stats.end_time - stats.start_time) if stats.end_time and stats.start_time else None
        out.append({"run_id": run.run_id[:8], "job": run.job_name, "status": run.status.value,
                    "range": f"{run.tags.get('dagster/asset_partition_range_start', run.tags.get('dagster/partition', ''))}"
                             f"..{run.tags.get('dagster/asset_partition_range_end', '')}",
                    "wall_s": round(wall, 1) if wall else None, "steps_s": steps, "failures": failures})
    return out


def checks(instance, defs) -> list[dict]:
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as S

    keys = list(defs.resolve_asset_graph().asset_check_keys)
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    out = []
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        rec = records.get(key)
        if rec is None:
            out.append({"check": key.to_user_string(), "status": "never ran"})
            continue
        ev = rec.event.dagster_event.event_specific_data if rec.event and rec.event.dagster_event else None
        desc = getattr(ev, "description", None) if ev is not None else None
        meta = {k: _short(getattr(v, "value", v), 300) for k, v in (getattr(ev, "metadata", None) or {}).items()
                if k in ("reasons", "error", "failed_partitions", "drifted", "bug_features", "max_psi",
                         "declining_partitions", "note")}
        out.append({"check": key.to_user_string(),
                    "status": rec.status.value if rec.status != S.SUCCEEDED else "passed",
                    "description": _short(desc or "", 700), **meta})
    return out


def drift(lake, contract, days: int) -> list[dict]:
    rows = []
    for k in sorted(k for k in lake.list("drift_report") if k.endswith(".parquet")):
        t = lake.read_parquet(k)
        status = max(t["status"], key=["stable", "watch", "act", "bug"].index)
        bug = t[t["status"] == "bug"]
        rows.append({"day": Path(k).stem, "status": status, "max_psi": round(float(t["psi"].max()), 3),
                     "worst": t.sort_values("psi", ascending=False)["feature"].iloc[0],
                     "act": ",".join(t[t["status"] == "act"]["feature"]),
                     "bug": "; ".join(f"{r.feature}: {r.reasons}" for r in bug.itertuples())})
    return rows[-days:] if days else rows


def performance(lake, days: int) -> list[dict]:
    from ml_assets.ingestion.ingest import read_partitions

    perf = read_partitions(lake, "model_performance")
    if perf.empty:
        return []
    cols = ["partition", "scored_day", "labels", "model_version", "roc_auc", "auc_ci_low", "auc_ci_high",
            "reference_auc", "below_reference", "declining"]
    perf = perf.sort_values("partition")[cols]
    rows = [{k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in r.items()}
            for r in perf.to_dict("records")]
    return rows[-days:] if days else rows


def ingestion_failures(lake) -> list[dict]:
    out = []
    for asset in ("raw_transactions", "raw_labels"):
        for k in sorted(k for k in lake.list(f"ingestion_status/{asset}") if k.endswith(".json")):
            s = json.loads(lake.read_bytes(k))
            failed = {n: c["description"] for n, c in s["checks"].items() if not c["passed"]}
            if failed:
                out.append({"asset": asset, "partition": s["partition"], "failed": failed})
    return out


def sensor_decision(defs, instance) -> str:
    import dagster as dg

    sensor = defs.get_sensor_def("retrain_on_drift")
    result = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    if isinstance(result, dg.SkipReason):
        return f"skip: {result.skip_message}"
    return f"RunRequest run_key={result.run_key} tags={result.tags}"


def registry_state(settings, contract) -> dict:
    from ml_assets.registry.mlflow_registry import CHAMPION, Registry

    reg = Registry(settings.mlflow_tracking_uri, f"{contract.name}_model", contract.name)
    champ = reg.alias(CHAMPION)
    out = {"aliases": reg.aliases()}
    if champ is not None:
        out["champion_golden"] = {k: v for k, v in champ.tags.items() if k.startswith("golden_")}
        out["champion_training"] = {k: champ.tags.get(k) for k in ("training_date_range", "training_rows")}
    return out


def version_auc(settings, contract, version: str, first: str) -> list[dict]:
    """Delayed-label ROC AUC that registered `version` would have had on each labelled day from
    `first` on (e.g. the frozen champion after a promotion), from the same features and labels."""
    from ml_assets.ingestion.ingest import lake_key, read_partitions
    from ml_assets.metrics import roc_auc
    from ml_assets.registry.mlflow_registry import Registry
    from ml_assets.storage import LocalStore

    store = LocalStore(settings.lake_dir)
    model, _ = Registry(settings.mlflow_tracking_uri, f"{contract.name}_model", contract.name).load_verified(version)
    labels = read_partitions(store, "raw_labels")
    out = []
    for key in sorted(k for k in store.list("transaction_features") if k.endswith(".parquet")):
        day = Path(key).stem
        if day < first:
            continue
        feats = store.read_parquet(lake_key("transaction_features", day))
        joined = feats.merge(labels[[contract.record_id, contract.label]], on=contract.record_id)
        if joined[contract.label].nunique() < 2:
            continue
        scores = model.predict(joined[contract.feature_names])["score"].to_numpy()
        y = (joined[contract.label] == contract.labels.positive).astype(int).to_numpy()
        out.append({"event_day": day, "version": version, "labels": len(joined), "roc_auc": round(roc_auc(y, scores), 4)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=0, help="only the last N days of per-day tables (0: all)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--score-version", action="append", default=[],
                        help="also score this registered model version on every labelled day (repeatable)")
    parser.add_argument("--score-from", default="0000-00-00", help="first event day for --score-version")
    args = parser.parse_args()

    import dagster as dg

    from ml_assets.contract import load_contract
    from ml_assets.definitions import build_definitions
    from ml_assets.settings import current_settings
    from ml_assets.storage import LocalStore

    settings = current_settings()
    contract = load_contract(settings.contract_path)
    defs = build_definitions(settings)
    lake = LocalStore(settings.lake_dir)
    with dg.DagsterInstance.get() as instance:
        report = {"runs": runs(instance), "checks": checks(instance, defs),
                  "ingestion_failures": ingestion_failures(lake),
                  "drift": drift(lake, contract, args.days), "performance": performance(lake, args.days),
                  "registry": registry_state(settings, contract),
                  "retrain_on_drift": sensor_decision(defs, instance)}
        for v in args.score_version:
            report[f"version_{v}_auc"] = version_auc(settings, contract, v, args.score_from)
    for section, value in report.items():
        print(f"== {section}")
        if isinstance(value, list):
            for row in value:
                print("  " + json.dumps(row, default=str))
        else:
            print("  " + json.dumps(value, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
