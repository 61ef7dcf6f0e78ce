"""The real-data shape generators write what they promise (fast: no Dagster run).

These shapes are inputs for tests of monitoring and retraining decisions, so their
properties are asserted here once: a test that relies on "day is constant within a
partition" or "the concept drifts, the features do not" must be able to trust it.
"""

import datetime as dt

import pandas as pd
import pytest

from ml_assets.contract import load_contract
from ml_assets.ingestion.validate import read_landing_file, validate_labels, validate_records
from ml_assets_tests import shapes


def _records(shape: shapes.Shape) -> dict[dt.date, pd.DataFrame]:
    c = load_contract(shape.contract_path)
    return {d: pd.read_csv(shape.landing / c.records.dir / f"{d}.csv") for d in shape.days}


def _labels(shape: shapes.Shape) -> dict[dt.date, pd.DataFrame]:
    c = load_contract(shape.contract_path)
    return {d: pd.read_csv(shape.landing / c.labels.dir / f"{d}.csv") for d in shape.days}


@pytest.mark.parametrize("name", sorted(shapes.GENERATORS))
def test_every_shape_is_a_valid_contract_and_landing_zone(tmp_path, name):
    small = {"elec2_like": {"days": 12, "constant_days": 4, "drift_start": 6, "drift_days": 3},
             "tiny_and_huge_days": {"days": 10, "huge_day": 6, "huge_rows": 2_000},
             "many_entities_daily_category": {"days": 10, "stores": 60}}
    shape = shapes.GENERATORS[name](tmp_path / name, **small[name])
    c = load_contract(shape.contract_path)
    assert c.partitions.start_date == shape.days[0]
    assert c.partitions.end_date == shape.days[-1] + dt.timedelta(days=1)
    delay = c.labels.delay_days
    for i, d in enumerate(shape.days):
        rec_path = shape.landing / c.records.dir / f"{d}.csv"
        result = validate_records(read_landing_file(rec_path.read_bytes(), str(rec_path)), c, str(rec_path))
        assert len(result.quarantine) == 0, result.quarantine["_reason"].head().tolist()
        assert (pd.to_datetime(result.valid[c.timestamp]).dt.date == d).all(), "every record belongs to its day"
        lab_path = shape.landing / c.labels.dir / f"{d}.csv"
        labels = validate_labels(read_landing_file(lab_path.read_bytes(), str(lab_path)), c, str(lab_path))
        assert len(labels.quarantine) == 0
        if i < delay:
            assert labels.delivered == 0, "header-only before the first labels"
        else:
            earlier = pd.read_csv(shape.landing / c.records.dir / f"{shape.days[i - delay]}.csv")
            assert set(labels.valid[c.record_id]) == set(earlier[c.record_id]), "labels of the records delay days earlier"
    assert shape.labels_delivered == sum(shape.rows_per_day[:-delay]) if delay else sum(shape.rows_per_day)


def test_elec2_like_has_the_elec2_shape(tmp_path):
    shape = shapes.elec2_like(tmp_path, days=40, constant_days=10, drift_start=20, drift_days=10)
    records = _records(shape)
    assert set(shape.rows_per_day) == {48}
    everything = pd.concat(records.values())
    assert everything["market"].nunique() == 1 == shape.expect["entities"]
    for d, f in records.items():
        assert f["day"].nunique() == 1 and f["day"].iloc[0] == d.isoweekday(), "day is constant within a partition"
        assert f["date"].nunique() == 1
        constant = d < dt.date.fromisoformat(shape.expect["constant_until"]["transfer"])
        for col, value in shapes.ELEC2_CONSTANTS.items():
            assert (f[col].nunique() == 1 and f[col].iloc[0] == value) == constant, (d, col)
    # Concept drift, not covariate drift: the price distribution is the same before and after,
    # while the label's correlation with the price collapses.
    labels = pd.concat(_labels(shape).values()).astype({"up": int})
    joined = everything.merge(labels, on="reading_id")
    day = pd.to_datetime(joined["settled_at"]).dt.date
    before = joined[day < dt.date.fromisoformat(shape.expect["concept_drift_from"])]
    after = joined[day >= dt.date.fromisoformat(shape.expect["concept_drift_full_at"])]
    assert abs(before["nswprice"].mean() - after["nswprice"].mean()) < 0.005
    assert before["up"].corr(before["nswprice"]) > 0.6
    assert after["up"].corr(after["nswprice"]) < before["up"].corr(before["nswprice"]) - 0.25
    assert after["up"].corr(after["transfer"]) > 0.4


def test_elec2_like_refuses_a_drift_before_the_transfer_varies(tmp_path):
    with pytest.raises(ValueError, match="drift_start"):
        shapes.elec2_like(tmp_path, constant_days=20, drift_start=10)


def test_tiny_days_and_one_huge_day(tmp_path):
    shape = shapes.tiny_and_huge_days(tmp_path, days=12, huge_day=7, huge_rows=3_000)
    huge = shape.days.index(dt.date.fromisoformat(shape.expect["huge_day"]))
    assert shape.rows_per_day[huge] == 3_000
    others = [n for i, n in enumerate(shape.rows_per_day) if i != huge]
    assert min(others) >= 5 and max(others) <= 50


def test_many_entities_with_a_category_constant_within_each_day(tmp_path):
    shape = shapes.many_entities_daily_category(tmp_path, days=12, stores=150)
    records = _records(shape)
    assert pd.concat(records.values())["store_id"].nunique() == 150
    promos = {f["promo"].iloc[0] for f in records.values()}
    assert all(f["promo"].nunique() == 1 for f in records.values())
    assert promos == set(shapes.PROMOS), "constant within a day, varying across days"


def test_generators_are_deterministic(tmp_path):
    a = shapes.elec2_like(tmp_path / "a", days=8, constant_days=2, drift_start=4, drift_days=2)
    b = shapes.elec2_like(tmp_path / "b", days=8, constant_days=2, drift_start=4, drift_days=2)
    for d in a.days:
        assert (a.landing / "market" / f"{d}.csv").read_bytes() == (b.landing / "market" / f"{d}.csv").read_bytes()
