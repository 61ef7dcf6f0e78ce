import json
import uuid
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from ml_assets.contract.model import TrainingSpec
from ml_assets.storage import store_for_uri
from ml_assets.training.cluster import GpuTrainingConfig
from ml_assets.training.launcher import LocalTorchrunLauncher, TrainingFailed, TrainingResult


class TrainingLauncherResource(dg.ConfigurableResource):
    """Runs the training entry point (`python -m ml_assets.training.ddp`) somewhere.

    `checkpoint_uri` is the durable copy of checkpoints and outputs (T1); `on_overtime(elapsed_s)` is
    called once, while training runs, when `overtime_s` has passed (T3); past `timeout_s` it is killed.
    """

    @abstractmethod
    def launch(self, data: Path, out_dir: Path, spec: TrainingSpec, log: Callable[[str], None] | None = None,
               timeout_s: float | None = None, checkpoint_uri: str | None = None, overtime_s: float | None = None,
               on_overtime: Callable[[float], None] | None = None) -> TrainingResult: ...

    @abstractmethod
    def describe(self) -> dict: ...


class LocalTorchrunLauncherResource(TrainingLauncherResource):
    """`torchrun --standalone --nproc_per_node=N` on this machine (gloo on CPU, NCCL on GPU)."""

    nproc_per_node: int = 2
    max_restarts: int = 0

    def launch(self, data: Path, out_dir: Path, spec: TrainingSpec, log: Callable[[str], None] | None = None,
               timeout_s: float | None = None, checkpoint_uri: str | None = None, overtime_s: float | None = None,
               on_overtime: Callable[[float], None] | None = None) -> TrainingResult:
        launcher = LocalTorchrunLauncher(nproc_per_node=self.nproc_per_node, max_restarts=self.max_restarts,
                                         timeout_s=timeout_s)
        return launcher.launch(data, out_dir, spec, log=log, checkpoint_uri=checkpoint_uri, overtime_s=overtime_s,
                               on_overtime=on_overtime)

    def describe(self) -> dict:
        return {"launcher": "local torchrun", "nproc_per_node": self.nproc_per_node, "max_restarts": self.max_restarts}


class KubernetesTorchrunLauncherResource(TrainingLauncherResource):
    """Training on Kubernetes GPU nodes (see `ml_assets.training.k8s`).

    nnodes == 1: this step already runs on a GPU node (the k8s_job_executor honoured the step's
    `dagster-k8s/config` tags), so torchrun starts here with one NCCL rank per GPU.
    nnodes > 1: an indexed Job + headless Service is rendered, validated against the Kubernetes
    schemas, submitted and watched; the pods exchange data, checkpoints and outputs through the
    object store named by `checkpoint_uri` (which must then be on S3).
    """

    cluster: GpuTrainingConfig  # the cluster shape, defaults and ranges in one place (training.cluster)

    def config(self) -> GpuTrainingConfig:
        return self.cluster

    def launch(self, data: Path, out_dir: Path, spec: TrainingSpec, log: Callable[[str], None] | None = None,
               timeout_s: float | None = None, checkpoint_uri: str | None = None, overtime_s: float | None = None,
               on_overtime: Callable[[float], None] | None = None) -> TrainingResult:
        from ml_assets.training import k8s

        cfg = self.config()
        if cfg.nnodes == 1:
            launcher = LocalTorchrunLauncher(nproc_per_node=cfg.gpus_per_node, max_restarts=cfg.max_restarts,
                                             timeout_s=timeout_s, extra_env=k8s.training_env(cfg))
            return launcher.launch(data, out_dir, spec, log=log, checkpoint_uri=checkpoint_uri,
                                   overtime_s=overtime_s, on_overtime=on_overtime)
        return self._launch_multinode(cfg, Path(data), Path(out_dir), spec, log or (lambda _: None), timeout_s,
                                      checkpoint_uri, overtime_s, on_overtime)

    def _launch_multinode(self, cfg, data: Path, out_dir: Path, spec: TrainingSpec, log: Callable[[str], None],
                          timeout_s: float | None, checkpoint_uri: str | None, overtime_s: float | None,
                          on_overtime: Callable[[float], None] | None) -> TrainingResult:
        from ml_assets.training import k8s

        if not checkpoint_uri or not checkpoint_uri.startswith("s3://"):
            raise ValueError(f"multi-node training needs the checkpoints on S3 where every pod reaches them; "
                             f"checkpoint_uri is {checkpoint_uri!r} (configure the lake on S3)")
        if timeout_s is None:
            raise ValueError("multi-node training needs a deadline (timeout_s) for activeDeadlineSeconds")
        store = store_for_uri(checkpoint_uri)
        store.write_bytes("inputs/training_set.parquet", data.read_bytes())
        store.write_bytes("inputs/spec.json", TrainingSpec.model_validate(spec).model_dump_json().encode())
        # A fresh name per attempt: a Job name cannot be reused until the old Job is gone.
        run_key = f"{out_dir.name[:12]}-{uuid.uuid4().hex[:6]}"
        manifests = k8s.render_multinode(cfg, run_key, store.uri("inputs/training_set.parquet"),
                                         store.uri("inputs/spec.json"), checkpoint_uri, deadline_s=timeout_s)
        k8s.validate_manifests(manifests, cfg.kubernetes_version)
        log(f"launching {cfg.nnodes}-node training {manifests[1]['metadata']['name']} (manifests validated)")
        k8s.KubernetesJobRunner(cfg.namespace).run(manifests, timeout_s, log, overtime_s, on_overtime)
        out_dir.mkdir(parents=True, exist_ok=True)
        if not store.exists("result.json"):
            raise TrainingFailed(f"the Job completed but wrote no {store.uri('result.json')}", 0, [])
        for name in ("model.pt", "preprocessor.json", "metrics.jsonl", "result.json"):
            (out_dir / name).write_bytes(store.read_bytes(name))
        result = json.loads((out_dir / "result.json").read_text())
        epochs = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        return TrainingResult(out_dir=out_dir, result=result, epochs_log=epochs,
                              command=manifests[1]["spec"]["template"]["spec"]["containers"][0]["args"],
                              duration_s=float(result.get("duration_s") or 0.0), returncode=0)

    def describe(self) -> dict:
        c = self.cluster
        return {"launcher": "kubernetes", "nnodes": c.nnodes, "gpus_per_node": c.gpus_per_node,
                "namespace": c.namespace, "image": c.image, "max_restarts": c.max_restarts}
