"""Dagster wiring for the ingestion group: raw_transactions, raw_labels."""


import datetime as dt

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.ingestion.baseline import BASELINE_KEY, load_baseline
from ml_assets.ingestion.ingest import (
    DuplicateDelivery,
    IngestReport,
    PublishMismatch,
    SourceMissing,
    drop_staged,
    lake_key,
    publish_partitions,
    record_status,
    stage_partition,
    staging_prefix,
)
from ml_assets.ingestion.landing import landing_data_version, landing_state, survey_landing
from ml_assets.ingestion.validate import LandingFileError
from ml_assets.metadata import md_table
from ml_assets.resources import StorageResource
from ml_assets.retry import SourceUnavailable

GROUP = "ingestion"
LANDING = "landing_zone"
# How often the automation sensor observes the landing zone (a new delivery shows up within the hour).
OBSERVE_CRON = "0 * * * *"
RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def _report_metadata(reports: list[IngestReport], contract: Contract) -> dict:
    delivered = sum(r.delivered for r in reports)
    valid = sum(r.valid for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    table = pd.DataFrame(
        [
            {"partition": r.partition, "delivered": r.delivered, "valid": r.valid, "quarantined": r.quarantined,
             "source_sha256": r.source_sha256[:12], "output_sha256": r.output_sha256[:12]}
            for r in reports
        ]
    )
    reasons = sum((r.reasons for r in reports), start=type(reports[0].reasons)()) if reports else {}
    meta = {
        "partitions": ", ".join(r.partition for r in reports),
        "rows_delivered": delivered,
        "rows_valid": valid,
        "rows_quarantined": quarantined,
        "quarantine_rate": round(quarantined / delivered, 6) if delivered else 0.0,
        "threshold_quarantine_rate_max": contract.thresholds.quarantine_rate_max,
        "per_partition": md_table(table),
        "sources": "\n".join(r.source for r in reports),
        "redelivered_partitions": ", ".join(r.partition for r in reports if r.redelivery) or "none",
        "published_via": "staging: every partition's counts verified before any was published (D6)",
    }
    if reasons:
        meta["quarantine_reasons"] = md_table(pd.DataFrame(reasons.most_common(20), columns=["reason", "rows"]))
    if len(reports) == 1:
        meta["source_sha256"] = reports[0].source_sha256
        meta["output_sha256"] = reports[0].output_sha256
        meta["quarantine_file"] = reports[0].quarantine_key
    return meta


def _outcome(passed: bool, description: str) -> dict:
    return {"passed": bool(passed), "description": description}


def _schema_outcomes(reports: list[IngestReport], contract: Contract) -> dict[str, dict]:
    limit = contract.thresholds.quarantine_rate_max
    return {r.partition: _outcome(r.quarantine_rate <= limit,
                                  f"quarantine rate {r.quarantine_rate:.4%} (limit {limit:.2%})") for r in reports}


def _null_outcomes(reports: list[IngestReport], contract: Contract, nullable: set[str]) -> dict[str, dict]:
    limit = contract.thresholds.null_rate_max
    out = {}
    for r in reports:
        over = {c: round(rate, 6) for c, rate in r.null_rates.items() if c not in nullable and rate > limit}
        out[r.partition] = _outcome(not over, f"null rate above {limit:.2%}: {over}" if over else "within limit")
    return out


def _baseline_outcomes(reports: list[IngestReport]) -> dict[str, dict]:
    out = {}
    for r in reports:
        dev = r.deviation
        if dev is None or not dev.has_baseline:
            out[r.partition] = _outcome(True, "no baseline yet (it is written when training_set materializes)")
        else:
            out[r.partition] = _outcome(dev.passed, "; ".join(dev.offenders) if dev.offenders
                                        else "null rates and ranges within the baseline limits")
    return out


def _check_result(asset: str, name: str, outcomes: dict[str, dict], metadata: dict) -> dg.AssetCheckResult:
    failed = {p: o["description"] for p, o in outcomes.items() if not o["passed"]}
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{p}: {d}" for p, d in failed.items()) if failed
        else f"passed on {len(outcomes)} partition(s)",
        metadata={**metadata, "failed_partitions": ", ".join(failed) or "none"},
    )


def _ingest(context: dg.AssetExecutionContext, kind: str, asset: str, landing: StorageResource,
            lake: StorageResource, contract: Contract, baseline: dict | None = None) -> list[IngestReport]:
    """Stage every partition of the run, then publish them together only if the counts add up (D6).

    Problems that retrying cannot fix (a bad or duplicate file, a missing or unavailable source,
    counts that do not add up) fail the partition at once, naming the file, with nothing published.
    """
    store = lake.get_store()
    staging = staging_prefix(context.run.run_id)
    seen: dict[str, str] = {}
    reports: list[IngestReport] = []
    try:
        for pk in context.partition_keys:
            r = stage_partition(kind, landing.get_store(), store, contract, pk, asset, staging, baseline)
            reports.append(r)
            if r.delivered and r.source_sha256 in seen:
                raise DuplicateDelivery(f"{r.source}: expected new data for partition {pk}; found a byte-identical "
                                        f"copy of the file delivered for partition {seen[r.source_sha256]} in the "
                                        f"same run. Nothing from this run was published; ask the upstream for the "
                                        f"real {pk} delivery.")
            seen[r.source_sha256] = pk
        publish_partitions(store, reports)
    except (LandingFileError, SourceMissing, SourceUnavailable, DuplicateDelivery, PublishMismatch) as e:
        drop_staged(store, reports)  # the partitions staged before the failure are not published either
        # `from None`: the message already says what, where and why; alerts report the root
        # cause, which would otherwise be the bare network error without the source's name.
        raise dg.Failure(description=f"{asset}: {type(e).__name__}: {e}", allow_retries=False,
                         metadata={"error": type(e).__name__, "partitions": ", ".join(context.partition_keys)}
                         ) from None
    return reports


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list:
    nullable = {c for c, spec in contract.columns.items() if spec.nullable}

    @dg.observable_source_asset(
        name=LANDING,
        group_name=GROUP,
        required_resource_keys={"landing"},
        automation_condition=dg.AutomationCondition.cron_tick_passed(OBSERVE_CRON),
        description=f"D3: the delivered files under {contract.records.dir}/ and {contract.labels.dir}/. Its data "
        f"version is the newest delivery per source, so a late or missing delivery shows as nothing new; "
        f"'delivery_state' is 'late' once the newest data is older than {contract.thresholds.freshness_hours} h.",
    )
    def landing_zone(context: dg.OpExecutionContext):
        now = dt.datetime.now(dt.UTC)
        expected = partitions.get_partition_keys(current_time=now)
        surveys = survey_landing(context.resources.landing.get_store(), contract, expected, now)
        state = landing_state(surveys)
        meta = {
            "delivery_state": state,
            "threshold_freshness_hours": contract.thresholds.freshness_hours,
            "expected_newest_partition": expected[-1] if expected else "none",
            "sources": md_table(pd.DataFrame([s.row() for s in surveys])),
            **{f"{s.role}_newest_partition": s.newest or "none" for s in surveys},
            **{f"{s.role}_missing_partitions": len(s.missing) for s in surveys},
        }
        if state == "late":
            context.log.warning("landing zone is late: %s", [s.row() for s in surveys if s.state == "late"])
        return dg.ObserveResult(data_version=dg.DataVersion(landing_data_version(surveys)), metadata=meta)

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        kinds={"pandas", "pandera"},
        deps=[LANDING],
        check_specs=[
            dg.AssetCheckSpec("schema_contract", asset="raw_transactions", blocking=True,
                              description="D1: rows violating the contract are quarantined; too many fail the partition"),
            dg.AssetCheckSpec("null_rates", asset="raw_transactions", blocking=True,
                              description="D2: per-column null rate of the delivered rows stays under the contract limit"),
            dg.AssetCheckSpec("baseline_stats", asset="raw_transactions", blocking=True,
                              description="D2: null rates, ranges and categories stay close to the training baseline"),
        ],
        description="Validated transactions of one day. Rows that break the contract are kept in quarantine with a "
        "reason. Each partition's check outcomes are recorded next to it, and consumers refuse failed partitions.",
    )
    def raw_transactions(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource):
        c = contract
        store = lake.get_store()
        baseline = load_baseline(store)
        reports = _ingest(context, "records", "raw_transactions", landing, lake, c, baseline)
        checks = {"schema_contract": _schema_outcomes(reports, c), "null_rates": _null_outcomes(reports, c, nullable),
                  "baseline_stats": _baseline_outcomes(reports)}
        for r in reports:
            record_status(store, "raw_transactions", r, {n: o[r.partition] for n, o in checks.items()},
                          context.run.run_id)
        meta = _report_metadata(reports, c)
        yield dg.MaterializeResult(metadata=meta)
        worst_q = max(reports, key=lambda r: r.quarantine_rate)
        yield _check_result("raw_transactions", "schema_contract", checks["schema_contract"], {
            "max_quarantine_rate": worst_q.quarantine_rate, "worst_partition": worst_q.partition,
            "threshold": c.thresholds.quarantine_rate_max, "rows_quarantined": sum(r.quarantined for r in reports)})
        yield _check_result("raw_transactions", "null_rates", checks["null_rates"], {
            "threshold_null_rate_max": c.thresholds.null_rate_max,
            "max_null_rate": max((v for r in reports for v in r.null_rates.values()), default=0.0)})
        b = c.thresholds.baseline
        rows = [{"partition": r.partition, **row} for r in reports if r.deviation for row in r.deviation.rows]
        yield _check_result("raw_transactions", "baseline_stats", checks["baseline_stats"], {
            "baseline": store.uri(BASELINE_KEY) if baseline else "none yet",
            "baseline_partitions": f"{baseline['partitions'][0]} .. {baseline['partitions'][-1]}"
            if baseline and baseline["partitions"] else "-",
            "threshold_null_rate_jump_max": b.null_rate_jump_max,
            "threshold_out_of_range_share_max": b.out_of_range_share_max,
            "threshold_range_margin": b.range_margin,
            **({"per_column": md_table(pd.DataFrame(rows))} if rows else {})})

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        kinds={"pandas", "pandera"},
        deps=[LANDING, dg.AssetDep("raw_transactions", partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-contract.labels.delay_days, end_offset=-contract.labels.delay_days,
            allow_nonexistent_upstream_partitions=True))],
        check_specs=[
            dg.AssetCheckSpec("schema_contract", asset="raw_labels", blocking=True,
                              description="D1: label rows violating the contract are quarantined"),
            dg.AssetCheckSpec("labels_match_records", asset="raw_labels", blocking=True,
                              description="every label refers to a record delivered delay_days earlier"),
        ],
        description="Ground-truth labels delivered on this day, for the records of `delay_days` earlier.",
    )
    def raw_labels(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource):
        c = contract
        store = lake.get_store()
        reports = _ingest(context, "labels", "raw_labels", landing, lake, c)
        orphans: dict[str, int] = {}
        positives = 0
        for r in reports:
            labels = store.read_parquet(r.output_key)
            positives += int(labels[c.label].sum()) if len(labels) else 0
            if labels.empty:
                continue
            event_day = (pd.Timestamp(r.partition) - pd.Timedelta(days=c.labels.delay_days)).date().isoformat()
            key = lake_key("raw_transactions", event_day)
            ids = set(store.read_parquet(key, columns=[c.record_id])[c.record_id]) if store.exists(key) else set()
            missing = int((~labels[c.record_id].isin(ids)).sum())
            if missing:
                orphans[r.partition] = missing
        checks = {"schema_contract": _schema_outcomes(reports, c),
                  "labels_match_records": {r.partition: _outcome(
                      r.partition not in orphans,
                      f"{orphans.get(r.partition, 0)} labels without a matching record") for r in reports}}
        for r in reports:
            record_status(store, "raw_labels", r, {n: o[r.partition] for n, o in checks.items()}, context.run.run_id)
        meta = _report_metadata(reports, c)
        meta["positives"] = positives
        yield dg.MaterializeResult(metadata=meta)
        worst_q = max(reports, key=lambda r: r.quarantine_rate)
        yield _check_result("raw_labels", "schema_contract", checks["schema_contract"], {
            "max_quarantine_rate": worst_q.quarantine_rate, "worst_partition": worst_q.partition,
            "threshold": c.thresholds.quarantine_rate_max, "rows_quarantined": sum(r.quarantined for r in reports)})
        yield _check_result("raw_labels", "labels_match_records", checks["labels_match_records"],
                            {"orphan_labels": sum(orphans.values())})

    return [landing_zone, raw_transactions, raw_labels]
