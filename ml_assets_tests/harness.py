"""Helpers to materialize a few real assets (real Dagster instance, real files) on a small contract."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_assets.alerts import read_alerts
from ml_assets.contract import Contract
from ml_assets.datasets import assets as datasets
from ml_assets.definitions import DAILY_ASSETS
from ml_assets.features import assets as features
from ml_assets.ingestion import assets as ingestion
from ml_assets.orchestration import alert_on_run_failure
from ml_assets.partitions import daily_partitions
from ml_assets.resources import FeastResource, LocalStorageResource, LogFileAlertSink, MLflowResource, lake_resources


class Graph:
    """The ingestion, feature and dataset assets of one contract, with local resources under `root`."""

    def __init__(self, contract: Contract, root: Path, landing: Path | None = None,
                 landing_resource: dg.ConfigurableResource | None = None,
                 lake_resource: dg.ConfigurableResource | None = None):
        self.contract = contract
        self.root = root
        self.landing_dir = landing or root / "landing"
        self.lake_dir = root / "lake"
        self.alerts_path = root / "alerts.jsonl"
        parts = daily_partitions(contract)
        built = {a.key.to_user_string(): a for a in ingestion.build(contract, parts)}
        self.raw_transactions, self.raw_labels = built["raw_transactions"], built["raw_labels"]
        self.transaction_features, _online = features.build(contract, parts)
        self.golden_set = next(a for a in datasets.build(contract, parts) if a.key.to_user_string() == "golden_set")
        self.resources = {
            "landing": landing_resource or LocalStorageResource(root=str(self.landing_dir)),
            **lake_resources(lake_resource or LocalStorageResource(root=str(self.lake_dir))),
            "feast": FeastResource(repo_dir=str(root / "feast"), online_store="sqlite",
                                   sqlite_path=str(root / "feast" / "online.db")),
            # golden_set re-baselines the champion (if any) when it freezes a new version.
            "mlflow": MLflowResource(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", experiment=contract.name,
                                     model_name=f"{contract.name}_model",
                                     artifact_location=(root / "mlflow-artifacts").as_uri()),
        }

    def materialize(self, assets: list, instance: dg.DagsterInstance, first: str | None = None,
                    last: str | None = None) -> dg.ExecuteInProcessResult:
        """One run over the partition range first..last (a single-run backfill when it spans several days);
        no partition for unpartitioned assets."""
        last = last or first
        tags = {} if first == last else {"dagster/asset_partition_range_start": first,
                                         "dagster/asset_partition_range_end": last}
        return dg.materialize(with_lake_inputs(assets), resources=self.resources, instance=instance, raise_on_error=False,
                              partition_key=first if first == last else None, tags=tags)

    def alert_for(self, result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> dict:
        """Run the project's run-failure sensor on a failed run, as the daemon would; return its alert."""
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=failure, resources={"alerts": LogFileAlertSink(path=str(self.alerts_path))},
        ).for_run_failure()
        alert_on_run_failure(context)
        return [a for a in read_alerts(self.alerts_path) if a["run_id"] == result.run_id][-1]


def with_lake_inputs(assets: list) -> list:
    """`assets` plus, for each input they read that none of them produces, that asset as an external spec: a
    slice of the graph materialized on its own loads those inputs from the lake (the IO manager), as a run of
    a job over part of the graph does."""
    produced = {k for a in assets for k in a.keys}
    specs = {}
    for a in assets:
        partitions = a.partitions_def
        for key in a.keys_by_input_name.values():
            if key not in produced and key not in specs:
                daily = key.to_user_string() in DAILY_ASSETS
                specs[key] = dg.AssetSpec(key, partitions_def=partitions if daily else None)
    return [*assets, *specs.values()]


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name):
            e.event_specific_data for e in result.all_events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's error, with its causes, as one string."""
    out = []
    for e in result.all_events:
        if e.is_step_failure:
            err = e.event_specific_data.error
            while err is not None:
                out.append(f"{err.cls_name}: {err.message}")
                err = err.cause
    return "\n".join(out)


def materialized_partitions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))
