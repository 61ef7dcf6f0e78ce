"""Dagster wiring for the ingestion group: landing_zone, raw_transactions, raw_labels.

Each run stages every partition of its range, judges each partition's checks, then publishes
all of them with their ingestion records (ingest.py). Each partition's counts and check
outcomes are recorded against that partition (metadata.partition_metadata /
partitioned_check), so a backfill shows the real per-day series in the UI.

Retries: data problems (a bad, duplicate or missing file, a refused publish) fail the step at
once and are never retried; an unavailable source is retried with backoff in code (D7); only
the network errors of `retry.TRANSIENT` escaping that may re-run the step.
"""


import datetime as dt
from collections.abc import Callable

import dagster as dg
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.ingestion.baseline import BASELINE_KEY, load_baseline
from ml_assets.ingestion.ingest import (
    IngestReport,
    clean_stale_staging,
    drop_staging,
    publish_partitions,
    stage_partition,
    staging_prefix,
    status_record,
)
from ml_assets.ingestion.landing import landing_data_version, landing_state, survey_landing
from ml_assets.ingestion.validate import IngestionError
from ml_assets.metadata import Outcome, partition_metadata, partitioned_check, table
from ml_assets.resources import StorageResource
from ml_assets.retry import TRANSIENT, SourceUnavailable

GROUP = "ingestion"
LANDING = "landing_zone"
# How often the automation sensor observes the landing zone (a new delivery shows up within the hour).
OBSERVE_CRON = "0 * * * *"
RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# Checks that stop downstream steps when they fail; baseline_drift only warns (drift is for monitoring).
BLOCKING = {"schema_contract": True, "null_rates": True, "baseline_stats": True, "baseline_drift": False,
            "row_volume": True, "labels_match_records": True}

Judge = Callable[[list[IngestReport]], dict[str, dict[str, Outcome]]]


def _run_level_metadata(reports: list[IngestReport], contract: Contract) -> dict:
    delivered = sum(r.delivered for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    rows = pd.DataFrame([
        {"partition": r.partition, "delivered": r.delivered, "valid": r.valid, "quarantined": r.quarantined,
         "source_sha256": r.source_sha256[:12], "output_sha256": r.output_sha256[:12]} for r in reports])
    reasons = sum((r.reasons for r in reports), start=type(reports[0].reasons)()) if reports else {}
    # Run totals carry a run_ prefix: each partition's own rows_* (partition_metadata) sit next to them.
    meta = {
        "run_partitions": f"{reports[0].partition} .. {reports[-1].partition} ({len(reports)})" if reports else "none",
        "run_rows_delivered": delivered,
        "run_rows_valid": delivered - quarantined,
        "run_rows_quarantined": quarantined,
        "run_quarantine_rate": quarantined / delivered if delivered else 0.0,
        "threshold_quarantine_rate_max": contract.thresholds.quarantine_rate_max,
        "per_partition": table(rows),
        "sources": "\n".join(r.source for r in reports),
        "redelivered_partitions": ", ".join(r.partition for r in reports if r.redelivery) or "none",
        "published_via": "staging: every partition's counts verified before any was published (D6); "
                         "a failure while publishing restores the lake",
    }
    if reasons:
        meta["run_quarantine_reasons"] = table(pd.DataFrame(reasons.most_common(20), columns=["reason", "rows"]))
    return meta


def _partition_metadata(r: IngestReport) -> dict:
    meta = {
        "rows_delivered": r.delivered, "rows_valid": r.valid, "rows_quarantined": r.quarantined,
        "quarantine_rate": r.quarantine_rate, "source": r.source, "source_sha256": r.source_sha256,
        "output_sha256": r.output_sha256, "quarantine_file": r.quarantine_key, "redelivery": r.redelivery,
        "extra_columns": ", ".join(r.extra_columns) or "none",
        "manifest": f"{r.manifest['key']} ({r.manifest['rows']} rows, sha256 matches)" if r.manifest else "none",
    }
    if r.reused_from:
        meta["ids_already_ingested"] = ", ".join(f"{p}: {n}" for p, n in r.reused_from.items())
    if r.reasons:
        meta["quarantine_reasons"] = table(pd.DataFrame(r.reasons.most_common(10), columns=["reason", "rows"]))
    return meta


def _own_quarantine_rate(r: IngestReport) -> float:
    """The share of rows quarantined for what is wrong with this delivery itself. Labels whose record was
    quarantined days earlier follow that record into quarantine, but they are that day's incident (already
    failed and alerted then), not a fault of the label file: counting them would fail the labels day too."""
    own = r.quarantined - r.labels_of_quarantined
    return own / r.delivered if r.delivered else 0.0


def _schema_outcomes(reports: list[IngestReport], contract: Contract) -> dict[str, Outcome]:
    limit = contract.thresholds.quarantine_rate_max
    return {r.partition: Outcome(
        _own_quarantine_rate(r) <= limit,
        f"quarantine rate {_own_quarantine_rate(r):.4%} ({r.quarantined - r.labels_of_quarantined} of {r.delivered} "
        f"rows{f'; plus {r.labels_of_quarantined} labels of records quarantined earlier' if r.labels_of_quarantined else ''}) "
        f"{'within' if _own_quarantine_rate(r) <= limit else 'above'} thresholds.quarantine_rate_max {limit:.2%}"
        + (f"; top reason: {r.reasons.most_common(1)[0][0]}" if r.reasons else ""),
        {"quarantine_rate": r.quarantine_rate, "rows_quarantined": r.quarantined,
         "threshold_quarantine_rate_max": limit}) for r in reports}


def _null_outcomes(reports: list[IngestReport], contract: Contract) -> dict[str, Outcome]:
    limit = contract.thresholds.null_rate_max
    nullable = {c for c, spec in contract.columns.items() if spec.nullable}
    out = {}
    for r in reports:
        over = {c: rate for c, rate in r.null_rates.items() if c not in nullable and rate > limit}
        out[r.partition] = Outcome(
            not over,
            "null rates above thresholds.null_rate_max {:.2%}: {}".format(
                limit, ", ".join(f"{c} {v:.2%}" for c, v in over.items())) if over
            else f"every non-nullable column within thresholds.null_rate_max {limit:.2%}",
            {"max_null_rate": max(r.null_rates.values(), default=0.0), "threshold_null_rate_max": limit})
    return out


def _baseline_outcomes(reports: list[IngestReport], drift: bool) -> dict[str, Outcome]:
    out = {}
    for r in reports:
        dev = r.deviation
        if dev is None or not dev.has_baseline:
            out[r.partition] = Outcome(True, "no baseline yet (it is written when training_set materializes)")
        elif drift:
            out[r.partition] = Outcome(dev.drift_free, "; ".join(dev.drift) if dev.drift else
                                       "values within the training ranges and categories",
                                       {"drift_signals": len(dev.drift)})
        else:
            text = "; ".join(dev.offenders) if dev.offenders else (
                dev.undecided or "null rates within the baseline partitions' (thresholds.baseline.null_rate_*)")
            out[r.partition] = Outcome(dev.passed, text, {"null_rate_jumps": len(dev.offenders)})
    return out


def _volume_outcomes(reports: list[IngestReport]) -> dict[str, Outcome]:
    return {r.partition: Outcome(r.volume.passed, r.volume.description, {
        "rows_delivered": r.delivered, "expected_rows": r.volume.expected, "minimum_rows": r.volume.floor,
        "history_days": len(r.volume.history)}) for r in reports if r.volume is not None}


def _run_active(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def _ingest(context: dg.AssetExecutionContext, kind: str, asset: str, landing: StorageResource,
            lake: StorageResource, contract: Contract, judge: Judge,
            baseline: dict | None = None) -> tuple[list[IngestReport], dict[str, dict[str, Outcome]]]:
    """Stage every partition of the run, judge its checks, then publish them all with their records (D6).

    Problems that retrying cannot fix (a bad or duplicate file, a missing or unavailable source,
    counts that do not add up, a failed publish) fail the partition at once, naming the file,
    with nothing published and no staging left behind.
    """
    store = lake.get_store()
    run_id = context.run.run_id
    stale = clean_stale_staging(store, lambda rid: rid == run_id or _run_active(context.instance, rid))
    if stale:
        context.log.warning("removed the staging left by %d run(s) that are no longer running: %s", len(stale), stale)
    staging = staging_prefix(run_id)
    partitions = ", ".join(context.partition_keys)
    reports: list[IngestReport] = []
    try:
        for pk in context.partition_keys:
            reports.append(stage_partition(kind, landing.get_store(), store, contract, pk, asset, staging, baseline,
                                           in_run=reports))
        outcomes = judge(reports)
        statuses = {r.partition: status_record(r, {
            name: {"passed": o[r.partition].passed, "description": o[r.partition].description,
                   "blocking": BLOCKING[name]} for name, o in outcomes.items() if r.partition in o}, run_id)
            for r in reports}
        publish_partitions(store, reports, statuses, asset)
    except (IngestionError, SourceUnavailable) as e:
        drop_staging(store, staging)  # the partitions staged before the failure are not published either
        # `from None`: the message already says what, where and why; alerts report the root
        # cause, which would otherwise be the bare network error without the source's name.
        raise dg.Failure(description=f"{asset}: {type(e).__name__}: {e}", allow_retries=False,
                         metadata={"error": type(e).__name__, "partitions": partitions}) from None
    except TRANSIENT:
        drop_staging(store, staging)
        raise  # a network error outside the retried reads: the step's retry policy may run it again
    except Exception as e:
        drop_staging(store, staging)
        kind_of = "an I/O error" if isinstance(e, OSError) else "an unexpected error (a bug, not a data problem)"
        raise dg.Failure(description=f"{asset}: {kind_of} while ingesting {partitions}: {type(e).__name__}: {e}. "
                         f"Nothing was published; not retried.", allow_retries=False,
                         metadata={"error": type(e).__name__, "partitions": partitions}) from e
    return reports, outcomes


def _emit(context: dg.AssetExecutionContext, asset: str, reports: list[IngestReport],
          outcomes: dict[str, dict[str, Outcome]], shared: dict[str, dict], contract: Contract,
          extra: dict | None = None):
    for r in reports:
        partition_metadata(context, r.partition, _partition_metadata(r))
    yield dg.MaterializeResult(metadata={**_run_level_metadata(reports, contract), **(extra or {})})
    for name, per_partition in outcomes.items():
        severity = dg.AssetCheckSeverity.ERROR if BLOCKING[name] else dg.AssetCheckSeverity.WARN
        yield from partitioned_check(context, asset, name, per_partition, severity=severity,
                                     metadata=shared.get(name))


def build(contract: Contract, partitions: dg.PartitionsDefinition) -> list:

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
            "sources": table(pd.DataFrame([s.row() for s in surveys])),
            **{f"{s.role}_newest_partition": s.newest or "none" for s in surveys},
            **{f"{s.role}_missing_partitions": len(s.missing) for s in surveys},
        }
        if state == "late":
            context.log.warning("landing zone is late: %s", [s.row() for s in surveys if s.state == "late"])
        return dg.ObserveResult(data_version=dg.DataVersion(landing_data_version(surveys)), metadata=meta)

    def spec(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name, asset=asset, blocking=BLOCKING[name], partitions_def=partitions,
                                 description=description)

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        kinds={"arrow", "parquet"},
        deps=[LANDING],
        check_specs=[
            spec("schema_contract", "raw_transactions",
                 "D1: rows violating the contract are quarantined; too many fail the partition"),
            spec("null_rates", "raw_transactions",
                 "D2: per-column null rate of the delivered rows stays under the contract limit"),
            spec("baseline_stats", "raw_transactions",
                 "D2: no null-rate jump over the training baseline's partitions (a broken pipeline)"),
            spec("baseline_drift", "raw_transactions",
                 "D2: in-domain values outside the training ranges or categories: drift, a warning for monitoring"),
            spec("row_volume", "raw_transactions",
                 "D6/D7: the day's row count is not sharply short of the recent days' (an empty or truncated "
                 "delivery)"),
        ],
        description="Validated transactions of one day. Rows that break the contract are kept in quarantine with a "
        "reason. Each partition's check outcomes are recorded next to it, and consumers refuse failed partitions.",
    )
    def raw_transactions(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource):
        c = contract
        store = lake.get_store()
        baseline = load_baseline(store)

        def judge(reports: list[IngestReport]) -> dict[str, dict[str, Outcome]]:
            return {"schema_contract": _schema_outcomes(reports, c), "null_rates": _null_outcomes(reports, c),
                    "baseline_stats": _baseline_outcomes(reports, drift=False),
                    "baseline_drift": _baseline_outcomes(reports, drift=True),
                    "row_volume": _volume_outcomes(reports)}

        reports, outcomes = _ingest(context, "records", "raw_transactions", landing, lake, c, judge, baseline)
        b = c.thresholds.baseline
        base_meta = {
            "baseline": store.uri(BASELINE_KEY) if baseline else "none yet",
            "baseline_partitions": f"{baseline['partitions'][0]} .. {baseline['partitions'][-1]}"
            if baseline and baseline["partitions"] else "-"}
        rows = [{"partition": r.partition, **row} for r in reports if r.deviation for row in r.deviation.rows]
        shared = {
            "baseline_stats": {**base_meta, "threshold_null_rate_jump_max": b.null_rate_jump_max,
                               "threshold_null_rate_confidence": b.null_rate_confidence,
                               "threshold_min_rows": b.min_rows,
                               **({"per_column": table(pd.DataFrame(rows))} if rows else {})},
            "baseline_drift": {**base_meta, "threshold_out_of_range_share_max": b.out_of_range_share_max,
                               "threshold_range_margin": b.range_margin},
            "row_volume": {"threshold_volume_drop_max": c.ingestion.volume_drop_max,
                           "volume_window_days": c.ingestion.volume_window_days,
                           "volume_min_history_days": c.ingestion.volume_min_history_days},
        }
        yield from _emit(context, "raw_transactions", reports, outcomes, shared, c)

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        kinds={"arrow", "parquet"},
        deps=[LANDING, dg.AssetDep("raw_transactions", partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-contract.labels.delay_days, end_offset=-contract.labels.delay_days,
            allow_nonexistent_upstream_partitions=True))],
        check_specs=[
            spec("schema_contract", "raw_labels", "D1: label rows violating the contract are quarantined"),
            spec("labels_match_records", "raw_labels",
                 "every label refers to a delivered record; labels of quarantined records are quarantined with them"),
        ],
        description="Ground-truth labels delivered on this day, for the records of `delay_days` earlier.",
    )
    def raw_labels(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource):
        c = contract

        def judge(reports: list[IngestReport]) -> dict[str, dict[str, Outcome]]:
            return {"schema_contract": _schema_outcomes(reports, c), "labels_match_records": {r.partition: Outcome(
                r.orphan_labels == 0,
                (f"{r.orphan_labels} labels without a delivered record" if r.orphan_labels else
                 "every label matches a delivered record")
                + (f"; {r.labels_of_quarantined} labels of quarantined records were quarantined with them"
                   if r.labels_of_quarantined else ""),
                {"orphan_labels": r.orphan_labels, "labels_of_quarantined_records": r.labels_of_quarantined})
                for r in reports}}

        reports, outcomes = _ingest(context, "labels", "raw_labels", landing, lake, c, judge)
        store = lake.get_store()
        positives = 0
        for r in reports:
            if r.valid:
                labels = store.read_parquet(r.output_key, columns=[c.label])
                positives += int((labels[c.label] == c.labels.positive).sum())
        yield from _emit(context, "raw_labels", reports, outcomes,
                         {"labels_match_records": {"orphan_labels": sum(r.orphan_labels for r in reports)}}, c,
                         {"positives": positives})

    return [landing_zone, raw_transactions, raw_labels]
