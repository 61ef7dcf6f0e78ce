"""Pluggability: a second, differently shaped dataset runs through the whole graph with no code change.

Everything dataset-specific below is data: a contract YAML file and landing files, written
exactly where README.md ("Onboarding your own data") tells a user to put them, and the run
is the documented command (`ml-assets demo --no-simulate` with ML_ASSETS_CONTRACT set).
E-commerce orders differ from the demo in every name: entity, record id, timestamp, label
column, label delay, landing directories, columns, declared features and partitions.
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets import cli
from ml_assets.contract import load_contract
from ml_assets.ingestion.ingest import read_partitions
from ml_assets.registry.mlflow_registry import CHAMPION, Registry
from ml_assets.settings import current_settings
from ml_assets.storage import LocalStore
from ml_assets_tests.test_definitions import EXPECTED, SOURCES

START = dt.date(2026, 3, 2)
DAYS = 16
DELAY = 2
CUSTOMERS = 2500

CONTRACT = f"""\
name: ecommerce_orders
description: Web-shop orders; chargebacks are reported by the payment provider two days later.
records:
  dir: orders
  record_id: order_id
  entity: customer_id
  event_timestamp: placed_at
columns:
  order_id: {{dtype: string, nullable: false, unique: true}}
  customer_id: {{dtype: string, nullable: false}}
  placed_at: {{dtype: datetime, nullable: false}}
  basket_value: {{dtype: float, nullable: false, min: 0.0, max: 50000.0}}
  items: {{dtype: int, nullable: false, min: 1, max: 200}}
  payment_method: {{dtype: category, nullable: false, allowed: [card, paypal, gift_card, bank_transfer]}}
  device: {{dtype: category, nullable: false, allowed: [desktop, mobile, tablet]}}
  country: {{dtype: category, nullable: false, allowed: [DE, FR, NL, ES, IT]}}
  shipping_country: {{dtype: category, nullable: false, allowed: [DE, FR, NL, ES, IT, UA, VN, NG]}}
labels:
  dir: chargebacks
  column: is_chargeback
  positive: 1
  delay_days: {DELAY}
partitions:
  start_date: "{START.isoformat()}"
  end_date: "{(START + dt.timedelta(days=DAYS)).isoformat()}"
features:
  passthrough: [basket_value, items, payment_method, device]
  derived:
    - {{name: ships_abroad, op: not_equal, args: [country, shipping_country]}}
    - {{name: order_hour, op: hour, args: [placed_at]}}
  aggregates:
    - {{column: basket_value, functions: [count, sum, max], windows: [6h, 3d]}}
    - {{column: items, functions: [mean], windows: [3d]}}
  ttl_days: 4
slices:
  sensitive_attribute: device
  declared: [device, payment_method]
datasets:
  golden:
    version: g1
    entity_fraction: 0.25
    window_days: 4
    min_per_class: 60
    negatives_per_positive: 10
    seed: 11
  validation_fraction: 0.2
training:
  epochs: 4
  batch_size: 256
  learning_rate: 0.003
  hidden: [32, 16]
  seed: 5
  nproc_per_node: 2
  checkpoint_every: 2
  expected_minutes: 3
thresholds:
  null_rate_max: 0.01
  quarantine_rate_max: 0.05
  completeness_min: 0.999
  freshness_hours: 26
  gates:
    precision_min: 0.80
    recall_min: 0.70
    roc_auc_min: 0.90
    bootstrap_resamples: 100
    latency_p99_ms: 250          # shared 2-core CI machine; the demo's 50 ms is a serving target
"""


def orders_for_day(rng: np.random.Generator, day: dt.date) -> pd.DataFrame:
    """Ordinary shoppers, plus account takeovers: bursts of large gift-card orders shipped abroad."""
    n_legit = rng.poisson(2000)
    customer = rng.integers(0, CUSTOMERS, size=n_legit)
    home = np.array(["DE", "FR", "NL", "ES", "IT"])[customer % 5]
    legit = pd.DataFrame({
        "customer": customer,
        "seconds": rng.integers(6 * 3600, 23 * 3600, size=n_legit),
        "basket_value": np.round(rng.lognormal(3.5, 0.6, size=n_legit), 2),
        "items": rng.integers(1, 6, size=n_legit),
        "payment_method": rng.choice(["card", "paypal", "gift_card", "bank_transfer"], size=n_legit,
                                     p=[0.55, 0.35, 0.03, 0.07]),
        "device": rng.choice(["desktop", "mobile", "tablet"], size=n_legit, p=[0.4, 0.5, 0.1]),
        "country": home,
        "shipping_country": np.where(rng.random(n_legit) < 0.03, rng.choice(["FR", "NL", "ES"], size=n_legit), home),
        "is_chargeback": 0,
    })
    takeovers = rng.choice(CUSTOMERS, size=rng.poisson(40), replace=False)
    burst = 3 + rng.poisson(1.0, size=len(takeovers))
    f_customer = np.repeat(takeovers, burst)
    m = len(f_customer)
    f_home = np.array(["DE", "FR", "NL", "ES", "IT"])[f_customer % 5]
    fraud = pd.DataFrame({
        "customer": f_customer,
        "seconds": np.repeat(rng.integers(0, 20 * 3600, size=len(takeovers)), burst) + rng.integers(0, 3 * 3600, m),
        "basket_value": np.round(rng.lognormal(6.3, 0.4, size=m), 2),
        "items": rng.integers(4, 20, size=m),
        "payment_method": rng.choice(["gift_card", "card"], size=m, p=[0.8, 0.2]),
        "device": rng.choice(["desktop", "mobile", "tablet"], size=m, p=[0.4, 0.5, 0.1]),
        "country": f_home,
        "shipping_country": rng.choice(["UA", "VN", "NG"], size=m),
        "is_chargeback": 1,
    })
    orders = pd.concat([legit, fraud], ignore_index=True)
    orders = orders.drop_duplicates(["customer", "seconds"]).sort_values(["seconds", "customer"], kind="stable")
    orders["order_id"] = [f"ord-{day:%m%d}-{i:05d}" for i in range(len(orders))]
    orders["customer_id"] = [f"cust-{c:05d}" for c in orders["customer"]]
    orders["placed_at"] = (pd.Timestamp(day, tz="UTC") + pd.to_timedelta(orders["seconds"], unit="s")).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return orders.reset_index(drop=True)


def deliver(landing: Path) -> dict:
    """Landing files as an upstream would drop them: orders per day, chargebacks DELAY days later."""
    rng = np.random.default_rng(20260302)
    delivered, labels_by_day = 0, {}
    columns = ["order_id", "customer_id", "placed_at", "basket_value", "items", "payment_method", "device",
               "country", "shipping_country"]
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        orders = orders_for_day(rng, day)
        (landing / "orders").mkdir(parents=True, exist_ok=True)
        orders[columns].to_csv(landing / "orders" / f"{day}.csv", index=False)
        labels_by_day[day] = orders[["order_id", "is_chargeback"]]
        delivered += len(orders)
    positives = 0
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        labels = labels_by_day.get(day - dt.timedelta(days=DELAY), pd.DataFrame(columns=["order_id", "is_chargeback"]))
        (landing / "chargebacks").mkdir(parents=True, exist_ok=True)
        labels.to_csv(landing / "chargebacks" / f"{day}.csv", index=False)  # header only before the first labels
        positives += int(labels["is_chargeback"].sum())
    return {"rows": delivered, "positives": positives}


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory):
    home = tmp_path_factory.mktemp("shop")
    contract_path = home / "ecommerce_orders.yaml"
    contract_path.write_text(CONTRACT)
    delivered = deliver(home / "landing")
    mp = pytest.MonkeyPatch()
    # README step 3: point ML_ASSETS_CONTRACT at the file; ML_ASSETS_HOME holds landing/ and everything written.
    mp.setenv("ML_ASSETS_HOME", str(home))
    mp.setenv("ML_ASSETS_CONTRACT", str(contract_path))
    mp.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    mp.delenv("ML_ASSETS_ENV", raising=False)
    try:
        exit_code = cli.main(["demo", "--no-simulate"])
        settings = current_settings()
        with dg.DagsterInstance.get() as instance:
            yield {"exit_code": exit_code, "settings": settings, "contract": load_contract(contract_path),
                   "delivered": delivered, "instance": instance}
    finally:
        mp.undo()


@pytest.mark.slow
def test_whole_graph_runs_on_a_second_dataset_with_every_check_passing(onboarded):
    assert onboarded["exit_code"] == 0
    instance = onboarded["instance"]
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == START.isoformat()
    assert run.tags["dagster/asset_partition_range_end"] == (START + dt.timedelta(days=DAYS - 1)).isoformat()
    materialized = {key.to_user_string() for key in instance.get_asset_keys()
                    if instance.get_latest_materialization_event(key) is not None}
    assert materialized == set(EXPECTED) - SOURCES
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as S

    from ml_assets.definitions import build_definitions

    check_keys = list(build_definitions(onboarded["settings"]).resolve_asset_graph().asset_check_keys)
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    assert set(records) == set(check_keys), "every declared check ran"
    failed = [k.to_user_string() for k, r in records.items() if r.status != S.SUCCEEDED]
    assert failed == []


@pytest.mark.slow
def test_the_contract_names_flow_through_ingestion_and_features(onboarded):
    c, s = onboarded["contract"], onboarded["settings"]
    lake = LocalStore(s.lake_dir)
    valid = read_partitions(lake, "raw_transactions")
    quarantined = read_partitions(lake, "quarantine/raw_transactions")
    assert len(valid) + len(quarantined) == onboarded["delivered"]["rows"]
    assert list(valid.columns) == list(c.columns)
    labels = read_partitions(lake, "raw_labels")
    assert set(labels.columns) == {"order_id", "is_chargeback"}
    assert int(labels["is_chargeback"].sum()) == onboarded["delivered"]["positives"]
    features = read_partitions(lake, "transaction_features")
    assert len(features) == len(valid)
    assert {"order_id", "customer_id", "placed_at", "ships_abroad", "order_hour", "basket_value_max_6h",
            "items_mean_3d"} <= set(features.columns)
    # The aggregates are per customer: a takeover burst shows up in the 6h count.
    assert features["basket_value_count_6h"].max() >= 3


@pytest.mark.slow
def test_a_champion_is_promoted_for_the_new_dataset_with_its_own_gates(onboarded):
    c, s = onboarded["contract"], onboarded["settings"]
    registry = Registry(s.mlflow_tracking_uri, "ecommerce_orders_model", "ecommerce_orders")
    champ = registry.alias(CHAMPION)
    assert champ is not None
    assert champ.tags["contract"] == "ecommerce_orders"
    assert float(champ.tags[f"golden_{c.datasets.golden.version}_roc_auc"]) >= c.thresholds.gates.roc_auc_min
    manifest = json.loads((s.lake_dir / "golden_set" / "g1" / "manifest.json").read_text())
    assert manifest["positives"] >= c.datasets.golden.min_per_class
    preds = read_partitions(LocalStore(s.lake_dir), "batch_predictions")
    assert {"order_id", "customer_id", "placed_at", "score"} <= set(preds.columns)
    perf = read_partitions(LocalStore(s.lake_dir), "model_performance")
    assert len(perf[perf["roc_auc"].notna()]) == DAYS - DELAY


def test_numeric_identifiers_are_refused_at_load_naming_the_field(tmp_path):
    from ml_assets.contract import ContractError

    path = tmp_path / "c.yaml"
    path.write_text(CONTRACT.replace("order_id: {dtype: string", "order_id: {dtype: int"))
    with pytest.raises(ContractError, match=r"records.record_id names column 'order_id' of dtype int"):
        load_contract(path)
    path.write_text(CONTRACT.replace("name: ecommerce_orders", "name: e-commerce orders"))
    with pytest.raises(ContractError, match=r"invalid: name: "):
        load_contract(path)


def test_simulate_refuses_a_contract_that_is_not_the_demo_and_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "shop.yaml"
    path.write_text(CONTRACT)
    monkeypatch.setenv("ML_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ML_ASSETS_CONTRACT", str(path))
    with pytest.raises(SystemExit, match=r"declares 'ecommerce_orders'.*landing/orders/<YYYY-MM-DD>.csv"):
        cli.main(["simulate", "--days", "1"])
    assert not (tmp_path / "home" / "landing").exists(), "no card data was written for another dataset"
