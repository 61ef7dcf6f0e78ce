import pytest
import yaml

from ml_assets.contract import ContractError, load_contract
from ml_assets_tests.conftest import write_contract


def test_demo_contract_declares_features_for_the_model():
    c = load_contract()
    assert c.entity == "card_id" and c.label == "is_fraud"
    assert "amount_count_1h" in c.feature_names and "is_foreign" in c.categorical_features
    assert set(c.numeric_features).isdisjoint(c.categorical_features)
    assert set(c.numeric_features) | set(c.categorical_features) == set(c.feature_names)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"records": {"entity": "no_such_column"}}, "records.entity"),
        ({"columns": {"amount": {"dtype": "money"}}}, "columns.amount.dtype"),
        ({"features": {"aggregates": [{"column": "amount", "functions": ["sum"], "windows": ["7 days"]}]}},
         "features.aggregates.0.windows"),
        ({"thresholds": {"null_rate_max": 3}}, "thresholds.null_rate_max"),
    ],
)
def test_malformed_contract_names_the_field(tmp_path, override, field):
    path = write_contract(tmp_path / "bad.yaml", **override)
    with pytest.raises(ContractError) as e:
        load_contract(path)
    assert str(path) in str(e.value)
    assert field in str(e.value) or field.split(".")[-1] in str(e.value)


def test_unknown_key_is_rejected_not_ignored(tmp_path):
    data = yaml.safe_load(write_contract(tmp_path / "c.yaml").read_text())
    data["thresholds"]["nul_rate_max"] = 0.1  # a typo must not silently fall back to a default
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ContractError, match="nul_rate_max"):
        load_contract(tmp_path / "c.yaml")


# S2: every invalid contract a careful operator (or an attacker) could write is refused at load, naming the file
# and the field. Each override below is applied to the demo contract.
INVALID = [
    ({"columns": {"amount": {"min": float("nan")}}}, "columns.amount.min"),
    ({"columns": {"amount": {"max": float("inf")}}}, "columns.amount.max"),
    ({"thresholds": {"null_rate_max": float("nan")}}, "thresholds.null_rate_max"),
    ({"thresholds": {"freshness_hours": float("inf")}}, "thresholds.freshness_hours"),
    ({"training": {"learning_rate": float("nan")}}, "training.learning_rate"),
    ({"records": {"dir": "../raw_transactions"}}, "records.dir"),
    ({"records": {"dir": "/etc"}}, "records.dir"),
    ({"labels": {"dir": "labels/../../x"}}, "labels.dir"),
    ({"labels": {"dir": "transactions"}}, "labels.dir"),
    ({"datasets": {"golden": {"version": "../raw_transactions"}}}, "datasets.golden.version"),
    ({"datasets": {"golden": {"version": ".hidden"}}}, "datasets.golden.version"),
    ({"features": {"derived": [{"name": "../x", "op": "hour", "args": ["event_timestamp"]}]}},
     "features.derived.0.name"),
    ({"name": "../card"}, "name"),
    ({"columns": {"transaction_id": {"dtype": "string", "nullable": True, "unique": True}}},
     "columns.transaction_id.nullable"),
    ({"columns": {"transaction_id": {"dtype": "string", "unique": False}}}, "columns.transaction_id.unique"),
    ({"columns": {"card_id": {"dtype": "string", "nullable": True}}}, "columns.card_id.nullable"),
    ({"columns": {"event_timestamp": {"dtype": "datetime", "nullable": True}}}, "columns.event_timestamp.nullable"),
    ({"features": {"derived": [{"name": "is_foreign", "op": "not_equal", "args": ["country"]}]}},
     "not_equal takes 2 column(s); found 1"),
    ({"features": {"derived": [{"name": "h", "op": "hour", "args": ["event_timestamp", "amount"]}]}},
     "hour takes 1 column(s); found 2"),
    ({"features": {"derived": [{"name": "h", "op": "hour", "args": ["amount"]}]}}, "hour needs a datetime column"),
    ({"features": {"derived": [{"name": "x", "op": "equal", "args": ["amount", "country"]}]}}, "compare like with like"),
    ({"features": {"derived": [{"name": "country", "op": "hour", "args": ["event_timestamp"]}]}},
     "also column names"),
    ({"features": {"passthrough": ["amount", "amount"]}}, "more than once"),
    ({"features": {"passthrough": ["transaction_id"]}}, "not a feature"),
    ({"features": {"passthrough": ["event_timestamp"]}}, "not a feature"),
    ({"features": {"aggregates": [{"column": "amount", "functions": ["sum"], "windows": ["0h"]}]}}, "empty"),
    ({"features": {"aggregates": [{"column": "amount", "functions": ["sum", "sum"], "windows": ["1h"]}]}},
     "features.aggregates.0.functions"),
    ({"features": {"aggregates": [{"column": "amount", "functions": ["sum"], "windows": ["1h", "1h"]}]}},
     "repeat a window"),
    ({"thresholds": {"gates": {"precision_min": 1.5}}}, "thresholds.gates.precision_min"),
    ({"thresholds": {"gates": {"roc_auc_min": -0.1}}}, "thresholds.gates.roc_auc_min"),
    ({"thresholds": {"gates": {"disparate_impact_min": 2}}}, "thresholds.gates.disparate_impact_min"),
    ({"thresholds": {"gates": {"auc_tolerance": 3}}}, "thresholds.gates.auc_tolerance"),
    ({"thresholds": {"gates": {"latency_p99_ms": 0}}}, "thresholds.gates.latency_p99_ms"),
    ({"thresholds": {"drift": {"psi_watch": 0.3, "psi_act": 0.2}}}, "psi_watch <= psi_act <= psi_bug"),
    ({"thresholds": {"drift": {"psi_act": 0.6, "psi_bug": 0.5}}}, "psi_watch <= psi_act <= psi_bug"),
    ({"thresholds": {"drift": {"ks_pvalue": 1.5}}}, "thresholds.drift.ks_pvalue"),
    ({"thresholds": {"drift": {"outsized_day_factor": 1}}}, "thresholds.drift.outsized_day_factor"),
    ({"thresholds": {"drift": {"null_rate_alpha": 0}}}, "thresholds.drift.null_rate_alpha"),
    ({"thresholds": {"drift": {"calendar_min_rows": 0}}}, "thresholds.drift.calendar_min_rows"),
    ({"thresholds": {"drift": {"constant_days_max": 0.96}}}, "must be below calendar_constant_share"),
    ({"training": {"epochs": 2.5}}, "training.epochs"),
    ({"training": {"lr_gamma": 0}}, "training.lr_gamma"),
    ({"thresholds": {"performance": {"consecutive_windows": 0}}}, "thresholds.performance.consecutive_windows"),
    ({"thresholds": {"baseline": {"null_rate_confidence": 1.0}}}, "thresholds.baseline.null_rate_confidence"),
    ({"columns": {"channel": {"dtype": "category", "allowed": []}}}, "'allowed' is empty"),
    ({"columns": {"channel": {"dtype": "category", "allowed": ["a", "a"]}}}, "more than once"),
    ({"columns": {"channel": {"dtype": "category", "allowed": [" online"]}}}, "surrounding whitespace"),
    ({"columns": {"_reason": {"dtype": "string"}}}, "quarantine files reserve"),
    ({"columns": {"amount": {"dtype": "float", "unique": True}}}, "'unique' on a float column"),
    ({"labels": {"positive": 2}}, "labels.positive"),
    ({"labels": {"column": "transaction_id"}}, "labels.column"),
    ({"training": {"hidden": [64, 0]}}, "training.hidden.1"),
    ({"training": {"hidden": []}}, "training.hidden"),
    ({"ingestion": {"retry_attempts": 0}}, "ingestion.retry_attempts"),
    ({"ingestion": {"manifest": "sometimes"}}, "ingestion.manifest"),
    ({"records": {"naive_timestamps": "local"}}, "records.naive_timestamps"),
    ({"records": {"late_tolerance_hours": -1}}, "records.late_tolerance_hours"),
    ({"ingestion": {"volume_min_history_days": 20, "volume_window_days": 14}}, "volume would never be judged"),
    ({"ingestion": {"null_markers": ["NULL", "NULL"]}}, "ingestion: null_markers"),
    ({"partitions": {"start_date": "1600-01-01"}}, "partitions: start_date 1600-01-01"),
]


@pytest.mark.parametrize(("override", "field"), INVALID, ids=[f for _, f in INVALID])
def test_every_invalid_setting_is_refused_naming_the_file_and_the_field(tmp_path, override, field):
    path = write_contract(tmp_path / "bad.yaml", **override)
    with pytest.raises(ContractError) as e:
        load_contract(path)
    message = str(e.value)
    assert str(path) in message and field in message, message
    assert e.value.__cause__ is None and e.value.__suppress_context__, "one sentence, no chained traceback"


def test_duplicate_yaml_keys_are_refused_not_silently_overwritten(tmp_path):
    text = write_contract(tmp_path / "c.yaml").read_text()
    text = text.replace("  amount:\n", "  amount:\n    min: 5\n", 1) if "  amount:\n" in text else text
    text = text.replace("name: card_transactions", "name: card_transactions\nname: other", 1)
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ContractError, match=r"duplicate key 'name' \(first on line \d+\)"):
        load_contract(tmp_path / "c.yaml")


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p / "missing.yaml", "does not exist"),
    (lambda p: p, "is a directory; expected a contract YAML file"),
    (lambda p: (p / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1")) and p / "latin1.yaml",
     "is not UTF-8 text"),
    (lambda p: (p / "list.yaml").write_text("- a\n- b\n") and p / "list.yaml", "expected a mapping at the top level"),
    (lambda p: (p / "bad.yaml").write_text("name: [\n") and p / "bad.yaml", "is not valid YAML"),
])
def test_an_unusable_contract_path_is_one_clear_contract_error(tmp_path, make, expected):
    with pytest.raises(ContractError, match=expected) as e:
        load_contract(make(tmp_path))
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_the_cli_reports_a_bad_contract_in_one_line_without_a_traceback(tmp_path):
    import subprocess
    import sys

    code = f"from ml_assets.contract import load_contract; load_contract({str(tmp_path)!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert out.stderr.count("Traceback") == 1 and "During handling" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("ml_assets.contract.model.ContractError: contract path")
