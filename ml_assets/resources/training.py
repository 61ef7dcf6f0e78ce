"""The training launchers as resources: where the entry point (`python -m ml_assets.training.ddp`) runs, started
through Dagster Pipes so that rank 0's epochs, log and result come back as Pipes messages.

Local (and the single-node Kubernetes step): torchrun through `dg.PipesSubprocessClient`, under the launcher's
`ProcessTreeWatchdog` (deadline, overtime alert, no orphaned rank). Multi-node: the indexed Job of
`ml_assets.training.k8s`, its pods carrying the bootstrap variables of a Pipes session whose messages travel
through the lake's S3 bucket (`PipesS3MessageReader`; the pods share no disk or stream with the step).
"""

import re
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.pipes import PipesS3MessageReader

from ml_assets.contract.model import TrainingSpec
from ml_assets.storage import S3Store, store_for_uri
from ml_assets.training.cluster import GpuTrainingConfig
from ml_assets.training.launcher import (
    LocalTorchrunLauncher,
    ProcessTreeWatchdog,
    TrainingFailed,
    TrainingResult,
    result_from_messages,
)

Context = dg.AssetExecutionContext | dg.OpExecutionContext
# Seconds between two polls of the S3 message channel; the pods upload at the same pace (ddp.PIPES_S3_INTERVAL_S).
PIPES_S3_POLL_S = 2.0


def _exit_code(error: Exception) -> int | None:
    """The exit status in the Pipes client's error (its DagsterPipesExecutionError is not public API, and the
    status is only in the message: "External execution process failed with code N")."""
    match = re.search(r"failed with code (-?\d+)", str(error))
    return int(match.group(1)) if match else None


def run_torchrun(context: Context, launcher: LocalTorchrunLauncher, data: Path, out_dir: Path, spec: TrainingSpec,
                 checkpoint_uri: str | None = None, overtime_s: float | None = None,
                 on_overtime: Callable[[float], None] | None = None) -> TrainingResult:
    """torchrun through `PipesSubprocessClient`: the ranks' stdout and stderr go straight to this process's (the
    step's captured output) and to torchrun's log files (the failure tail); epochs and the result come back
    as rank 0's Pipes messages. The client waits without a deadline, hence the watchdog."""
    prepared = launcher.prepare(data, out_dir, spec, checkpoint_uri)
    started = time.monotonic()
    with ProcessTreeWatchdog(prepared.command, launcher.timeout_s, overtime_s, on_overtime) as watchdog:
        try:
            invocation = dg.PipesSubprocessClient(env=prepared.env).run(context=context, command=prepared.command)
        except dg.DagsterExecutionInterruptedError:
            raise  # the run was cancelled; leaving the watchdog kills what is left of the tree
        except Exception as e:
            code = _exit_code(e)
            if watchdog.deadline_passed:
                raise prepared.failed(f"training exceeded the deadline of {launcher.timeout_s:.0f} s and was killed",
                                      code) from e
            detail = "" if code is not None else f" ({e})"
            raise prepared.failed(f"training command failed{detail}: {' '.join(prepared.command)}", code) from e
    if watchdog.overtime_error is not None:
        context.log.error(f"the overtime alert could not be sent: {watchdog.overtime_error!r}")
    return prepared.result(invocation.get_custom_messages(), time.monotonic() - started)


class TrainingLauncherResource(dg.ConfigurableResource):
    """Runs the training entry point (`python -m ml_assets.training.ddp`) somewhere, within the step's `context`
    (the Pipes session belongs to it).

    `checkpoint_uri` is the durable copy of checkpoints and outputs (T1); `on_overtime(elapsed_s)` is
    called once, while training runs, when `overtime_s` has passed (T3); past `timeout_s` it is killed.
    """

    @abstractmethod
    def launch(self, context: Context, data: Path, out_dir: Path, spec: TrainingSpec, timeout_s: float | None = None,
               checkpoint_uri: str | None = None, overtime_s: float | None = None,
               on_overtime: Callable[[float], None] | None = None) -> TrainingResult: ...

    @abstractmethod
    def describe(self) -> dict: ...


class LocalTorchrunLauncherResource(TrainingLauncherResource):
    """`torchrun --standalone --nproc_per_node=N` on this machine (gloo on CPU, NCCL on GPU)."""

    nproc_per_node: int = 2
    max_restarts: int = 0

    def launch(self, context: Context, data: Path, out_dir: Path, spec: TrainingSpec, timeout_s: float | None = None,
               checkpoint_uri: str | None = None, overtime_s: float | None = None,
               on_overtime: Callable[[float], None] | None = None) -> TrainingResult:
        launcher = LocalTorchrunLauncher(nproc_per_node=self.nproc_per_node, max_restarts=self.max_restarts,
                                         timeout_s=timeout_s)
        return run_torchrun(context, launcher, data, out_dir, spec, checkpoint_uri, overtime_s, on_overtime)

    def describe(self) -> dict:
        return {"launcher": "local torchrun (Dagster Pipes)", "nproc_per_node": self.nproc_per_node,
                "max_restarts": self.max_restarts}


class KubernetesTorchrunLauncherResource(TrainingLauncherResource):
    """Training on Kubernetes GPU nodes (see `ml_assets.training.k8s`).

    nnodes == 1: this step already runs on a GPU node (the k8s_job_executor honoured the step's
    `dagster-k8s/config` tags), so torchrun starts here, through Pipes, with one NCCL rank per GPU.
    nnodes > 1: an indexed Job + headless Service is rendered with a Pipes session's bootstrap variables,
    validated against the Kubernetes schemas, submitted and watched; the pods exchange data, checkpoints
    and outputs through the object store named by `checkpoint_uri` (which must then be on S3), and rank 0
    reports epochs and the result through the same bucket.
    """

    cluster: GpuTrainingConfig  # the cluster shape, defaults and ranges in one place (training.cluster)

    def config(self) -> GpuTrainingConfig:
        return self.cluster

    def launch(self, context: Context, data: Path, out_dir: Path, spec: TrainingSpec, timeout_s: float | None = None,
               checkpoint_uri: str | None = None, overtime_s: float | None = None,
               on_overtime: Callable[[float], None] | None = None) -> TrainingResult:
        from ml_assets.training import k8s

        cfg = self.config()
        if cfg.nnodes == 1:
            launcher = LocalTorchrunLauncher(nproc_per_node=cfg.gpus_per_node, max_restarts=cfg.max_restarts,
                                             timeout_s=timeout_s, extra_env=k8s.training_env(cfg))
            return run_torchrun(context, launcher, data, out_dir, spec, checkpoint_uri, overtime_s, on_overtime)
        return self._launch_multinode(context, cfg, Path(data), Path(out_dir), spec, timeout_s, checkpoint_uri,
                                      overtime_s, on_overtime)

    def _launch_multinode(self, context: Context, cfg: GpuTrainingConfig, data: Path, out_dir: Path,
                          spec: TrainingSpec, timeout_s: float | None, checkpoint_uri: str | None,
                          overtime_s: float | None, on_overtime: Callable[[float], None] | None) -> TrainingResult:
        from ml_assets.training import k8s

        if not checkpoint_uri or not checkpoint_uri.startswith("s3://"):
            raise ValueError(f"multi-node training needs the checkpoints on S3 where every pod reaches them; "
                             f"checkpoint_uri is {checkpoint_uri!r} (configure the lake on S3)")
        if timeout_s is None:
            raise ValueError("multi-node training needs a deadline (timeout_s) for activeDeadlineSeconds")
        store = store_for_uri(checkpoint_uri)
        assert isinstance(store, S3Store)
        store.write_bytes("inputs/training_set.parquet", data.read_bytes())
        store.write_bytes("inputs/spec.json", TrainingSpec.model_validate(spec).model_dump_json().encode())
        # A fresh name per attempt: a Job name cannot be reused until the old Job is gone.
        run_key = f"{out_dir.name[:12]}-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        reader = PipesS3MessageReader(bucket=store.bucket, client=store.client, interval=PIPES_S3_POLL_S)
        with dg.open_pipes_session(context=context, context_injector=dg.PipesEnvContextInjector(),
                                   message_reader=reader) as session:
            manifests = k8s.render_multinode(cfg, run_key, store.uri("inputs/training_set.parquet"),
                                             store.uri("inputs/spec.json"), checkpoint_uri, deadline_s=timeout_s,
                                             pipes_env=session.get_bootstrap_env_vars())
            k8s.validate_manifests(manifests, cfg.kubernetes_version)
            context.log.info(f"launching {cfg.nnodes}-node training {manifests[1]['metadata']['name']} "
                             f"(manifests validated)")
            self.run_job(manifests, timeout_s, context.log.info, overtime_s, on_overtime)
        result, epochs = result_from_messages(session.get_custom_messages())
        if result is None:
            raise TrainingFailed(f"the Job completed but rank 0 reported no result through Dagster Pipes "
                                 f"(s3://{store.bucket})", 0, [])
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "preprocessor.json", "metrics.jsonl", "result.json"):
            (out_dir / name).write_bytes(store.read_bytes(name))
        return TrainingResult(out_dir=out_dir, result=result, epochs_log=epochs,
                              command=manifests[1]["spec"]["template"]["spec"]["containers"][0]["args"],
                              duration_s=time.monotonic() - started, returncode=0)

    def run_job(self, manifests: Sequence[dict[str, Any]], timeout_s: float, log: Callable[[str], None],
                overtime_s: float | None, on_overtime: Callable[[float], None] | None) -> None:
        """Submit the rendered objects and wait for the Job (in-cluster credentials)."""
        from ml_assets.training import k8s

        k8s.KubernetesJobRunner(self.config().namespace).run(manifests, timeout_s, log, overtime_s, on_overtime)

    def describe(self) -> dict:
        c = self.cluster
        return {"launcher": "kubernetes (Dagster Pipes)", "nnodes": c.nnodes, "gpus_per_node": c.gpus_per_node,
                "namespace": c.namespace, "image": c.image, "max_restarts": c.max_restarts}


def launch_standalone(launcher: LocalTorchrunLauncher, data: Path, out_dir: Path, spec: TrainingSpec | dict,
                      checkpoint_uri: str | None = None, overtime_s: float | None = None,
                      on_overtime: Callable[[float], None] | None = None) -> TrainingResult:
    """One launch outside a Dagster run (benchmarks, tests, a run by hand): the same Pipes path, inside a throwaway
    asset invoked directly, whose context logs to the `dagster` Python logger."""

    @dg.asset(name="standalone_training")
    def standalone_training(context: dg.AssetExecutionContext) -> TrainingResult:
        return run_torchrun(context, launcher, data, out_dir, spec, checkpoint_uri, overtime_s, on_overtime)

    return standalone_training(dg.build_asset_context())
