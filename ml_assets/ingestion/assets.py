"""Dagster wiring for the ingestion group: landing_zone, raw_transactions, raw_labels.

Each run stages every partition of its range, judges each partition's checks, then publishes
all of them with their ingestion records (ingest.py). The checks are judged and the metadata
built in report.py, the landing zone surveyed in landing.py. Each partition's counts and check
outcomes are recorded against that partition (metadata.partition_metadata /
partitioned_check), so a backfill shows the real per-day series in the UI.

Retries: data problems (a bad, duplicate or missing file, a refused publish) fail the step at
once and are never retried; an unavailable source is retried with backoff in code (D7); only
the network errors of `retry.TRANSIENT` escaping that may re-run the step.
"""


import datetime as dt
from collections.abc import Callable

import dagster as dg

from ml_assets.contract import Contract
from ml_assets.ingestion import report
from ml_assets.ingestion.baseline import BASELINE_KEY, load_baseline
from ml_assets.ingestion.checks import LABELS_CHECKS, RECORDS_CHECKS
from ml_assets.ingestion.ingest import IngestReport, clean_stale_staging, ingest_run
from ml_assets.ingestion.landing import landing_data_version, landing_metadata, landing_state, survey_landing
from ml_assets.ingestion.report import BLOCKING
from ml_assets.ingestion.validate import IngestionError
from ml_assets.lake_layout import feedback_text
from ml_assets.metadata import Check, Outcome, partition_metadata
from ml_assets.resources import LakeInput, StorageResource, session
from ml_assets.retry import TRANSIENT, SourceUnavailable
from ml_assets.storage import ScopedStore

GROUP = "ingestion"
LANDING = "landing_zone"
# How often the automation sensor observes the landing zone (a new delivery shows up within the hour).
OBSERVE_CRON = "0 * * * *"
RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)

Judge = Callable[[list[IngestReport]], dict[str, dict[str, Outcome]]]


def _run_active(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def _ingest(context: dg.AssetExecutionContext, kind: str, asset: str, landing: StorageResource,
            store: ScopedStore, contract: Contract, judge: Judge,
            baseline: dict | None = None) -> tuple[list[IngestReport], dict[str, dict[str, Outcome]]]:
    """Stage every partition of the run, judge its checks, then publish them all with their records (D6).

    Problems that retrying cannot fix (a bad or duplicate file, a missing or unavailable source,
    counts that do not add up, a failed publish) fail the partition at once, naming the file,
    with nothing published and no staging left behind (`ingest.ingest_run` drops it).
    """
    run_id = context.run.run_id
    stale = clean_stale_staging(store, lambda rid: rid == run_id or _run_active(context.instance, rid))
    if stale:
        context.log.warning("removed the staging left by %d run(s) that are no longer running: %s", len(stale), stale)
    partitions = ", ".join(context.partition_keys)
    try:
        return ingest_run(kind, asset, landing.get_store(), store, contract, context.partition_keys, run_id, judge,
                          BLOCKING, baseline)
    except (IngestionError, SourceUnavailable) as e:
        # `from None`: the message already says what, where and why; alerts report the root
        # cause, which would otherwise be the bare network error without the source's name.
        raise dg.Failure(description=f"{asset}: {type(e).__name__}: {e}", allow_retries=False,
                         metadata={"error": type(e).__name__, "partitions": partitions}) from None
    except TRANSIENT:
        raise  # a network error outside the retried reads: the step's retry policy may run it again
    except Exception as e:
        kind_of = "an I/O error" if isinstance(e, OSError) else "an unexpected error (a bug, not a data problem)"
        raise dg.Failure(description=f"{asset}: {kind_of} while ingesting {partitions}: {type(e).__name__}: {e}. "
                         f"Nothing was published; not retried.", allow_retries=False,
                         metadata={"error": type(e).__name__, "partitions": partitions}) from e


def _emit(context: dg.AssetExecutionContext, store: ScopedStore, checks: tuple[Check, ...],
          reports: list[IngestReport], outcomes: dict[str, dict[str, Outcome]], shared: dict[str, dict],
          contract: Contract, extra: dict | None = None):
    for r in reports:
        partition_metadata(context, r.partition, report.partition_metadata(r))
    yield dg.MaterializeResult(value=store, metadata={**report.run_metadata(reports, contract), **(extra or {})})
    by_name = {c.name: c for c in checks}
    for name, per_partition in outcomes.items():
        yield from by_name[name].results(context, per_partition, shared.get(name))


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
        if state == "late":
            context.log.warning("landing zone is late: %s", [s.row() for s in surveys if s.state == "late"])
        return dg.ObserveResult(data_version=dg.DataVersion(landing_data_version(surveys)),
                                metadata=landing_metadata(surveys, state, contract, expected))

    # Both ingested assets: daily, one run per backfill (staged and published together), retried only on
    # network errors, after the landing zone's observation.
    ingested = {"group_name": GROUP, "partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.single_run(),
                "retry_policy": RETRY, "kinds": {"arrow", "parquet"}, "deps": [LANDING]}

    @dg.asset(
        **ingested,
        check_specs=[c.spec(partitions) for c in RECORDS_CHECKS],
        description="Validated transactions of one day. Rows that break the contract are kept in quarantine with a "
        "reason. Each partition's check outcomes are recorded next to it, and consumers refuse failed partitions. "
        f"Feedback input (not an edge: it would be a cycle): {feedback_text('raw_transactions')}.",
    )
    def raw_transactions(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource):
        store = session(context, lake)
        baseline = load_baseline(store)
        reports, outcomes = _ingest(context, "records", "raw_transactions", landing, store, contract,
                                    lambda staged: report.records_outcomes(staged, contract), baseline)
        shared = report.records_check_metadata(reports, contract, baseline, store.uri(BASELINE_KEY))
        yield from _emit(context, store, RECORDS_CHECKS, reports, outcomes, shared, contract)

    @dg.asset(
        **ingested,
        ins={"raw_transactions": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-contract.labels.delay_days, end_offset=-contract.labels.delay_days,
            allow_nonexistent_upstream_partitions=True))},
        check_specs=[c.spec(partitions) for c in LABELS_CHECKS],
        description="Ground-truth labels delivered on this day, for the records of `delay_days` earlier.",
    )
    def raw_labels(context: dg.AssetExecutionContext, landing: StorageResource, lake: StorageResource,
                   raw_transactions: LakeInput):
        store = session(context, lake, raw_transactions)
        reports, outcomes = _ingest(context, "labels", "raw_labels", landing, store, contract,
                                    lambda staged: report.labels_outcomes(staged, contract))
        positives = report.count_positives(store, reports, contract)
        yield from _emit(context, store, LABELS_CHECKS, reports, outcomes, report.labels_check_metadata(reports),
                         contract, {"positives": positives})

    return [landing_zone, raw_transactions, raw_labels]
