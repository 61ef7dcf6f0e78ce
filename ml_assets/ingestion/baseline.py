"""D2: baseline stats of the training window, and a partition's deviation from them.

The baseline is written when training_set materializes, from the validated records of the
partitions it was built from: per column the null rate, and for numeric columns min, max,
mean and quantiles, for categorical columns the category frequencies. Each newly ingested
partition is compared to it: a null-rate jump or a share of values outside the baseline
range (or in categories training never saw) above the contract's limits is a check
failure, because it points to a pipeline bug rather than to the world changing (M5).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_assets.contract import Contract
from ml_assets.contract.model import Baseline as BaselineThresholds
from ml_assets.storage import ObjectStore

BASELINE_KEY = "baseline/raw_transactions.json"
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
    store.write_bytes(BASELINE_KEY, json.dumps(baseline, indent=2, sort_keys=True).encode())
    return store.uri(BASELINE_KEY)


def load_baseline(store: ObjectStore) -> dict | None:
    return json.loads(store.read_bytes(BASELINE_KEY)) if store.exists(BASELINE_KEY) else None


@dataclass
class Deviation:
    """How one partition compares to the baseline."""

    has_baseline: bool
    rows: list[dict] = field(default_factory=list)  # one per column: null rates, out-of-range share
    offenders: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.offenders


def compare_to_baseline(valid: pd.DataFrame, null_rates: dict[str, float], baseline: dict | None,
                        limits: BaselineThresholds) -> Deviation:
    """Null rates are those of the delivered rows (nulls are quarantined, so `valid` has none);
    ranges and categories are judged on the valid rows, which is what downstream would consume."""
    if baseline is None:
        return Deviation(has_baseline=False)
    out = Deviation(has_baseline=True)
    for name, base in baseline["columns"].items():
        if name not in valid.columns:
            continue
        row = {"column": name, "null_rate": null_rates.get(name, 0.0), "baseline_null_rate": base["null_rate"],
               "out_of_range_share": 0.0}
        jump = row["null_rate"] - base["null_rate"]
        if jump > limits.null_rate_jump_max:
            out.offenders.append(f"{name}: null rate {row['null_rate']:.2%} vs baseline {base['null_rate']:.2%} "
                                 f"(jump {jump:.2%} > {limits.null_rate_jump_max:.2%})")
        values = valid[name].dropna()
        if len(values) and "min" in base:
            width = base["max"] - base["min"]
            lo, hi = base["min"] - limits.range_margin * width, base["max"] + limits.range_margin * width
            v = values.to_numpy(dtype=float)
            share = float(((v < lo) | (v > hi)).mean())
            row.update(out_of_range_share=share, allowed_min=lo, allowed_max=hi)
            if share > limits.out_of_range_share_max:
                out.offenders.append(f"{name}: {share:.2%} of values outside the baseline range "
                                     f"[{lo:.4g}, {hi:.4g}] (limit {limits.out_of_range_share_max:.2%}); "
                                     f"observed {v.min():.4g} .. {v.max():.4g}")
        elif len(values) and "frequencies" in base:
            unseen = ~values.astype(str).isin(base["frequencies"].keys())
            share = float(unseen.mean())
            row["out_of_range_share"] = share
            if share > limits.out_of_range_share_max:
                examples = sorted(values[unseen].astype(str).unique())[:5]
                out.offenders.append(f"{name}: {share:.2%} of values in categories the training window never saw "
                                     f"(e.g. {examples}; limit {limits.out_of_range_share_max:.2%})")
        out.rows.append(row)
    return out
