"""Training on Kubernetes GPU nodes (T2, O5, S4): the objects, built with the `kubernetes`
client models (and dagster-k8s for the Dagster step), rendered to plain manifests that are
validated against the Kubernetes schemas before anything is submitted.

Single node: the `model_checkpoint` step itself runs on a GPU node. Its op tags
(`dagster-k8s/config`, see `step_op_tags`) ask the k8s_job_executor for GPUs, the GPU
node selector and tolerations; inside the step pod the ordinary torchrun launcher starts
one rank per GPU with NCCL.

Several nodes: the step pod opens a Dagster Pipes session (messages through S3) and submits an indexed Job (one pod per node, `completionMode:
Indexed`) and a headless Service. Pod `i` of the Job is reachable as `<job>-<i>.<service>`;
node rank = the completion index, and pod 0 hosts torchrun's c10d rendezvous, so every pod
runs the same command with `--rdzv-endpoint=<job>-0.<service>:<port>`. Pods repel each other
across nodes (required anti-affinity on the hostname), the Job's `activeDeadlineSeconds` is
2x the expected training time from the contract, and torchrun restarts failed workers up to
`--max-restarts` times. The pods read their inputs from and write their checkpoints and
outputs to the configured object store (`--checkpoint-uri`), so a replacement pod resumes.

Security (S4): containers run as a non-root user with no privilege escalation, no Linux
capabilities and a read-only root file system; the training pods mount no API token; the
step pod's ServiceAccount may only manage Jobs and Services and read Pods in its namespace.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client as k8s

from ml_assets.training.cluster import DEFAULT_K8S_VERSION, GpuTrainingConfig, config_from_env  # noqa: F401 (re-exported)
from ml_assets.training.launcher import TrainingFailed, entry_args, torchrun_args

APP_LABEL = "app.kubernetes.io/name"
RUN_LABEL = "ml-assets/training-run"
# The index the Job controller gives each pod of an Indexed Job; exported as NODE_RANK.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
SCRATCH = "/scratch"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def training_env(cfg: GpuTrainingConfig) -> dict[str, str]:
    """What every training container gets: NCCL diagnostics and timeouts, and the rendezvous fix."""
    return {
        "NCCL_DEBUG": cfg.nccl_debug,
        "NCCL_DEBUG_SUBSYS": "INIT,NET",
        # A failed or timed-out collective tears the process down instead of hanging the whole job.
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        "ML_ASSETS_DIST_TIMEOUT_S": str(cfg.dist_timeout_s),
        # Restarted workers otherwise read stale rendezvous addresses (pytorch/pytorch#135712).
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "4",
    }


def _gpu_resources(cfg: GpuTrainingConfig) -> dict[str, dict[str, str]]:
    gpus = str(cfg.gpus_per_node)
    # Extended resources (GPUs) must have requests == limits; memory is capped to protect the node.
    return {"requests": {"cpu": cfg.cpu, "memory": cfg.memory, cfg.gpu_resource: gpus},
            "limits": {"memory": cfg.memory, cfg.gpu_resource: gpus}}


# --- the Dagster step (single node) ----------------------------------------------------------------------------------


def step_k8s_config(cfg: GpuTrainingConfig) -> dict[str, Any]:
    """The `dagster-k8s/config` of the training step (dagster-k8s' snake_case form)."""
    return {
        "container_config": {
            "resources": _gpu_resources(cfg),
            "env": [{"name": k, "value": v} for k, v in training_env(cfg).items()],
            "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
            "security_context": {"run_as_non_root": True, "allow_privilege_escalation": False,
                                 "capabilities": {"drop": ["ALL"]}},
        },
        "pod_spec_config": {
            "node_selector": dict(cfg.node_selector),
            "tolerations": [dict(t) for t in cfg.tolerations],
            # The step pod submits the multi-node Job, so it runs as the trainer ServiceAccount (RBAC below).
            "service_account_name": cfg.service_account,
            "security_context": {"run_as_non_root": True, "run_as_user": cfg.run_as_user,
                                 "run_as_group": cfg.run_as_user, "fs_group": cfg.run_as_user,
                                 "seccomp_profile": {"type": "RuntimeDefault"}},
            # NCCL needs more shared memory than the container runtime's 64 MiB default.
            "volumes": [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": cfg.shm_size}}],
        },
    }


def step_op_tags(cfg: GpuTrainingConfig) -> dict[str, str]:
    return {"dagster-k8s/config": json.dumps(step_k8s_config(cfg), sort_keys=True)}


def render_step_job(op_tags: dict[str, str], image: str, run_id: str, step_key: str, job_name: str = "retrain",
                    namespace: str = "ml-assets") -> dict[str, Any]:
    """The Job the k8s_job_executor would create for this step, built by dagster-k8s' own code path."""
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        construct_dagster_k8s_job,
        get_k8s_job_name,
        get_user_defined_k8s_config,
    )

    config = DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                 image_pull_policy="IfNotPresent", instance_config_map="dagster-instance",
                                 env_secrets=["ml-assets-env"])
    name = f"dagster-step-{get_k8s_job_name(run_id, step_key)}"
    job = construct_dagster_k8s_job(
        job_config=config,
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=get_user_defined_k8s_config(op_tags),
        labels={"dagster/job": job_name, "dagster/op": step_key, "dagster/run-id": run_id},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": job_name}, {"name": "DAGSTER_RUN_STEP_KEY",
                                                                         "value": step_key}],
    )
    job.metadata.namespace = namespace
    return to_manifest(job)


# --- multi-node: indexed Job + headless Service ----------------------------------------------------------------------


def job_name_for(run_key: str) -> str:
    name = f"ml-assets-train-{run_key}".lower()[:52]  # pod hostnames append "-<index>" within 63 characters
    if not _NAME_RE.match(name):
        raise ValueError(f"training run key {run_key!r} gives {name!r}, not a DNS label (lowercase, digits, '-')")
    return name


def rendezvous_endpoint(name: str, port: int) -> str:
    """Pod 0 of the indexed Job, through the headless Service's DNS (same namespace)."""
    return f"{name}-0.{name}:{port}"


def render_multinode(cfg: GpuTrainingConfig, run_key: str, data_uri: str, spec_uri: str, checkpoint_uri: str,
                     deadline_s: float, pipes_env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """[headless Service, indexed Job] for `cfg.nnodes` nodes x `cfg.gpus_per_node` GPUs.

    `deadline_s` (the contract's deadline_factor x expected_minutes) becomes activeDeadlineSeconds: the
    cluster stops the pods even when nobody is left watching them. `pipes_env` is the Dagster Pipes
    session's bootstrap variables (`PipesSession.get_bootstrap_env_vars()`): every pod gets them, global
    rank 0 alone opens the session and reports epochs and the result through its S3 message channel.
    """
    name = job_name_for(run_key)
    labels = {APP_LABEL: "ml-assets", "app.kubernetes.io/component": "training", RUN_LABEL: name}
    args = [*torchrun_args(cfg.gpus_per_node, cfg.max_restarts, cfg.nnodes, rendezvous_endpoint(name, cfg.rdzv_port),
                           name),
            *entry_args(data_uri, f"{SCRATCH}/run", spec_uri, checkpoint_uri)]
    env = [k8s.V1EnvVar(name="NODE_RANK", value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(
        field_path=f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']")))]
    env += [k8s.V1EnvVar(name=k, value=v) for k, v in {**training_env(cfg), **(pipes_env or {})}.items()]
    container = k8s.V1Container(
        name="trainer",
        image=cfg.image,
        command=["python", "-m", "torch.distributed.run"],
        args=args,
        env=env,
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=cfg.env_secret))] if cfg.env_secret
        else None,
        ports=[k8s.V1ContainerPort(name="rdzv", container_port=cfg.rdzv_port)],
        resources=k8s.V1ResourceRequirements(**_gpu_resources(cfg)),
        security_context=k8s.V1SecurityContext(
            run_as_non_root=True, allow_privilege_escalation=False, read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"])),
        volume_mounts=[k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
                       k8s.V1VolumeMount(name="scratch", mount_path=SCRATCH),
                       k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
    )
    pod = k8s.V1PodSpec(
        subdomain=name,  # with the headless Service of the same name: <name>-<index>.<name> resolves to each pod
        restart_policy="Never",
        automount_service_account_token=False,  # training needs no API access
        containers=[container],
        node_selector=dict(cfg.node_selector) or None,
        tolerations=[k8s.V1Toleration(**t) for t in cfg.tolerations] or None,
        affinity=k8s.V1Affinity(pod_anti_affinity=k8s.V1PodAntiAffinity(
            required_during_scheduling_ignored_during_execution=[k8s.V1PodAffinityTerm(
                label_selector=k8s.V1LabelSelector(match_labels={RUN_LABEL: name}),
                topology_key="kubernetes.io/hostname")])),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=cfg.run_as_user, run_as_group=cfg.run_as_user,
            fs_group=cfg.run_as_user, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        volumes=[k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory",
                                                                                size_limit=cfg.shm_size)),
                 k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource()),
                 k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())],
    )
    job = k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(name=name, namespace=cfg.namespace, labels=labels),
        spec=k8s.V1JobSpec(
            completion_mode="Indexed",
            completions=cfg.nnodes,
            parallelism=cfg.nnodes,
            # torchrun restarts workers in place; the Job replaces a lost pod (node failure) as often.
            backoff_limit=cfg.max_restarts,
            active_deadline_seconds=max(1, int(round(deadline_s))),
            ttl_seconds_after_finished=86400,
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels), spec=pod),
        ),
    )
    service = k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=k8s.V1ObjectMeta(name=name, namespace=cfg.namespace, labels=labels),
        spec=k8s.V1ServiceSpec(
            cluster_ip="None",
            selector={RUN_LABEL: name},
            # Pods must find pod 0 before any of them is ready: the rendezvous is how they become ready.
            publish_not_ready_addresses=True,
            ports=[k8s.V1ServicePort(name="rdzv", port=cfg.rdzv_port, target_port=cfg.rdzv_port)],
        ),
    )
    return [to_manifest(service), to_manifest(job)]


def render_rbac(namespace: str, service_account: str) -> list[dict[str, Any]]:
    """S4: what the training step needs to run the multi-node Job, in its namespace, and nothing else."""
    labels = {APP_LABEL: "ml-assets", "app.kubernetes.io/component": "training"}
    meta = k8s.V1ObjectMeta(name=service_account, namespace=namespace, labels=labels)
    rules = [
        k8s.V1PolicyRule(api_groups=["batch"], resources=["jobs"],
                         verbs=["create", "get", "list", "watch", "delete"]),
        k8s.V1PolicyRule(api_groups=[""], resources=["services"], verbs=["create", "get", "delete"]),
        k8s.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"]),
        k8s.V1PolicyRule(api_groups=[""], resources=["pods/log"], verbs=["get"]),
    ]
    return [
        to_manifest(k8s.V1ServiceAccount(api_version="v1", kind="ServiceAccount", metadata=meta)),
        to_manifest(k8s.V1Role(api_version="rbac.authorization.k8s.io/v1", kind="Role", metadata=meta, rules=rules)),
        to_manifest(k8s.V1RoleBinding(
            api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding", metadata=meta,
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=service_account),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=service_account, namespace=namespace)])),
    ]


# --- rendering and validation ----------------------------------------------------------------------------------------


def to_manifest(obj: Any) -> dict[str, Any]:
    """A client model as the API server receives it (camelCase keys, no nulls)."""
    return k8s.ApiClient().sanitize_for_serialization(obj)


def validate_manifests(manifests: Sequence[dict[str, Any]], version: str = DEFAULT_K8S_VERSION) -> list[str]:
    """Validate each manifest against the Kubernetes schemas (strict: unknown fields are errors)."""
    import kubernetes_validate

    checked = []
    for manifest in manifests:
        where = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path)
            raise ValueError(f"{where} is not a valid Kubernetes {version} object at {path or '/'}: "
                             f"{e.message}") from e
        checked.append(where)
    return checked


# --- submitting and watching (in a cluster) --------------------------------------------------------------------------


class KubernetesJobRunner:
    """Creates the rendered objects, waits for the Job and removes them again (in-cluster credentials)."""

    def __init__(self, namespace: str, poll_s: float = 10.0):
        from kubernetes import config

        config.load_incluster_config()
        self.namespace = namespace
        self.poll_s = poll_s
        self.batch = k8s.BatchV1Api()
        self.core = k8s.CoreV1Api()

    def run(self, manifests: Sequence[dict[str, Any]], timeout_s: float, log: Callable[[str], None],
            overtime_s: float | None = None, on_overtime: Callable[[float], None] | None = None) -> None:
        service, job = manifests
        name = job["metadata"]["name"]
        self.core.create_namespaced_service(self.namespace, service)
        try:
            self.batch.create_namespaced_job(self.namespace, job)
            log(f"submitted indexed Job {self.namespace}/{name} ({job['spec']['completions']} nodes)")
            self._wait(name, job["spec"]["completions"], timeout_s, log, overtime_s, on_overtime)
        finally:
            # Pods go with their Job; a failed clean-up is reported but must not hide why training failed.
            for delete in (lambda: self.batch.delete_namespaced_job(name, self.namespace,
                                                                    propagation_policy="Background"),
                           lambda: self.core.delete_namespaced_service(name, self.namespace)):
                try:
                    delete()
                except k8s.ApiException as e:
                    log(f"could not delete {self.namespace}/{name}: {e.status} {e.reason}")

    def _wait(self, name: str, nodes: int, timeout_s: float, log: Callable[[str], None], overtime_s: float | None,
              on_overtime: Callable[[float], None] | None) -> None:
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            if on_overtime is not None and overtime_s is not None and elapsed >= overtime_s:
                on_overtime(elapsed)
                on_overtime = None
            status = self.batch.read_namespaced_job_status(name, self.namespace).status
            if (status.succeeded or 0) >= nodes:
                log(f"Job {name} completed on {nodes} nodes in {elapsed:.0f} s")
                return
            failed = [c for c in status.conditions or [] if c.type == "Failed" and c.status == "True"]
            if failed or elapsed > timeout_s:
                reason = f"{failed[0].reason}: {failed[0].message}" if failed else f"no result after {timeout_s:.0f} s"
                raise TrainingFailed(f"Kubernetes Job {self.namespace}/{name} failed ({reason})", None,
                                     self._logs(name))
            time.sleep(self.poll_s)

    def _logs(self, name: str) -> list[str]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{RUN_LABEL}={name}").items
        lines: list[str] = []
        for pod in pods:
            try:
                text = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, tail_lines=20)
            except k8s.ApiException as e:
                text = f"(no log: {e.status} {e.reason})"
            lines += [f"[{pod.metadata.name}] {line}" for line in text.splitlines()]
        return lines
