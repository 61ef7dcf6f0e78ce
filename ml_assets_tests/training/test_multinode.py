"""T2: the multi-node path on one machine, through the launcher resource. Two torchrun agents play the two
pods of the indexed Job: the resource stages the inputs on S3 (a real moto server), opens a Dagster Pipes
session whose messages travel through the same bucket, renders and validates the Job with the session's
bootstrap variables in the pods' environment, and "submits" it to `run_job`, which here runs the container
arguments of the rendered manifest locally (rendezvous host swapped for loopback, each agent with its own
scratch directory: a pod's local disk). Rank 0 reports epochs and the result through Pipes on S3."""

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_pipes import decode_param

from ml_assets.resources import KubernetesTorchrunLauncherResource
from ml_assets.storage import S3Store
from ml_assets.training import k8s
from ml_assets.training.launcher import _child_env
from ml_assets_tests.training.conftest import free_port, make_bucket
from ml_assets_tests.training.test_training import SPEC, make_transactions

pytestmark = pytest.mark.slow
SUBMITTED: list[dict[str, Any]] = []  # what each run_job call received (resources are frozen models)


def pod_args(container_args: list[str], endpoint: str, scratch: Path) -> list[str]:
    args = list(container_args)
    (rdzv,) = [i for i, a in enumerate(args) if a.startswith("--rdzv-endpoint=")]
    args[rdzv] = f"--rdzv-endpoint={endpoint}"
    args[args.index("--out") + 1] = str(scratch)
    return args


class PodsOnThisMachine(KubernetesTorchrunLauncherResource):
    """The Kubernetes launcher with the cluster replaced by local torchrun agents running the pods' command."""

    scratch: str

    def run_job(self, manifests: Sequence[dict[str, Any]], timeout_s: float, log: Callable[[str], None],
                overtime_s: float | None, on_overtime: Callable[[float], None] | None) -> None:
        _, job = manifests
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        SUBMITTED.append({"job": job, "env": env})
        env["OMP_NUM_THREADS"] = "1"  # two cores here, not a GPU node's many
        endpoint, scratch = f"127.0.0.1:{free_port()}", Path(self.scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        agents = []
        for node_rank in range(job["spec"]["completions"]):
            cmd = [sys.executable, *container["command"][1:], *pod_args(container["args"], endpoint,
                                                                        scratch / f"node{node_rank}")]
            out = open(scratch / f"node{node_rank}.log", "w")  # noqa: SIM115 - closed below
            agents.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=_child_env({**env, "NODE_RANK": str(node_rank)})), out))
        try:
            codes = [proc.wait(timeout=timeout_s) for proc, _ in agents]
        finally:
            for proc, out in agents:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                out.close()
        logs = "\n".join((scratch / f"node{i}.log").read_text()[-3000:] for i in range(len(agents)))
        assert codes == [0] * len(agents), logs


def test_two_nodes_rendezvous_on_node_0_train_through_s3_and_report_through_pipes(moto_s3: str, tmp_path: Path):
    store = S3Store(make_bucket(moto_s3, "multinode"), "runs/two-nodes", endpoint_url=moto_s3)
    data = tmp_path / "training_set.parquet"
    make_transactions().to_parquet(data, index=False)
    cfg = k8s.GpuTrainingConfig(image="unused-here", nnodes=2, gpus_per_node=1, max_restarts=0)
    trainer = PodsOnThisMachine(cluster=cfg, scratch=str(tmp_path / "pods"))

    @dg.asset
    def multinode_training(context: dg.AssetExecutionContext):
        return trainer.launch(context, data, tmp_path / "step", SPEC, timeout_s=600,
                              checkpoint_uri=store.uri("").rstrip("/"))

    SUBMITTED.clear()
    run = multinode_training(dg.build_asset_context())

    # The pods carried the Pipes session's bootstrap variables: context in the environment, messages on S3.
    (submitted,) = SUBMITTED
    assert k8s.validate_manifests([submitted["job"]]) == [f"Job/{submitted['job']['metadata']['name']}"]
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(submitted["env"])
    assert decode_param(submitted["env"]["DAGSTER_PIPES_MESSAGES"])["bucket"] == "multinode"

    # What the step got came through Pipes, and equals what rank 0 published to the store.
    result = json.loads(store.read_bytes("result.json"))
    assert run.result == result
    assert [e["epoch"] for e in run.epochs_log] == [1, 2, 3, 4]  # one writer: global rank 0 only
    assert run.epochs_log == [json.loads(line) for line in store.read_bytes("metrics.jsonl").decode().splitlines()]
    assert result["world_size"] == cfg.nnodes * cfg.gpus_per_node == 2
    assert result["backend"] == "gloo" and result["resumed_from_epoch"] is None
    assert result["val_auc"] > 0.8 and result["train_rows"] == 2400 and result["val_rows"] == 600
    assert result["checkpoints"] == ["epoch_0003.pt", "epoch_0004.pt"]
    assert store.list("checkpoints") == ["checkpoints/epoch_0003.pt", "checkpoints/epoch_0004.pt"]
    assert all((tmp_path / "step" / name).exists() for name in ("model.pt", "preprocessor.json", "result.json"))
    # Exactly one node holds global rank 0 and wrote the outputs; the other read everything from S3.
    wrote = [i for i in (0, 1) if (tmp_path / "pods" / f"node{i}" / "result.json").exists()]
    assert len(wrote) == 1
    assert json.loads((tmp_path / "pods" / f"node{wrote[0]}" / "result.json").read_text()) == result
