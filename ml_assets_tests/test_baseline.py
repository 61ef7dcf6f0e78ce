"""D2: a partition against the training baseline. A null-rate jump (judged against the baseline's own
partitions, with an allowance for sample size) blocks; in-domain values outside what training saw are drift,
a warning for monitoring. Every message names the setting that governs it."""

import pandas as pd
import pyarrow as pa
import pytest

from ml_assets.contract import load_contract
from ml_assets.contract.model import Baseline
from ml_assets.ingestion.baseline import (
    compare_to_baseline,
    compute_baseline,
    load_baseline,
    wilson_lower,
    write_baseline,
)
from ml_assets_tests.conftest import write_contract
from ml_assets_tests.ingestion_helpers import Zone, csv_bytes, rows

LIMITS = Baseline()


def baseline_with(partition_rates: dict[str, float], column: str = "merchant_category", **columns) -> dict:
    return {"partitions": list(partition_rates), "rows": 1000,
            "columns": {column: {"dtype": "category", "null_rate": 0.0, "frequencies": {"grocery": 1.0}}, **columns},
            "partition_stats": {p: {"rows": 1000, "null_rates": {column: r}} for p, r in partition_rates.items()}}


def partition(n: int, nulls: int, column: str = "merchant_category") -> tuple[pa.Table, dict[str, float]]:
    values = ["grocery"] * (n - nulls) + [None] * nulls
    return pa.table({column: pa.array(values, type=pa.string())}), {column: nulls / n}


def test_a_null_rate_jump_is_judged_against_the_baselines_partitions_not_its_average():
    base = baseline_with({"d1": 0.0, "d2": 0.04, "d3": 0.01})
    valid, rates = partition(1000, 45)  # 4.5%: above the average, within the highest day + 1%
    assert compare_to_baseline(valid, rates, base, LIMITS).passed
    valid, rates = partition(1000, 200)
    dev = compare_to_baseline(valid, rates, base, LIMITS)
    assert not dev.passed
    (message,) = dev.offenders
    assert "merchant_category: null rate 20.00% of 1000 rows" in message
    assert "4.00% in the highest of 3 baseline partitions" in message
    assert "thresholds.baseline.null_rate_jump_max 1.00%" in message
    assert "thresholds.baseline.null_rate_confidence 0.999" in message


def test_a_few_nulls_in_a_small_partition_are_not_a_jump_and_tiny_partitions_decide_nothing():
    base = baseline_with({"d1": 0.0, "d2": 0.0})
    valid, rates = partition(150, 3)  # 2%: but 3 nulls in 150 rows is within the binomial allowance
    assert compare_to_baseline(valid, rates, base, LIMITS).passed
    valid, rates = partition(150, 25)
    assert not compare_to_baseline(valid, rates, base, LIMITS).passed
    valid, rates = partition(48, 24)
    dev = compare_to_baseline(valid, rates, base, LIMITS)
    assert dev.passed and "fewer than thresholds.baseline.min_rows 100" in dev.undecided
    assert wilson_lower(0, 100, 0.999) == 0.0 and 0.0 < wilson_lower(10, 100, 0.999) < 0.1


def test_a_column_constant_in_training_is_drift_to_report_not_a_reason_to_stop():
    """The issue's case: a column constant in the training window ("100% of values outside the baseline range
    [0.4149, 0.4149]") blocked a 631-day backfill. Now it is a warning that names its settings."""
    base = {"partitions": ["d1"], "rows": 100, "partition_stats": {},
            "columns": {"ratio": {"dtype": "float", "null_rate": 0.0, "min": 0.4149, "max": 0.4149, "mean": 0.4149}}}
    valid = pa.table({"ratio": pa.array([0.4149] * 50 + [0.9] * 50)})
    dev = compare_to_baseline(valid, {"ratio": 0.0}, base, LIMITS)
    assert dev.passed, "not a blocking failure"
    (signal,) = dev.drift
    assert "ratio: 50.00% of values outside the training range [0.4149, 0.4149]" in signal
    assert "thresholds.baseline.range_margin 0.25" in signal and "thresholds.baseline.out_of_range_share_max" in signal
    near = pa.table({"ratio": pa.array([0.4149] * 50 + [0.45] * 50)})  # within the margin of the value's magnitude
    assert compare_to_baseline(near, {"ratio": 0.0}, base, LIMITS).drift_free


def test_unseen_categories_are_drift_too():
    base = baseline_with({"d1": 0.0})
    valid = pa.table({"merchant_category": pa.array(["grocery"] * 90 + ["travel"] * 10)})
    dev = compare_to_baseline(valid, {"merchant_category": 0.0}, base, LIMITS)
    assert dev.passed and "categories the training window never saw (e.g. ['travel']" in dev.drift[0]


def test_the_written_baseline_carries_each_partitions_delivered_null_rates(tmp_path):
    contract = load_contract(write_contract(tmp_path / "c.yaml", columns={
        "merchant_category": {"dtype": "category", "nullable": True,
                              "allowed": ["grocery", "fuel", "restaurants", "retail", "electronics", "travel",
                                          "gift_cards", "online_services"]}}))
    zone = Zone(tmp_path, contract)
    days = ["2026-01-01", "2026-01-02"]
    for i, day in enumerate(days):
        records = rows(200, day)
        for r in records[: 10 * (i + 1)]:
            r["merchant_category"] = ""
        zone.deliver(day, csv_bytes(records))
        zone.ingest(day)
    frame = pd.concat([zone.valid(d) for d in days], ignore_index=True)
    write_baseline(zone.lake, compute_baseline(frame, contract, days))
    stored = load_baseline(zone.lake)
    assert {p: s["null_rates"]["merchant_category"] for p, s in stored["partition_stats"].items()} == \
        {"2026-01-01": 0.05, "2026-01-02": 0.1}
    assert stored["partition_stats"]["2026-01-01"]["rows"] == 200
    # The next day is judged against the highest of those (10%), not against the window's average.
    records = rows(1000, "2026-01-03")
    for r in records[:105]:
        r["merchant_category"] = ""
    zone.deliver("2026-01-03", csv_bytes(records))
    assert zone.ingest("2026-01-03", baseline=stored).deviation.passed


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_values_outside_the_contracts_domain_never_reach_the_baseline_comparison(tmp_path, share):
    """Out-of-domain values are D1's business (quarantined); the baseline only sees the valid rows."""
    zone = Zone(tmp_path)
    records = rows(200, "2026-01-05")
    for r in records[: int(200 * share)]:
        r["amount"] = "250000"
    zone.deliver("2026-01-05", csv_bytes(records))
    base = {"partitions": [], "rows": 1, "partition_stats": {},
            "columns": {"amount": {"dtype": "float", "null_rate": 0.0, "min": 0.0, "max": 1000.0, "mean": 5.0}}}
    report = zone.ingest("2026-01-05", baseline=base)
    assert report.quarantined == int(200 * share)
    assert report.deviation.rows[0]["out_of_range_share"] == 0.0
