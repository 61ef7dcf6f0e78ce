import datetime as dt

import pandas as pd

from ml_assets.simulate.generator import SimulationConfig, simulate


def test_simulation_is_deterministic_and_realistic(tmp_path):
    cfg = SimulationConfig(start_date=dt.date(2026, 1, 1), days=6, n_cards=1500, label_delay_days=3)
    a = simulate(tmp_path / "a", cfg)
    b = simulate(tmp_path / "b", cfg)
    assert [p.read_bytes() for p in a.transaction_files] == [p.read_bytes() for p in b.transaction_files]
    assert 0.01 <= a.fraud_rate <= 0.03, a.fraud_rate

    tx = pd.read_csv(a.transaction_files[0])
    assert {"transaction_id", "card_id", "event_timestamp", "amount", "merchant_category", "channel", "country"} <= set(
        tx.columns
    )
    assert "is_fraud" not in tx.columns, "labels must not travel with the transactions"
    assert tx["transaction_id"].is_unique


def test_labels_arrive_delay_days_late(tmp_path):
    cfg = SimulationConfig(start_date=dt.date(2026, 1, 1), days=6, n_cards=800, label_delay_days=3)
    res = simulate(tmp_path, cfg)
    first_days = [pd.read_csv(p) for p in res.label_files[:3]]
    assert all(len(df) == 0 for df in first_days), "nothing can be labelled before the first delay has passed"
    day4_labels = pd.read_csv(res.label_files[3], dtype={"transaction_id": str})
    day1_tx = pd.read_csv(res.transaction_files[0], dtype={"transaction_id": str})
    assert set(day4_labels["transaction_id"]) == set(day1_tx["transaction_id"])


def test_drift_scenario_shifts_amounts_from_its_start_day(tmp_path):
    base = SimulationConfig(start_date=dt.date(2026, 1, 1), days=4, n_cards=800)
    drift = SimulationConfig(start_date=dt.date(2026, 1, 1), days=4, n_cards=800, scenario="drift",
                             scenario_start_day=2, ramp_days=0)  # abrupt: full size from its first day
    a, b = simulate(tmp_path / "a", base), simulate(tmp_path / "b", drift)
    before = [pd.read_csv(p)["amount"].median() for p in a.transaction_files]
    after = [pd.read_csv(p)["amount"].median() for p in b.transaction_files]
    assert before[0] == after[0] and before[1] == after[1]
    assert after[3] > 1.4 * before[3]


def test_drift_ramps_up_and_changes_how_fraud_looks(tmp_path):
    """Gradual covariate drift (amounts grow over ramp_days) plus concept drift: compromised cards emptied by
    small domestic ATM / in-store withdrawals at night, which the old fraud pattern never showed."""
    cfg = SimulationConfig(start_date=dt.date(2026, 1, 1), days=10, n_cards=3000, scenario="drift",
                           scenario_start_day=3, ramp_days=4)
    res = simulate(tmp_path, cfg)
    tx = [pd.read_csv(p) for p in res.transaction_files]
    labels = pd.concat([pd.read_csv(p) for p in res.label_files])
    medians = [t["amount"].median() for t in tx]
    assert medians[2] < medians[3] < medians[4] < medians[6], medians  # grows day by day over the ramp
    early, late = tx[1].merge(labels, on="transaction_id"), tx[6].merge(labels, on="transaction_id")

    def night_cash_share(frame: pd.DataFrame) -> float:
        fraud = frame[frame["is_fraud"] == 1]
        hour = pd.to_datetime(fraud["event_timestamp"]).dt.hour
        return float(((hour < 5) & (fraud["channel"] != "online")).mean())

    assert len(late) == len(tx[6]), "day 6 is labelled (labels arrive 3 days later)"
    assert night_cash_share(early) < 0.1 and night_cash_share(late) > 0.3
