"""Dagster wiring for the ingestion group: raw_transactions, raw_labels."""


import datetime as dt

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.ingestion.ingest import IngestReport, ingest_partition, lake_key
from ml_assets.ingestion.landing import landing_data_version, landing_state, survey_landing
from ml_assets.metadata import md_table
from ml_assets.resources import StorageResource

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
    }
    if reasons:
        meta["quarantine_reasons"] = md_table(pd.DataFrame(reasons.most_common(20), columns=["reason", "rows"]))
    if len(reports) == 1:
        meta["source_sha256"] = reports[0].source_sha256
        meta["output_sha256"] = reports[0].output_sha256
        meta["quarantine_file"] = reports[0].quarantine_key
    return meta


def _schema_check(reports: list[IngestReport], contract: Contract, asset: str) -> dg.AssetCheckResult:
    limit = contract.thresholds.quarantine_rate_max
    worst = max(reports, key=lambda r: r.quarantine_rate)
    return dg.AssetCheckResult(
        check_name="schema_contract",
        asset_key=asset,
        passed=worst.quarantine_rate <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"quarantine rate {worst.quarantine_rate:.4%} in {worst.partition} (limit {limit:.2%})",
        metadata={"max_quarantine_rate": worst.quarantine_rate, "worst_partition": worst.partition,
                  "threshold": limit, "rows_quarantined": sum(r.quarantined for r in reports)},
    )


def _null_check(reports: list[IngestReport], contract: Contract, asset: str, nullable: set[str]) -> dg.AssetCheckResult:
    limit = contract.thresholds.null_rate_max
    offenders = {
        f"{r.partition}:{c}": rate for r in reports for c, rate in r.null_rates.items() if c not in nullable and rate > limit
    }
    return dg.AssetCheckResult(
        check_name="null_rates",
        asset_key=asset,
        passed=not offenders,
        severity=dg.AssetCheckSeverity.ERROR,
        description="null rates within limit" if not offenders else f"null rate above {limit:.2%}: {offenders}",
        metadata={"threshold_null_rate_max": limit,
                  "max_null_rate": max((v for r in reports for v in r.null_rates.values()), default=0.0),
                  "offenders": str(offenders)},
    )


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
        ],
        description="Validated transactions of one day. Rows that break the contract are kept in quarantine with a reason.",
    )
    def raw_transactions(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource):
        c = contract
        reports = [ingest_partition("records", landing.get_store(), lake.get_store(), c, pk, "raw_transactions")
                   for pk in context.partition_keys]
        yield dg.MaterializeResult(metadata=_report_metadata(reports, c))
        yield _schema_check(reports, c, "raw_transactions")
        yield _null_check(reports, c, "raw_transactions", nullable)

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
        reports = [ingest_partition("labels", landing.get_store(), store, c, pk, "raw_labels")
                   for pk in context.partition_keys]
        orphans: dict[str, int] = {}
        for r in reports:
            labels = store.read_parquet(r.output_key)
            if labels.empty:
                continue
            event_day = (pd.Timestamp(r.partition) - pd.Timedelta(days=c.labels.delay_days)).date().isoformat()
            key = lake_key("raw_transactions", event_day)
            ids = set(store.read_parquet(key, columns=[c.record_id])[c.record_id]) if store.exists(key) else set()
            missing = int((~labels[c.record_id].isin(ids)).sum())
            if missing:
                orphans[r.partition] = missing
        meta = _report_metadata(reports, c)
        meta["positives"] = int(sum(store.read_parquet(r.output_key)[c.label].sum() for r in reports))
        yield dg.MaterializeResult(metadata=meta)
        yield _schema_check(reports, c, "raw_labels")
        yield dg.AssetCheckResult(
            check_name="labels_match_records",
            asset_key="raw_labels",
            passed=not orphans,
            description="every label matches a delivered record" if not orphans
            else f"labels without a matching record (partition: count): {orphans}",
            metadata={"orphan_labels": sum(orphans.values())},
        )

    return [landing_zone, raw_transactions, raw_labels]
