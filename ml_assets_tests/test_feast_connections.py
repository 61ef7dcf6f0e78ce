"""Feast's offline store leaves no DuckDB connection open after a step: the one it queried on (ibis's
process-wide default) is closed by the Feast resource's teardown. Left open, DuckDB reported it as
leaked at interpreter exit (44 `nanobind: leaked` lines after the demo's summary)."""

import datetime as dt

import dagster as dg
import pandas as pd

from ml_assets.contract import load_contract
from ml_assets.features.compute import compute_features
from ml_assets.features.store import historical_features
from ml_assets.resources import FeastResource
from ml_assets.simulate.generator import SimulationConfig, simulate


def test_a_step_that_used_feast_closes_the_offline_stores_duckdb_connection(tmp_path):
    import ibis

    contract = load_contract(None)
    sim = simulate(tmp_path / "landing", SimulationConfig(start_date=dt.date(2026, 1, 1), days=2, n_cards=50))
    records = pd.concat([pd.read_csv(f) for f in sim.transaction_files])
    records[contract.timestamp] = pd.to_datetime(records[contract.timestamp], utc=True)
    (tmp_path / "features").mkdir()
    for day in (dt.date(2026, 1, 1), dt.date(2026, 1, 2)):
        compute_features(records, contract, day).to_parquet(tmp_path / "features" / f"{day}.parquet")
    used = {}

    @dg.asset
    def joined(feast: FeastResource) -> None:
        store = feast.get_store(contract, str(tmp_path / "features" / "*.parquet"))
        entities = records[[contract.entity, contract.timestamp, contract.record_id]].head(20)
        assert len(historical_features(store, entities, contract)) == 20
        used["backend"] = ibis.options.default_backend

    feast = FeastResource(repo_dir=str(tmp_path / "feast"), sqlite_path=str(tmp_path / "feast" / "online.db"))
    assert dg.materialize([joined], resources={"feast": feast}).success
    assert used["backend"] is not None, "Feast queried on ibis's default DuckDB connection"
    assert ibis.options.default_backend is None, "the step's teardown let it go"
    # ... and closed it: a closed DuckDB connection refuses queries.
    try:
        used["backend"].con.execute("SELECT 1")
        closed = False
    except Exception:
        closed = True
    assert closed
