"""Training throughput with 1 vs 2 processes (DDP scaling efficiency) and the time from a kill to resumed training.

    .venv/bin/python bench/training.py [--rows 200000] [--epochs 4] [--batch-size 512]

Runs the real entry point through torchrun (`LocalTorchrunLauncher`, gloo on CPU; NCCL on
CUDA when a GPU is present) on a synthetic fraud-like training set:

- throughput: samples/s per epoch as the entry point reports it (global samples over the
  slowest rank's epoch time), averaged over epochs 2.. (epoch 1 carries warm-up), for 1 and 2
  processes with the same per-process batch; efficiency = rate(2) / (2 x rate(1)).
- recovery: a run with a checkpoint every epoch is SIGKILLed (torchrun and every rank) right
  after its second checkpoint reached the durable store; the time from the kill to the
  restarted run logging "resuming from" and to its first completed epoch is measured.

Results are printed and written to bench/results/training.json. Not a test: timings are
measured and reported, never asserted. On a 2-core machine shared with other work, 2
processes compete with everything else for the cores; read the efficiency with that in mind.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml_assets.training.launcher import processes_mentioning


def synthetic(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, rows)
    channel = rng.choice(["pos", "web", "atm"], rows, p=[0.6, 0.3, 0.1])
    foreign = (rng.random(rows) < 0.15).astype("int64")
    extra = {f"x{i}": rng.normal(size=rows) for i in range(8)}
    logit = -6.0 + 2.2 * (np.log(amount) - 3.0) + 2.5 * foreign + 2.0 * (channel == "web") + 0.5 * extra["x0"]
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(rows), unit="s")
    return pd.DataFrame({"ts": ts, "amount": amount, "channel": channel, "is_foreign": foreign, **extra,
                         "label": label})


def spec(epochs: int, batch_size: int, checkpoint_every: int) -> dict:
    return {"numeric": ["amount", "is_foreign", *[f"x{i}" for i in range(8)]], "categorical": ["channel"],
            "label": "label", "timestamp": "ts", "epochs": epochs, "batch_size": batch_size,
            "learning_rate": 0.003, "hidden": [64, 32], "seed": 1, "checkpoint_every": checkpoint_every,
            "validation_fraction": 0.2}


def throughput(launcher_cls, data: Path, root: Path, nproc: int, epochs: int, batch_size: int) -> dict:
    run = launcher_cls(nproc_per_node=nproc, timeout_s=1800).launch(data, root / f"nproc{nproc}",
                                                                    spec(epochs, batch_size, epochs))
    rates = [e["samples_per_s"] for e in run.epochs_log if e["epoch"] >= 2] or [run.epochs_log[-1]["samples_per_s"]]
    return {"nproc": nproc, "world_size": run.result["world_size"], "backend": run.result["backend"],
            "device": run.result["device"], "samples_per_s": float(np.mean(rates)),
            "samples_per_s_by_epoch": [round(e["samples_per_s"], 1) for e in run.epochs_log],
            "val_auc": run.result["val_auc"], "wall_s": round(run.duration_s, 2)}


class _Measured(Exception):
    """Raised from the log callback once the resumed run has completed an epoch."""


def recovery(launcher_cls, failed_cls, data: Path, root: Path, batch_size: int) -> dict:
    out, store = root / "recovery", root / "recovery_store"
    run_spec = spec(30, batch_size, 1)
    killed: dict = {}

    def kill_after_second_checkpoint() -> None:
        while not (store / "checkpoints" / "epoch_0002.pt").exists():
            time.sleep(0.02)
        for group in {os.getpgid(pid) for pid in processes_mentioning(str(out))} - {os.getpgrp()}:
            os.killpg(group, signal.SIGKILL)
        killed["at"] = time.monotonic()

    killer = threading.Thread(target=kill_after_second_checkpoint, daemon=True)
    killer.start()
    try:
        launcher_cls(nproc_per_node=2, timeout_s=1800).launch(data, out, run_spec, checkpoint_uri=str(store))
        raise RuntimeError("the run finished before it was killed; use more --rows")
    except failed_cls:
        pass
    killer.join()
    detected = time.monotonic() - killed["at"]
    marks: dict = {}

    def watch(line: str) -> None:
        now = time.monotonic()
        resumed = re.search(r"resuming from .* \(epoch (\d+) of", line)
        if resumed and "resumed" not in marks:
            marks["resumed"], marks["resumed_from_epoch"] = now, int(resumed.group(1))
        if line.startswith('{"event": "epoch"') and "first_epoch" not in marks:
            marks["first_epoch"] = now
            marks["epoch"] = json.loads(line)["epoch"]
            raise _Measured  # the launcher kills the run: the remaining epochs measure nothing new

    restart = time.monotonic()
    try:
        launcher_cls(nproc_per_node=2, timeout_s=1800).launch(data, out, run_spec, log=watch,
                                                              checkpoint_uri=str(store))
    except _Measured:
        pass
    return {"killed_after_checkpoint": 2, "resumed_from_epoch": marks["resumed_from_epoch"],
            "kill_to_failure_reported_s": round(detected, 2),
            "relaunch_to_resumed_s": round(marks["resumed"] - restart, 2),
            "kill_to_resumed_s": round(marks["resumed"] - killed["at"], 2),
            "kill_to_first_resumed_epoch_done_s": round(marks["first_epoch"] - killed["at"], 2),
            "first_resumed_epoch": marks["epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    import torch

    from ml_assets.training.launcher import LocalTorchrunLauncher, TrainingFailed

    root = Path(tempfile.mkdtemp(prefix="ml_assets_bench_training_"))
    data = root / "training_set.parquet"
    synthetic(args.rows).to_parquet(data, index=False)
    one = throughput(LocalTorchrunLauncher, data, root, 1, args.epochs, args.batch_size)
    two = throughput(LocalTorchrunLauncher, data, root, 2, args.epochs, args.batch_size)
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "cuda": torch.cuda.is_available(), "load_avg_at_start": os.getloadavg()},
        "rows": args.rows, "epochs": args.epochs, "batch_size_per_process": args.batch_size,
        "throughput": [one, two],
        "ddp_scaling_efficiency": round(two["samples_per_s"] / (2 * one["samples_per_s"]), 3),
        "speedup_2_vs_1": round(two["samples_per_s"] / one["samples_per_s"], 3),
        "recovery": recovery(LocalTorchrunLauncher, TrainingFailed, data, root, args.batch_size),
    }
    out = Path(__file__).parent / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for r in (one, two):
        print(f"{r['nproc']} process(es), {r['backend'] or 'no backend'} on {r['device']}: "
              f"{r['samples_per_s']:,.0f} samples/s (per epoch {r['samples_per_s_by_epoch']}), wall {r['wall_s']} s")
    print(f"DDP scaling efficiency (2 vs 1): {results['ddp_scaling_efficiency']:.0%}, "
          f"speedup {results['speedup_2_vs_1']}x")
    rec = results["recovery"]
    print(f"recovery: SIGKILL after checkpoint 2 -> relaunch resumed from epoch {rec['resumed_from_epoch']}; "
          f"kill to 'resuming from' {rec['kill_to_resumed_s']} s, kill to first resumed epoch done "
          f"{rec['kill_to_first_resumed_epoch_done_s']} s (failure reported {rec['kill_to_failure_reported_s']} s "
          f"after the kill)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
