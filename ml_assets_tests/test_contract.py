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
