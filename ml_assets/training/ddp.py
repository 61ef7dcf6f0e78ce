"""Training entry point: one process per rank under torchrun (or plain python, world size 1).

    torchrun --standalone --nproc_per_node=2 -m ml_assets.training.ddp \
        --data training_set.parquet --out run_dir --spec spec.json

The same module runs in the Kubernetes pods (NCCL on GPUs) and locally (gloo on CPU).

Reporting (Dagster Pipes). When a Pipes session launched the process (the bootstrap
variables are set: `PipesSubprocessClient` locally, the multi-node Job's pods through an
S3 message channel), global rank 0 opens it with `dagster_pipes.open_dagster_pipes` and
reports each epoch's metrics and the final result as custom messages, and forwards its log
records to the Dagster log. The other ranks never open it: one writer per session. Without
the variables (plain python, a hand run, the tests) nothing is opened and nothing changes.
Only the light `dagster_pipes` package is imported, never `dagster`. Rank 0 also writes
`run_dir/result.json`, which the registry publishes with the model.

Split. Rows are ordered by the spec's timestamp (stable sort, ties keep file order); the
last `validation_fraction` of them is the validation split, the rest the train split, so
validation always lies in the future of training as it will in production. The
preprocessor is fitted on the train split only (T5); every rank fits it the same way.

Class imbalance. The loss is `BCEWithLogitsLoss(pos_weight=n_neg / n_pos)` with the counts
of the train split: positives and negatives then carry equal total weight, so the rare
class is not ignored. The price is that sigmoid(logit) is no longer a calibrated
probability (it is shifted towards positives), which is why the decision threshold is
not 0.5 but the F1-maximising score threshold on the validation split, stored in
result.json next to the model (positive when sigmoid(logit) >= threshold).

Batches and synchronisation. `batch_size` is the micro-batch of one process; gradients of
`accumulation_steps` micro-batches are summed locally (DDP's `no_sync`) and all-reduced once,
so one optimizer step sees `batch_size * accumulation_steps * world_size` rows and the ranks
talk once per step, not once per micro-batch. With accumulation 1 this is plain DDP. The
gradient of a step is the mean over its rows whatever the split into micro-batches (each
micro-batch's loss is weighted by its share of the step's rows), so accumulation changes
memory and communication, not the optimisation. The data order of each rank is that of
`DistributedSampler(shuffle=True, seed=seed, drop_last=False)` (`shard_order`, computed with
tensor ops, no DataLoader): a pure function of seed and epoch, and every rank gets the same
number of rows and steps (the sampler pads), so no rank waits in an all-reduce another rank
never reaches. A rank's shard is gathered once per epoch; micro-batches are views of it.

DDP itself: gradients are views into the communication buckets (`gradient_as_bucket_view`,
no copy per step) and the bucket size is `bucket_cap_mb` (large models overlap the all-reduce
of one bucket with the backward pass of the next; a model smaller than one bucket is reduced
in one call). On CUDA each rank owns the GPU `LOCAL_RANK`, with its data, model and loss
on it (NCCL); nothing in the loop reads a value back to the host before the end of an epoch.
Threads: torch uses `OMP_NUM_THREADS` per rank, which the launcher sets to the CPUs this
process may use divided by the ranks on the node, so ranks do not oversubscribe the cores.

Checkpoints (T1). Every `checkpoint_every` epochs and at the last epoch rank 0 writes
`checkpoints/epoch_NNNN.pt` atomically (temp file, fsync, rename): model, optimizer,
scheduler, completed epoch, the RNG states of every rank, the fitted preprocessor and a
fingerprint of the data and spec. On start every rank resumes from the newest checkpoint
that loads; an unreadable one is reported on stderr and the previous one is used. A
checkpoint written for other data or another spec is refused (resuming it would mix two
trainings). All checkpoints are kept.

Durable storage (T1). With `--checkpoint-uri` (a local directory or `s3://bucket/prefix`, the
configured lake), rank 0 also copies every checkpoint there right after writing it (an atomic
rename locally, a single PUT on S3), and the final outputs (model.pt, preprocessor.json,
result.json, metrics.jsonl) at the end. On start every rank first copies the checkpoints its
local disk lacks from there, so a run restarted on a fresh pod or a wiped node resumes where
the last one stopped. `--data` and `--spec` may be `s3://` objects too (multi-node pods).

Reproducibility (T6). torch, numpy and random are seeded, the model is initialised
from the seed, the sampler order depends only on seed and epoch, and a resumed run
restores the RNG states, so a crash-and-resume run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, PipesS3MessageWriter, open_dagster_pipes
from pydantic import ValidationError
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from ml_assets.contract.model import TrainingSpec
from ml_assets.storage import ObjectStore, S3Store, atomic_write_bytes, store_for_uri
from ml_assets.training.model import build_model
from ml_assets.training.preprocess import Preprocessor

log = logging.getLogger("ml_assets.training.ddp")

# Spec keys that may change between a crash and its resume without invalidating the checkpoints: they change
# how long the run is, how often it checkpoints and how gradients travel, not what is computed.
RESUMABLE_SPEC_KEYS = ("epochs", "checkpoint_every", "bucket_cap_mb")
# Collective timeout: a rank stuck in all_reduce (a dead peer, a hung NCCL ring) fails after this instead of forever.
DIST_TIMEOUT_ENV = "ML_ASSETS_DIST_TIMEOUT_S"
DEFAULT_DIST_TIMEOUT_S = 1800
# What rank 0 publishes to the durable store at the end, next to the checkpoints.
PUBLISHED_OUTPUTS = ("model.pt", "preprocessor.json", "metrics.jsonl", "result.json")
CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_RE = re.compile(r"^epoch_(\d{4,})\.pt$")
_EVAL_CHUNK = 65536


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> DistEnv:
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = None
    if world_size > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        timeout = timedelta(seconds=float(os.environ.get(DIST_TIMEOUT_ENV, DEFAULT_DIST_TIMEOUT_S)))
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistEnv(rank, world_size, local_rank, device, backend)


def _barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


# --- inputs -------------------------------------------------------------------------------------------------------


def load_spec(path: str | Path) -> TrainingSpec:
    """The spec the launcher wrote (`TrainingSpec.model_dump_json`), validated by the same model that built it:
    every refusal names its field."""
    try:
        return TrainingSpec.model_validate_json(Path(path).read_bytes())
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: "
                             f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors())
        raise ValueError(f"training spec {path} is invalid: {problems}") from None


def split_by_time(df: pd.DataFrame, timestamp: str, validation_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): the last `validation_fraction` of rows by time is validation."""
    if timestamp not in df.columns:
        raise KeyError(f"timestamp column {timestamp!r} not in training data columns {list(df.columns)}")
    if df[timestamp].isna().any():
        raise ValueError(f"{int(df[timestamp].isna().sum())} rows have a null {timestamp!r}; they cannot be ordered")
    ordered = df.sort_values(timestamp, kind="stable").reset_index(drop=True)
    n_val = int(round(len(ordered) * validation_fraction))
    if n_val < 1 or n_val >= len(ordered):
        raise ValueError(
            f"validation_fraction {validation_fraction} of {len(ordered)} rows leaves an empty train or validation split"
        )
    cut = len(ordered) - n_val
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def shard_order(n_rows: int, world_size: int, rank: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one rank in one epoch: exactly `DistributedSampler(shuffle=True, drop_last=False)`'s.

    A permutation seeded by seed + epoch, padded from its start to a multiple of the world size,
    every world_size-th row from `rank` on; computed on tensors instead of a Python list per epoch.
    """
    if n_rows < 1:
        raise ValueError(f"cannot order {n_rows} rows")
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    order = torch.randperm(n_rows, generator=generator)
    total = math.ceil(n_rows / world_size) * world_size
    if total > n_rows:
        order = torch.cat([order, order.repeat(math.ceil((total - n_rows) / n_rows))[: total - n_rows]])
    return order[rank:total:world_size]


def step_slices(n_rows: int, batch_size: int, accumulation_steps: int) -> list[list[slice]]:
    """Micro-batches (slices of a shard of `n_rows`) grouped by optimizer step; the last step may be short."""
    step_rows = batch_size * accumulation_steps
    return [[slice(i, min(i + batch_size, start + step_rows, n_rows))
             for i in range(start, min(start + step_rows, n_rows), batch_size)]
            for start in range(0, n_rows, step_rows)]


def _labels(df: pd.DataFrame, label: str, split: str) -> np.ndarray:
    if label not in df.columns:
        raise KeyError(f"label column {label!r} not in training data columns {list(df.columns)}")
    if df[label].isna().any():
        raise ValueError(f"{split} split has {int(df[label].isna().sum())} rows with a null label {label!r}")
    y = df[label].astype("float64").to_numpy()
    bad = sorted(set(np.unique(y)) - {0.0, 1.0})
    if bad:
        raise ValueError(f"label {label!r} must be 0/1; {split} split has values {bad[:5]}")
    return y.astype(np.float32)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(data_sha256: str, spec: TrainingSpec) -> dict[str, str]:
    relevant = spec.model_dump(exclude=set(RESUMABLE_SPEC_KEYS))
    spec_sha = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()
    return {"data_sha256": data_sha256, "spec_sha256": spec_sha}


# --- checkpoints ----------------------------------------------------------------------------------------------------


def checkpoint_path(out_dir: str | Path, epoch: int) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / f"epoch_{epoch:04d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint file in out_dir, oldest first."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def restore_from_store(store: ObjectStore, out_dir: str | Path) -> list[str]:
    """Copy the checkpoints the durable store holds and local disk lacks; returns their file names.

    Each rank may run this at once on a shared disk: the writes are atomic renames of identical bytes.
    """
    out_dir = Path(out_dir)
    local = {p.name for _, p in list_checkpoints(out_dir)}
    restored = []
    for key in store.list(CHECKPOINT_DIR):
        name = key.rsplit("/", 1)[-1]
        if _CHECKPOINT_RE.match(name) and name not in local:
            atomic_write_bytes(out_dir / CHECKPOINT_DIR / name, store.read_bytes(key))
            restored.append(name)
    metrics = out_dir / "metrics.jsonl"
    if restored and not metrics.exists() and store.exists("metrics.jsonl"):
        atomic_write_bytes(metrics, store.read_bytes("metrics.jsonl"))
    return sorted(restored)


def fetch_input(location: str, dest: Path) -> Path:
    """A local path as is; an `s3://bucket/key` object downloaded (atomically) to `dest`."""
    if not location.startswith("s3://"):
        return Path(location)
    bucket, _, key = location[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"input {location!r}: expected s3://bucket/key")
    atomic_write_bytes(dest, S3Store(bucket, "", os.environ.get("ML_ASSETS_S3_ENDPOINT_URL") or None).read_bytes(key))
    return dest


def _capture_rng() -> dict[str, Any]:
    bit_generator, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # Stored as tensors and plain numbers so checkpoints load with torch.load(weights_only=True).
        "numpy": {
            "bit_generator": bit_generator,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["bit_generator"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _torch_save_atomic(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_latest_checkpoint(out_dir: str | Path, max_epoch: int) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest checkpoint (epoch <= max_epoch) that loads; unreadable ones are reported and skipped."""
    for epoch, path in reversed(list_checkpoints(out_dir)):
        if epoch > max_epoch:
            log.warning("ignoring checkpoint %s: epoch %d is beyond the %d epochs of this spec", path, epoch, max_epoch)
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            missing = {
                "format",
                "epoch",
                "model",
                "optimizer",
                "scheduler",
                "rng",
                "preprocessor",
                "fingerprint",
            } - set(ckpt)
            if missing:
                raise ValueError(f"missing keys {sorted(missing)}")
            if ckpt["format"] != CHECKPOINT_FORMAT or ckpt["epoch"] != epoch:
                raise ValueError(f"format {ckpt['format']} / epoch {ckpt['epoch']} do not match the file name")
        except Exception as exc:  # any failure to read means "unusable", whatever the cause
            log.warning(
                "checkpoint %s cannot be loaded (%s: %s); falling back to the previous one",
                path,
                type(exc).__name__,
                exc,
            )
            continue
        return ckpt, path
    return None, None


# --- evaluation -----------------------------------------------------------------------------------------------------


@torch.no_grad()
def _scores_and_loss(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module
) -> tuple[np.ndarray, float]:
    module.eval()
    logits = torch.cat([module(x[i : i + _EVAL_CHUNK]).squeeze(1) for i in range(0, len(x), _EVAL_CHUNK)])
    loss = float(criterion(logits, y).item())
    return torch.sigmoid(logits).double().cpu().numpy(), loss


# Validation metrics in numpy, equal to scikit-learn's (roc_auc_score, average_precision_score,
# precision_recall_curve; the tests compare): importing sklearn.metrics costs every rank ~1.4 s of CPU at start-up.


def _precision_recall_by_threshold(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at every distinct score, highest threshold first (positive: score >= it)."""
    order = np.argsort(scores, kind="stable")[::-1]
    ranked, labels = scores[order], y[order].astype(np.float64)
    last_of_run = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(labels)[last_of_run]
    flagged = last_of_run + 1.0
    return tps / flagged, tps / tps[-1], ranked[last_of_run]


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney form of the ROC AUC with tied scores at their average rank (= the trapezoidal ROC area)."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    n_pos = float(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct thresholds of precision x the recall gained there (no interpolation)."""
    precision, recall, _ = _precision_recall_by_threshold(y, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _ranking_metrics(y: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    if len(np.unique(y)) < 2:
        return None, None
    return roc_auc(y, scores), average_precision(y, scores)


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> tuple[float, float | None, float | None]:
    """(threshold, precision, recall) at the score threshold with the highest F1; scores are sigmoid outputs.
    Ties go to the lowest such threshold."""
    if y.sum() == 0:
        log.warning("validation split has no positives: threshold falls back to 0.5, precision/recall undefined")
        return 0.5, None, None
    precision, recall, thresholds = (a[::-1] for a in _precision_recall_by_threshold(y, scores))
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(precision[best]), float(recall[best])


# --- outputs --------------------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n").encode())


class _ToPipes(logging.Handler):
    """Rank 0's log records, also into the Dagster log (through the Pipes session)."""

    def __init__(self, pipes: PipesContext):
        super().__init__(logging.INFO)
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pipes.log.log(record.levelno, record.getMessage())
        except Exception:  # a lost channel must not stop training; logging reports it on stderr
            self.handleError(record)


# Seconds between two uploads of the S3 message channel (multi-node): epochs reach the Dagster log this late.
PIPES_S3_INTERVAL_S = 2.0


@contextlib.contextmanager
def open_reporting(env: DistEnv) -> Iterator[PipesContext | None]:
    """Global rank 0's Dagster Pipes session, or None: on the other ranks, and when no Pipes session launched
    this process. The message channel is what the orchestrator asked for: a file (PipesSubprocessClient) or an
    S3 prefix (the multi-node Job, whose pods share no disk with the step)."""
    params = PipesEnvVarParamsLoader()
    if not env.is_main or not params.is_dagster_pipes_process():
        yield None
        return
    writer = None
    if "bucket" in params.load_messages_params():
        import boto3  # only the S3 channel needs it

        client = boto3.client("s3", endpoint_url=os.environ.get("ML_ASSETS_S3_ENDPOINT_URL") or None)
        writer = PipesS3MessageWriter(client, interval=PIPES_S3_INTERVAL_S)
    with open_dagster_pipes(message_writer=writer) as pipes:
        handler = _ToPipes(pipes)
        logging.getLogger().addHandler(handler)
        try:
            yield pipes
        finally:
            logging.getLogger().removeHandler(handler)


def _report(pipes: PipesContext | None, message: dict[str, Any]) -> None:
    if pipes is not None:
        pipes.report_custom_message(_json_safe(message))


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # A crash mid-append leaves a partial last line; that epoch is redone anyway.
            continue
    return rows


def _reset_metrics(path: Path, keep_through_epoch: int) -> None:
    """Drop epochs that were logged after the checkpoint we resume from; they are about to be redone."""
    kept = [row for row in _read_metrics(path) if row.get("epoch", 0) <= keep_through_epoch]
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in kept).encode())


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(_json_safe(row)) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --- main -----------------------------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ml_assets.training.ddp", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="training set (parquet): a path or s3://bucket/key")
    parser.add_argument("--out", required=True, type=Path, help="run directory: checkpoints, model, result.json")
    parser.add_argument("--spec", required=True, help="training spec (JSON): a path or s3://bucket/key")
    parser.add_argument(
        "--checkpoint-uri",
        default=None,
        help="durable copy of the checkpoints and outputs: a directory or s3://bucket/prefix (T1)",
    )
    return parser.parse_args(argv)


@record
def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    env = _init_distributed()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s [rank {env.rank}/{env.world_size}] %(levelname)s %(name)s: %(message)s",
    )
    try:
        with open_reporting(env) as pipes:
            _train(args, env, pipes)
    finally:
        if env.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _train(args: argparse.Namespace, env: DistEnv, pipes: PipesContext | None = None) -> None:
    started = time.perf_counter()
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    # Per-rank file names: local ranks of one pod share the disk, and a download is not worth a barrier.
    spec = load_spec(fetch_input(args.spec, out_dir / f".spec.rank{env.rank}.json"))
    data_path = fetch_input(args.data, out_dir / f".training_set.rank{env.rank}.parquet")
    store = store_for_uri(args.checkpoint_uri) if args.checkpoint_uri else None
    if store is not None:
        restored = restore_from_store(store, out_dir)
        if restored:
            log.info("restored %s from %s", ", ".join(restored), args.checkpoint_uri)
    metrics_path = out_dir / "metrics.jsonl"
    epochs = spec.epochs
    seed = spec.seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    data_sha256 = _file_sha256(data_path)
    fingerprint = _fingerprint(data_sha256, spec)
    train_df, val_df = split_by_time(pd.read_parquet(data_path), spec.timestamp, spec.validation_fraction)
    y_train = _labels(train_df, spec.label, "train")
    y_val = _labels(val_df, spec.label, "validation")
    n_pos = int(y_train.sum())
    n_neg = len(y_train) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"train split has {n_pos} positives and {n_neg} negatives; both classes are needed")
    pos_weight = n_neg / n_pos

    ckpt, ckpt_path = load_latest_checkpoint(out_dir, epochs)
    if ckpt is not None and ckpt["fingerprint"] != fingerprint:
        raise RuntimeError(
            f"checkpoint {ckpt_path} was written for different data or spec (checkpoint {ckpt['fingerprint']}, "
            f"this run {fingerprint}); resuming it would mix two trainings. Use a new output directory or "
            f"remove {out_dir / CHECKPOINT_DIR}."
        )
    resumed_from = int(ckpt["epoch"]) if ckpt is not None else None
    if env.distributed:
        # Ranks read the checkpoint folder independently; a rank that saw a different file would deadlock later.
        seen: list[Any] = [None] * env.world_size
        dist.all_gather_object(seen, resumed_from)
        if len(set(seen)) != 1:
            raise RuntimeError(f"ranks disagree on the checkpoint to resume from: {seen}")

    preprocessor = (
        Preprocessor.from_dict(ckpt["preprocessor"])
        if ckpt is not None
        else Preprocessor.fit(train_df, list(spec.numeric), list(spec.categorical))
    )
    x_train = torch.from_numpy(preprocessor.transform(train_df)).to(env.device)
    x_val = torch.from_numpy(preprocessor.transform(val_df)).to(env.device)
    t_y_train = torch.from_numpy(y_train).to(env.device)
    t_y_val = torch.from_numpy(y_val).to(env.device)

    hidden = list(spec.hidden)
    module = build_model(preprocessor.feature_dim, hidden).to(env.device)
    optimizer = torch.optim.Adam(module.parameters(), lr=spec.learning_rate)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=spec.lr_step_epochs, gamma=spec.lr_gamma
    )
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float32, device=env.device))

    start_epoch = 1
    if ckpt is not None:
        module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        by_rank = ckpt["rng"]["by_rank"]
        _restore_rng(by_rank[env.rank] if env.rank < len(by_rank) else by_rank[0])
        start_epoch = resumed_from + 1
        log.info("resuming from %s (epoch %d of %d)", ckpt_path, resumed_from, epochs)
    if env.is_main:
        if ckpt is None:
            metrics_path.unlink(missing_ok=True)
        else:
            _reset_metrics(metrics_path, resumed_from)
    del ckpt

    model: nn.Module = module
    if env.distributed:
        cuda = env.device.type == "cuda"
        model = DistributedDataParallel(
            module,
            device_ids=[env.device.index] if cuda else None,
            output_device=env.device.index if cuda else None,
            bucket_cap_mb=spec.bucket_cap_mb,
            gradient_as_bucket_view=True,
        )

    batch_size = spec.batch_size
    accumulation = spec.accumulation_steps
    n_local = math.ceil(len(x_train) / env.world_size)
    steps = step_slices(n_local, batch_size, accumulation)
    if env.is_main:
        log.info("%d rows per rank, %d optimizer steps per epoch of %d micro-batch(es) of %d rows per rank; "
                 "global batch %d rows; %d intra-op thread(s) per rank", n_local, len(steps), accumulation,
                 batch_size, batch_size * accumulation * env.world_size, torch.get_num_threads())
    for epoch in range(start_epoch, epochs + 1):
        model.train()
        # Rank 0 validates after each epoch while the others go on and wait in the first all-reduce; starting every
        # rank's clock together keeps that wait (validation, which does not scale with ranks) out of samples/s.
        _barrier(env)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        order = shard_order(len(x_train), env.world_size, env.rank, seed, epoch).to(env.device)
        # One gather per epoch: the micro-batches below are views of the rank's shard.
        x_shard, y_shard = x_train[order], t_y_train[order]
        loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        for micro_batches in steps:
            optimizer.zero_grad(set_to_none=True)
            step_rows = sum(b.stop - b.start for b in micro_batches)
            for k, batch in enumerate(micro_batches):
                # Only the last micro-batch of a step all-reduces; the others accumulate locally.
                sync = k == len(micro_batches) - 1 or not env.distributed
                with contextlib.nullcontext() if sync else model.no_sync():
                    loss = criterion(model(x_shard[batch]).squeeze(1), y_shard[batch])
                    share = (batch.stop - batch.start) / step_rows
                    (loss if len(micro_batches) == 1 else loss * share).backward()
                loss_sum += loss.detach().double() * (batch.stop - batch.start)
            optimizer.step()
        scheduler.step()
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)  # kernels run asynchronously: the epoch ends when they are done
        # CPU seconds of every rank (all its threads), next to the wall time of the slowest: on a shared host the
        # wall clock also measures the neighbours, the CPU time only what training itself spent.
        totals = torch.tensor([0.0, float(n_local), time.process_time() - cpu_tick], dtype=torch.float64,
                              device=env.device)
        totals[0] = loss_sum
        elapsed = torch.tensor([time.perf_counter() - tick], dtype=torch.float64, device=env.device)
        if env.distributed:
            dist.all_reduce(totals)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        train_loss = totals[0].item() / max(totals[1].item(), 1.0)
        samples_per_s = totals[1].item() / max(elapsed.item(), 1e-9)
        cpu_s = totals[2].item()

        if env.is_main:
            scores, val_loss = _scores_and_loss(module, x_val, t_y_val, criterion)
            val_auc, val_ap = _ranking_metrics(y_val, scores)
            row = {
                "event": "epoch",
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_auc": val_auc,
                "val_ap": val_ap,
                "samples_per_s": samples_per_s,
                "cpu_s": cpu_s,
                "world_size": env.world_size,
            }
            log.info("epoch %d/%d: train_loss %.4f val_loss %.4f val_auc %s samples/s %.0f", epoch, epochs, train_loss,
                     val_loss, f"{val_auc:.4f}" if val_auc is not None else "undefined", samples_per_s)
            _report(pipes, row)
            _append_metrics(metrics_path, row)

        if epoch % spec.checkpoint_every == 0 or epoch == epochs:
            rng_states: list[Any] = [_capture_rng()]
            if env.distributed:
                rng_states = [None] * env.world_size
                dist.all_gather_object(rng_states, _capture_rng())
            if env.is_main:
                path = checkpoint_path(out_dir, epoch)
                _torch_save_atomic(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "epoch": epoch,
                        "model": module.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": {"by_rank": rng_states},
                        "preprocessor": preprocessor.to_dict(),
                        "fingerprint": fingerprint,
                        "world_size": env.world_size,
                    },
                    path,
                )
                log.info("wrote checkpoint %s", path)
                if store is not None:
                    # After the local write, before the barrier: once any rank moves on, the durable copy exists.
                    store.write_bytes(f"{CHECKPOINT_DIR}/{path.name}", path.read_bytes())
                    store.write_bytes("metrics.jsonl", metrics_path.read_bytes())
                    log.info("copied checkpoint %s to %s", path.name, args.checkpoint_uri)
            _barrier(env)

    if env.is_main:
        scores, val_loss = _scores_and_loss(module, x_val, t_y_val, criterion)
        val_auc, val_ap = _ranking_metrics(y_val, scores)
        threshold, val_precision, val_recall = choose_threshold(y_val, scores)
        history = _read_metrics(metrics_path)
        rates = [row["samples_per_s"] for row in history if row.get("samples_per_s")]
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        atomic_write_bytes(out_dir / "model.pt", buffer.getvalue())
        _write_json_atomic(out_dir / "preprocessor.json", preprocessor.to_dict())
        result = {
            "epochs": epochs,
            "resumed_from_epoch": resumed_from,
            "world_size": env.world_size,
            "backend": env.backend,
            "device": str(env.device),
            "threshold": threshold,
            "val_auc": val_auc,
            "val_ap": val_ap,
            "val_loss": val_loss,
            "val_precision": val_precision,
            "val_recall": val_recall,
            "train_rows": len(train_df),
            "val_rows": len(val_df),
            "train_positives": n_pos,
            "val_positives": int(y_val.sum()),
            "pos_weight": pos_weight,
            "samples_per_s": float(np.mean(rates)) if rates else None,
            "duration_s": time.perf_counter() - started,
            "input_dim": preprocessor.feature_dim,
            "hidden": hidden,
            "numeric": list(spec.numeric),
            "categorical": list(spec.categorical),
            "seed": seed,
            "data_sha256": data_sha256,
            "checkpoints": [p.name for _, p in list_checkpoints(out_dir)],
        }
        _write_json_atomic(out_dir / "result.json", result)
        if store is not None:
            # result.json last: its presence in the store means the other outputs are complete.
            for name in PUBLISHED_OUTPUTS:
                store.write_bytes(name, (out_dir / name).read_bytes())
        _report(pipes, {"event": "result", "result": result})
    _barrier(env)


if __name__ == "__main__":
    sys.exit(main())
