"""Training: preprocessing fitted on train only, DDP through torchrun, checkpoints and resume (T1, T2, T5, T6)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torch.utils.data import DistributedSampler, TensorDataset

from ml_assets.contract import load_contract
from ml_assets.resources.training import launch_standalone, run_torchrun
from ml_assets.training import ddp, launcher
from ml_assets.training.launcher import (
    LocalTorchrunLauncher,
    TrainingFailed,
    TrainingResult,
    _child_env,
    available_cpus,
    output_tail,
    threads_per_rank,
)
from ml_assets.training.model import build_model
from ml_assets.training.preprocess import Preprocessor
from ml_assets_tests.processes import processes_mentioning
from ml_assets_tests.training import crash_drill

SPEC = {
    "numeric": ["amount", "is_foreign"],
    "categorical": ["channel"],
    "label": "label",
    "timestamp": "ts",
    "epochs": 4,
    # Two micro-batches of 32 per optimizer step: every torchrun test below runs DDP's no_sync accumulation.
    "batch_size": 32,
    "accumulation_steps": 2,
    "learning_rate": 0.01,
    "hidden": [16, 8],
    "seed": 11,
    "checkpoint_every": 3,
    "validation_fraction": 0.2,
}


def make_transactions(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    """~5% fraud driven by amount, foreign cards and the web channel, so a model can learn it."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, n)
    channel = rng.choice(["pos", "web", "atm"], n, p=[0.6, 0.3, 0.1])
    is_foreign = (rng.random(n) < 0.15).astype("int64")
    logit = -6.0 + 2.2 * (np.log(amount) - 3.0) + 2.5 * is_foreign + 2.0 * (channel == "web")
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    amount[rng.random(n) < 0.01] = np.nan
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="min")
    df = pd.DataFrame({"ts": ts, "amount": amount, "channel": channel, "is_foreign": is_foreign, "label": label})
    # Shuffled on disk: the split must come from the timestamps, not from file order.
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "training_set.parquet"
    make_transactions().to_parquet(path, index=False)
    return path


def launch_logged(launcher_: LocalTorchrunLauncher, data: Path, out: Path, spec: dict) -> tuple[TrainingResult, list[str]]:
    """A launch inside a real (test-instance) Dagster run, and the messages that reached that run's event log."""
    got: dict[str, TrainingResult] = {}

    @dg.asset
    def training(context):  # unannotated: annotations are strings here (PEP 563), which Dagster refuses
        got["run"] = run_torchrun(context, launcher_, data, out, spec)
        return dg.MaterializeResult()  # a step that opened a Pipes session must report its asset

    with dg.instance_for_test() as instance:
        result = dg.materialize([training], instance=instance)
        lines = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return got["run"], lines


def rank_output(out: Path) -> list[str]:
    """Every line the ranks wrote to stdout and stderr, from torchrun's log files in the run directory."""
    return output_tail(out / launcher.LOG_DIR, lines=10**6)


@pytest.fixture(scope="module")
def reference_run(data_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted 2-rank run that several tests compare against, and what reached the Dagster log."""
    return launch_logged(LocalTorchrunLauncher(nproc_per_node=2, timeout_s=180), data_path,
                         tmp_path_factory.mktemp("reference"), SPEC)


# --- preprocessing ------------------------------------------------------------------------------------------------


def test_preprocessor_is_fitted_on_train_only_and_round_trips():
    train, val = ddp.split_by_time(make_transactions(), "ts", 0.2)
    assert train["ts"].max() <= val["ts"].min()
    pre = Preprocessor.fit(train, ["amount", "is_foreign"], ["channel"])

    amounts = train["amount"].dropna()
    logged = np.sign(amounts) * np.log1p(np.abs(amounts))
    assert pre.means["amount"] == pytest.approx(logged.mean())
    assert pre.stds["amount"] == pytest.approx(logged.std(ddof=0))

    # Extreme rows outside the fit change nothing about how the train rows are encoded.
    extreme = val.head(5).assign(amount=1e12)
    before = pre.transform(train)
    after = pre.transform(pd.concat([train, extreme], ignore_index=True))
    np.testing.assert_array_equal(after[: len(train)], before)
    assert after[len(train) :, 0].max() == 10.0  # clipped, not 1e12-ish
    assert after.dtype == np.float32 and after.shape[1] == pre.feature_dim == len(pre.output_names) == 5
    assert pre.output_names == ["amount", "is_foreign", "channel=atm", "channel=pos", "channel=web"]
    assert np.isfinite(after).all()

    restored = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert restored == pre
    np.testing.assert_array_equal(restored.transform(val), pre.transform(val))


def test_preprocessor_unseen_and_null_values_encode_as_zeros():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"], "k": [5.0, 5.0, 5.0, 5.0]})
    pre = Preprocessor.fit(train, ["x", "k"], ["c"])
    out = pre.transform(pd.DataFrame({"x": [None, 2.0, np.inf], "c": ["zzz", None, "b"], "k": [5.0, 7.0, 5.0]}))
    np.testing.assert_array_equal(out[:, 2:], [[0, 0], [0, 0], [0, 1]])  # unseen "zzz" and null -> no category
    assert out[0, 0] == 0.0 and out[2, 0] == 0.0  # null and inf -> the fitted mean
    assert pre.stds["k"] == 1.0 and out[1, 1] > 0  # a constant column does not divide by zero
    with pytest.raises(KeyError, match="missing columns"):
        pre.transform(pd.DataFrame({"x": [1.0]}))


def test_model_outputs_one_logit_per_row():
    model = build_model(5, [16, 8])
    assert model(torch.zeros(7, 5)).shape == (7, 1)
    assert sum(isinstance(m, torch.nn.Linear) for m in model) == 3


# --- torchrun -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_train_end_to_end_through_torchrun(reference_run, data_path: Path):
    run, lines = reference_run
    result = run.result
    assert run.returncode == 0 and run.command[:3] == [run.command[0], "-m", "torch.distributed.run"]
    assert result["world_size"] == 2 and result["backend"] == "gloo" and result["device"] == "cpu"
    assert result["resumed_from_epoch"] is None
    # every 3 epochs and at the last one
    assert sorted(p.name for p in (run.out_dir / "checkpoints").iterdir()) == ["epoch_0003.pt", "epoch_0004.pt"]
    # Epochs and result came from rank 0's Pipes messages (nothing parses stdout), equal to what it wrote to disk.
    assert [e["epoch"] for e in run.epochs_log] == [1, 2, 3, 4]
    on_disk = [json.loads(line) for line in (run.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert run.epochs_log == on_disk
    assert result == json.loads((run.out_dir / "result.json").read_text())
    assert result["val_auc"] > 0.8, result
    assert result["train_rows"] == 2400 and result["val_rows"] == 600 and 0 < result["train_positives"] < 240
    assert 0.0 < result["threshold"] < 1.0 and result["val_recall"] > 0
    # Rank 0's log reached the Dagster log through Pipes, once: rank 1 never opens the session.
    assert len([line for line in lines if line.startswith("epoch 4/4: train_loss")]) == 1
    assert "[pipes] external process successfully opened dagster pipes." in lines
    rows_line = ("1200 rows per rank, 19 optimizer steps per epoch of 2 micro-batch(es) of 32 rows per rank; global "
                 "batch 128 rows")
    assert any(line.startswith(rows_line) for line in lines)
    # Every rank's own output is kept in torchrun's log files (the tail of a failure comes from there).
    output = rank_output(run.out_dir)
    assert any(line.startswith("[attempt_0 rank 0 stderr]") and rows_line in line for line in output)
    kept = {(f.parent.name, f.name) for f in (run.out_dir / launcher.LOG_DIR).glob("*/attempt_0/*/std*.log")}
    assert kept == {(rank, stream) for rank in ("0", "1") for stream in ("stdout.log", "stderr.log")}

    # The artifacts alone (preprocessor.json + model.pt) reproduce the reported validation AUC.
    pre = Preprocessor.from_dict(json.loads((run.out_dir / "preprocessor.json").read_text()))
    model = build_model(result["input_dim"], result["hidden"])
    model.load_state_dict(torch.load(run.out_dir / "model.pt", weights_only=True))
    _, val = ddp.split_by_time(pd.read_parquet(data_path), "ts", SPEC["validation_fraction"])
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(pre.transform(val)))).squeeze(1).numpy()
    assert roc_auc_score(val["label"], scores) == pytest.approx(result["val_auc"], abs=1e-6)


def assert_same_weights(out_a: Path, out_b: Path, atol: float = 1e-6) -> None:
    weights_a = torch.load(out_a / "model.pt", weights_only=True)
    weights_b = torch.load(out_b / "model.pt", weights_only=True)
    assert weights_a.keys() == weights_b.keys()
    for name, tensor in weights_b.items():
        torch.testing.assert_close(tensor, weights_a[name], rtol=0, atol=atol)


@pytest.fixture
def single_thread():
    """In-process runs share the CPU with whatever else runs; one intra-op thread is faster for these tiny nets."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_in_process(data_path: Path, out: Path, spec: dict) -> dict:
    """The entry point under plain python: world size 1, no torchrun start-up cost."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec))
    assert ddp.main(["--data", str(data_path), "--out", str(out), "--spec", str(spec_path)]) == 0
    return json.loads((out / "result.json").read_text())


def test_same_data_and_seed_give_the_same_model(data_path: Path, tmp_path: Path, single_thread):
    first = run_in_process(data_path, tmp_path / "a", SPEC)
    second = run_in_process(data_path, tmp_path / "b", SPEC)
    assert first["world_size"] == 1 and first["backend"] is None and first["resumed_from_epoch"] is None
    assert second["val_auc"] == pytest.approx(first["val_auc"], abs=1e-6)
    assert second["threshold"] == pytest.approx(first["threshold"], abs=1e-6)
    assert_same_weights(tmp_path / "a", tmp_path / "b")

    # The seed is what pins the result down: another seed gives other weights.
    run_in_process(data_path, tmp_path / "c", {**SPEC, "seed": SPEC["seed"] + 1})
    with pytest.raises(AssertionError):
        assert_same_weights(tmp_path / "a", tmp_path / "c")


@pytest.mark.slow
def test_two_ranks_accumulating_micro_batches_equal_one_process_with_the_global_batch(
    reference_run, data_path: Path, tmp_path: Path, single_thread
):
    """2 ranks x 2 micro-batches of 32 (all-reduced once per step under no_sync) = 1 process with batches of 128.

    Each rank's shard interleaves the same permutation, so a global step holds exactly the rows of one 128-row
    batch of the single process, and DDP's mean over ranks of each rank's mean gradient is their mean gradient.
    Skipping the all-reduce (no_sync on every micro-batch) or reducing each micro-batch on its own would not be
    this model."""
    alone = run_in_process(data_path, tmp_path / "alone", {**SPEC, "batch_size": 128, "accumulation_steps": 1})
    assert alone["world_size"] == 1
    assert_same_weights(reference_run[0].out_dir, tmp_path / "alone", atol=1e-5)
    assert alone["val_auc"] == pytest.approx(reference_run[0].result["val_auc"], abs=1e-4)


def test_rank_order_is_distributed_samplers_and_micro_batches_cover_the_shard_once():
    for n, world_size, epoch in ((2400, 2, 3), (7, 3, 1), (1, 2, 5), (1001, 8, 2)):
        for rank in range(world_size):
            sampler = DistributedSampler(TensorDataset(torch.zeros(n)), num_replicas=world_size, rank=rank,
                                         shuffle=True, seed=11, drop_last=False)
            sampler.set_epoch(epoch)
            assert ddp.shard_order(n, world_size, rank, 11, epoch).tolist() == list(sampler)
    steps = ddp.step_slices(1200, 32, 2)
    assert len(steps) == 19 and [len(s) for s in steps[-2:]] == [2, 2]
    assert [(b.start, b.stop) for b in steps[-1]] == [(1152, 1184), (1184, 1200)]
    covered = [i for step in steps for b in step for i in range(b.start, b.stop)]
    assert covered == list(range(1200))


def test_validation_metrics_equal_scikit_learns():
    """The entry point computes them in numpy (sklearn's import costs each rank seconds of start-up)."""
    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(2, 300))
        y = (rng.random(n) < rng.uniform(0.02, 0.6)).astype(np.float32)
        if y.sum() in (0, n):
            continue
        scores = rng.random(n) if trial % 2 else np.round(rng.random(n), 1)  # with and without ties
        assert ddp.roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        assert ddp.average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
        precision, recall, thresholds = precision_recall_curve(y, scores)
        p, r = precision[:-1], recall[:-1]
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        best = int(np.argmax(f1))
        assert ddp.choose_threshold(y, scores) == pytest.approx((thresholds[best], p[best], r[best]), abs=1e-12)


def test_available_cpus_is_the_affinity_mask_capped_by_the_cgroup_quota(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path):
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(launcher, "CGROUP_CPU_MAX", cpu_max)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert available_cpus() == 6  # no cgroup file (not in a container): the affinity mask
    for quota, expected in (("max 100000", 6), ("200000 100000", 2), ("250000 100000", 2), ("50000 100000", 1),
                            ("800000 100000", 6)):
        cpu_max.write_text(quota + "\n")
        assert available_cpus() == expected, quota
    cpu_max.write_text("garbage\n")
    assert available_cpus() == 6  # an unreadable quota does not invent a limit


def test_ranks_share_the_cpus_instead_of_each_taking_all_of_them(monkeypatch: pytest.MonkeyPatch):
    cpus = available_cpus()
    assert threads_per_rank(1) == cpus and threads_per_rank(cpus * 4) == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _child_env(None, 2)["OMP_NUM_THREADS"] == str(max(1, cpus // 2))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # an explicit setting wins
    assert _child_env(None, 2)["OMP_NUM_THREADS"] == "3"


def test_the_entry_point_refuses_an_invalid_spec_with_the_contracts_model_naming_each_field(tmp_path: Path):
    """One model is the spec: the contract builds it, the launcher writes it, every rank validates it."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, "accumulation_steps": 0, "bucket_cap_mb": -1}))
    with pytest.raises(ValueError, match=r"invalid: accumulation_steps: Input should be greater than or equal to 1; "
                                         r"bucket_cap_mb: Input should be greater than 0"):
        ddp.main(["--data", str(tmp_path / "never-read.parquet"), "--out", str(tmp_path / "out"), "--spec", str(path)])
    for bad, field in (({**SPEC, "epochs": 2.5}, "epochs: Input should be a valid integer"),
                       ({**SPEC, "epoch": 3}, "epoch: Extra inputs are not permitted"),
                       ({k: v for k, v in SPEC.items() if k != "label"}, "label: Field required"),
                       ({**SPEC, "validation_fraction": 1.0}, "validation_fraction: Input should be less than 1"),
                       ({**SPEC, "numeric": [], "categorical": []}, "no features")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=field):
            ddp.load_spec(path)
    # The launcher validates with the same model before anything starts.
    with pytest.raises(ValueError, match="epochs"):
        launch_standalone(LocalTorchrunLauncher(nproc_per_node=1, timeout_s=5), tmp_path / "d.parquet",
                          tmp_path / "run", {**SPEC, "epochs": 0})
    assert not (tmp_path / "run" / "spec.json").exists()
    path.write_text(json.dumps({k: v for k, v in SPEC.items() if k not in ("accumulation_steps",)}))
    spec = ddp.load_spec(path)
    assert spec.accumulation_steps == 1 and spec.bucket_cap_mb == 25.0 and spec.lr_step_epochs == 10


def test_the_contracts_spec_is_what_the_entry_point_reads(tmp_path: Path):
    contract = load_contract()
    path = tmp_path / "spec.json"
    path.write_text(contract.training_spec.model_dump_json())
    spec = ddp.load_spec(path)
    assert spec == contract.training_spec
    assert (spec.epochs, spec.batch_size, spec.hidden) == (contract.training.epochs, contract.training.batch_size,
                                                          contract.training.hidden)
    assert spec.numeric == contract.numeric_features and spec.categorical == contract.categorical_features
    assert spec.validation_fraction == contract.datasets.validation_fraction


@pytest.fixture
def crash_after_epoch_2(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Launches from here on run the crash drill entry point (every rank SIGKILLs itself after epoch 2's
    checkpoint); the environment to give the launcher that arms it."""
    monkeypatch.setattr(launcher, "ENTRY_MODULE", crash_drill.__name__)
    return {crash_drill.CRASH_AFTER_EPOCH_ENV: "2"}


@pytest.mark.slow
def test_crash_after_a_checkpoint_resumes_from_it(reference_run, data_path: Path, tmp_path: Path, monkeypatch,
                                                  crash_after_epoch_2: dict[str, str]):
    spec = {**SPEC, "checkpoint_every": 1}
    out = tmp_path / "run"
    crashing = LocalTorchrunLauncher(nproc_per_node=2, timeout_s=180, extra_env=crash_after_epoch_2)
    with pytest.raises(TrainingFailed) as failure:
        launch_standalone(crashing, data_path, out, spec)
    assert failure.value.returncode == 1  # torchrun's status when its workers failed, read from the Pipes client
    assert crash_drill.MARKER in str(failure.value)  # the ranks' output tail is in the message
    assert any(line.startswith("[attempt_0 rank 1 stderr]") for line in failure.value.output_tail)
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["epoch_0001.pt", "epoch_0002.pt"]
    assert not (out / "result.json").exists()

    monkeypatch.undo()  # the production entry point resumes
    resumed = launch_standalone(LocalTorchrunLauncher(nproc_per_node=2, timeout_s=180), data_path, out, spec)
    assert resumed.result["resumed_from_epoch"] == 2
    assert [e["epoch"] for e in resumed.epochs_log] == [3, 4]
    assert [json.loads(r)["epoch"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert resumed.result["val_auc"] == pytest.approx(reference_run[0].result["val_auc"], abs=1e-4)
    # AUC moves in steps of ~6e-5 here; the weights show whether optimizer, scheduler and RNG state came back.
    assert_same_weights(out, reference_run[0].out_dir)


@pytest.mark.slow
def test_elastic_restart_recovers_within_one_launch(reference_run, data_path: Path, tmp_path: Path,
                                                    crash_after_epoch_2: dict[str, str]):
    elastic = LocalTorchrunLauncher(nproc_per_node=2, max_restarts=1, timeout_s=180, extra_env=crash_after_epoch_2)
    run = launch_standalone(elastic, data_path, tmp_path / "run", {**SPEC, "checkpoint_every": 1})
    assert run.result["resumed_from_epoch"] == 2  # the restarted workers picked up the checkpoint
    # Each worker group's rank 0 reported through the same Pipes session: epochs 1-2, then 3-4 after the restart.
    assert [e["epoch"] for e in run.epochs_log] == [1, 2, 3, 4]
    assert run.result["val_auc"] == pytest.approx(reference_run[0].result["val_auc"], abs=1e-4)
    assert_same_weights(run.out_dir, reference_run[0].out_dir)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(reference_run, data_path: Path, tmp_path: Path):
    out = tmp_path / "run"
    shutil.copytree(reference_run[0].out_dir, out)
    latest = out / "checkpoints" / "epoch_0004.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    run, lines = launch_logged(LocalTorchrunLauncher(nproc_per_node=2, timeout_s=180), data_path, out, SPEC)
    assert run.result["resumed_from_epoch"] == 3
    assert any("epoch_0004.pt cannot be loaded" in line for line in lines)  # rank 0's warning, through Pipes
    assert len([line for line in rank_output(out) if "epoch_0004.pt cannot be loaded" in line]) == 2  # every rank
    assert [e["epoch"] for e in run.epochs_log] == [4]
    assert run.result["val_auc"] == pytest.approx(reference_run[0].result["val_auc"], abs=1e-4)
    assert_same_weights(run.out_dir, reference_run[0].out_dir)


def test_finished_run_is_not_retrained_and_checkpoints_of_other_data_are_refused(
    data_path: Path, tmp_path: Path, single_thread
):
    out = tmp_path / "run"
    first = run_in_process(data_path, out, {**SPEC, "epochs": 2, "checkpoint_every": 1})
    assert first["checkpoints"] == ["epoch_0001.pt", "epoch_0002.pt"]
    checkpoint_bytes = (out / "checkpoints" / "epoch_0002.pt").read_bytes()

    (out / "result.json").unlink()  # e.g. the step died while writing outputs
    again = run_in_process(data_path, out, {**SPEC, "epochs": 2, "checkpoint_every": 1})
    assert again["resumed_from_epoch"] == 2 and again["val_auc"] == first["val_auc"]
    assert (out / "checkpoints" / "epoch_0002.pt").read_bytes() == checkpoint_bytes  # no retraining happened
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    other = tmp_path / "other.parquet"
    make_transactions(seed=4).to_parquet(other, index=False)
    with pytest.raises(RuntimeError, match="different data or spec"):
        ddp.main(["--data", str(other), "--out", str(out), "--spec", str(out / "spec.json")])


@pytest.mark.slow
def test_deadline_kills_the_whole_process_tree(data_path: Path, tmp_path: Path):
    out = tmp_path / "slow"
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(processes_mentioning(str(out)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(TrainingFailed, match="exceeded the deadline"):
            # 10 s: on a loaded 2-core machine torchrun alone can take 5 s to start its ranks.
            launch_standalone(LocalTorchrunLauncher(nproc_per_node=2, timeout_s=10), data_path, out,
                              {**SPEC, "epochs": 500})
    finally:
        stop.set()
        watcher.join()
    assert len(seen) >= 3, f"expected torchrun and two ranks to be running before the deadline, saw {seen}"
    assert processes_mentioning(str(out)) == [], "processes still running after the deadline"


def test_validation_rows_do_not_influence_the_fitted_preprocessing(data_path: Path, tmp_path: Path, single_thread):
    """T5: the preprocessing (and the network) come from the train split alone; validation only scores."""
    spec = {**SPEC, "epochs": 1, "checkpoint_every": 1}
    base = run_in_process(data_path, tmp_path / "a", spec)
    df = pd.read_parquet(data_path)
    train, val = ddp.split_by_time(df, "ts", spec["validation_fraction"])
    in_val = df["ts"] >= val["ts"].min()
    assert in_val.sum() == len(val) == 600
    changed = df.copy()
    changed.loc[in_val, "amount"] = changed.loc[in_val, "amount"] * 1000 + 5e6
    changed.loc[in_val, "channel"] = "never_seen_in_training"
    changed.loc[in_val, "label"] = 1 - changed.loc[in_val, "label"]
    changed.to_parquet(tmp_path / "changed.parquet", index=False)
    other = run_in_process(tmp_path / "changed.parquet", tmp_path / "b", spec)

    fitted = json.loads((tmp_path / "a" / "preprocessor.json").read_text())
    assert json.loads((tmp_path / "b" / "preprocessor.json").read_text()) == fitted
    assert fitted == Preprocessor.fit(train, SPEC["numeric"], SPEC["categorical"]).to_dict()
    assert "never_seen_in_training" not in json.dumps(fitted)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    # The changed rows were read (they are the validation split: its metrics moved), just never fitted on.
    assert other["val_auc"] != pytest.approx(base["val_auc"], abs=1e-3)


def test_the_entry_point_imports_dagster_pipes_but_not_dagster():
    """The ranks (and the Kubernetes pods) load the light Pipes package only, never the orchestrator."""
    code = ("import sys, ml_assets.training.ddp; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'dagster_pipes'}))")
    out = subprocess.run([sys.executable, "-c", code], env=_child_env(None), capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["['dagster_pipes']"]


ORPHAN_MAKER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "orphan-of", sys.argv[1]], start_new_session=True)
time.sleep(float(sys.argv[2]))
"""


def test_watchdog_kills_a_descendant_in_its_own_session_that_outlived_its_parent(tmp_path: Path):
    """What torchrun does when it dies without reaping a rank: the rank sits in a session of its own and is adopted by
    init. The watchdog saw it while its parent ran, and kills it when the watch ends."""
    tag = str(tmp_path)
    cmd = [sys.executable, "-c", ORPHAN_MAKER, tag, "1.5"]
    with launcher.ProcessTreeWatchdog(cmd, poll_s=0.05) as watchdog:
        assert subprocess.run(cmd, timeout=60).returncode == 0  # the parent exits 0, its child lives on
        (orphan,) = [p for p in processes_mentioning(tag) if p != os.getpid()]
        assert orphan in watchdog.tree and os.getsid(orphan) != os.getsid(0)
    assert processes_mentioning(f"orphan-of\x00{tag}") == []


def test_watchdog_enforces_the_deadline_and_alerts_once_before_it(tmp_path: Path):
    tag = str(tmp_path)
    cmd = [sys.executable, "-c", ORPHAN_MAKER, tag, "120"]
    alerts: list[float] = []
    started = time.monotonic()
    with launcher.ProcessTreeWatchdog(cmd, deadline_s=3.0, overtime_s=1.0, on_overtime=alerts.append,
                                      poll_s=0.05, grace_s=2.0) as watchdog:
        code = subprocess.run(cmd, timeout=60).returncode
    assert watchdog.deadline_passed and code == -signal.SIGTERM  # the parent got SIGTERM first, as torchrun does
    assert 3.0 <= time.monotonic() - started < 20
    assert len(alerts) == 1 and 1.0 <= alerts[0] < 3.0
    assert processes_mentioning(tag) == []
