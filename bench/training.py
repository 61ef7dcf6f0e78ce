"""DDP scaling curve (1 vs 2 ranks, batch sizes, accumulation) next to a plain torch loop, and kill-to-resume time.

    .venv/bin/python bench/training.py [--rows 200000] [--hidden 256,128] [--batches 512,4096]
                                       [--accumulation 1,4] [--repeats 3] [--no-recovery]

Project: the real entry point (`python -m ml_assets.training.ddp`) through torchrun
(`LocalTorchrunLauncher`; gloo on CPU, NCCL on CUDA when a GPU is present), one intra-op thread
per rank (`--threads`), on a synthetic fraud-like training set. Its samples/s per epoch is what
the entry point reports (global rows over the slowest rank's epoch), the median over epochs 2..
(epoch 1 carries warm-up) and over `--repeats` launches, interleaved so that a burst of load on a
shared machine does not land on one configuration only.

Anchor: a plain single-process torch loop on the same preprocessed data and model (Adam, the
same weighted BCE loss, the same micro-batches and accumulation, random order per epoch), with
the same thread count, in this process: what the entry point would cost without torchrun, DDP
or checkpoints. A second anchor uses every CPU in one process (intra-op threads): the
alternative to DDP on a CPU box.

Definitions printed with the table:
- scaling efficiency = samples/s with 2 ranks / (2 x samples/s with 1 rank), same micro-batch and
  accumulation per rank (weak scaling, one CPU per rank);
- ratio = project / anchor (1 rank vs the 1-thread loop; 2 ranks vs the 1-thread loop is the speed-up);
- cpu efficiency = samples per CPU-second of all ranks, 2 ranks over 1 rank: the work DDP adds
  (all-reduce, gloo's threads), unaffected by the time other processes hold the CPUs. On an idle
  machine the wall-clock efficiency approaches it as the all-reduces get rarer; on a busy one the
  wall clock measures the neighbours too.

Recovery (T1): a run with a checkpoint every epoch is SIGKILLed (torchrun and every rank) right
after its second checkpoint reached the durable store; the time from the kill to the restarted
run logging "resuming from" and to its first completed epoch is measured.

Results are printed and written to bench/results/training.json with the machine and its load
average. Not a test: timings are measured and reported, never asserted. On a machine shared with
other work, 2 ranks compete with everything else for the cores: read the load with the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml_assets.training.launcher import available_cpus


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


def spec(epochs: int, batch_size: int, accumulation: int, hidden: list[int], checkpoint_every: int,
         bucket_cap_mb: float = 25.0) -> dict:
    return {"numeric": ["amount", "is_foreign", *[f"x{i}" for i in range(8)]], "categorical": ["channel"],
            "label": "label", "timestamp": "ts", "epochs": epochs, "batch_size": batch_size,
            "accumulation_steps": accumulation, "bucket_cap_mb": bucket_cap_mb, "learning_rate": 0.003,
            "hidden": hidden, "seed": 1, "checkpoint_every": checkpoint_every, "validation_fraction": 0.2}


def project_rates(launcher_cls, data: Path, out: Path, nproc: int, threads: int, run_spec: dict,
                  train_rows: int) -> tuple[list[float], list[float]]:
    """(samples/s, samples per CPU-second) of epochs 2.. of one launch."""
    from ml_assets.resources.training import launch_standalone

    run = launch_standalone(launcher_cls(nproc_per_node=nproc, timeout_s=1800,
                                         extra_env={"OMP_NUM_THREADS": str(threads)}), data, out, run_spec)
    epochs = [e for e in run.epochs_log if e["epoch"] >= 2] or run.epochs_log[-1:]
    rows = -(-train_rows // nproc) * nproc  # the sampler pads the shards to equal length
    return [e["samples_per_s"] for e in epochs], [rows / e["cpu_s"] for e in epochs]


def anchor_rates(data: Path, run_spec: dict, threads: int) -> tuple[list[float], list[float]]:
    """A plain torch loop: the same split, preprocessing, model, loss, micro-batches and accumulation."""
    import torch
    from torch import nn

    from ml_assets.training.ddp import split_by_time
    from ml_assets.training.model import build_model
    from ml_assets.training.preprocess import Preprocessor

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        train, _ = split_by_time(pd.read_parquet(data), run_spec["timestamp"], run_spec["validation_fraction"])
        pre = Preprocessor.fit(train, run_spec["numeric"], run_spec["categorical"])
        x = torch.from_numpy(pre.transform(train))
        y = torch.from_numpy(train[run_spec["label"]].to_numpy(dtype=np.float32))
        torch.manual_seed(run_spec["seed"])
        model = build_model(x.shape[1], run_spec["hidden"])
        optimizer = torch.optim.Adam(model.parameters(), lr=run_spec["learning_rate"])
        criterion = nn.BCEWithLogitsLoss(pos_weight=(len(y) - y.sum()) / y.sum())
        batch, accumulation = run_spec["batch_size"], run_spec["accumulation_steps"]
        step = batch * accumulation
        rates, cpu_rates = [], []
        for epoch in range(1, run_spec["epochs"] + 1):
            tick, cpu_tick = time.perf_counter(), time.process_time()
            order = torch.randperm(len(x))
            xs, ys = x[order], y[order]
            for start in range(0, len(xs), step):
                optimizer.zero_grad(set_to_none=True)
                stop = min(start + step, len(xs))
                for i in range(start, stop, batch):
                    j = min(i + batch, stop)
                    (criterion(model(xs[i:j]).squeeze(1), ys[i:j]) * ((j - i) / (stop - start))).backward()
                optimizer.step()
            if epoch >= 2 or run_spec["epochs"] == 1:
                rates.append(len(xs) / (time.perf_counter() - tick))
                cpu_rates.append(len(xs) / (time.process_time() - cpu_tick))
        return rates, cpu_rates
    finally:
        torch.set_num_threads(before)


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`, to kill the whole training from outside. The tests
    have the same helper (ml_assets_tests/processes.py); this script runs without them."""
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if text in "\0".join(p.info["cmdline"] or [])]


def kill_training(out: Path) -> None:
    """SIGKILL torchrun and every rank of the run in `out` at once (torchrun shares this process's group: the Pipes
    client starts it without a session of its own, so no killpg)."""
    for pid in processes_mentioning(str(out)):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def recovery(launcher_cls, failed_cls, data: Path, root: Path, run_spec: dict) -> dict:
    from ml_assets.resources.training import launch_standalone
    from ml_assets.training.launcher import LOG_DIR, output_tail

    out, store = root / "recovery", root / "recovery_store"
    run_spec = {**run_spec, "epochs": 30, "checkpoint_every": 1}
    killed: dict = {}

    def kill_after_second_checkpoint() -> None:
        while not (store / "checkpoints" / "epoch_0002.pt").exists():
            time.sleep(0.02)
        kill_training(out)
        killed["at"] = time.monotonic()

    killer = threading.Thread(target=kill_after_second_checkpoint, daemon=True)
    killer.start()
    try:
        launch_standalone(launcher_cls(nproc_per_node=2, timeout_s=1800), data, out, run_spec,
                          checkpoint_uri=str(store))
        raise RuntimeError("the run finished before it was killed; use more --rows")
    except failed_cls:
        pass
    killer.join()
    detected = time.monotonic() - killed["at"]
    marks: dict = {}
    earlier = frozenset(p.name for p in (out / LOG_DIR).iterdir())

    def watch() -> None:
        """Rank 0's log lines as they reach torchrun's log files: "resuming from", then the first epoch done."""
        while "first_epoch" not in marks:
            text = "\n".join(output_tail(out / LOG_DIR, earlier, lines=10**6))
            now = time.monotonic()
            resumed = re.search(r"resuming from .* \(epoch (\d+) of", text)
            if resumed and "resumed" not in marks:
                marks["resumed"], marks["resumed_from_epoch"] = now, int(resumed.group(1))
            epoch = re.search(r"epoch (\d+)/\d+: train_loss", text)
            if epoch and "resumed" in marks:
                marks["first_epoch"], marks["epoch"] = now, int(epoch.group(1))
                kill_training(out)  # the remaining epochs measure nothing new
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    restart = time.monotonic()
    watcher.start()
    with contextlib.suppress(failed_cls):
        launch_standalone(launcher_cls(nproc_per_node=2, timeout_s=1800), data, out, run_spec,
                          checkpoint_uri=str(store))
    watcher.join()
    return {"killed_after_checkpoint": 2, "resumed_from_epoch": marks["resumed_from_epoch"],
            "kill_to_failure_reported_s": round(detected, 2),
            "relaunch_to_resumed_s": round(marks["resumed"] - restart, 2),
            "kill_to_resumed_s": round(marks["resumed"] - killed["at"], 2),
            "kill_to_first_resumed_epoch_done_s": round(marks["first_epoch"] - killed["at"], 2),
            "first_resumed_epoch": marks["epoch"]}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--hidden", default="256,128", help="hidden layer sizes of the MLP")
    parser.add_argument("--batches", default="512,4096", help="micro-batch sizes per rank")
    parser.add_argument("--accumulation", default="1,4", help="micro-batches per optimizer step")
    parser.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket size (torch's default: 25)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per rank (and of the anchor)")
    parser.add_argument("--repeats", type=int, default=3, help="launches per configuration, interleaved")
    parser.add_argument("--no-recovery", action="store_true", help="skip the kill-to-resume measurement")
    args = parser.parse_args()

    import torch

    from ml_assets.training.launcher import LocalTorchrunLauncher, TrainingFailed

    hidden = _ints(args.hidden)
    root = Path(tempfile.mkdtemp(prefix="ml_assets_bench_training_"))
    data = root / "training_set.parquet"
    synthetic(args.rows).to_parquet(data, index=False)
    configs = [(b, a) for b in _ints(args.batches) for a in _ints(args.accumulation)]
    train_rows = int(round(args.rows * 0.8))
    load_start = os.getloadavg()
    raw: dict[tuple, list[float]] = {}
    cpu: dict[tuple, list[float]] = {}
    launch = 0
    for repeat in range(args.repeats):
        for batch, accumulation in configs:
            run_spec = spec(args.epochs, batch, accumulation, hidden, args.epochs, args.bucket_mb)
            rates, cpu_rates = anchor_rates(data, run_spec, args.threads)
            raw.setdefault(("anchor", batch, accumulation), []).extend(rates)
            cpu.setdefault(("anchor", batch, accumulation), []).extend(cpu_rates)
            for nproc in (1, 2):
                launch += 1
                rates, cpu_rates = project_rates(LocalTorchrunLauncher, data, root / f"run{launch}", nproc,
                                                 args.threads, run_spec, train_rows)
                raw.setdefault((nproc, batch, accumulation), []).extend(rates)
                cpu.setdefault((nproc, batch, accumulation), []).extend(cpu_rates)
        print(f"repeat {repeat + 1}/{args.repeats} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    cpus = available_cpus()
    all_cpus_anchor = {(b, a): statistics.median(anchor_rates(data, spec(args.epochs, b, a, hidden, args.epochs),
                                                              cpus)[0]) for b, a in configs}
    load_end = os.getloadavg()

    rows = []
    for batch, accumulation in configs:
        anchor, one, two = (statistics.median(raw[(k, batch, accumulation)]) for k in ("anchor", 1, 2))
        cpu_one, cpu_two = (statistics.median(cpu[(k, batch, accumulation)]) for k in (1, 2))
        rows.append({"micro_batch_per_rank": batch, "accumulation_steps": accumulation,
                     "rows_per_all_reduce_per_rank": batch * accumulation,
                     "anchor_1_thread": round(anchor),
                     f"anchor_{cpus}_threads": round(all_cpus_anchor[(batch, accumulation)]),
                     "project_1_rank": round(one), "project_2_ranks": round(two),
                     "ratio_1_rank_vs_anchor": round(one / anchor, 3),
                     "ratio_2_ranks_vs_anchor": round(two / anchor, 3),
                     "scaling_efficiency": round(two / (2 * one), 3),
                     "per_cpu_s_1_rank": round(cpu_one), "per_cpu_s_2_ranks": round(cpu_two),
                     "cpu_efficiency": round(cpu_two / cpu_one, 3),
                     # CPUs the ranks actually had (CPU-seconds per second): 2 ranks on an idle 2-CPU box get ~2.
                     "cpus_used_1_rank": round(one / cpu_one, 2), "cpus_used_2_ranks": round(two / cpu_two, 2)})
    results = {
        "machine": {"cpus": os.cpu_count(), "usable_cpus": cpus, "platform": platform.platform(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "load_avg_at_start": load_start, "load_avg_at_end": load_end},
        "rows": args.rows, "train_rows": train_rows, "epochs": args.epochs, "hidden": hidden,
        "threads_per_rank": args.threads, "repeats": args.repeats, "bucket_cap_mb": args.bucket_mb,
        "definitions": {"scaling_efficiency": "samples/s with 2 ranks / (2 x samples/s with 1 rank), same "
                                              "micro-batch and accumulation per rank",
                        "samples_per_s": "median over epochs 2.. of all repeats; global rows / slowest rank's "
                                         "epoch time",
                        "cpu_efficiency": "samples per CPU-second of all ranks with 2 ranks / the same with 1 rank: "
                                          "the work DDP adds (communication, its threads), without the time "
                                          "other processes held the CPUs"},
        "curve": rows,
        "samples_per_s_raw": {str(k): [round(v) for v in vs] for k, vs in raw.items()},
        "samples_per_cpu_s_raw": {str(k): [round(v) for v in vs] for k, vs in cpu.items()},
    }
    if not args.no_recovery:
        results["recovery"] = recovery(LocalTorchrunLauncher, TrainingFailed, data, root,
                                       spec(args.epochs, _ints(args.batches)[0], 1, hidden, 1))
    out = Path(__file__).parent / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\nMLP {hidden}, {results['train_rows']:,} training rows, {args.threads} thread(s) per rank, "
          f"{args.repeats} launches per configuration; load average {load_start[0]:.2f} -> {load_end[0]:.2f} "
          f"on {cpus} usable CPUs")
    print(pd.DataFrame(rows).to_string(index=False))
    print("scaling efficiency = samples/s(2 ranks) / (2 x samples/s(1 rank)); ratio = project / 1-thread anchor;\n"
          "per_cpu_s = samples per CPU-second of all ranks (what training spent, whatever else ran); "
          "cpu efficiency = per_cpu_s(2 ranks) / per_cpu_s(1 rank); cpus_used = samples/s / per_cpu_s")
    if "recovery" in results:
        rec = results["recovery"]
        print(f"recovery: SIGKILL after checkpoint 2 -> relaunch resumed from epoch {rec['resumed_from_epoch']}; "
              f"kill to 'resuming from' {rec['kill_to_resumed_s']} s, kill to first resumed epoch done "
              f"{rec['kill_to_first_resumed_epoch_done_s']} s (failure reported {rec['kill_to_failure_reported_s']} "
              f"s after the kill)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
