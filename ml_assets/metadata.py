"""Helpers that turn plain results into Dagster metadata: the UI is the metadata.

Conventions every asset follows:
- numbers shown to people are rounded to 4 significant digits (`num`); the lake files keep
  full precision;
- a table is a Dagster table (`table`), not markdown, so the UI renders it as one;
- in a run over several partitions (a single-run backfill), each partition gets its own
  metadata (`partition_metadata`) and its own check outcome (`partitioned_check`), so the
  UI's per-partition view and Plots tab show the real per-day series instead of the range's.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

import dagster as dg
import numpy as np
import pandas as pd

SIGNIFICANT_DIGITS = 4


def num(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """A number rounded for people (4 significant digits); other values pass through `clean`."""
    value = clean(value)
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return value


def clean(value: Any) -> Any:
    """Plain Python values only (numpy scalars and NaN confuse metadata rendering)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def flat(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": num(v) for k, v in values.items() if clean(v) is not None}


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _cell(value: Any) -> str | int | float | bool | None:
    value = clean(value)
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return num(value) if math.isfinite(value) else str(value)
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | np.ndarray):
        return ", ".join(map(str, value))
    return str(value)


def table(df: pd.DataFrame, max_rows: int = 100) -> dg.TableMetadataValue:
    """A Dagster table (rendered as a table in the UI), numbers rounded for people; the first
    `max_rows` rows (the full data is in the lake, linked next to it).

    Cells of object columns that hold numbers and None (e.g. metrics undefined on a slice)
    are shown as numbers with blanks, not as text.
    """
    rows = df.head(max_rows)
    columns = []
    for name in rows.columns:
        col = rows[name]
        kind = _column_type(col)
        if kind == "string" and col.dtype == object:
            present = [v for v in col if clean(v) is not None]
            if present and all(isinstance(clean(v), int | float) and not isinstance(v, bool) for v in present):
                kind = "float"
        columns.append(dg.TableColumn(name=str(name), type=kind))
    records = [dg.TableRecord({str(k): _cell(v) for k, v in zip(rows.columns, r, strict=True)})
               for r in rows.itertuples(index=False, name=None)]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def md_table(df: pd.DataFrame, floatfmt: str = ".4f", max_rows: int = 50) -> dg.TableMetadataValue:
    """Kept for callers not yet moved to `table`: renders a real table, numbers rounded."""
    del floatfmt
    return table(df, max_rows=max_rows)


def link(url: str) -> dg.UrlMetadataValue:
    """A clickable URL in the UI (for plain modules that build metadata without touching dagster)."""
    return dg.MetadataValue.url(url)


def path(location: str) -> dg.PathMetadataValue:
    """A file or lake path, shown as a path in the UI."""
    return dg.MetadataValue.path(location)


def partition_metadata(context: dg.AssetExecutionContext, partition: str, metadata: Mapping[str, Any],
                       asset_key: dg.AssetKey | str | None = None) -> None:
    """Metadata that belongs to one partition's materialization (numbers rounded for people).

    In a run over several partitions, Dagster materializes every partition of the range with
    the run's metadata; this adds each partition's own values on top, so the per-partition
    view and the Plots tab show the day's numbers, not the last day's.
    """
    values = {k: (num(v) if not isinstance(v, dg.MetadataValue) else v) for k, v in metadata.items()}
    values = {k: v for k, v in values.items() if v is not None}
    key = dg.AssetKey.from_coercible(asset_key) if asset_key is not None else None
    context.add_asset_metadata(values, asset_key=key, partition_key=partition)


@dataclass(frozen=True)
class Outcome:
    """One partition's verdict for one check."""

    passed: bool
    description: str
    metadata: Mapping[str, Any] | None = None


def partitioned_check(context: dg.AssetExecutionContext, asset: str, check_name: str,
                      outcomes: Mapping[str, Outcome], severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                      metadata: Mapping[str, Any] | None = None) -> Iterator[dg.AssetCheckResult]:
    """Each partition's check outcome, recorded against that partition.

    A run of one partition yields the result itself (the check spec must carry the asset's
    `partitions_def`, so Dagster records the partition). A run over several partitions logs
    one evaluation per partition, then yields the result for the run as a whole: failed when
    any partition failed, so a blocking check still stops downstream steps of the run.
    """
    shared = {k: (num(v) if not isinstance(v, dg.MetadataValue) else v) for k, v in (metadata or {}).items()}
    shared = {k: v for k, v in shared.items() if v is not None}
    key = dg.AssetKey.from_coercible(asset)
    failed = {p: o.description for p, o in outcomes.items() if not o.passed}
    if len(outcomes) > 1:
        targets = _materializations(context, key, list(outcomes))
        for partition, o in outcomes.items():
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name=check_name, passed=o.passed, partition=partition, severity=severity,
                description=o.description, metadata={**shared, **_plain(o.metadata)},
                target_materialization_data=targets.get(partition)))
    if len(outcomes) == 1:
        (partition, o), = outcomes.items()
        description, extra = o.description, _plain(o.metadata)
    else:
        description = ("; ".join(f"{p}: {d}" for p, d in failed.items()) if failed
                       else f"passed on {len(outcomes)} partition(s)")
        extra = {}
    yield dg.AssetCheckResult(
        asset_key=key, check_name=check_name, passed=not failed, severity=severity,
        description=description[:2000],
        metadata={**shared, **extra, "failed_partitions": ", ".join(failed) or "none"},
    )


# The type of the public `dg.AssetCheckEvaluation`'s `target_materialization_data` (the materialization an
# evaluation judged), which Dagster 1.13 does not export by name; the AssetCheckResult Dagster builds itself fills
# it in for one-partition runs only. Taken from the public constructor's signature rather than imported from
# dagster's private modules, so a moved module does not break us; a changed signature fails here, at import.
_TARGET = next(t for t in get_args(get_type_hints(dg.AssetCheckEvaluation.__new__)
                                   ["target_materialization_data"]) if t is not type(None))


def _materializations(context: dg.AssetExecutionContext, key: dg.AssetKey, partitions: list[str]) -> dict:
    """This run's materialization of each partition, so each per-partition evaluation judges (and is recorded
    against) that exact materialization: Dagster then knows the outcome is current until the partition is
    materialized again. Called after the asset's result was yielded, when those materializations exist."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=len(partitions) * 2).records
    out: dict = {}
    for r in records:  # newest first
        if r.run_id == context.run.run_id and r.partition_key not in out:
            out[r.partition_key] = _TARGET(storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp)
    return out


def _plain(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {}
    for k, v in (metadata or {}).items():
        v = v if isinstance(v, dg.MetadataValue) else num(v)
        if v is not None:
            out[k] = v
    return out


def as_markdown(value: dg.TableMetadataValue) -> str:
    """A metadata table as markdown text (for the console and for logs)."""
    names = [c.name for c in value.schema.columns]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for record in value.records:
        cells = ["–" if record.data.get(n) is None else str(record.data.get(n)).replace("|", "\\|") for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Check:
    """One asset check, declared once in its group's `checks.py`: name, asset, description, severity and whether
    it blocks. The asset declares its spec and records outcomes through it; the outcomes themselves are computed by
    the group's plain logic (an `Outcome`)."""

    name: str
    asset: str
    description: str
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN
    blocking: bool = False

    def spec(self, partitions: dg.PartitionsDefinition | None = None) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=self.asset, blocking=self.blocking, description=self.description,
                                 partitions_def=partitions)

    def results(self, context: dg.AssetExecutionContext, outcomes: Mapping[str, Outcome],
                metadata: Mapping[str, Any] | None = None) -> Iterator[dg.AssetCheckResult]:
        """Each partition's outcome, recorded against that partition (see `partitioned_check`)."""
        yield from partitioned_check(context, self.asset, self.name, outcomes, self.severity, metadata)

    def result(self, outcome: Outcome) -> dg.AssetCheckResult:
        """The outcome of a check on an unpartitioned asset."""
        return dg.AssetCheckResult(check_name=self.name, asset_key=self.asset, passed=bool(outcome.passed),
                                   severity=self.severity, description=outcome.description or None,
                                   metadata=dict(outcome.metadata or {}))
