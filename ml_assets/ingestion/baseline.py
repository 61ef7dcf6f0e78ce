"""D2: baseline stats of the training window, and a partition's deviation from them.

The baseline is written when training_set materializes, from the validated records of the
partitions it was built from (the representative window: every partition training saw):
per column the null rate, for numeric columns min, max, mean and quantiles, for categorical
columns the category frequencies; `write_baseline` adds each baseline partition's delivered
null rates and row counts, as recorded by ingestion.

Each newly ingested partition is compared with it, and the two kinds of deviation are kept
apart (RELIABILITY.md D2, M5):
- a **null-rate jump** points to a broken pipeline: the partition's null rate must exceed the
  highest rate of any baseline partition by more than `null_rate_jump_max`, with confidence
  (a one-sided Wilson bound), on at least `min_rows` rows. This fails the blocking check.
- values **outside the baseline range** (widened by `range_margin`) or in **categories
  training never saw** are in the contract's domain (values outside it were quarantined by
  D1): that is the world changing, drift for monitoring to judge. It is reported as a
  warning, never a reason to stop ingestion.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml_assets.contract import Contract
from ml_assets.contract.model import Baseline as BaselineThresholds
from ml_assets.ingestion.status import read_status
from ml_assets.storage import ObjectStore

BASELINE_KEY = "baseline/raw_transactions.json"
RECORDS_ASSET = "raw_transactions"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def compute_baseline(records: pd.DataFrame, contract: Contract, partitions: list[str]) -> dict:
    """Stats of the validated records of the training window, as plain JSON-able data."""
    columns: dict[str, dict] = {}
    for name, spec in contract.columns.items():
        col = records[name]
        stats: dict = {"dtype": spec.dtype, "null_rate": float(col.isna().mean()) if len(col) else 0.0}
        if spec.dtype in ("int", "float"):
            values = col.dropna().astype(float)
            if len(values):
                stats.update(min=float(values.min()), max=float(values.max()), mean=float(values.mean()),
                             quantiles={str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES),
                                                                           strict=True)})
        elif spec.dtype in ("category", "bool") or (spec.dtype == "string" and spec.allowed is not None):
            freq = col.dropna().astype(str).value_counts(normalize=True)
            stats["frequencies"] = {str(k): float(v) for k, v in freq.items()}
        columns[name] = stats
    return {"rows": len(records), "partitions": partitions, "columns": columns,
            "created_at": dt.datetime.now(dt.UTC).isoformat()}


def write_baseline(store: ObjectStore, baseline: dict) -> str:
    """Store the baseline, completed with each of its partitions' delivered null rates and row
    counts from their ingestion records (the valid records alone have no nulls where the contract
    forbids them, so the per-partition rates the null-rate judgement needs come from there)."""
    per_partition = {}
    for p in baseline.get("partitions", []):
        status = read_status(store, RECORDS_ASSET, p)
        if status and "null_rates" in status:
            per_partition[p] = {"rows": status["delivered"], "null_rates": status["null_rates"]}
    baseline = {**baseline, "partition_stats": per_partition}
    store.write_bytes(BASELINE_KEY, json.dumps(baseline, indent=2, sort_keys=True).encode())
    return store.uri(BASELINE_KEY)


def load_baseline(store: ObjectStore) -> dict | None:
    return json.loads(store.read_bytes(BASELINE_KEY)) if store.exists(BASELINE_KEY) else None


@dataclass
class Deviation:
    """How one partition compares to the baseline."""

    has_baseline: bool
    rows: list[dict] = field(default_factory=list)  # one per column: null rates, out-of-range share
    offenders: list[str] = field(default_factory=list)  # null-rate jumps: fail the blocking check
    drift: list[str] = field(default_factory=list)  # out-of-range values, unseen categories: warnings
    undecided: str = ""  # why the null rates were not judged (too few rows)

    @property
    def passed(self) -> bool:
        return not self.offenders

    @property
    def drift_free(self) -> bool:
        return not self.drift


def wilson_lower(k: int, n: int, confidence: float) -> float:
    """One-sided lower confidence bound of a binomial rate k/n (Wilson score interval)."""
    if n == 0:
        return 0.0
    z = NormalDist().inv_cdf(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def _reference_null_rate(baseline: dict, name: str) -> tuple[float, str]:
    """The highest delivered null rate of any baseline partition (the baseline's own rate when the
    per-partition records are not available)."""
    rates = [s["null_rates"][name] for s in baseline.get("partition_stats", {}).values() if name in s["null_rates"]]
    if rates:
        return max(rates), f"the highest of {len(rates)} baseline partitions"
    return baseline["columns"][name]["null_rate"], "the baseline window"


def _range(base: dict, margin: float) -> tuple[float, float]:
    lo, hi = base["min"], base["max"]
    width = hi - lo
    if width <= 0:
        width = abs(lo) or 1.0  # a single value seen: widen by its magnitude instead
    return lo - margin * width, hi + margin * width


def compare_to_baseline(valid: pa.Table | pd.DataFrame, null_rates: dict[str, float], baseline: dict | None,
                        limits: BaselineThresholds, delivered: int | None = None) -> Deviation:
    """Null rates are those of the delivered rows (nulls the contract forbids were quarantined,
    so `valid` has none); ranges and categories are judged on the valid rows, which is what
    downstream would consume. `delivered` is the partition's row count (default: valid rows)."""
    if baseline is None:
        return Deviation(has_baseline=False)
    if isinstance(valid, pd.DataFrame):
        valid = pa.Table.from_pandas(valid, preserve_index=False)
    n = valid.num_rows if delivered is None else delivered
    out = Deviation(has_baseline=True)
    if n < limits.min_rows:
        out.undecided = (f"{n} rows delivered, fewer than thresholds.baseline.min_rows {limits.min_rows}: null "
                         f"rates not judged")
    for name, base in baseline["columns"].items():
        if name not in valid.column_names:
            continue
        rate = null_rates.get(name, 0.0)
        reference, of_what = _reference_null_rate(baseline, name)
        allowed = reference + limits.null_rate_jump_max
        lower = wilson_lower(round(rate * n), n, limits.null_rate_confidence)
        row = {"column": name, "null_rate": rate, "baseline_null_rate": reference, "null_rate_lower_bound": lower,
               "out_of_range_share": 0.0}
        if not out.undecided and lower > allowed:
            out.offenders.append(
                f"{name}: null rate {rate:.2%} of {n} rows (at least {lower:.2%} at "
                f"thresholds.baseline.null_rate_confidence {limits.null_rate_confidence:g}) vs {reference:.2%} in "
                f"{of_what} + thresholds.baseline.null_rate_jump_max {limits.null_rate_jump_max:.2%}")
        col = valid.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks() if col.num_chunks != 1 else (col.chunk(0) if col.num_chunks else
                                                                    pa.array([], col.type))
        present = len(col) - col.null_count
        if present and "min" in base:
            lo, hi = _range(base, limits.range_margin)
            values = col.cast(pa.float64())
            outside = pc.sum(pc.or_(pc.less(values, lo), pc.greater(values, hi))).as_py() or 0
            share = outside / present
            row.update(out_of_range_share=share, allowed_min=lo, allowed_max=hi)
            if share > limits.out_of_range_share_max:
                span = pc.min_max(values)
                out.drift.append(
                    f"{name}: {share:.2%} of values outside the training range [{base['min']:.4g}, {base['max']:.4g}] "
                    f"widened by thresholds.baseline.range_margin {limits.range_margin:g} to [{lo:.4g}, {hi:.4g}] "
                    f"(observed {span['min'].as_py():.4g} .. {span['max'].as_py():.4g}; warning above "
                    f"thresholds.baseline.out_of_range_share_max {limits.out_of_range_share_max:.2%})")
        elif present and "frequencies" in base:
            seen = pa.array(list(base["frequencies"]), type=pa.string())
            values = col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
            values = values.cast(pa.string())
            unseen_mask = pc.and_(pc.invert(pc.is_in(values, value_set=seen)), pc.is_valid(values))
            unseen = pc.sum(unseen_mask).as_py() or 0
            share = unseen / present
            row["out_of_range_share"] = share
            if share > limits.out_of_range_share_max:
                examples = sorted(set(values.filter(unseen_mask).to_pylist()))[:5]
                out.drift.append(
                    f"{name}: {share:.2%} of values in categories the training window never saw (e.g. {examples}; "
                    f"warning above thresholds.baseline.out_of_range_share_max {limits.out_of_range_share_max:.2%})")
        out.rows.append(row)
    return out
