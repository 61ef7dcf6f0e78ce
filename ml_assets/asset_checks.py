"""`ml-assets check`: every asset check judged against the data as it is now, without re-materializing.

The checks of this graph are computed by the assets themselves (check_specs): most judge what the
step had in memory (rows quarantined, a gate decision, the online store right after it was
written), so they cannot be re-run alone. What can be judged now, without recomputing anything:

1. recorded outcomes: every declared check's latest evaluation in the instance, per partition where
   the check is partitioned, and whether it judged the *current* materialization (an asset
   re-materialized after its check ran, or never checked, fails: the data in use was not judged);
2. the data still being what was judged: each ingested partition's record (check outcomes and the
   sha256 of the published file) re-verified against the lake file, and the champion's artifact
   hash re-verified against the registry (P8).

A failing blocking check, or a failing re-verification, is blocking: the exit code is 1.
"""

from __future__ import annotations

import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ml_assets.settings import Settings

# Check execution statuses as the event log storage records them. Dagster exports no public name for the
# status enum of its check records, so they are compared by value.
SUCCEEDED, PLANNED = "SUCCEEDED", "PLANNED"


@dataclass(frozen=True)
class CheckOutcome:
    suite: str           # the asset (or "lake" / "registry" for re-verifications)
    name: str            # check name, with the partition where there is one
    passed: bool
    blocking: bool
    message: str

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else ("FAIL" if self.blocking else "warn")


def recorded_outcomes(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[CheckOutcome]:
    graph = defs.resolve_asset_graph()
    out: list[CheckOutcome] = []
    keys = sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(keys)
    by_key: dict = {}
    for info in storage.get_asset_check_partition_info([k for k in keys if graph.get_check_spec(k).partitions_def]):
        by_key.setdefault(info.check_key, []).append(info)
    for key in keys:
        asset = key.asset_key.to_user_string()
        spec = graph.get_check_spec(key)
        blocking = spec.blocking
        if spec.partitions_def is not None:  # each partition has its own outcome
            infos = sorted((i for i in by_key.get(key, []) if i.partition_key is not None),
                           key=lambda i: i.partition_key)
            if not infos:
                out.append(CheckOutcome(asset, key.name, False, blocking, "never evaluated: materialize the asset"))
            for info in infos:
                status = info.latest_execution_status.value
                passed = status == SUCCEEDED and info.is_current
                why = ("passed" if passed else "not evaluated against the current materialization"
                       if status == SUCCEEDED else status.lower())
                out.append(CheckOutcome(asset, f"{key.name}[{info.partition_key}]", passed, blocking, why))
            continue
        record = latest.get(key)
        if record is None or record.status.value == PLANNED:
            out.append(CheckOutcome(asset, key.name, False, blocking, "never evaluated: materialize the asset"))
            continue
        entry = record.event
        evaluation = entry.dagster_event.event_specific_data if entry and entry.dagster_event else None
        description = getattr(evaluation, "description", None) or ""
        materialized = instance.fetch_materializations(key.asset_key, limit=1).records
        stale = bool(materialized and entry and materialized[0].run_id != record.run_id
                     and materialized[0].timestamp > entry.timestamp)
        if record.status.value == SUCCEEDED and not stale:
            out.append(CheckOutcome(asset, key.name, True, blocking, description or "passed"))
        elif record.status.value == SUCCEEDED:
            out.append(CheckOutcome(asset, key.name, False, blocking,
                                    f"{asset} was materialized after this check last ran (run {record.run_id[:8]}): "
                                    "the data in use was not judged"))
        else:
            out.append(CheckOutcome(asset, key.name, False, blocking,
                                    f"{record.status.value.lower()}: {description or 'no description'}"))
    return out


def lake_outcomes(settings: Settings) -> list[CheckOutcome]:
    """Each ingested partition's recorded outcome and file hash, re-verified against the lake."""
    from ml_assets.definitions import lake_store
    from ml_assets.ingestion.ingest import IngestionRefused, materialized_partitions, verify_ingested

    lake = lake_store(settings)
    out = []
    for asset in ("raw_transactions", "raw_labels"):
        for partition in materialized_partitions(lake, asset):
            try:
                verify_ingested(lake, asset, [partition])
                out.append(CheckOutcome("lake", f"{asset}[{partition}]", True, True, "record and file agree"))
            except IngestionRefused as e:
                out.append(CheckOutcome("lake", f"{asset}[{partition}]", False, True, str(e)))
    return out


def registry_outcomes(settings: Settings) -> list[CheckOutcome]:
    """The serving model (alias champion) resolves and its artifact still hashes as registered (P8)."""
    import tempfile

    from ml_assets.contract import load_contract
    from ml_assets.registry.mlflow_registry import CHAMPION, IntegrityError, Registry

    tracking = settings.tracking_uri
    if tracking.startswith("sqlite:///") and not Path(tracking.removeprefix("sqlite:///")).is_file():
        return [CheckOutcome("registry", "champion_artifact_integrity", False, True,
                             f"no MLflow registry at {tracking}")]
    contract = load_contract(settings.contract_path)
    registry = Registry(tracking, f"{contract.name}_model", contract.name)
    champion = registry.alias(CHAMPION)
    if champion is None:
        return [CheckOutcome("registry", "champion_artifact_integrity", False, True,
                             f"model {registry.model_name} has no '{CHAMPION}' alias")]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _, digest = registry.verify(champion.version, Path(tmp) / "model")
        except IntegrityError as e:
            return [CheckOutcome("registry", "champion_artifact_integrity", False, True, str(e))]
    return [CheckOutcome("registry", "champion_artifact_integrity", True, True,
                         f"v{champion.version} sha256 {digest[:12]} as registered")]


def junit_xml(outcomes: list[CheckOutcome], took_s: float) -> str:
    suites = ET.Element("testsuites", name="ml-assets check", tests=str(len(outcomes)),
                        failures=str(sum(not o.passed for o in outcomes)), time=f"{took_s:.3f}")
    for suite_name in sorted({o.suite for o in outcomes}):
        members = [o for o in outcomes if o.suite == suite_name]
        suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(members)),
                              failures=str(sum(not o.passed for o in members)))
        for o in members:
            case = ET.SubElement(suite, "testcase", classname=suite_name, name=o.name)
            if not o.passed:
                # Non-blocking checks warn: reported, but they do not fail the command.
                failure = ET.SubElement(case, "failure", type="blocking" if o.blocking else "warning",
                                        message=o.message[:500])
                failure.text = o.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def run_checks(settings: Settings, junit_path: Path | None = None) -> int:
    from ml_assets.definitions import build_definitions
    from ml_assets.instance import ensure_dagster_home

    t0 = time.perf_counter()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the champion's download: no bars
    ensure_dagster_home(settings)
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        outcomes = recorded_outcomes(defs, instance)
    outcomes += lake_outcomes(settings) + registry_outcomes(settings)
    took = time.perf_counter() - t0
    for o in outcomes:
        if not o.passed:
            print(f"{o.verdict:<4}  {o.suite}: {o.name}: {o.message}", file=sys.stderr)
    failed = [o for o in outcomes if not o.passed and o.blocking]
    warned = [o for o in outcomes if not o.passed and not o.blocking]
    print(f"{len(outcomes)} checks: {len(outcomes) - len(failed) - len(warned)} passed, {len(failed)} failed "
          f"(blocking), {len(warned)} warned ({took:.1f}s)")
    if junit_path is not None:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit_path.write_text(junit_xml(outcomes, took))
        print(f"JUnit report: {junit_path}")
    return 1 if failed else 0
