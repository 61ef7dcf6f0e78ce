"""O5, T2, S4: everything the Kubernetes path would submit, rendered and validated (strict) against the
Kubernetes schemas. No cluster and no mock of one: the objects are what the API server would receive."""

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster_k8s import k8s_job_executor
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_param, encode_param

from ml_assets.contract import load_contract
from ml_assets.definitions import build_definitions
from ml_assets.resources import KubernetesTorchrunLauncherResource
from ml_assets.settings import Settings
from ml_assets.training import k8s
from ml_assets.training.cluster import ENV_VARS, GpuTrainingConfig, config_from_env
from ml_assets.training.launcher import ENTRY_MODULE

RUN_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def prod_defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    mp = pytest.MonkeyPatch()
    mp.setenv("ML_ASSETS_IMAGE", "registry.example.com/ml-assets:1.2.3")
    mp.setenv("ML_ASSETS_TRAIN_GPUS_PER_NODE", "4")
    try:
        yield build_definitions(Settings(env="prod", home=tmp_path_factory.mktemp("prod"), contract_path=None))
    finally:
        mp.undo()


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_prod_runs_the_training_step_on_gpu_nodes_through_dagster_k8s(prod_defs: dg.Definitions):
    assert prod_defs.executor is k8s_job_executor
    trainer = prod_defs.resources["trainer"]
    assert isinstance(trainer, KubernetesTorchrunLauncherResource) and trainer.cluster.gpus_per_node == 4
    retrain = prod_defs.resolve_job_def("retrain")
    assert dg.AssetKey("model_checkpoint") in retrain.asset_layer.executable_asset_keys
    tags = prod_defs.resolve_assets_def("model_checkpoint").op.tags

    # The step Job exactly as dagster-k8s' executor builds it from these tags.
    job = k8s.render_step_job(tags, "registry.example.com/ml-assets:1.2.3", RUN_ID, "model_checkpoint")
    assert k8s.validate_manifests([job]) == [f"Job/{job['metadata']['name']}"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["dagster", "api", "execute_step"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["serviceAccountName"] == "ml-assets-trainer"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}}
    env = env_of(container)
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1" and env["NCCL_DEBUG"] == "WARN"
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1" and int(env["ML_ASSETS_DIST_TIMEOUT_S"]) > 0
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]


def test_local_definitions_put_no_kubernetes_config_on_the_step(tmp_path: Path):
    defs = build_definitions(Settings(env="local", home=tmp_path, contract_path=None))
    tags = defs.resolve_assets_def("model_checkpoint").op.tags
    assert "dagster-k8s/config" not in tags and defs.executor is not k8s_job_executor


# What `PipesSession.get_bootstrap_env_vars()` gives with PipesEnvContextInjector and PipesS3MessageReader (the
# multi-node test, ml_assets_tests/training/test_multinode.py, renders with a live session's).
PIPES_ENV = {DAGSTER_PIPES_CONTEXT_ENV_VAR: encode_param({"env": {"run_id": RUN_ID, "asset_keys": ["model_checkpoint"]}}),
             DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_param({"bucket": "lake", "key_prefix": "pipes0123456789"})}


def multinode(nnodes: int = 2, gpus: int = 8, deadline_s: float = 600.0) -> tuple[dict, dict]:
    cfg = k8s.GpuTrainingConfig(image="registry.example.com/ml-assets:1.2.3", nnodes=nnodes, gpus_per_node=gpus)
    service, job = k8s.render_multinode(cfg, "3f2a9c0d1e5b7a64", "s3://lake/runs/x/inputs/training_set.parquet",
                                        "s3://lake/runs/x/inputs/spec.json", "s3://lake/runs/x", deadline_s=deadline_s,
                                        pipes_env=PIPES_ENV)
    return service, job


def test_multinode_training_is_an_indexed_job_behind_a_headless_service():
    contract = load_contract(None)
    deadline_s = contract.training.deadline_factor * contract.training.expected_minutes * 60
    service, job = multinode(nnodes=3, gpus=8, deadline_s=deadline_s)
    assert k8s.validate_manifests([service, job]) == ["Service/ml-assets-train-3f2a9c0d1e5b7a64",
                                                     "Job/ml-assets-train-3f2a9c0d1e5b7a64"]
    name = job["metadata"]["name"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["activeDeadlineSeconds"] == 2 * 5 * 60 == deadline_s  # 2x the contract's expected 5 minutes
    # Pod i is <name>-i.<service>: the headless Service selects exactly this Job's pods, ready or not.
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert pod["subdomain"] == service["metadata"]["name"] == name
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    # One pod per node.
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert all(labels[k] == v for k, v in term["labelSelector"]["matchLabels"].items())

    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "torch.distributed.run"]
    args = container["args"]
    assert "--nnodes=3" in args and "--nproc-per-node=8" in args and "--max-restarts=2" in args
    assert f"--rdzv-endpoint={name}-0.{name}:29400" in args and "--rdzv-backend=c10d" in args
    assert args[args.index("-m") + 1] == ENTRY_MODULE
    assert args[args.index("--checkpoint-uri") + 1] == "s3://lake/runs/x"
    env = env_of(container)
    assert env["NODE_RANK"] == {"fieldRef": {"fieldPath":
                                             "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert {"NCCL_DEBUG", "TORCH_NCCL_ASYNC_ERROR_HANDLING", "ML_ASSETS_DIST_TIMEOUT_S"} <= set(env)
    # Every pod carries the Pipes session's bootstrap variables (global rank 0 alone opens it and reports through S3).
    assert {k: env[k] for k in PIPES_ENV} == PIPES_ENV
    assert decode_param(env[DAGSTER_PIPES_MESSAGES_ENV_VAR])["bucket"] == "lake"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    # S4: non-root, nothing to escalate, no API token in the training pods.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_rbac_for_the_launching_step_is_least_privilege():
    objects = k8s.render_rbac("ml-assets", "ml-assets-trainer")
    assert k8s.validate_manifests(objects) == ["ServiceAccount/ml-assets-trainer", "Role/ml-assets-trainer",
                                               "RoleBinding/ml-assets-trainer"]
    _, role, binding = objects
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "ml-assets"  # namespaced, not ClusterRole
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert not any("*" in item for item in granted)
    assert not {r for _, r, _ in granted} & {"secrets", "configmaps", "roles", "rolebindings", "pods/exec"}
    assert ("batch", "jobs", "create") in granted and ("", "services", "create") in granted
    assert not {v for _, r, v in granted if r == "pods"} - {"get", "list", "watch"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "ml-assets-trainer"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ml-assets-trainer", "namespace": "ml-assets"}]


def test_schema_validation_refuses_what_the_api_server_would_refuse():
    service, job = multinode()
    typo = json.loads(json.dumps(job))
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"nvidia.com/gpu": "8"}}
    with pytest.raises(ValueError, match=r"Job/ml-assets-train-3f2a9c0d1e5b7a64 is not a valid Kubernetes"):
        k8s.validate_manifests([service, typo])  # strict: an unknown field is an error, not silently dropped
    wrong_type = json.loads(json.dumps(job))
    wrong_type["spec"]["activeDeadlineSeconds"] = "600"
    with pytest.raises(ValueError, match="activeDeadlineSeconds"):
        k8s.validate_manifests([wrong_type])


def test_the_cluster_shape_is_defined_once_and_read_from_the_environment_in_one_place():
    """The resource holds the config itself; defaults come from GpuTrainingConfig, variables from config_from_env."""
    assert config_from_env({}) == GpuTrainingConfig(image="ml-assets:latest")
    cfg = config_from_env({"ML_ASSETS_IMAGE": "img:1", "ML_ASSETS_TRAIN_NNODES": "3", "ML_ASSETS_K8S_NAMESPACE": ""})
    assert (cfg.image, cfg.nnodes, cfg.namespace) == ("img:1", 3, GpuTrainingConfig.model_fields["namespace"].default)
    assert set(ENV_VARS) <= set(GpuTrainingConfig.model_fields)
    assert KubernetesTorchrunLauncherResource(cluster=cfg).config() is cfg
    with pytest.raises(ValueError, match="gpus_per_nodes"):
        GpuTrainingConfig(image="x", gpus_per_nodes=2)  # a misspelt setting is refused, not ignored
    with pytest.raises(ValueError, match="ML_ASSETS_TRAIN_MAX_RESTARTS='-1': Input should be greater than or equal"):
        config_from_env({"ML_ASSETS_TRAIN_MAX_RESTARTS": "-1"})


def test_bad_cluster_settings_fail_before_anything_is_rendered():
    with pytest.raises(ValueError, match="ML_ASSETS_TRAIN_NNODES='two': Input should be a valid integer"):
        k8s.config_from_env({"ML_ASSETS_TRAIN_NNODES": "two"})
    with pytest.raises(ValueError, match="non-root"):
        k8s.GpuTrainingConfig(image="x", run_as_user=0)
    with pytest.raises(ValueError, match="not a DNS label"):
        k8s.job_name_for("Run_Key!")
    with pytest.raises(ValueError, match="needs the checkpoints on S3"):
        KubernetesTorchrunLauncherResource(cluster=k8s.GpuTrainingConfig(image="x", nnodes=2)).launch(
            dg.build_asset_context(), Path("d"), Path("o"), {}, timeout_s=60, checkpoint_uri="/local/dir")
