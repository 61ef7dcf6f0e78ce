"""T2: the multi-node path on one machine. Two torchrun agents play the two pods of the indexed Job:
they run the container arguments of the rendered manifest, with the rendezvous host (pod 0's DNS
name) swapped for loopback, each with its own scratch directory (a pod's local disk), and reach the
data, spec and checkpoints only through S3 (a real moto server)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml_assets.storage import S3Store, frame_to_parquet_bytes
from ml_assets.training import k8s
from ml_assets.training.launcher import _child_env
from ml_assets_tests.training.conftest import free_port, make_bucket
from ml_assets_tests.training.test_training import SPEC, make_transactions

pytestmark = pytest.mark.slow


def pod_args(container_args: list[str], endpoint: str, scratch: Path) -> list[str]:
    args = list(container_args)
    (rdzv,) = [i for i, a in enumerate(args) if a.startswith("--rdzv-endpoint=")]
    args[rdzv] = f"--rdzv-endpoint={endpoint}"
    args[args.index("--out") + 1] = str(scratch)
    return args


def test_two_nodes_rendezvous_on_node_0_and_train_through_s3(moto_s3: str, tmp_path: Path):
    store = S3Store(make_bucket(moto_s3, "multinode"), "runs/two-nodes", endpoint_url=moto_s3)
    store.write_bytes("inputs/training_set.parquet", frame_to_parquet_bytes(make_transactions()))
    store.write_bytes("inputs/spec.json", json.dumps(SPEC).encode())
    cfg = k8s.GpuTrainingConfig(image="unused-here", nnodes=2, gpus_per_node=1, max_restarts=0)
    _, job = k8s.render_multinode(cfg, "twonodes", store.uri("inputs/training_set.parquet"),
                                  store.uri("inputs/spec.json"), store.uri("").rstrip("/"), deadline_s=600)
    container = job["spec"]["template"]["spec"]["containers"][0]
    endpoint = f"127.0.0.1:{free_port()}"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["OMP_NUM_THREADS"] = "1"  # two cores here, not a GPU node's many

    agents = []
    for node_rank in (0, 1):
        cmd = [sys.executable, *container["command"][1:], *pod_args(container["args"], endpoint,
                                                                    tmp_path / f"node{node_rank}")]
        log = open(tmp_path / f"node{node_rank}.log", "w")  # noqa: SIM115 - closed below
        agents.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=_child_env({**env, "NODE_RANK": str(node_rank)})), log))
    try:
        codes = [proc.wait(timeout=240) for proc, _ in agents]
    finally:
        for proc, log in agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    logs = "\n".join((tmp_path / f"node{i}.log").read_text()[-3000:] for i in (0, 1))
    assert codes == [0, 0], logs

    result = json.loads(store.read_bytes("result.json"))
    assert result["world_size"] == cfg.nnodes * cfg.gpus_per_node == 2
    assert result["backend"] == "gloo" and result["resumed_from_epoch"] is None
    assert result["val_auc"] > 0.8 and result["train_rows"] == 2400 and result["val_rows"] == 600
    assert result["checkpoints"] == ["epoch_0003.pt", "epoch_0004.pt"]
    assert store.list("checkpoints") == ["checkpoints/epoch_0003.pt", "checkpoints/epoch_0004.pt"]
    assert [json.loads(line)["epoch"] for line in store.read_bytes("metrics.jsonl").decode().splitlines()] == [
        1, 2, 3, 4]
    assert all(store.exists(name) for name in ("model.pt", "preprocessor.json"))
    # Exactly one node holds global rank 0 and wrote the outputs; the other read everything from S3.
    wrote = [i for i in (0, 1) if (tmp_path / f"node{i}" / "result.json").exists()]
    assert len(wrote) == 1
    assert json.loads((tmp_path / f"node{wrote[0]}" / "result.json").read_text()) == result
