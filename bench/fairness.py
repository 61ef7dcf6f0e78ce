"""The fairness gate (P5) at 1x, 2x and 4x the demo's volume, old rule next to new, on real simulations.

    .venv/bin/python bench/fairness.py [--cards 4000,8000,16000] [--seeds 2026] [--days 30]

For each volume (`ml-assets simulate --cards N`) and seed: simulate the days, build the golden
and training sets the way the datasets assets do (golden entities and window, stratified
golden sample, features joined per record), train the demo's model through torchrun with the
contract's training settings, score the golden set and judge it by

- the old rule: flag-rate ratio (demographic parity, the four-fifths rule on all rows) with a
  simultaneous bound that takes every row as independent;
- the contract's rule (`thresholds.gates.fairness`: equalized odds, bounds clustered by card);
- the same rule on two injected biased models: one that flags every customer of the smallest
  age band (65+), one that never flags them.

It also prints what the simulator builds in: the fraud rate per age band over every
transaction simulated, and the number of frauds per compromised card-day. The whole graph
is not run (the demo at 4x takes several minutes); the golden and training sets are the same
selections it makes. Results go to bench/results/fairness.json. Not a test: it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def read_landing(landing: Path, kind: str) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in sorted((landing / kind).glob("*.csv"))], ignore_index=True)


def build_sets(root: Path, cards: int, seed: int, days: int, contract) -> dict:
    from ml_assets.datasets.build import (
        GoldenManifest,
        content_hash,
        golden_pool,
        labeled_records,
        stratified_golden,
        training_pool,
    )
    from ml_assets.features.compute import compute_features
    from ml_assets.simulate.generator import SimulationConfig, simulate

    simulate(root / "landing", SimulationConfig(start_date=contract.partitions.start_date, days=days, n_cards=cards,
                                                seed=seed))
    records = read_landing(root / "landing", "transactions")
    labels = read_landing(root / "landing", "labels").astype({contract.record_id: str, contract.label: int})
    features = compute_features(records, contract)
    labeled = labeled_records(records, labels, contract)
    pool, start, end = golden_pool(labeled, contract)

    def with_features(rows: pd.DataFrame) -> pd.DataFrame:
        return rows[[contract.record_id, contract.label]].merge(features, on=contract.record_id, validate="1:1")

    golden = with_features(stratified_golden(pool, contract))
    g = contract.datasets.golden
    manifest = GoldenManifest(version=g.version, window_start=start.isoformat(), window_end=end.isoformat(),
                              entity_fraction=g.entity_fraction, seed=g.seed, rows=len(golden),
                              positives=int(golden[contract.label].sum()),
                              negatives=int((golden[contract.label] == 0).sum()), content_hash=content_hash(golden),
                              created_at="bench")
    training = with_features(training_pool(labeled, manifest, contract))

    everything = records.merge(labels, on=contract.record_id)
    everything["day"] = everything[contract.timestamp].str[:10]
    frauds = everything[everything[contract.label] == 1]
    attribute = contract.slices.sensitive_attribute
    built_in = {band: {"fraud_rate": float(rows[contract.label].mean()), "rows": len(rows)}
                for band, rows in everything.groupby(attribute)}
    card_days = frauds.groupby([contract.entity, "day"]).size()
    return {"golden": golden, "training": training, "records": len(records), "fraud_rate_by_group": built_in,
            "frauds_per_compromised_card_day": float(card_days.mean())}


def train_and_score(root: Path, training: pd.DataFrame, golden: pd.DataFrame, contract) -> tuple[np.ndarray, float]:
    import torch

    from ml_assets.resources.training import launch_standalone
    from ml_assets.training.launcher import LocalTorchrunLauncher
    from ml_assets.training.model import build_model
    from ml_assets.training.preprocess import Preprocessor

    data = root / "training_set.parquet"
    training.to_parquet(data, index=False)
    run = launch_standalone(LocalTorchrunLauncher(nproc_per_node=contract.training.nproc_per_node, timeout_s=1800),
                            data, root / "run", contract.training_spec)
    pre = Preprocessor.from_dict(json.loads((root / "run" / "preprocessor.json").read_text()))
    net = build_model(run.result["input_dim"], run.result["hidden"])
    net.load_state_dict(torch.load(root / "run" / "model.pt", weights_only=True))
    net.eval()
    with torch.no_grad():
        scores = torch.sigmoid(net(torch.from_numpy(pre.transform(golden)))).squeeze(1).numpy()
    return scores.astype(float), float(run.result["threshold"])


def judge(golden: pd.DataFrame, scores: np.ndarray, threshold: float, contract) -> dict:
    from ml_assets.metrics import classification_metrics
    from ml_assets.registry.gates import fairness_comparisons, fairness_gate

    f = contract.thresholds.gates.fairness
    attribute = contract.slices.sensitive_attribute
    y = golden[contract.label].to_numpy().astype(int)
    groups, cards = golden[attribute], golden[contract.entity]
    flags = (scores >= threshold).astype(int)
    smallest = groups.value_counts().idxmin()

    def gate(pred: np.ndarray, **kw) -> dict:
        g = fairness_gate(pred, groups, minimum=f.ratio_min, alpha=1 - f.confidence, attribute=attribute, **kw)
        return {"passed": g.passed, "ratio": g.value, "ci_upper": g.ci[1]}

    rule = {"y_true": y, "clusters": cards if f.cluster_by_entity else None, "metric": f.metric}
    comparisons = fairness_comparisons(flags, groups, y, rule["clusters"], f.metric, 1 - f.confidence)
    metrics = classification_metrics(y, scores, threshold)
    return {
        "golden_rows": len(golden), "golden_positives": int(y.sum()),
        "precision": metrics["precision"], "recall": metrics["recall"], "roc_auc": metrics["roc_auc"],
        "old_rule": gate(flags, metric="demographic_parity"),
        "contract_rule": gate(flags, **rule),
        "contract_rule_rates": {c.rate: {"ratio": c.ratio, "ci": [c.low, c.high],
                                         "by_group": {str(k): {"rate": v, "flagged": c.counts[k][0],
                                                               "rows": c.counts[k][1], "clusters": c.counts[k][2],
                                                               "design_effect": c.counts[k][3]}
                                                      for k, v in c.rates.items()}} for c in comparisons},
        "injected": {"flags_every_" + str(smallest): gate(np.where(groups == smallest, 1, flags), **rule),
                     "never_flags_" + str(smallest): gate(np.where(groups == smallest, 0, flags), **rule)},
        "positives_by_group": {str(k): int(v) for k, v in golden[y == 1].groupby(attribute).size().items()},
        "base_rate_in_golden_by_group": {str(k): float(v) for k, v in golden.groupby(attribute)[contract.label]
                                         .mean().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", default="4000,8000,16000")
    parser.add_argument("--seeds", default="2026", help="simulation seeds (2026 is the demo's)")
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from ml_assets.contract import load_contract

    contract = load_contract()
    started = time.time()
    load_start = os.getloadavg()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for cards in (int(c) for c in args.cards.split(",")):
            root = Path(tempfile.mkdtemp(prefix=f"ml_assets_bench_fairness_{cards}_"))
            sets = build_sets(root, cards, seed, args.days, contract)
            scores, threshold = train_and_score(root, sets["training"], sets["golden"], contract)
            result = {"cards": cards, "seed": seed, "records": sets["records"],
                      "fraud_rate_by_group_simulated": sets["fraud_rate_by_group"],
                      "frauds_per_compromised_card_day": sets["frauds_per_compromised_card_day"],
                      **judge(sets["golden"], scores, threshold, contract)}
            rows.append(result)
            print(f"{cards} cards, seed {seed}: {result['golden_rows']} golden rows, {result['golden_positives']} "
                  f"frauds; precision {result['precision']:.3f} recall {result['recall']:.3f} AUC "
                  f"{result['roc_auc']:.4f}; old rule {'pass' if result['old_rule']['passed'] else 'REFUSED'} "
                  f"(ratio {result['old_rule']['ratio']:.3f}, CI upper {result['old_rule']['ci_upper']:.3f}); "
                  f"contract rule {'pass' if result['contract_rule']['passed'] else 'REFUSED'}", flush=True)

    out = Path(__file__).parent / "results" / "fairness.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                           "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg()},
                               "rule": contract.thresholds.gates.fairness.model_dump(), "days": args.days,
                               "wall_s": round(time.time() - started, 1), "runs": rows}, indent=2, default=float) + "\n")

    def fmt(g: dict) -> str:
        return f"{'pass' if g['passed'] else 'REFUSED'} {g['ratio']:.3f} (<= {g['ci_upper']:.3f})"

    table = pd.DataFrame([{
        "cards": r["cards"], "seed": r["seed"], "golden frauds": r["golden_positives"],
        "precision": round(r["precision"], 3), "recall": round(r["recall"], 3), "AUC": round(r["roc_auc"], 4),
        "old: flag-rate ratio, rows independent": fmt(r["old_rule"]),
        "contract: equalized odds, clustered": fmt(r["contract_rule"]),
        **{f"injected {k}": fmt(v) for k, v in r["injected"].items()},
    } for r in rows])
    print()
    print("simulated fraud rate per group (every transaction): "
          + "; ".join(f"{r['cards']}/{r['seed']}: " + ", ".join(f"{k} {v['fraud_rate']:.4f}" for k, v in
                                                                 r["fraud_rate_by_group_simulated"].items())
                      for r in rows))
    print("frauds per compromised card-day: " + ", ".join(f"{r['frauds_per_compromised_card_day']:.2f}" for r in rows))
    print("golden-set base rate per group: " + "; ".join(
        f"{r['cards']}/{r['seed']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["base_rate_in_golden_by_group"].items())
        for r in rows))
    print(table.to_string(index=False))
    print(f"ratio (<= simultaneous upper bound); refused when the bound < {contract.thresholds.gates.fairness.ratio_min}."
          f" Written to {out} ({time.time() - started:.0f} s, load {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f}).")


if __name__ == "__main__":
    main()
